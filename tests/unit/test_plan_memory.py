"""An in-sync resource keeps one value for its before and after; nothing a reader sees changes."""

from __future__ import annotations

from reconciler.payloads import IdentityValue, Payload, RoleAssignmentValue
from reconciler.plan import Action, Change, ResourceType


def _change(action: Action, before: Payload, after: Payload) -> Change:
    kind = ResourceType.IDENTITY if isinstance(before, IdentityValue) else ResourceType.ROLE_ASSIGNMENT
    return Change(address="a", type=kind, action=action, before=before, after=after)


def test_in_sync_change_shares_one_value_and_reads_the_same() -> None:
    value = IdentityValue("s", "rg", "x", "westeurope", {"team": "t"})
    change = _change(Action.NOOP, value, IdentityValue("s", "rg", "x", "westeurope", {"team": "t"}))
    assert change.after is change.before
    assert change.to_json()["after"] == change.to_json()["before"] and change.changed_fields() == []
    assert Change.from_json(change.to_json()) == change


def test_only_equal_in_sync_changes_share() -> None:
    value = RoleAssignmentValue("/s", "r", "Reader", {"objectId": "o"})
    differing = _change(Action.NOOP, value, RoleAssignmentValue("/s", "r", "Reader", {"objectId": "o"},
                                                                principal_type="ServicePrincipal"))
    assert isinstance(differing.after, RoleAssignmentValue) and differing.after.principal_type == "ServicePrincipal"
    update = _change(Action.UPDATE, value, RoleAssignmentValue("/s", "r", "Reader", {"objectId": "o"}))
    assert update.after is not update.before


def test_values_are_slotted_so_many_cost_little() -> None:
    # A plan at estate scale holds tens of thousands: no per-value __dict__.
    for value in (IdentityValue("s", "rg", "x", "l", {}), RoleAssignmentValue("/s", "r", "Reader", {})):
        assert not hasattr(value, "__dict__")
