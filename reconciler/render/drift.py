"""Drift reports rendered: text for the terminal, Markdown for pull requests, JSON for machines,
with who changed what and when where ARM says so. Pure: Plan in, text out. Which changes are
drift is decided in reconciler/drift.py."""

from __future__ import annotations

import json
from typing import Any

from reconciler.drift import group, has_drift, parse_classes
from reconciler.plan import Change, DriftClass, Plan
from reconciler.render.describe import field_lines, title
from reconciler.render.markdown import md_code
from reconciler.render.markdown import md_text as md
from reconciler.render.text import abandoned_lines
from reconciler.textsafe import one_line

_MEANING = {
    DriftClass.MISSING: "declared in the manifests, absent in Azure",
    DriftClass.CHANGED: "present, but a managed field differs from the manifests",
    DriftClass.UNMANAGED: "in Azure, ours to see, declared in no manifest",
    DriftClass.ORPHANED: "role assignments whose principal no longer exists",
}


def _who(change: Change) -> str:
    m = change.modified or {}
    if not m.get("by") and not m.get("at"):
        return ""
    # byName: the directory's name for the actor's object id, when plan could read it.
    who = m.get("byName") or m.get("by") or "unknown"
    if m.get("byType") and not m.get("byName"):
        who += f" ({m['byType']})"
    return f"last modified by {who}" + (f" at {m['at']}" if m.get("at") else "")


def _differences(change: Change) -> list[tuple[str, str, str]]:
    """The fields (tag by tag) where Azure differs from the manifests, as plan shows them;
    only for changed resources (a missing one differs in everything)."""
    return field_lines(change) if change.drift is DriftClass.CHANGED else []


_LEGEND = "field = value in Azure -> value in the manifests"


def render_text(plan: Plan) -> str:
    grouped = group(plan)
    total = sum(len(v) for v in grouped.values())
    notes = abandoned_lines(plan)
    if not total and not notes:
        return "No drift: Azure matches the manifests.\n"
    out = [f"Drift: {total} finding(s)." if total else "No drift of declared resources."]
    if notes:
        out += ["", *notes]
    for cls, changes in grouped.items():
        if not changes:
            continue
        out.append("")
        out.append(f"{cls.value} ({len(changes)}): {_MEANING[cls]}")
        for c in changes:
            line = f"  - {title(c)}: {c.reason}"
            who = _who(c)
            if who:
                line += f"; {who}"
            out.append(one_line(line))
            out += [one_line(f"      {marker} {name} = {text}") for marker, name, text in _differences(c)]
        if cls is DriftClass.CHANGED:
            out.append(f"    ({_LEGEND}; + only in the manifests, - only in Azure)")
    if total:
        out.append("")
        out.append("Run `reconciler plan` to see the fix; `reconciler apply` restores the manifests' state.")
    return "\n".join(out) + "\n"


def render_markdown(plan: Plan) -> str:
    grouped = group(plan)
    total = sum(len(v) for v in grouped.values())
    if not total and not plan.abandoned:
        return "## ✅ No drift\n\nAzure matches the manifests.\n"
    heading = f"{total} finding(s)" if total else f"{len(plan.abandoned)} owner(s) with identities but no manifest"
    out = [f"## ⚠️ Drift: {heading}", ""]
    for a in plan.abandoned:
        out.append(f"- **{md(a.sentence())}**: {', '.join(md_code(n) for n in a.identities)}. "
                   f"To delete them, {md(a.how_to_delete())}.")
    if plan.abandoned:
        out.append("")
    out += ["| class | count | meaning |", "|---|---:|---|"]
    out += [f"| {cls.value} | {len(ch)} | {_MEANING[cls]} |" for cls, ch in grouped.items()]
    for cls, changes in grouped.items():
        if not changes:
            continue
        out += ["", f"### {cls.value}", ""]
        for c in changes:
            who = _who(c)
            out.append(f"- **{md(title(c))}**: {md(c.reason)}" + (f" — {md(who)}" if who else ""))
            out += [f"  - {md_code(f'{marker} {name} = {text}')}" for marker, name, text in _differences(c)]
        if cls is DriftClass.CHANGED:
            out += ["", f"<sub>{md(_LEGEND)}; + only in the manifests, - only in Azure</sub>"]
    if total:
        out += ["", "Run `reconciler plan` to review the fix; `reconciler apply` restores the manifests' state."]
    return "\n".join(out) + "\n"


def to_json(plan: Plan) -> dict[str, Any]:
    grouped = group(plan)
    return {
        "format_version": plan.format_version,
        "in_sync": not any(grouped.values()) and not plan.abandoned,
        "abandoned_owners": [a.to_json() for a in plan.abandoned],
        "counts": {cls.value: len(ch) for cls, ch in grouped.items()},
        "drift": {cls.value: [c.to_json() for c in ch] for cls, ch in grouped.items()},
    }


def dumps(plan: Plan) -> str:
    return json.dumps(to_json(plan), indent=2) + "\n"


# The drift command's vocabulary in one import: classification (reconciler/drift.py) and reports.
__all__ = ["dumps", "has_drift", "parse_classes", "render_markdown", "render_text", "to_json"]
