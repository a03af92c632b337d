"""In-sync identities and grants are compact records (reconciler/in_sync.py): to every reader
they are Changes with the fields a full change would have. And live role assignments keep
their id only when ARM's is not the one derived from scope and name. Pure, no I/O."""

from __future__ import annotations

import dataclasses
import json

import pytest

from reconciler.in_sync import InSyncGrant, InSyncIdentity
from reconciler.model import LiveRoleAssignment, PrincipalRef, assignment_name
from reconciler.payloads import RoleAssignmentValue, expect
from reconciler.plan import Action, Change, Plan, ReasonCode, ResourceType
from reconciler.planner import make_plan
from reconciler.principals import with_names
from tests.unit.test_planner import DATA_SCOPE, GROUP, READER, grant, ident, live, live_grant, live_ident, state


def _estate() -> tuple[Plan, LiveRoleAssignment]:
    a, li = ident(), live_ident()
    to_group = grant(a, principal=PrincipalRef(object_id=GROUP, principal_type="Group"), description="readers ")
    ours = live_grant(li.principal_id, assignment_name("payments", DATA_SCOPE, READER, li.principal_id))
    theirs = live_grant(GROUP, assignment_name("payments", DATA_SCOPE, READER, GROUP), principal_type="Group",
                        description="readers")
    return make_plan(state(a, ras=(grant(a), to_group)), live(li, ras=(ours, theirs)), lambda g: "Reader"), theirs


def test_in_sync_changes_are_compact_and_read_as_full_changes() -> None:
    plan, _ = _estate()
    assert not plan.has_changes
    kinds = {type(c) for c in plan.changes}
    assert kinds == {InSyncIdentity, InSyncGrant}
    for c in plan.changes:
        assert c.action is Action.NOOP and c.reason_code is ReasonCode.IN_SYNC and c.drift is None
        assert c.before is not None and c.after is not None and c.reason == "in sync" and c.owner == "payments"
        assert c.after == c.before or GROUP in c.address  # the group grant's description differs in a blank
        # the JSON plan holds every field, and reads back as plain Changes that equal the records
        back = Change.from_json(json.loads(json.dumps(c.to_json())))
        assert type(back) is Change and back == c and c == back
    group = next(c for c in plan.changes if isinstance(c, InSyncGrant) and GROUP in c.address)
    value = expect(group.before, RoleAssignmentValue)
    # a trailing blank in the manifest's description is no difference, and after keeps the manifest's text
    assert value.principal == {"objectId": GROUP} and value.role_name == "Reader" and value.description == "readers"
    assert expect(group.after, RoleAssignmentValue).description == "readers "


def test_a_compact_record_takes_set_fields_and_names_are_added_to_its_values() -> None:
    plan, _ = _estate()
    group = next(c for c in plan.changes if isinstance(c, InSyncGrant) and GROUP in c.address)
    changed = dataclasses.replace(group, reason="kept")
    assert changed.reason == "kept" and changed.address == group.address and changed.before == group.before
    named = with_names(plan, {GROUP: {"type": "Group", "displayName": "sg-readers"}})
    shown = next(c for c in named.changes if c.address == group.address)
    assert expect(shown.before, RoleAssignmentValue).principal == {"objectId": GROUP, "type": "Group",
                                                                   "displayName": "sg-readers"}
    # nothing to name: the same record, not a copy
    identity = next(c for c in plan.changes if c.type is ResourceType.IDENTITY)
    assert any(c is identity for c in named.changes)


def test_a_live_assignment_keeps_only_an_id_it_cannot_derive() -> None:
    scope = "/subscriptions/s/resourceGroups/rg"
    plain = LiveRoleAssignment(f"{scope}/providers/Microsoft.Authorization/roleAssignments/n1", "n1", scope, READER,
                               "p", "User")
    odd = LiveRoleAssignment(f"{scope.upper()}/providers/Microsoft.Authorization/roleAssignments/n1", "n1", scope,
                             READER, "p", "User")
    root = LiveRoleAssignment("/providers/Microsoft.Authorization/roleAssignments/r", "r", "/", READER, "p", None)
    assert plain.id == f"{scope}/providers/Microsoft.Authorization/roleAssignments/n1"
    assert odd.id.startswith("/SUBSCRIPTIONS/S/") and root.id == "/providers/Microsoft.Authorization/roleAssignments/r"
    assert plain != odd and plain == plain.replace() and hash(plain) == hash(plain.replace())
    moved = plain.replace(description="d")
    assert moved.description == "d" and moved.id == plain.id and moved != plain
    with pytest.raises(AttributeError):
        plain.name = "other"
