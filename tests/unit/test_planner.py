"""Pure planner tests: desired + live in, plan out; no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from reconciler import addresses
from reconciler.errors import PlanError, SourceLocation
from reconciler.model import (
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    PrincipalRef,
    assignment_name,
    identity_id,
    ownership_tags,
)
from reconciler.payloads import IdentityValue, RoleAssignmentValue
from reconciler.plan import Action, DriftClass, Plan, ResourceType
from reconciler.planner import PlanOptions, make_plan

SUB = "11111111-1111-1111-1111-111111111111"
RG = "rg-payments"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
GROUP = "22222222-2222-2222-2222-222222222222"
DATA_SCOPE = f"/subscriptions/{SUB}/resourceGroups/rg-data"


def ident(name: str = "payments-api", owner: str = "payments", **kw: Any) -> DesiredIdentity:
    args: dict[str, Any] = dict(owner=owner, subscription=SUB, resource_group=RG, name=name,
                                   location="westeurope", tags={"team": "payments"})
    args.update(kw)
    return DesiredIdentity(**args)


def live_ident(name: str = "payments-api", owner: str | None = "payments",
               principal: str = "aaaa0000-0000-0000-0000-000000000001", **kw: Any) -> LiveIdentity:
    tags = {"team": "payments", **(ownership_tags(owner) if owner else {})}
    args: dict[str, Any] = dict(
        id=identity_id(SUB, RG.lower(), name).replace("resourceGroups", "resourcegroups"),
        subscription=SUB, resource_group=RG, name=name, location="westeurope", tags=tags,
        principal_id=principal, client_id="c", tenant_id="t",
    )
    args.update(kw)
    return LiveIdentity(**args)


def grant(identity: DesiredIdentity, scope: str = DATA_SCOPE, role: str = READER,
          **kw: Any) -> DesiredRoleAssignment:
    args: dict[str, Any] = dict(owner=identity.owner, scope=scope, role_definition_id=role, role_name="Reader",
                                   principal=PrincipalRef(identity=identity.key))
    args.update(kw)
    return DesiredRoleAssignment(**args)


def live_grant(principal: str, name: str, scope: str = DATA_SCOPE, role: str = READER,
               principal_type: str = "ServicePrincipal", **kw: Any) -> LiveRoleAssignment:
    return LiveRoleAssignment(
        id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", name=name, scope=scope,
        role_definition_id=role, principal_id=principal, principal_type=principal_type, **kw,
    )


def state(*identities: DesiredIdentity, fics: tuple[DesiredFederatedCredential, ...] = (),
          ras: tuple[DesiredRoleAssignment, ...] = ()) -> DesiredState:
    return DesiredState(identities=identities, federated_credentials=fics, role_assignments=ras,
                        owners=frozenset(i.owner for i in identities) or frozenset({"payments"}))


def live(*identities: LiveIdentity, fics: Mapping[IdentityKey, tuple[LiveFederatedCredential, ...]] | None = None,
         ras: tuple[LiveRoleAssignment, ...] = ()) -> LiveState:
    return LiveState(
        identities={i.key: i for i in identities},
        federated_credentials=fics if fics is not None else {i.key: () for i in identities},
        role_assignments=ras, subscriptions=frozenset({SUB}),
        resource_groups=frozenset({(SUB, RG), (SUB, "rg-data")}),
    )


def actions(plan: Plan) -> dict[str, Action]:
    return {c.address: c.action for c in plan.changes}


def test_everything_new_is_created_with_unknown_principal() -> None:
    a = ident()
    fic = DesiredFederatedCredential("payments", a.key, "github-main", "https://issuer", "repo:x:ref:main")
    plan = make_plan(state(a, fics=(fic,), ras=(grant(a),)), live())
    assert plan.summary() == {"create": 3, "update": 0, "replace": 0, "delete": 0, "no-op": 0}
    ra = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert isinstance(ra.after, RoleAssignmentValue) and ra.after.principal_id is None
    assert set(ra.unknown) == {"principalId", "name"}
    assert addresses.identity(a.key) in ra.requires
    fic_change = next(c for c in plan.changes if c.type is ResourceType.FEDERATED_CREDENTIAL)
    assert fic_change.requires == (addresses.identity(a.key),)


def test_in_sync_is_empty_and_matching_is_case_insensitive() -> None:
    a = ident()
    li = live_ident(name="PAYMENTS-API")
    name = assignment_name("payments", DATA_SCOPE, READER, li.principal_id)
    # ARM echoes other casing for scope, role id form and GUIDs: none of it is a diff.
    ra = live_grant(li.principal_id.upper(), name, scope=DATA_SCOPE.upper(), role=READER.upper())
    ra = ra.replace(principal_id=li.principal_id, role_definition_id=READER)
    plan = make_plan(state(a, ras=(grant(a),)), live(li, ras=(ra,)))
    assert not plan.has_changes, plan.dumps()


def test_tag_drift_is_an_update_and_location_change_a_replace() -> None:
    a = ident(tags={"team": "payments", "cost": "42"})
    plan = make_plan(state(a), live(live_ident()))
    assert actions(plan) == {addresses.identity(a.key): Action.UPDATE}
    moved = ident(location="northeurope")
    old_grant = live_grant("aaaa0000-0000-0000-0000-000000000001", "x")
    plan = make_plan(state(moved, ras=(grant(moved),)), live(live_ident(), ras=(old_grant,)))
    by = actions(plan)
    assert by[addresses.identity(moved.key)] is Action.REPLACE
    # the old assignment goes before the identity, the new one comes after it
    deletes = [c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT and c.action is Action.DELETE]
    creates = [c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT and c.action is Action.CREATE]
    assert len(deletes) == 1 and len(creates) == 1
    ident_change = plan.by_address()[addresses.identity(moved.key)]
    assert deletes[0].address in ident_change.requires
    assert addresses.identity(moved.key) in creates[0].requires
    assert any("replaced" in w for w in plan.warnings)


def test_location_spelling_is_not_a_diff() -> None:
    plan = make_plan(state(ident(location="West Europe")), live(live_ident(location="westeurope")))
    assert not plan.has_changes


def test_assignment_under_a_random_name_is_adopted_not_recreated() -> None:
    a = ident()
    li = live_ident()
    by_hand = live_grant(li.principal_id, "0b0e1a3c-7d0f-4e43-9c54-000000000abc")
    plan = make_plan(state(a, ras=(grant(a),)), live(li, ras=(by_hand,)))
    ra = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    # adopted under its live name: only the ownership marker is written into its description
    assert ra.action is Action.ADOPT and "adopt existing grant" in ra.reason
    assert isinstance(ra.after, RoleAssignmentValue) and ra.after.name == by_hand.name
    assert ra.after.description == "[reconciler:owner=payments]"


def test_description_change_updates_in_place_under_the_live_name() -> None:
    a = ident()
    li = live_ident()
    # adopted earlier under a random name: the marker after the user's text proves it ours
    have = live_grant(li.principal_id, "some-name", description="old [reconciler:owner=payments]")
    plan = make_plan(state(a, ras=(grant(a, description="new"),)), live(li, ras=(have,)))
    ra = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert ra.action is Action.UPDATE and isinstance(ra.after, RoleAssignmentValue) and ra.after.name == "some-name"
    assert ra.after.description == "new [reconciler:owner=payments]"
    # whitespace and None-vs-empty are not differences
    ours = assignment_name("payments", DATA_SCOPE, READER, li.principal_id)
    plan = make_plan(state(a, ras=(grant(a, description="  "),)), live(li, ras=(live_grant(li.principal_id, ours),)))
    assert not plan.has_changes


def test_removed_identity_is_deleted_after_its_assignments() -> None:
    kept = ident("kept")
    gone = live_ident("gone", principal="bbbb0000-0000-0000-0000-000000000002")
    ra = live_grant(gone.principal_id, "random-name")
    plan = make_plan(state(kept), live(live_ident("kept"), gone, ras=(ra,)))
    by = actions(plan)
    assert by[addresses.identity(gone.key)] is Action.DELETE
    ra_change = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert ra_change.action is Action.DELETE
    assert ra_change.address in plan.by_address()[addresses.identity(gone.key)].requires


def test_resources_of_other_owners_and_unowned_are_never_touched() -> None:
    mine = ident()
    foreign = live_ident("theirs", owner="platform", principal="cccc0000-0000-0000-0000-000000000003")
    unowned = live_ident("manual", owner=None, principal="dddd0000-0000-0000-0000-000000000004")
    foreign_ra = live_grant(foreign.principal_id, assignment_name("platform", DATA_SCOPE, READER, foreign.principal_id))
    stray = live_grant(GROUP, "e0000000-0000-0000-0000-000000000000")
    plan = make_plan(state(mine), live(live_ident(), foreign, unowned, ras=(foreign_ra, stray)))
    assert not plan.has_changes, plan.dumps()


def test_assignment_with_our_deterministic_name_is_deleted_when_undeclared() -> None:
    a = ident()
    li = live_ident()
    ours = live_grant(GROUP, assignment_name("payments", DATA_SCOPE, READER, GROUP), principal_type="Group")
    plan = make_plan(state(a), live(li, ras=(ours,)))
    ra = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert ra.action is Action.DELETE and "owned by payments" in ra.reason


def test_identity_owned_by_someone_else_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="owned by 'platform'"):
        make_plan(state(ident()), live(live_ident(owner="platform")))
    # also when grants to it are declared (this used to crash with a KeyError)
    a = ident()
    with pytest.raises(PlanError, match="owned by 'platform'"):
        make_plan(state(a, ras=(grant(a),)), live(live_ident(owner="platform")))


def test_unowned_existing_identity_is_adopted_by_tagging() -> None:
    plan = make_plan(state(ident()), live(live_ident(owner=None)))
    change = plan.changes[0]
    assert change.action is Action.ADOPT and "adopt" in change.reason
    assert isinstance(change.after, IdentityValue) and change.after.tags["reconciler-owner"] == "payments"


def test_missing_resource_group_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="resource group 'rg-elsewhere' does not exist"):
        make_plan(state(ident(resource_group="rg-elsewhere")), live())
    # also in a subscription that has no resource group at all (this check used to be skipped)
    empty = LiveState(subscriptions=frozenset({SUB}))
    with pytest.raises(PlanError, match="resource group 'rg-payments' does not exist"):
        make_plan(state(ident()), empty)


def test_a_grant_in_a_missing_resource_group_is_a_located_plan_error() -> None:
    a = ident()
    where = SourceLocation("m.yaml", 14, 18)
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-gone/providers/Microsoft.Storage/storageAccounts/sa"
    with pytest.raises(PlanError, match=r"m\.yaml:14:18: the scope .* is in resource group 'rg-gone', which does not"):
        make_plan(state(a, ras=(grant(a, scope=scope, source=where),)), live())
    # a group that exists (any casing), the subscription itself, and an unread subscription all pass
    for ok in (DATA_SCOPE.upper().replace("SUBSCRIPTIONS", "subscriptions"), f"/subscriptions/{SUB}",
               "/subscriptions/99999999-9999-9999-9999-999999999999/resourceGroups/rg-unread"):
        make_plan(state(a, ras=(grant(a, scope=ok),)), live())


def test_a_location_the_subscription_does_not_offer_is_a_located_plan_error() -> None:
    where = SourceLocation("m.yaml", 7, 52)
    offered = replace(live(), locations={SUB: frozenset({"westeurope", "northeurope"})})
    with pytest.raises(PlanError, match=r"m\.yaml:7:52: subscription .* does not offer location 'swedensouth'"):
        make_plan(state(ident(location="swedensouth", source=where)), offered)
    assert make_plan(state(ident()), offered).changes
    # A subscription whose locations were not read (an older gateway, a fake) is not checked.
    assert make_plan(state(ident(location="swedensouth")), live()).changes


def test_fic_changes_update_in_place_and_undeclared_fics_are_deleted() -> None:
    a = ident()
    li = live_ident()
    want = DesiredFederatedCredential("payments", a.key, "github-main", "https://issuer", "repo:x:ref:main")
    have = LiveFederatedCredential(li.key, "id1", "github-main", "https://issuer", "repo:x:ref:old", ("api://AzureADTokenExchange",))
    extra = LiveFederatedCredential(li.key, "id2", "stale", "https://issuer", "s", ("api://AzureADTokenExchange",))
    plan = make_plan(state(a, fics=(want,)), live(li, fics={li.key: (have, extra)}))
    by = actions(plan)
    assert by[addresses.federated_credential(a.key, "github-main")] is Action.UPDATE
    assert by[addresses.federated_credential(a.key, "stale")] is Action.DELETE


def test_protected_identity_cannot_be_replaced_or_dropped() -> None:
    with pytest.raises(PlanError, match="protected"):
        make_plan(state(ident(protect=True, location="northeurope")), live(live_ident()))
    protected = live_ident("vault", principal="eeee0000-0000-0000-0000-000000000005")
    protected = replace(protected, tags={**protected.tags, "reconciler-protected": "true"})
    with pytest.raises(PlanError, match="protected"):
        make_plan(state(ident()), live(live_ident(), protected))


def test_privileged_grant_at_subscription_scope_warns() -> None:
    a = ident()
    plan = make_plan(state(a, ras=(grant(a, scope=f"/subscriptions/{SUB}", role=OWNER_ROLE, role_name="Owner"),)),
                     live(live_ident()))
    assert any("Owner" in w and "grant any access" in w for w in plan.warnings)


def test_privileged_grant_warns_when_added_at_any_scope_not_when_kept_or_acknowledged() -> None:
    a, li = ident(), live_ident()
    owner_here = grant(a, scope=DATA_SCOPE, role=OWNER_ROLE, role_name="Owner")
    added = make_plan(state(a, ras=(owner_here,)), live(li))
    assert list(added.warnings) == [f"'Owner' at resource group scope {DATA_SCOPE} lets its holder grant any access"]
    kept = live_grant(li.principal_id, assignment_name("payments", DATA_SCOPE, OWNER_ROLE, li.principal_id),
                      role=OWNER_ROLE)
    assert make_plan(state(a, ras=(owner_here,)), live(li, ras=(kept,))).warnings == ()
    at_sub = grant(a, scope=f"/subscriptions/{SUB}", role=OWNER_ROLE, role_name="Owner")
    kept_at_sub = live_grant(li.principal_id, assignment_name("payments", f"/subscriptions/{SUB}", OWNER_ROLE,
                                                              li.principal_id), scope=f"/subscriptions/{SUB}",
                             role=OWNER_ROLE)
    assert make_plan(state(a, ras=(at_sub,)), live(li, ras=(kept_at_sub,))).warnings == ()
    acknowledged = grant(a, scope=DATA_SCOPE, role=OWNER_ROLE, role_name="Owner", privileged_acknowledged=True)
    assert make_plan(state(a, ras=(acknowledged,)), live(li)).warnings == ()


def test_plan_json_round_trips() -> None:
    a = ident()
    plan = make_plan(state(a, ras=(grant(a),)), live())
    again = Plan.from_json(plan.to_json())
    assert again.to_json() == plan.to_json()


def test_hand_made_grant_to_our_identity_is_reported_and_pruned_only_on_request() -> None:
    a = ident()
    li = live_ident()
    by_hand = live_grant(li.principal_id, "f0000000-0000-0000-0000-00000000000f", role=OWNER_ROLE)
    plan = make_plan(state(a), live(li, ras=(by_hand,)))
    ra = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert ra.action is Action.NOOP and ra.drift is DriftClass.UNMANAGED
    assert not plan.has_changes
    pruned = make_plan(state(a), live(li, ras=(by_hand,)), options=PlanOptions(prune_unmanaged=True))
    assert [c.action for c in pruned.changes if c.type is ResourceType.ROLE_ASSIGNMENT] == [Action.DELETE]


def test_our_grant_to_a_vanished_identity_is_orphaned() -> None:
    a = ident()
    gone_principal = "9999aaaa-0000-0000-0000-000000000009"
    left_behind = live_grant(gone_principal, assignment_name("payments", DATA_SCOPE, READER, gone_principal))
    plan = make_plan(state(a, ras=(grant(a),)), live(ras=(left_behind,)))
    orphan = next(c for c in plan.changes if c.drift is DriftClass.ORPHANED)
    assert orphan.action is Action.NOOP and "--prune-orphans" in orphan.reason
    pruned = make_plan(state(a, ras=(grant(a),)), live(ras=(left_behind,)), options=PlanOptions(prune_orphans=True))
    assert next(c for c in pruned.changes if c.drift is DriftClass.ORPHANED).action is Action.DELETE


def test_editing_the_role_of_a_grant_is_one_replace() -> None:
    a = ident()
    li = live_ident()
    old = live_grant(li.principal_id, assignment_name("payments", DATA_SCOPE, READER, li.principal_id))
    contributor = "b24988ac-6180-42a0-ab88-20f7382dd24c"
    plan = make_plan(state(a, ras=(grant(a, role=contributor, role_name="Contributor"),)), live(li, ras=(old,)))
    ras = [c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT]
    assert [c.action for c in ras] == [Action.REPLACE]
    assert isinstance(ras[0].before, RoleAssignmentValue) and ras[0].before.id == old.id
    assert isinstance(ras[0].after, RoleAssignmentValue) and ras[0].after.role_definition_id == contributor
    assert "role changed" in ras[0].reason
    # a grant that shares only one part of the key is not a replace of it
    other_scope = f"/subscriptions/{SUB}"
    plan = make_plan(state(a, ras=(grant(a, scope=other_scope, role=contributor, role_name="Contributor"),)),
                     live(li, ras=(old,)))
    assert sorted(c.action for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT) == [
        Action.CREATE, Action.DELETE]


def test_a_grant_declared_twice_under_two_principal_forms_matches_the_one_live_assignment() -> None:
    # by identity and by its principal's object id: one live assignment answers both declarations,
    # as it did before the live assignments were taken out of the planner's map as they matched
    a, li = ident(), live_ident()
    have = live_grant(li.principal_id, assignment_name("payments", DATA_SCOPE, READER, li.principal_id))
    by_id = grant(a, principal=PrincipalRef(object_id=li.principal_id, principal_type="ServicePrincipal"))
    plan = make_plan(state(a, ras=(grant(a), by_id)), live(li, ras=(have,)))
    assert not plan.has_changes, plan.dumps()
    grants = [c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT]
    assert len(grants) == 2 and all(c.before is not None and c.before.id == have.id for c in grants)
    # two owners declaring the same grant: an ownership error, never a second assignment to create
    other = grant(ident(owner="other"), principal=PrincipalRef(object_id=li.principal_id,
                                                               principal_type="ServicePrincipal"))
    with pytest.raises(PlanError, match="owned by 'payments', not 'other'"):
        make_plan(replace(state(a, ras=(grant(a), other)), owners=frozenset({"payments", "other"})),
                  live(li, ras=(have,)))
