"""The planner's adopt action: existing identities and grants brought under management, and
taken over from another owner only when metadata.takeOverFrom names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ManifestError, PlanError
from reconciler.manifest.loader import load_manifests
from reconciler.model import assignment_name, split_owner_marker, with_owner_marker
from reconciler.payloads import IdentityValue
from reconciler.plan import Action, DriftClass, Plan, ResourceType
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog
from tests.unit.test_planner import DATA_SCOPE, READER, grant, ident, live, live_grant, live_ident, state


def _grant_change(plan: Plan) -> tuple[Action, dict[str, object], str]:
    change = next(c for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)
    assert change.after is not None or change.before is not None
    return change.action, change.fields(), change.reason


def test_owner_marker_keeps_the_users_description() -> None:
    assert with_owner_marker(None, "payments") == "[reconciler:owner=payments]"
    assert with_owner_marker("reads invoices", "payments") == "reads invoices [reconciler:owner=payments]"
    # re-marking replaces the marker, never stacks them
    assert with_owner_marker("reads [reconciler:owner=old]", "new") == "reads [reconciler:owner=new]"
    assert split_owner_marker("reads invoices [reconciler:owner=payments]") == ("reads invoices", "payments")
    assert split_owner_marker("[reconciler:owner=payments]") == (None, "payments")
    assert split_owner_marker("mentions [reconciler:owner=x] mid-text") == ("mentions [reconciler:owner=x] mid-text",
                                                                             None)
    assert split_owner_marker(None) == (None, None)


def test_an_adopted_grant_removed_from_the_manifests_is_deleted() -> None:
    a, li = ident(), live_ident()
    adopted = live_grant(li.principal_id, "0b0e1a3c-7d0f-4e43-9c54-000000000abc",
                         description="by hand [reconciler:owner=payments]")
    action, before, reason = _grant_change(make_plan(state(a), live(li, ras=(adopted,))))
    assert action is Action.DELETE and before["id"] == adopted.id and "owned by payments" in reason
    # without the marker the same grant is someone's hand-made grant: reported, never deleted
    by_hand = adopted.replace(description="by hand")
    action, _, _ = _grant_change(make_plan(state(a), live(li, ras=(by_hand,))))
    assert action is Action.NOOP


def test_a_grant_marked_for_an_owner_without_manifests_here_is_left_alone() -> None:
    a, li = ident(), live_ident()
    theirs = live_grant(li.principal_id, "n1", description="[reconciler:owner=platform]")
    plan = make_plan(state(a), live(li, ras=(theirs,)))
    assert not plan.has_changes


def test_identity_of_an_owner_not_named_in_take_over_from_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"owned by 'old'.*takeOverFrom: \[old\]"):
        make_plan(state(ident()), live(live_ident(owner="old")))


def test_identity_is_transferred_from_an_owner_named_in_take_over_from() -> None:
    plan = make_plan(state(ident(take_over_from=frozenset({"old"}))), live(live_ident(owner="old")))
    change = plan.changes[0]
    assert change.action is Action.ADOPT and change.reason.startswith("transfer from old")
    assert isinstance(change.after, IdentityValue) and change.after.tags == {
        "team": "payments", "managed-by": "reconciler", "reconciler-owner": "payments"}
    assert change.after.principal_id == live_ident().principal_id  # the same identity, not a new one


def test_grant_is_transferred_only_from_a_named_owner() -> None:
    li = live_ident(owner="old")
    theirs = live_grant(li.principal_id, assignment_name("old", DATA_SCOPE, READER, li.principal_id))
    a = ident(take_over_from=frozenset({"old"}))
    action, after, reason = _grant_change(make_plan(state(a, ras=(grant(a, take_over_from=a.take_over_from),)),
                                                    live(li, ras=(theirs,))))
    assert action is Action.ADOPT and reason.startswith("transfer from old")
    assert after["name"] == theirs.name and after["description"] == "[reconciler:owner=payments]"
    # marked for another owner, not named: a plan error, never a silent take-over
    marked = theirs.replace(name="n2", description="[reconciler:owner=old]")
    b = ident()
    with pytest.raises(PlanError, match=r"owned by 'old'.*takeOverFrom: \[old\]"):
        make_plan(state(b, ras=(grant(b),)), live(live_ident(), ras=(marked.replace(principal_id=live_ident()
                                                                                .principal_id),)))


def test_adopted_grant_in_sync_after_apply_keeps_its_marker_when_the_description_changes() -> None:
    a, li = ident(), live_ident()
    have = live_grant(li.principal_id, "n3", description="old text [reconciler:owner=payments]")
    plan = make_plan(state(a, ras=(grant(a, description="old text"),)), live(li, ras=(have,)))
    assert not plan.has_changes
    action, after, _ = _grant_change(make_plan(state(a, ras=(grant(a, description="new"),)), live(li, ras=(have,))))
    assert action is Action.UPDATE and after["description"] == "new [reconciler:owner=payments]"


def test_take_over_from_is_read_from_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata:\n  owner: payments\n  takeOverFrom: [old, payments]\n"
        "spec:\n  subscription: 11111111-1111-1111-1111-111111111111\n"
        "  defaults: {resourceGroup: rg-payments, location: westeurope}\n  identities:\n    - name: payments-api\n"
        "      roles:\n        - {role: Reader, scope: /subscriptions/11111111-1111-1111-1111-111111111111}\n")
    desired, _ = load_manifests([tmp_path], RoleCatalog())
    assert desired.identities[0].take_over_from == frozenset({"old"})
    assert desired.role_assignments[0].take_over_from == frozenset({"old"})
    (tmp_path / "a.yaml").write_text((tmp_path / "a.yaml").read_text().replace("[old, payments]", "[Old]"))
    with pytest.raises(ManifestError) as failed:
        load_manifests([tmp_path], RoleCatalog())
    assert "a.yaml:5:18: metadata.takeOverFrom[0] 'Old' is not a valid owner" in str(failed.value.diagnostics[0])


def test_identity_that_lost_its_ownership_tags_is_adopted_and_still_reported_as_drift() -> None:
    plan = make_plan(state(ident()), live(live_ident(owner=None)))
    change = plan.changes[0]
    assert change.action is Action.ADOPT and change.drift is DriftClass.CHANGED
    # a deliberate transfer is no drift
    plan = make_plan(state(ident(take_over_from=frozenset({"old"}))), live(live_ident(owner="old")))
    assert plan.changes[0].drift is None


def test_markdown_shows_adoptions_in_every_form_of_the_comment() -> None:
    from reconciler.render.markdown import render_markdown

    names = [f"app-{n:02d}" for n in range(40)]
    principals = [f"aaaa0000-0000-0000-0000-0000000000{n:02d}" for n in range(40)]
    plan = make_plan(state(*(ident(n) for n in names)),
                     live(*(live_ident(n, owner=None, principal=p) for n, p in zip(names, principals, strict=True))))
    full = render_markdown(plan)
    assert "Plan: 40 to adopt, 0 to add" in full and "| `&` adopt | 40 |" in full
    short = render_markdown(plan, max_chars=3000)
    assert "other changes are counted per group" in short
    assert "| Group | add | change | replace | destroy | reported | adopt |" in short
    assert "| identity `rg-payments/app-00` | 0 | 0 | 0 | 0 | 0 | 1 |" in short
