"""Terminal rendering of a Plan, read like Terraform's: one block per change, then a summary.

Colour is ANSI and only when asked for (the CLI asks on a TTY), so the same function serves
golden-file tests and CI logs. Every line passes through `textsafe.one_line` before colour is
added: names, tags, reasons and file names from manifests, Azure or a saved plan can neither
drive the terminal nor start a line of their own (a CI logging command such as `##vso[…]`).
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.plan import Action, Change, DriftClass, Plan
from reconciler.render.describe import VERB, field_lines, title
from reconciler.render.preflight import text_lines as preflight_lines
from reconciler.textsafe import one_line

_COLOURS = {
    Action.CREATE: "\x1b[32m",
    Action.UPDATE: "\x1b[33m",
    Action.REPLACE: "\x1b[35m",
    Action.DELETE: "\x1b[31m",
    Action.NOOP: "",
    Action.ADOPT: "\x1b[36m",
}
_MARKER_COLOURS = {"+": "\x1b[32m", "-": "\x1b[31m", "~": "\x1b[33m"}
_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"


def summary_line(plan: Plan) -> str:
    if not plan.has_changes:
        reported = sum(1 for c in plan.changes if c.drift not in (None, DriftClass.FOREIGN))
        if reported:
            noun = "drifted resource" if reported == 1 else "drifted resources"
            return f"No changes. {reported} {noun} reported, left unchanged."
        if plan.abandoned:
            n = len(plan.abandoned)
            return f"No changes. {n} {'owner has' if n == 1 else 'owners have'} identities in Azure but no manifest."
        return "No changes. Azure matches the manifests."
    s = plan.summary()
    adopt = f"{s['adopt']} to adopt, " if s.get("adopt") else ""
    return (
        f"Plan: {adopt}{s['create']} to add, {s['update']} to change, "
        f"{s['replace']} to replace, {s['delete']} to destroy."
    )


def abandoned_lines(plan: Plan) -> list[str]:
    """Owners whose manifests are all gone: said in every output, never only with -v."""
    out = []
    for a in plan.abandoned:
        shown = ", ".join(a.identities[:5]) + (f" and {len(a.identities) - 5} more" if len(a.identities) > 5 else "")
        out.append(f"Note: {a.sentence()}: {shown} (subscription {', '.join(a.subscriptions)}). "
                   f"To delete them, {a.how_to_delete()}.")
    return out


def render_text(plan: Plan, *, color: bool = False, verbose: bool = False) -> str:
    def paint(code: str, text: str) -> str:
        text = one_line(text)
        return f"{code}{text}{_RESET}" if color and code else text

    out: list[str] = [*preflight_lines(plan)]
    for warning in plan.warnings:
        out.append(paint("\x1b[33m", f"Warning: {warning}"))
    if plan.warnings:
        out.append("")
    for line in abandoned_lines(plan):
        out.append(paint("\x1b[33m", line))
    if plan.abandoned:
        out.append("")
    reported = [c for c in plan.changes if c.action is Action.NOOP and c.drift is not None]
    in_sync = [c for c in plan.changes if c.action is Action.NOOP and c.drift is None] if verbose else []
    if plan.actionable:
        out.append("reconciler will perform the following actions:")
        out.append("")
    # Titles of the changes others are consequences of, only: at estate scale the plan holds
    # 60,000 compact in-sync changes whose addresses are built when read (reconciler/in_sync.py).
    wanted = {c.consequence_of for c in plan.actionable if c.consequence_of}
    titles = {a: title(c) for c in plan.changes if (a := c.address) in wanted} if wanted else {}
    for change in plan.actionable:
        out.extend(_block(change, paint, titles))
    if reported:
        out.append("Drift reported, not changed:")
        out.append("")
        for change in reported:
            out.append(one_line(f"  ! [{change.drift}] {title(change)}: {change.reason}"))
        out.append("")
    if in_sync:
        out.append("In sync:")
        for change in in_sync:
            out.append(one_line(f"    {title(change)}" + (f" ({change.reason})" if change.reason != "in sync" else "")))
        out.append("")
    out.append(paint(_BOLD, summary_line(plan)))
    return "\n".join(out) + "\n"


def _block(change: Change, paint: Callable[[str, str], str], titles: dict[str, str]) -> list[str]:
    extras = [change.reason] if change.reason else []
    if change.consequence_of:
        extras.append(f"because of {titles.get(change.consequence_of, change.consequence_of)}")
    head = f"{change.action.symbol} {title(change)} {VERB[change.action]}"
    if extras:
        head += f" ({'; '.join(extras)})"
    lines = [paint(_COLOURS[change.action], f"  {head}")]
    for marker, name, text in field_lines(change):
        lines.append(f"      {paint(_MARKER_COLOURS.get(marker, ''), marker)} {one_line(f'{name} = {text}')}")
    if change.source:
        lines.append(one_line(f"      declared at {change.source}"))
    lines.append("")
    return lines
