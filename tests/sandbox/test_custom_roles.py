"""Custom role definitions: create/update (201), delete (200/204), ARM's rules, and RBAC honouring them."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from reconciler.sandbox import SandboxServer

from .conftest import CONTRIBUTOR, READER, RG, SUB, USER, Clients, clients, raw
from .graphapi import DOMAIN

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
ROLE = "7e1c4a52-2d4b-4f0e-9c3a-5b6d7e8f9a01"
ROLE2 = "7e1c4a52-2d4b-4f0e-9c3a-5b6d7e8f9a02"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
IDENTITY_WRITER = ["Microsoft.ManagedIdentity/userAssignedIdentities/*",
                   "Microsoft.Resources/subscriptions/resourceGroups/read"]


def definition(name: str = "Identity Writer", scopes: list[str] | None = None, actions: list[str] | None = None,
               not_actions: list[str] | None = None, description: str = "writes identities") -> dict[str, Any]:
    return {"role_name": name, "description": description, "role_type": "CustomRole",
            "assignable_scopes": scopes if scopes is not None else [SUB_SCOPE],
            "permissions": [{"actions": actions if actions is not None else IDENTITY_WRITER,
                             "not_actions": not_actions or []}]}


def assign(c: Clients, scope: str, role: str, name: str, principal: str = USER) -> None:
    c.auth.role_assignments.create(scope, name, {
        "role_definition_id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principal_id": principal})


def error(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as err:
        call()
    return err.value


def test_create_get_list_update(c: Clients) -> None:
    made = c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition())
    assert (made.name, made.role_type, made.role_name) == (ROLE, "CustomRole", "Identity Writer")
    assert made.id == f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{ROLE}"
    assert made.assignable_scopes == [SUB_SCOPE] and made.permissions[0].actions == IDENTITY_WRITER
    assert made.created_on is not None and made.updated_by is not None
    got = c.auth.role_definitions.get(RG_SCOPE, ROLE)  # visible below its assignable scope
    assert got.role_name == "Identity Writer" and got.id.startswith(SUB_SCOPE)
    assert c.auth.role_definitions.get_by_id(f"/providers/Microsoft.Authorization/roleDefinitions/{ROLE}").name == ROLE
    by_name = list(c.auth.role_definitions.list(SUB_SCOPE, filter="roleName eq 'identity writer'"))
    assert [r.name for r in by_name] == [ROLE]
    assert [r.name for r in c.auth.role_definitions.list(RG_SCOPE, filter="type eq 'CustomRole'")] == [ROLE]
    # An update answers 201 too (the only status the spec and the SDK know), keeping createdOn.
    updated = c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition(description="v2"))
    assert updated.description == "v2" and updated.created_on == made.created_on
    assert len(list(c.auth.role_definitions.list(SUB_SCOPE, filter="type eq 'CustomRole'"))) == 1


def test_role_names_are_unique_per_tenant(srv: SandboxServer, c: Clients) -> None:
    srv.seed(subscriptions=["00000000-0000-0000-0000-00000000bbbb"])
    c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition())
    other_sub = "/subscriptions/00000000-0000-0000-0000-00000000bbbb"
    for name, guid, scope in (("IDENTITY WRITER", ROLE2, other_sub), ("reader", ROLE2, SUB_SCOPE)):
        err = error(lambda name=name, guid=guid, scope=scope: c.auth.role_definitions.create_or_update(
            scope, guid, definition(name=name, scopes=[scope])))
        assert err.error is not None
        assert (err.status_code, err.error.code) == (409, "RoleDefinitionWithSameNameExists")
        assert err.error.message == "A role definition cannot be updated with a name that already exists."
    # Renaming a role to its own name (an update) is fine.
    c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition(name="Identity Writer"))


@pytest.mark.parametrize(("scopes", "status", "code"), [
    (["/"], 400, "InvalidAssignableScope"),
    ([f"{RG_SCOPE}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"], 400, "InvalidAssignableScope"),
    ([], 400, "InvalidRoleDefinition"),
    ([f"{SUB_SCOPE}/resourceGroups/no-such-rg"], 404, "ResourceGroupNotFound"),
])
def test_assignable_scopes_are_checked(c: Clients, scopes: list[str], status: int, code: str) -> None:
    err = error(lambda: c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition(scopes=scopes)))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (status, code)


def test_malformed_and_builtin_definitions_are_refused(srv: SandboxServer, c: Clients) -> None:
    err = error(lambda: c.auth.role_definitions.create_or_update(SUB_SCOPE, READER, definition()))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (400, "RoleDefinitionUpdateNotPermitted")
    err = error(lambda: c.auth.role_definitions.delete(SUB_SCOPE, READER))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (400, "RoleDefinitionUpdateNotPermitted")
    err = error(lambda: c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition(actions=[])))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (400, "InvalidRoleDefinition")
    path = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/not-a-guid?api-version=2022-04-01"
    bad = raw(srv, "PUT", path, {"properties": {"roleName": "x"}})
    assert (bad.status, bad.body["error"]["code"]) == (400, "InvalidRoleDefinitionId")


def test_rbac_honours_custom_role_permissions(srv: SandboxServer, c: Clients) -> None:
    c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition(
        not_actions=["Microsoft.ManagedIdentity/userAssignedIdentities/delete"]))
    assign(c, RG_SCOPE, ROLE, "e0000000-0000-4000-8000-000000000001")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    assert user.msi.user_assigned_identities.create_or_update(RG, "mine", {"location": "westus"}).name == "mine"
    err = error(lambda: user.msi.user_assigned_identities.delete(RG, "mine"))  # notActions
    assert err.error is not None
    assert (err.status_code, err.error.code) == (403, "AuthorizationFailed")
    perms = list(user.auth.permissions.list_for_resource_group(RG))
    assert [p.actions for p in perms] == [IDENTITY_WRITER]


def test_assignments_must_be_within_assignable_scopes(srv: SandboxServer, c: Clients) -> None:
    srv.seed(resource_groups=[(SUB, "rg-two", "westus")])
    c.auth.role_definitions.create_or_update(RG_SCOPE, ROLE, definition(scopes=[RG_SCOPE]))
    assign(c, f"{RG_SCOPE}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x", ROLE,
           "e0000000-0000-4000-8000-000000000002")
    for scope in (SUB_SCOPE, f"{SUB_SCOPE}/resourceGroups/rg-two"):
        err = error(lambda scope=scope: assign(c, scope, ROLE, "e0000000-0000-4000-8000-000000000003"))
        assert err.error is not None
        assert (err.status_code, err.error.code) == (400, "RoleDefinitionDoesNotExist")
    assert list(c.auth.role_definitions.list(f"{SUB_SCOPE}/resourceGroups/rg-two",
                                             filter="type eq 'CustomRole'")) == []
    with pytest.raises(ResourceNotFoundError):
        c.auth.role_definitions.get(SUB_SCOPE, ROLE)
    # Narrowing the assignable scopes away from an assignment is refused.
    err = error(lambda: c.auth.role_definitions.create_or_update(
        SUB_SCOPE, ROLE, definition(scopes=[f"{SUB_SCOPE}/resourceGroups/rg-two"])))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (400, "RoleScopeBeingRemovedContainsAssignments")


def test_delete_refuses_a_role_in_use_then_answers_200_then_204(c: Clients) -> None:
    c.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition())
    assign(c, RG_SCOPE, ROLE, "e0000000-0000-4000-8000-000000000004")
    with pytest.raises(ResourceExistsError) as err:
        c.auth.role_definitions.delete(SUB_SCOPE, ROLE)
    assert err.value.error is not None
    assert (err.value.status_code, err.value.error.code) == (409, "RoleDefinitionHasAssignments")
    c.auth.role_assignments.delete(RG_SCOPE, "e0000000-0000-4000-8000-000000000004")
    deleted = c.auth.role_definitions.delete(SUB_SCOPE, ROLE)
    assert deleted is not None and deleted.role_name == "Identity Writer"
    assert c.auth.role_definitions.delete(SUB_SCOPE, ROLE) is None
    with pytest.raises(ResourceNotFoundError):
        c.auth.role_definitions.get(SUB_SCOPE, ROLE)
    err2 = error(lambda: assign(c, RG_SCOPE, ROLE, "e0000000-0000-4000-8000-000000000005"))
    assert err2.error is not None
    assert err2.error.code == "RoleDefinitionDoesNotExist"


def test_writing_custom_roles_needs_role_definition_write(srv: SandboxServer, c: Clients) -> None:
    assign(c, SUB_SCOPE, CONTRIBUTOR, "e0000000-0000-4000-8000-000000000006")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    err = error(lambda: user.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition()))
    assert err.error is not None and err.error.message is not None
    assert (err.status_code, err.error.code) == (403, "AuthorizationFailed")
    assert "'Microsoft.Authorization/roleDefinitions/write'" in err.error.message
    assign(c, SUB_SCOPE, UAA, "e0000000-0000-4000-8000-000000000007")
    assert user.auth.role_definitions.create_or_update(SUB_SCOPE, ROLE, definition()).name == ROLE


def test_every_assignable_scope_needs_role_definition_write(srv: SandboxServer, c: Clients) -> None:
    srv.seed(resource_groups=[(SUB, "rg-two", "westus")])
    two = f"{SUB_SCOPE}/resourceGroups/rg-two"
    assign(c, RG_SCOPE, UAA, "e0000000-0000-4000-8000-000000000008")
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    assert user.auth.role_definitions.create_or_update(RG_SCOPE, ROLE, definition(scopes=[RG_SCOPE])).name == ROLE
    err = error(lambda: user.auth.role_definitions.create_or_update(RG_SCOPE, ROLE, definition(
        scopes=[RG_SCOPE, two])))
    assert err.error is not None
    assert (err.status_code, err.error.code) == (403, "LinkedAuthorizationFailed")
    assert err.error.message == (
        f"The client 'alice@{DOMAIN}' with object id '{USER}' has permission to perform action "
        f"'Microsoft.Authorization/roleDefinitions/write' on scope '{RG_SCOPE}'; however, it does not have "
        "permission to perform action 'Microsoft.Authorization/roleDefinitions/write' on the linked "
        f"scope(s)'{two}' or the linked scope(s)are invalid")
