"""RBAC enforcement from the sandbox's own assignments, and the Permissions API."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.rbac import action_matches

from .conftest import MI_CONTRIBUTOR, MI_OPERATOR, READER, RG, SUB, USER, Clients, clients
from .graphapi import DOMAIN

RG_SCOPE = f"/subscriptions/{SUB}/resourceGroups/{RG}"


def grant(c: Clients, scope: str, role: str, name: str, principal: str = USER) -> None:
    c.auth.role_assignments.create(scope, name, {
        "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principal_id": principal})


@pytest.mark.parametrize(("pattern", "action", "expected"), [
    ("*", "Microsoft.ManagedIdentity/userAssignedIdentities/write", True),
    ("*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/read", True),
    ("*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/write", False),
    ("microsoft.managedidentity/userassignedidentities/*/read",
     "Microsoft.ManagedIdentity/userAssignedIdentities/read", True),
    ("Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
     "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read", True),
    ("Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
     "Microsoft.ManagedIdentity/userAssignedIdentities/write", False),
    ("Microsoft.Authorization/*", "Microsoft.Authorization/roleAssignments/write", True),
    ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/write", True),
    ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/read", False),
])
def test_action_wildcards(pattern: str, action: str, expected: bool) -> None:
    assert action_matches(pattern, action) is expected


def test_managed_identity_operator_cannot_create_identities(srv: SandboxServer, c: Clients) -> None:
    grant(c, RG_SCOPE, MI_OPERATOR, "b0000000-0000-4000-8000-000000000001")
    c.msi.user_assigned_identities.create_or_update(RG, "existing", {"location": "westus"})
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    assert user.msi.user_assigned_identities.get(RG, "existing").name == "existing"
    with pytest.raises(HttpResponseError) as err:
        user.msi.user_assigned_identities.create_or_update(RG, "newone", {"location": "westus"})
    assert err.value.status_code == 403
    action = "Microsoft.ManagedIdentity/userAssignedIdentities/write"
    scope = f"{RG_SCOPE.replace('resourceGroups', 'resourcegroups')}/providers/Microsoft.ManagedIdentity/" \
            "userAssignedIdentities/newone"
    assert err.value.error is not None
    assert err.value.error.code == "AuthorizationFailed"
    assert err.value.error.message == (  # a user is named by UPN (ARM-FACTS section 11)
        f"The client 'alice@{DOMAIN}' with object id '{USER}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your "
        "credentials.")


def test_managed_identity_contributor_creates_identities_but_not_role_assignments(srv: SandboxServer,
                                                                                  c: Clients) -> None:
    grant(c, f"/subscriptions/{SUB}", MI_CONTRIBUTOR, "b0000000-0000-4000-8000-000000000002")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    ident = user.msi.user_assigned_identities.create_or_update(RG, "mine", {"location": "westus"})
    user.msi.federated_identity_credentials.create_or_update(RG, "mine", "fic1", {"properties": {
        "issuer": "https://issuer.example", "subject": "s", "audiences": ["api://AzureADTokenExchange"]}})
    with pytest.raises(HttpResponseError) as err:
        grant(user, RG_SCOPE, READER, "b0000000-0000-4000-8000-000000000003", principal=ident.principal_id)
    assert err.value.status_code == 403
    assert err.value.error is not None and err.value.error.message is not None
    assert "'Microsoft.Authorization/roleAssignments/write'" in err.value.error.message
    # Contributor-like roles may still read assignments (Microsoft.Authorization/*/read).
    assert len(list(user.auth.role_assignments.list_for_resource_group(RG))) >= 1


def test_permissions_are_inherited_downwards_only(srv: SandboxServer, c: Clients) -> None:
    srv.seed(resource_groups=[(SUB, "rg-b", "westus")])
    grant(c, RG_SCOPE, MI_CONTRIBUTOR, "b0000000-0000-4000-8000-000000000004")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    user.msi.user_assigned_identities.create_or_update(RG, "ok1", {"location": "westus"})
    with pytest.raises(HttpResponseError) as err:
        user.msi.user_assigned_identities.create_or_update("rg-b", "no1", {"location": "westus"})
    assert err.value.status_code == 403
    # Without subscription-wide read, a subscription list shows only what the caller may read.
    c.msi.user_assigned_identities.create_or_update("rg-b", "theirs", {"location": "westus"})
    assert [i.name for i in user.msi.user_assigned_identities.list_by_subscription()] == ["ok1"]


def test_unauthorised_caller_gets_403_before_learning_a_group_is_missing(srv: SandboxServer) -> None:
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    with pytest.raises(HttpResponseError) as err:
        user.msi.user_assigned_identities.get("no-such-rg", "x12")
    assert err.value.status_code == 403


def test_resource_level_grant_lists_only_that_identity(srv: SandboxServer, c: Clients) -> None:
    a = c.msi.user_assigned_identities.create_or_update(RG, "seen", {"location": "westus"})
    c.msi.user_assigned_identities.create_or_update(RG, "hidden", {"location": "westus"})
    grant(c, a.id, READER, "b0000000-0000-4000-8000-000000000005")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    assert [i.name for i in user.msi.user_assigned_identities.list_by_resource_group(RG)] == ["seen"]


def test_permissions_api_for_resource_group_and_resource(srv: SandboxServer, c: Clients) -> None:
    ident = c.msi.user_assigned_identities.create_or_update(RG, "perm", {"location": "westus"})
    grant(c, RG_SCOPE, MI_OPERATOR, "b0000000-0000-4000-8000-000000000006")
    grant(c, ident.id, READER, "b0000000-0000-4000-8000-000000000007")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    at_rg = list(user.auth.permissions.list_for_resource_group(RG))
    assert len(at_rg) == 1
    assert "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action" in at_rg[0].actions
    at_resource = list(user.auth.permissions.list_for_resource(
        RG, "Microsoft.ManagedIdentity", "", "userAssignedIdentities", "perm"))
    assert sorted(p.actions[0] for p in at_resource) == sorted(
        [at_rg[0].actions[0], "*/read"])
    admin = list(c.auth.permissions.list_for_resource_group(RG))
    assert [p.actions for p in admin] == [["*"]]


def test_a_managed_identity_is_named_by_object_id_and_a_list_by_its_provider_scope(srv: SandboxServer,
                                                                                    c: Clients) -> None:
    # Public 403s for service principals and managed identities show the object id twice
    # (Azure/azure-sdk-for-net#5026, #1157; Azure/aad-pod-identity#1392), never the appid / client id.
    robot = c.msi.user_assigned_identities.create_or_update(RG, "robot", {"location": "westus"})
    srv.configure(replication_delay_seconds=0)
    caller = clients(srv, token=srv.token_for(robot.principal_id), retry_total=0)
    with pytest.raises(HttpResponseError) as err:
        list(caller.msi.user_assigned_identities.list_by_resource_group(RG))
    assert err.value.status_code == 403 and err.value.error is not None
    action = "Microsoft.ManagedIdentity/userAssignedIdentities/read"
    assert err.value.error.message == (
        f"The client '{robot.principal_id}' with object id '{robot.principal_id}' does not have authorization to "
        f"perform action '{action}' over scope '{RG_SCOPE}/providers/Microsoft.ManagedIdentity' or the scope is "
        "invalid. If access was recently granted, please refresh your credentials.")
    assert robot.client_id not in err.value.error.message
