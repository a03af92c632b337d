"""An in-sync resource keeps one dict for its before and after; nothing a reader sees changes."""

from __future__ import annotations

from typing import Any

from reconciler.plan import Action, Change, ResourceType


def _change(action: Action, before: dict[str, Any], after: dict[str, Any]) -> Change:
    return Change(address="a", type=ResourceType.IDENTITY, action=action, before=before, after=after)


def test_in_sync_change_shares_one_dict_and_reads_the_same() -> None:
    fields: dict[str, object] = {"name": "x", "tags": {"team": "t"}, "location": "westeurope"}
    change = _change(Action.NOOP, fields, {**fields, "tags": {"team": "t"}})
    assert change.after is change.before
    assert change.to_json()["after"] == fields and change.changed_fields() == []
    assert Change.from_json(change.to_json()).after is not None


def test_only_equal_in_sync_changes_share() -> None:
    fields: dict[str, object] = {"name": "x", "principalType": None}
    differing = _change(Action.NOOP, fields, {**fields, "principalType": "ServicePrincipal"})
    assert differing.after == {"name": "x", "principalType": "ServicePrincipal"}
    update = _change(Action.UPDATE, fields, dict(fields))
    assert update.after is not update.before
