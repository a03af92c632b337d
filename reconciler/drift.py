"""Drift reports: a plan read as "what changed out of band", grouped by drift class, with
who changed what and when where ARM says so. Pure: Plan in, report data and text out."""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan import Change, DriftClass, Plan
from reconciler.render.describe import title
from reconciler.render.markdown import md_text as md

# Classes that describe drift of our own resources; FOREIGN is context, never drift.
DRIFT_CLASSES = (DriftClass.MISSING, DriftClass.CHANGED, DriftClass.UNMANAGED, DriftClass.ORPHANED)

_MEANING = {
    DriftClass.MISSING: "declared in the manifests, absent in Azure",
    DriftClass.CHANGED: "present, but a managed field differs from the manifests",
    DriftClass.UNMANAGED: "in Azure, ours to see, declared in no manifest",
    DriftClass.ORPHANED: "role assignments whose principal no longer exists",
}


def group(plan: Plan) -> dict[DriftClass, list[Change]]:
    grouped: dict[DriftClass, list[Change]] = {c: [] for c in DRIFT_CLASSES}
    for change in plan.changes:
        if change.drift in grouped and not change.consequence_of:
            grouped[change.drift].append(change)
    return grouped


def parse_classes(text: str) -> frozenset[DriftClass]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return frozenset(DRIFT_CLASSES)
    if names == ["none"]:
        return frozenset()
    valid = {c.value: c for c in DRIFT_CLASSES}
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown drift class {', '.join(unknown)}; choose from {', '.join(valid)}, all or none")
    return frozenset(valid[n] for n in names)


def has_drift(plan: Plan, classes: frozenset[DriftClass]) -> bool:
    return any(group(plan)[c] for c in classes)


def _who(change: Change) -> str:
    m = change.modified or {}
    if not m.get("by") and not m.get("at"):
        return ""
    # byName: the directory's name for the actor's object id, when plan could read it.
    who = m.get("byName") or m.get("by") or "unknown"
    if m.get("byType") and not m.get("byName"):
        who += f" ({m['byType']})"
    return f"last modified by {who}" + (f" at {m['at']}" if m.get("at") else "")


def render_text(plan: Plan) -> str:
    grouped = group(plan)
    total = sum(len(v) for v in grouped.values())
    if not total:
        return "No drift: Azure matches the manifests.\n"
    out = [f"Drift: {total} finding(s)."]
    for cls, changes in grouped.items():
        if not changes:
            continue
        out.append("")
        out.append(f"{cls.value} ({len(changes)}): {_MEANING[cls]}")
        for c in changes:
            line = f"  - {title(c)}: {c.reason}"
            fields = c.changed_fields()
            if fields:
                line += f" [{', '.join(fields)}]"
            who = _who(c)
            if who:
                line += f"; {who}"
            out.append(line)
    out.append("")
    out.append("Run `reconciler plan` to see the fix; `reconciler apply` restores the manifests' state.")
    return "\n".join(out) + "\n"


def render_markdown(plan: Plan) -> str:
    grouped = group(plan)
    total = sum(len(v) for v in grouped.values())
    if not total:
        return "## ✅ No drift\n\nAzure matches the manifests.\n"
    out = [f"## ⚠️ Drift: {total} finding(s)", "", "| class | count | meaning |", "|---|---:|---|"]
    out += [f"| {cls.value} | {len(ch)} | {_MEANING[cls]} |" for cls, ch in grouped.items()]
    for cls, changes in grouped.items():
        if not changes:
            continue
        out += ["", f"### {cls.value}", ""]
        for c in changes:
            who = _who(c)
            out.append(f"- **{md(title(c))}**: {md(c.reason)}" + (f" — {md(who)}" if who else ""))
    out += ["", "Run `reconciler plan` to review the fix; `reconciler apply` restores the manifests' state."]
    return "\n".join(out) + "\n"


def to_json(plan: Plan) -> dict[str, Any]:
    grouped = group(plan)
    return {
        "format_version": plan.format_version,
        "in_sync": not any(grouped.values()),
        "counts": {cls.value: len(ch) for cls, ch in grouped.items()},
        "drift": {cls.value: [c.to_json() for c in ch] for cls, ch in grouped.items()},
    }


def dumps(plan: Plan) -> str:
    return json.dumps(to_json(plan), indent=2) + "\n"
