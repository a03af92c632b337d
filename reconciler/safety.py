"""Guards against plans that delete too much: an emptied folder, a bad merge, a typo in an
owner name must never become "delete everything". Pure: reads a Plan, returns problems."""

from __future__ import annotations

from collections import defaultdict

from reconciler.plan import Action, Change, Plan, ResourceType

DEFAULT_MAX_DELETES = 10


def destructive(plan: Plan) -> list[Change]:
    """Changes that destroy something in Azure. Credentials that go away with their identity
    cost nothing extra and are not counted twice."""
    return [
        c for c in plan.actionable
        if c.action in (Action.DELETE, Action.REPLACE)
        and not (c.type is ResourceType.FEDERATED_CREDENTIAL and c.consequence_of)
    ]


def mass_delete_problems(plan: Plan, max_deletes: int) -> list[str]:
    """Why apply should refuse this plan without --allow-mass-delete (empty: it need not)."""
    problems: list[str] = []
    doomed = destructive(plan)
    if len(doomed) > max_deletes:
        problems.append(
            f"the plan destroys {len(doomed)} resources, more than --max-deletes {max_deletes}"
        )
    identities: dict[str, list[Change]] = defaultdict(list)
    for c in plan.changes:
        if c.type is ResourceType.IDENTITY and c.owner and c.drift != "foreign":
            identities[c.owner].append(c)
    for owner, changes in sorted(identities.items()):
        existing = [c for c in changes if _owned_and_live(c)]
        if existing and all(c.action is Action.DELETE for c in existing) and not any(
            c.action is Action.CREATE for c in changes
        ):
            problems.append(f"the plan deletes every identity owned by '{owner}' ({len(existing)})")
    return problems


def _owned_and_live(change: Change) -> bool:
    # Hand-tagged identities that are only reported (no-op with a drift class) are not the
    # owner's to lose; everything else that exists now is.
    return change.before is not None and not (change.action is Action.NOOP and change.drift is not None)
