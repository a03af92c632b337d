"""Role definitions and role assignments: ARM's uniqueness rules, errors and list filters."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from reconciler.sandbox import SandboxServer

from .conftest import CONTRIBUTOR, GROUP, OWNER, READER, RG, SUB, USER, Clients, raw

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
NAME1 = "a1a1a1a1-0000-4000-8000-000000000001"
NAME2 = "a1a1a1a1-0000-4000-8000-000000000002"
NAME3 = "a1a1a1a1-0000-4000-8000-000000000003"


def role_id(guid: str, sub: bool = True) -> str:
    prefix = SUB_SCOPE if sub else ""
    return f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def body(role: str = READER, principal: str = USER, **extra: Any) -> dict[str, Any]:
    return {"role_definition_id": role_id(role), "principal_id": principal, **extra}


# --- role definitions ----------------------------------------------------------------------------
def test_role_definition_by_id_at_tenant_and_subscription_scope(c: Clients) -> None:
    tenant = c.auth.role_definitions.get_by_id(role_id(READER, sub=False))
    assert tenant.role_name == "Reader" and tenant.role_type == "BuiltInRole"
    assert tenant.id == role_id(READER, sub=False)
    scoped = c.auth.role_definitions.get(SUB_SCOPE, READER)
    assert scoped.id == role_id(READER)
    assert scoped.permissions[0].actions == ["*/read"]
    with pytest.raises(ResourceNotFoundError) as err:
        c.auth.role_definitions.get(SUB_SCOPE, "00000000-1111-2222-3333-444444444444")
    assert err.value.error is not None
    assert err.value.error.code == "RoleDefinitionDoesNotExist"
    assert err.value.error.message == (
        "The specified role definition with ID '00000000-1111-2222-3333-444444444444' does not exist.")


def test_role_definition_filters(c: Clients) -> None:
    found = list(c.auth.role_definitions.list(RG_SCOPE, filter="roleName eq 'managed identity operator'"))
    assert [(r.role_name, r.name) for r in found] == [("Managed Identity Operator",
                                                       "f1a07417-d97a-45cb-824c-7a7467783830")]
    assert found[0].id == role_id("f1a07417-d97a-45cb-824c-7a7467783830")
    assert list(c.auth.role_definitions.list(SUB_SCOPE, filter="roleName eq 'No Such Role'")) == []
    builtin = list(c.auth.role_definitions.list(SUB_SCOPE, filter="type eq 'BuiltInRole'"))
    assert len(builtin) == 928
    assert list(c.auth.role_definitions.list(SUB_SCOPE, filter="type eq 'CustomRole'")) == []


# --- create / get / delete -----------------------------------------------------------------------
def test_create_get_delete_by_scope_and_by_id(c: Clients) -> None:
    created = c.auth.role_assignments.create(RG_SCOPE, NAME1, body(description="why"))
    assert created.id == f"{RG_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{NAME1}"
    assert created.scope == RG_SCOPE and created.principal_type == "User" and created.description == "why"
    assert created.role_definition_id == role_id(READER)
    assert c.auth.role_assignments.get(RG_SCOPE, NAME1).principal_id == USER
    assert c.auth.role_assignments.get_by_id(created.id).name == NAME1
    deleted = c.auth.role_assignments.delete_by_id(created.id)
    assert deleted is not None and deleted.name == NAME1
    with pytest.raises(ResourceNotFoundError) as err:
        c.auth.role_assignments.get(RG_SCOPE, NAME1)
    assert err.value.error is not None
    assert err.value.error.code == "RoleAssignmentNotFound"


def test_delete_returns_the_assignment_then_204(srv: SandboxServer, c: Clients) -> None:
    c.auth.role_assignments.create(SUB_SCOPE, NAME1, body())
    path = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{NAME1}?api-version=2022-04-01"
    first = raw(srv, "DELETE", path)
    assert first.status == 200 and first.body["name"] == NAME1
    second = raw(srv, "DELETE", path)
    assert (second.status, second.body) == (204, None)


def test_same_triple_under_another_name_is_409(c: Clients) -> None:
    c.auth.role_assignments.create(RG_SCOPE, NAME1, body())
    with pytest.raises(ResourceExistsError) as err:
        c.auth.role_assignments.create(RG_SCOPE.replace("resourceGroups", "RESOURCEGROUPS").upper()
                                       .replace("/SUBSCRIPTIONS/", "/subscriptions/"), NAME2,
                                       {"role_definition_id": role_id(READER, sub=False).upper(),
                                        "principal_id": USER.upper()})
    assert err.value.error is not None
    assert err.value.error.code == "RoleAssignmentExists"
    assert err.value.error.message == (
        f"The role assignment already exists. The ID of the existing role assignment is {NAME1.replace('-', '')}.")


def test_reusing_a_name_for_another_principal_or_scope_is_not_permitted(c: Clients) -> None:
    c.auth.role_assignments.create(RG_SCOPE, NAME1, body())
    for scope, payload in ((RG_SCOPE, body(principal=GROUP)), (SUB_SCOPE, body())):
        with pytest.raises(HttpResponseError) as err:
            c.auth.role_assignments.create(scope, NAME1, payload)
        assert err.value.status_code == 400
        assert err.value.error is not None
        assert err.value.error.code == "RoleAssignmentUpdateNotPermitted"
        assert err.value.error.message == (
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")


def test_same_name_same_triple_updates_description_and_condition(c: Clients) -> None:
    c.auth.role_assignments.create(RG_SCOPE, NAME1, body())
    updated = c.auth.role_assignments.create(RG_SCOPE, NAME1, body(description="new words"))
    assert updated.description == "new words"
    assert c.auth.role_assignments.get(RG_SCOPE, NAME1).description == "new words"
    assert len(list(c.auth.role_assignments.list_for_resource_group(RG, filter=f"principalId eq '{USER}'"))) == 1


@pytest.mark.parametrize(("name", "payload", "code", "message"), [
    ("not-a-guid", body(), "InvalidRoleAssignmentId",
     "The role assignment ID 'not-a-guid' is not valid. The role assignment ID must be a GUID."),
    (NAME1, body(principal="bob"), "InvalidPrincipalId",
     "The Principal ID 'bob' is not valid. Principal ID must be a GUID."),
    (NAME1, body(principal=""), "InvalidPrincipalId", "A valid principal ID must be provided for role assignment."),
    (NAME1, body(role="00000000-1111-2222-3333-444444444444"), "RoleDefinitionDoesNotExist",
     "The specified role definition with ID '00000000-1111-2222-3333-444444444444' does not exist."),
])
def test_create_validation_errors(c: Clients, name: str, payload: dict[str, Any], code: str, message: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.create(RG_SCOPE, name, payload)
    assert err.value.status_code == 400
    assert err.value.error is not None
    assert (err.value.error.code, err.value.error.message) == (code, message)


def test_unknown_principal_is_principal_not_found(srv: SandboxServer, c: Clients) -> None:
    ghost = "99999999-0000-4000-8000-000000000009"
    for extra in ({}, {"principal_type": "User"}):
        with pytest.raises(HttpResponseError) as err:
            c.auth.role_assignments.create(RG_SCOPE, NAME1, body(principal=ghost, **extra))
        assert err.value.status_code == 400
        assert err.value.error is not None and err.value.error.message is not None
        assert err.value.error.code == "PrincipalNotFound"
        assert err.value.error.message.startswith(
            f"Principal {ghost} does not exist in the directory {srv.tenant_id}. Check that you have the correct "
            "principal ID.")
    srv.add_principal(ghost, "ServicePrincipal", "late-arrival")
    assert c.auth.role_assignments.create(RG_SCOPE, NAME1, body(principal=ghost)).principal_type == "ServicePrincipal"


def test_missing_scope_parts(c: Clients) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        c.auth.role_assignments.create(f"{SUB_SCOPE}/resourceGroups/nope", NAME1, body())
    assert err.value.error is not None
    assert err.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError) as err:
        c.auth.role_assignments.create("/subscriptions/00000000-0000-0000-0000-00000000cccc", NAME1, body())
    assert err.value.error is not None
    assert err.value.error.code == "SubscriptionNotFound"


# --- listing -------------------------------------------------------------------------------------
@pytest.fixture
def ladder(srv: SandboxServer, c: Clients) -> dict[str, str]:
    """Assignments at subscription, resource group, an identity below it, and a sibling group."""
    srv.seed(resource_groups=[(SUB, "rg-other", "westus")])
    ident = c.msi.user_assigned_identities.create_or_update(RG, "target", {"location": "westus"})
    c.auth.role_assignments.create(SUB_SCOPE, NAME1, body(role=CONTRIBUTOR))
    c.auth.role_assignments.create(RG_SCOPE, NAME2, body(principal=GROUP))
    c.auth.role_assignments.create(ident.id, NAME3, body())
    c.auth.role_assignments.create(f"{SUB_SCOPE}/resourceGroups/rg-other", "a1a1a1a1-0000-4000-8000-000000000004",
                                   body())
    return {"identity": ident.id, "admin": srv.admin_object_id}


def _names(items: Any) -> set[str]:
    return {a.name[-1] for a in items if a.name.startswith("a1a1a1a1")}


def test_list_without_filter_is_at_above_and_below(c: Clients, ladder: dict[str, str]) -> None:
    assert _names(c.auth.role_assignments.list_for_resource_group(RG)) == {"1", "2", "3"}
    assert _names(c.auth.role_assignments.list_for_subscription()) == {"1", "2", "3", "4"}
    assert _names(c.auth.role_assignments.list_for_scope(ladder["identity"])) == {"1", "2", "3"}
    assert _names(c.auth.role_assignments.list_for_resource(
        RG, "Microsoft.ManagedIdentity", "userAssignedIdentities", "target")) == {"1", "2", "3"}


def test_list_at_scope_is_at_and_above_only(c: Clients, ladder: dict[str, str]) -> None:
    assert _names(c.auth.role_assignments.list_for_resource_group(RG, filter="atScope()")) == {"1", "2"}
    assert _names(c.auth.role_assignments.list_for_scope(RG_SCOPE, filter="atScope()")) == {"1", "2"}


def test_list_for_principal(c: Clients, ladder: dict[str, str]) -> None:
    by_id = c.auth.role_assignments.list_for_resource_group(RG, filter=f"principalId eq '{USER}'")
    assert _names(by_id) == {"1", "3"}
    assigned = c.auth.role_assignments.list_for_subscription(filter=f"assignedTo('{USER.upper()}')")
    assert _names(assigned) == {"1", "3", "4"}
    combined = c.auth.role_assignments.list_for_scope(RG_SCOPE, filter=f"atScope() and assignedTo('{USER}')")
    assert _names(combined) == {"1"}


def test_list_filter_is_url_decoded_from_either_encoding(srv: SandboxServer, ladder: dict[str, str]) -> None:
    base = f"{RG_SCOPE}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
    plain = raw(srv, "GET", base + f"&$filter=principalId%20eq%20'{USER}'")
    encoded = raw(srv, "GET", base + f"&%24filter=principalId%20eq%20%27{USER}%27")
    at_scope = raw(srv, "GET", base + "&$filter=atScope%28%29")
    assert {a["name"] for a in plain.body["value"]} == {a["name"] for a in encoded.body["value"]}
    assert len(plain.body["value"]) == 2
    assert {a["name"][-1] for a in at_scope.body["value"] if a["name"].startswith("a1")} == {"1", "2"}
    bad = raw(srv, "GET", base + "&$filter=roleName%20eq%20'x'")
    assert bad.status == 400


def test_list_pages_keep_the_filter(srv: SandboxServer, c: Clients, ladder: dict[str, str]) -> None:
    srv.configure(page_size=1)
    first = raw(srv, "GET", f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleAssignments"
                            f"?api-version=2022-04-01&$filter=principalId%20eq%20'{USER}'")
    assert "principalId%20eq%20'" in first.body["nextLink"]
    assert _names(c.auth.role_assignments.list_for_subscription(filter=f"principalId eq '{USER}'")) == {
        "1", "3", "4"}


def test_seeded_admin_is_owner_of_the_subscription(srv: SandboxServer, c: Clients) -> None:
    owners = [a for a in c.auth.role_assignments.list_for_subscription(
        filter=f"principalId eq '{srv.admin_object_id}'") if a.role_definition_id.endswith(OWNER)]
    assert len(owners) == 1 and owners[0].scope == SUB_SCOPE
