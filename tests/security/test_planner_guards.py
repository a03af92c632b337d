"""Planner guards against hostile or partial live state: tag-name case (protect, ownership),
orphans seen through a --subscription filter, and owner tags copied onto foreign identities."""

from __future__ import annotations

import pytest

from reconciler import addresses
from reconciler.errors import PlanError
from reconciler.model import (
    DesiredState,
    LiveState,
    assignment_name,
    identity_id,
    is_protected,
    tag_value,
)
from reconciler.plan import Action
from reconciler.planner import PlanOptions, make_plan
from tests.unit.test_planner import READER, SUB, grant, ident, live_grant, live_ident

SUB_B = "33333333-3333-3333-3333-333333333333"
RGS = frozenset({(SUB, "rg-payments")})


def test_tag_names_are_read_case_insensitively() -> None:
    assert tag_value({"Reconciler-Owner": "payments"}, "reconciler-owner") == "payments"
    assert tag_value({"team": "x"}, "reconciler-owner") is None
    assert is_protected({"RECONCILER-PROTECTED": "True"})
    assert not is_protected({"reconciler-protected": "false"})


def test_protect_tag_in_another_case_still_protects_from_deletion() -> None:
    # The identity was protected; its manifest entry is gone. ARM returns the tag name in the
    # case it was written with, e.g. by a person in the portal.
    have = live_ident("payments-old")
    have = live_ident("payments-old", tags={**have.tags, "Reconciler-Protected": "true"})
    live = LiveState(identities={have.key: have}, subscriptions=frozenset({SUB}), resource_groups=RGS)
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    with pytest.raises(PlanError, match="protected"):
        make_plan(desired, live)


def test_owner_tags_in_another_case_prove_ownership() -> None:
    have = live_ident("payments-old", tags={"Managed-By": "reconciler", "Reconciler-Owner": "payments"})
    assert have.owner == "payments"
    live = LiveState(identities={have.key: have}, subscriptions=frozenset({SUB}), resource_groups=RGS)
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    plan = make_plan(desired, live)
    assert plan.by_address()[addresses.identity(have.key)].action is Action.DELETE


def test_cross_subscription_grant_is_no_orphan_in_a_run_restricted_to_its_scope() -> None:
    # payments-api lives in SUB_B and is granted Reader on a scope in SUB. A run restricted to
    # SUB does not read SUB_B, so the grant's principal is no identity it has seen.
    api = ident(subscription=SUB_B)
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-data"
    principal = "bbbb0000-0000-0000-0000-000000000002"
    desired = DesiredState(identities=(api,), role_assignments=(grant(api, scope=scope),),
                           owners=frozenset({"payments"}))
    restricted, skipped = desired.restricted(frozenset({SUB}))
    assert skipped == 1
    name = assignment_name("payments", scope, READER, principal)
    live = LiveState(role_assignments=(live_grant(principal, name, scope=scope),),
                     subscriptions=frozenset({SUB}), resource_groups=RGS)
    plan = make_plan(restricted, live, options=PlanOptions(prune_orphans=True))
    assert plan.actionable == ()
    assert all(c.drift is None for c in plan.changes)


def test_orphans_are_still_pruned_when_every_subscription_is_read() -> None:
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-data"
    principal = "bbbb0000-0000-0000-0000-000000000002"
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    name = assignment_name("payments", scope, READER, principal)
    live = LiveState(role_assignments=(live_grant(principal, name, scope=scope),),
                     subscriptions=frozenset({SUB}), resource_groups=RGS)
    plan = make_plan(desired, live, options=PlanOptions(prune_orphans=True))
    assert [c.action for c in plan.actionable if c.action is not Action.CREATE] == [Action.DELETE]


def _forged(rg: str) -> LiveState:
    """An identity someone tagged with payments' ownership tags, in resource group `rg`."""
    forged = live_ident("victim", resource_group=rg, id=identity_id(SUB, rg, "victim"))
    return LiveState(identities={forged.key: forged}, subscriptions=frozenset({SUB}), resource_groups=RGS)


def test_copied_owner_tags_do_not_make_the_owner_delete_an_identity_elsewhere() -> None:
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    live = _forged("rg-someone-else")
    for options in (PlanOptions(), PlanOptions(prune_unmanaged=True, prune_orphans=True)):
        plan = make_plan(desired, live, options=options)
        assert not [c for c in plan.actionable if c.action is Action.DELETE]
        assert any("victim" in w and "rg-someone-else" in w and "not deleted" in w for w in plan.warnings)
    # The rule is stated in every format the plan is shown in.
    from reconciler.render.markdown import render_markdown
    from reconciler.render.text import render_text
    plan = make_plan(desired, live)
    assert "rg-someone-else" in render_text(plan)
    assert "rg-someone-else" in render_markdown(plan)
    assert "rg-someone-else" in plan.dumps()


def test_hand_tagged_identity_elsewhere_is_not_deleted_with_prune_unmanaged() -> None:
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    forged = live_ident("victim", owner=None, resource_group="rg-x", id=identity_id(SUB, "rg-x", "victim"),
                        tags={"reconciler-owner": "payments"})
    live = LiveState(identities={forged.key: forged}, subscriptions=frozenset({SUB}), resource_groups=RGS)
    plan = make_plan(desired, live, options=PlanOptions(prune_unmanaged=True))
    assert not [c for c in plan.actionable if c.action is Action.DELETE]
    assert any("victim" in w for w in plan.warnings)


def test_identities_in_a_named_resource_group_are_still_deleted() -> None:
    desired = DesiredState(identities=(ident(),), owners=frozenset({"payments"}))
    plan = make_plan(desired, _forged("rg-payments"))
    assert [c.action for c in plan.actionable if c.action is not Action.CREATE] == [Action.DELETE]
    # A set emptied to `identities: []` still names its group through spec.defaults.
    emptied = DesiredState(owners=frozenset({"payments"}), owner_groups=frozenset({("payments", SUB, "rg-payments")}))
    plan = make_plan(emptied, _forged("rg-payments"))
    assert [c.action for c in plan.actionable if c.action is not Action.CREATE] == [Action.DELETE]


def test_loader_records_the_default_resource_group_of_an_emptied_set(tmp_path: object) -> None:
    from pathlib import Path

    from reconciler.manifest.loader import load_manifests
    from reconciler.roles import RoleCatalog

    assert isinstance(tmp_path, Path)
    (tmp_path / "m.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata: {owner: payments}\n"
        f"spec:\n  subscription: {SUB}\n  defaults: {{resourceGroup: RG-Payments, location: westeurope}}\n"
        "  identities: []\n", encoding="utf-8")
    desired, _ = load_manifests([str(tmp_path)], RoleCatalog())
    assert desired.groups_of("payments") == {(SUB, "rg-payments")}
