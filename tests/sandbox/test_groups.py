"""Group membership in the sandbox directory: assignedTo() and RBAC follow transitive memberships."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer

from .conftest import GROUP, MI_CONTRIBUTOR, READER, RG, SUB, USER, Clients, clients, raw

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
OUTER = "33333333-3333-3333-3333-333333333333"  # a group that has the seeded GROUP as a member
APP = "44444444-4444-4444-4444-444444444444"  # a service principal in GROUP


def grant(c: Clients, scope: str, role: str, name: str, principal: str) -> None:
    c.auth.role_assignments.create(scope, name, {
        "role_definition_id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principal_id": principal})


@pytest.fixture
def nested(srv: SandboxServer) -> SandboxServer:
    """USER and APP are in GROUP; GROUP is in OUTER."""
    srv.add_principal(OUTER, "Group", "outer")
    srv.add_principal(APP, "ServicePrincipal", "app", member_of=[GROUP])
    srv.add_group_member(GROUP, USER)
    srv.add_group_member(OUTER, GROUP)
    return srv


def test_assigned_to_includes_transitive_group_assignments(nested: SandboxServer, c: Clients) -> None:
    grant(c, RG_SCOPE, READER, "c0000000-0000-4000-8000-000000000001", USER)
    grant(c, RG_SCOPE, MI_CONTRIBUTOR, "c0000000-0000-4000-8000-000000000002", GROUP)
    grant(c, SUB_SCOPE, READER, "c0000000-0000-4000-8000-000000000003", OUTER)
    grant(c, RG_SCOPE, READER, "c0000000-0000-4000-8000-000000000004", APP)

    def names(flt: str) -> set[str]:
        return {a.name[-1] for a in c.auth.role_assignments.list_for_subscription(filter=flt)}

    assert names(f"assignedTo('{USER}')") == {"1", "2", "3"}
    assert names(f"principalId eq '{USER}'") == {"1"}  # principalId eq stays direct-only
    assert names(f"assignedTo('{APP}')") == {"2", "3", "4"}
    assert names(f"atScope() and assignedTo('{USER}')") == {"3"}
    assert {a.name[-1] for a in c.auth.role_assignments.list_for_resource_group(
        RG, filter=f"atScope() and assignedTo('{USER}')")} == {"1", "2", "3"}


def test_rbac_honours_roles_granted_to_nested_groups(nested: SandboxServer, c: Clients) -> None:
    user = clients(nested, token=nested.token_for(USER), retry_total=0)
    with pytest.raises(HttpResponseError) as err:
        user.msi.user_assigned_identities.create_or_update(RG, "via-group", {"location": "westus"})
    assert err.value.status_code == 403
    grant(c, RG_SCOPE, MI_CONTRIBUTOR, "c0000000-0000-4000-8000-000000000005", OUTER)
    assert user.msi.user_assigned_identities.create_or_update(RG, "via-group", {"location": "westus"}).name \
        == "via-group"
    # The Permissions API and the subscription list see the group's role as the caller's.
    assert [p.actions[0] for p in user.auth.permissions.list_for_resource_group(RG)] == \
        ["Microsoft.ManagedIdentity/userAssignedIdentities/read"]
    subs = raw(nested, "GET", "/subscriptions?api-version=2022-12-01", token=nested.token_for(USER))
    assert [s["subscriptionId"] for s in subs.body["value"]] == [SUB]
    # Leaving the group takes the role away at once.
    assert nested.remove_group_member(OUTER, GROUP)
    with pytest.raises(HttpResponseError) as err:
        user.msi.user_assigned_identities.create_or_update(RG, "via-group2", {"location": "westus"})
    assert err.value.status_code == 403


def test_membership_cycles_and_bad_members_are_handled(srv: SandboxServer, c: Clients) -> None:
    srv.add_principal(OUTER, "Group", "outer")
    srv.add_group_member(GROUP, OUTER)
    srv.add_group_member(OUTER, GROUP)  # a cycle: both groups reach each other, and nothing loops
    srv.add_group_member(OUTER, USER)
    grant(c, RG_SCOPE, READER, "c0000000-0000-4000-8000-000000000006", GROUP)
    assert [a.principal_id for a in c.auth.role_assignments.list_for_resource_group(
        RG, filter=f"assignedTo('{USER}')")] == [GROUP]
    with pytest.raises(ValueError):
        srv.add_group_member(USER, GROUP)  # a user is not a group
    with pytest.raises(LookupError):
        srv.add_group_member(GROUP, "99999999-9999-9999-9999-999999999999")


def test_deleting_an_identity_removes_its_memberships(srv: SandboxServer, c: Clients) -> None:
    ident = c.msi.user_assigned_identities.create_or_update(RG, "member", {"location": "westus"})
    srv.add_group_member(GROUP, ident.principal_id)
    grant(c, RG_SCOPE, READER, "c0000000-0000-4000-8000-000000000007", GROUP)
    assert len(list(c.auth.role_assignments.list_for_resource_group(
        RG, filter=f"assignedTo('{ident.principal_id}')"))) == 1
    c.msi.user_assigned_identities.delete(RG, "member")
    assert list(c.auth.role_assignments.list_for_resource_group(
        RG, filter=f"assignedTo('{ident.principal_id}')")) == []


def test_control_api_seeds_and_edits_memberships(srv: SandboxServer, c: Clients) -> None:
    assert raw(srv, "POST", "/_sandbox/seed", {"principals": [[OUTER, "Group", "outer"]],
                                               "groupMembers": [[OUTER, USER]]}).status == 200
    grant(c, RG_SCOPE, READER, "c0000000-0000-4000-8000-000000000008", OUTER)
    filt = f"assignedTo('{USER}')"
    assert len(list(c.auth.role_assignments.list_for_resource_group(RG, filter=filt))) == 1
    removed = raw(srv, "DELETE", "/_sandbox/groupMembers", {"groupId": OUTER, "memberId": USER})
    assert (removed.status, removed.body) == (200, {"removed": True})
    assert list(c.auth.role_assignments.list_for_resource_group(RG, filter=filt)) == []
    added = raw(srv, "POST", "/_sandbox/groupMembers", {"groupId": OUTER, "memberId": USER})
    assert (added.status, added.body) == (200, {"groupId": OUTER, "memberId": USER})
    bad = raw(srv, "POST", "/_sandbox/groupMembers", {"groupId": USER, "memberId": OUTER})
    assert (bad.status, bad.body["error"]["code"]) == (400, "InvalidSandboxControlRequest")
    user_token = srv.token_for(USER)
    assert raw(srv, "POST", "/_sandbox/groupMembers", {"groupId": OUTER, "memberId": USER},
               token=user_token).status == 403
