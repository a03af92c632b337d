"""One review of several shard plans (reconciler/review.py) keeps what each shard's plan says
beside its changes: preflight's predicted refusals and abandoned owners. Pure, no I/O."""

from __future__ import annotations

from typing import Any

from reconciler.plan import AbandonedOwner, Action, Change, Plan, ResourceType
from reconciler.review import ShardPlan, combined_plan, review_json, review_text

APPLIER = "00000000-0000-0000-0000-00000000a991"
REFUSED = {"address": "roleAssignment[/subscriptions/s2|r|identity:s2/rg/api]",
           "action": "Microsoft.Authorization/roleAssignments/write", "scope": "/subscriptions/s2",
           "reason": "no role assignment grants it", "hint": "grant User Access Administrator"}


def _shard(name: str, sub: str, preflight: dict[str, Any] | None,
           abandoned: tuple[AbandonedOwner, ...] = ()) -> ShardPlan:
    change = Change(address=f"identity/{sub}/rg/api", type=ResourceType.IDENTITY, action=Action.CREATE)
    plan = Plan((change,), inputs={"subscriptions": [sub]}, preflight=preflight, abandoned=abandoned)
    return ShardPlan(name, f"{name}.json", plan)


def test_a_refusal_predicted_by_any_shard_is_in_the_review() -> None:
    clean: dict[str, Any] = {"principal": APPLIER, "failures": [], "unknown": []}
    refused: dict[str, Any] = {"principal": APPLIER, "failures": [REFUSED], "unknown": []}
    shards = [_shard("shard_1", "s1", clean), _shard("shard_2", "s2", refused)]
    plan, problems = combined_plan(shards)
    assert not problems and plan.preflight == {"principal": APPLIER, "failures": [REFUSED], "unknown": []}
    text = review_text(shards)
    assert f"Preflight for principal {APPLIER}: 1 step(s) will fail" in text and "every step is permitted" not in text
    assert review_json(shards)["preflight"]["failures"] == [REFUSED]


def test_a_shard_planned_without_preflight_is_listed_as_unpredicted() -> None:
    shards = [_shard("shard_1", "s1", {"principal": APPLIER, "failures": [], "unknown": []}),
              _shard("shard_2", "s2", None)]
    preflight = combined_plan(shards)[0].preflight
    assert preflight is not None and not preflight["failures"]
    assert [u["address"] for u in preflight["unknown"]] == ["shard shard_2"]
    assert "every step is permitted" not in review_text(shards)
    # no shard evaluated preflight: the review says nothing about it either
    assert combined_plan([_shard("shard_1", "s1", None)])[0].preflight is None


def test_abandoned_owners_seen_by_several_shards_are_one_entry() -> None:
    a1 = AbandonedOwner("old-team", "repo", ("rg/a",), 2, ("s1",))
    a2 = AbandonedOwner("old-team", "repo", ("rg/b",), 3, ("s2",))
    plan = combined_plan([_shard("shard_1", "s1", None, (a1,)), _shard("shard_2", "s2", None, (a2,))])[0]
    assert plan.abandoned == (AbandonedOwner("old-team", "repo", ("rg/a", "rg/b"), 5, ("s1", "s2")),)
    assert "old-team" in review_text([_shard("shard_1", "s1", None, (a1,))])
