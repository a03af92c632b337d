"""The "Preflight" section of the text and Markdown renderings: the steps the applying principal
is predicted to be refused, and those preflight could not decide. Reads only `Plan.preflight`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.plan import Plan

MAX_ITEMS = 50  # per list in a PR comment; the JSON has them all


def _items(plan: Plan, key: str) -> list[dict[str, Any]]:
    if plan.preflight is None:
        return []
    return [dict(i) for i in plan.preflight.get(key, ())]


def text_lines(plan: Plan) -> list[str]:
    if plan.preflight is None:
        return []
    failures, unknown = _items(plan, "failures"), _items(plan, "unknown")
    who = plan.preflight.get("principal", "?")
    if not failures and not unknown:
        return [f"Preflight: every step is permitted for principal {who}.", ""]
    out = [f"Preflight for principal {who}: {len(failures)} step(s) will fail, {len(unknown)} cannot be predicted."]
    for mark, label, items in (("x", "will fail", failures), ("?", "cannot be predicted", unknown)):
        for i in items:
            out.append(f"  {mark} {i['address']}: {label}: {i['action']} at {i['scope']}: {i['reason']}")
            if i.get("hint"):
                out.append(f"      hint: {i['hint']}")
    return [*out, ""]


def markdown_lines(plan: Plan, text: Callable[[str], str], code: Callable[[str], str]) -> list[str]:
    if plan.preflight is None:
        return []
    failures, unknown = _items(plan, "failures"), _items(plan, "unknown")
    who = code(str(plan.preflight.get("principal", "?")))
    if not failures and not unknown:
        return ["#### Preflight", "", f"Every step is permitted for principal {who}.", ""]
    out = ["#### Preflight", "", f"For principal {who}: **{len(failures)}** step(s) will fail, "
           f"**{len(unknown)}** cannot be predicted.", ""]
    for label, items in (("will fail", failures), ("cannot be predicted", unknown)):
        if not items:
            continue
        out.append(f"| {label} | action | scope | why | what to do |")
        out.append("| :-- | :-- | :-- | :-- | :-- |")
        for i in items[:MAX_ITEMS]:
            out.append(f"| {code(i['address'])} | {code(i['action'])} | {code(i['scope'])} | "
                       f"{text(i['reason'])} | {text(i.get('hint', ''))} |")
        if len(items) > MAX_ITEMS:
            out.append(f"| … and {len(items) - MAX_ITEMS} more (see the JSON plan) | | | | |")
        out.append("")
    return out
