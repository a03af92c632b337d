"""One review from the saved plans of several shards (`reconciler show a.json b.json …`).

A sharded estate plans each subscription group in its own CI job; reviewers still want one
summary, one warnings list and one PR comment. The danger of a fan-in is silence: a shard whose
plan job failed uploads nothing, and a review of the others looks clean. So every shard the
matrix promised must be accounted for, and a missing or unreadable one is an error in the
review itself, not an absent section. Pure: plans (already read) in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from reconciler.plan import FORMAT_VERSION, AbandonedOwner, Plan
from reconciler.render.markdown import md_code, md_text, render_markdown
from reconciler.render.text import render_text

GITHUB_MAX_CHARS = 60_000


@dataclass(frozen=True)
class ShardPlan:
    name: str
    file: str | None  # None: the matrix promised the shard, but no plan file came
    plan: Plan | None
    error: str | None = None

    @property
    def subscriptions(self) -> tuple[str, ...]:
        if self.plan is None:
            return ()
        return tuple(sorted(s.lower() for s in self.plan.inputs.get("subscriptions") or ()))


def expected_shards(matrix: Any) -> dict[str, tuple[str, ...]]:
    """Shard name -> subscriptions, from any format `reconciler matrix` prints (GitHub's
    `include` list, Azure Pipelines' map, or the JSON document)."""
    def subs(value: Any) -> tuple[str, ...]:
        items = value.split() if isinstance(value, str) else list(value)
        return tuple(sorted(str(s).lower() for s in items))

    if isinstance(matrix, dict) and isinstance(matrix.get("include"), list):
        return {str(e["name"]): subs(e["subscriptions"]) for e in matrix["include"]}
    if isinstance(matrix, dict) and isinstance(matrix.get("shards"), list):
        return {str(e["name"]): subs(e["subscriptions"]) for e in matrix["shards"]}
    if isinstance(matrix, dict) and all(isinstance(v, dict) and "subscriptions" in v for v in matrix.values()):
        return {str(k): subs(v["subscriptions"]) for k, v in matrix.items()}
    raise ValueError("not a matrix printed by `reconciler matrix` (github, azure-pipelines or json format)")


def account_for(shards: list[ShardPlan], expected: dict[str, tuple[str, ...]]) -> list[ShardPlan]:
    """Name each plan after the matrix shard it covers, and add an error entry for every
    shard that has no plan. A plan that matches no shard keeps its file name."""
    by_subs = {s.subscriptions: s for s in shards if s.plan is not None}
    out: list[ShardPlan] = []
    used: set[int] = set()
    for name, subs in expected.items():
        found = by_subs.get(subs)
        if found is None:
            out.append(ShardPlan(name, None, None, "no plan for this shard: its plan job failed or did not "
                                 f"upload it (subscriptions: {', '.join(subs) or 'none'})"))
        else:
            used.add(id(found))
            out.append(replace(found, name=name))
    out += [s for s in shards if id(s) not in used]
    return out


def combined_plan(shards: Iterable[ShardPlan]) -> tuple[Plan, list[str]]:
    """All changes of the readable shards as one plan, with their warnings, abandoned owners and
    preflight findings, and the problems found on the way (the same address planned by two
    shards means the split was wrong)."""
    readable = [s for s in shards if s.plan is not None]
    changes = []
    seen: dict[str, str] = {}
    warnings: dict[str, None] = {}
    owners: dict[str, None] = {}
    problems: list[str] = []
    for shard in readable:
        assert shard.plan is not None
        for change in shard.plan.changes:
            if change.address in seen:
                problems.append(f"{change.address} is planned by both {seen[change.address]} and {shard.name}")
                continue
            seen[change.address] = shard.name
            changes.append(change)
        warnings.update(dict.fromkeys(shard.plan.warnings))
        owners.update(dict.fromkeys(shard.plan.owners))
    return Plan(tuple(changes), tuple(warnings), tuple(owners), abandoned=_abandoned(readable),
                preflight=_preflight(readable)), problems


def _abandoned(shards: list[ShardPlan]) -> tuple[AbandonedOwner, ...]:
    """Each shard reports the abandoned owners it saw in its subscriptions: one entry per owner."""
    merged: dict[tuple[str, str], AbandonedOwner] = {}
    for shard in shards:
        assert shard.plan is not None
        for a in shard.plan.abandoned:
            had = merged.get((a.owner, a.source))
            merged[(a.owner, a.source)] = a if had is None else AbandonedOwner(
                a.owner, a.source, tuple(sorted({*had.identities, *a.identities})),
                had.role_assignments + a.role_assignments, tuple(sorted({*had.subscriptions, *a.subscriptions})))
    return tuple(merged[k] for k in sorted(merged))


def _preflight(shards: list[ShardPlan]) -> dict[str, Any] | None:
    """The shards' preflight findings together. A review must not read "every step is permitted"
    because the shard that predicted a refusal is not the first, nor because one shard was
    planned without preflight: such a shard is listed as one that cannot be predicted."""
    if not any(s.plan is not None and s.plan.preflight is not None for s in shards):
        return None
    principals: dict[str, None] = {}
    failures: list[Any] = []
    unknown: list[Any] = []
    for shard in shards:
        assert shard.plan is not None
        found = shard.plan.preflight
        if found is None:
            unknown.append({"address": f"shard {shard.name}", "action": "any", "scope": ", ".join(shard.subscriptions),
                            "reason": "this shard's plan was made without preflight",
                            "hint": "plan the shard again without --no-preflight"})
            continue
        principals[str(found.get("principal", "?"))] = None
        failures += found.get("failures", ())
        unknown += found.get("unknown", ())
    return {"principal": ", ".join(principals) or "?", "failures": failures, "unknown": unknown}


def failures(shards: list[ShardPlan], problems: list[str]) -> list[str]:
    return [f"{s.name}: {s.error}" for s in shards if s.error] + problems


def review_json(shards: list[ShardPlan]) -> dict[str, Any]:
    plan, problems = combined_plan(shards)
    shard_of = {c.address: s.name for s in shards if s.plan for c in s.plan.changes}
    data = plan.to_json()
    data.pop("inputs")
    data.pop("fingerprints")
    data["format_version"] = FORMAT_VERSION
    data["complete"] = not failures(shards, problems)
    data["errors"] = failures(shards, problems)
    data["shards"] = [
        {"name": s.name, "file": s.file, "subscriptions": list(s.subscriptions),
         "status": "error" if s.error else "ok", "error": s.error,
         "summary": s.plan.summary() if s.plan else None}
        for s in shards
    ]
    for change in data["changes"]:
        change["shard"] = shard_of[change["address"]]
    return data


def _shard_table(shards: list[ShardPlan]) -> list[str]:
    rows = ["| Shard | Subscriptions | Changes | Status |", "| :-- | :-- | --: | :-- |"]
    for s in shards:
        subs = ", ".join(md_code(x, in_table=True) for x in s.subscriptions) or "—"
        count = str(len(s.plan.actionable)) if s.plan else "—"
        status = "**plan missing**" if s.plan is None else "ok"
        rows.append(f"| {md_text(s.name)} | {subs} | {count} | {status} |")
    return rows


def review_markdown(shards: list[ShardPlan], full_plan_hint: str | None = None) -> str:
    plan, problems = combined_plan(shards)
    errors = failures(shards, problems)
    head = [f"#### {len(shards)} shard(s)", "", *_shard_table(shards), ""]
    if errors:
        head = [
            "> [!CAUTION]",
            "> **This review is incomplete**: what is below leaves out what these shards would change.",
            *[f"> - {md_text(e)}" for e in errors],
            "",
            *head,
        ]
    prefix = "\n".join(head) + "\n"
    return prefix + render_markdown(plan, max_chars=GITHUB_MAX_CHARS - len(prefix), full_plan_hint=full_plan_hint)


def review_text(shards: list[ShardPlan], *, color: bool = False) -> str:
    plan, problems = combined_plan(shards)
    lines = [f"{len(shards)} shard(s):"]
    for s in shards:
        state = f"{len(s.plan.actionable)} change(s)" if s.plan else "PLAN MISSING"
        lines.append(f"  {s.name}: {' '.join(s.subscriptions) or '-'}: {state}")
    errors = failures(shards, problems)
    if errors:
        lines.append("Incomplete review; these shards' changes are not shown:")
        lines += [f"  {e}" for e in errors]
    return "\n".join(lines) + "\n\n" + render_text(plan, color=color)
