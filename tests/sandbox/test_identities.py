"""User-assigned identities and federated identity credentials through the real SDK."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from reconciler.sandbox import SandboxServer

from .conftest import RG, SUB, Clients, raw

FIC_BODY = {"properties": {"issuer": "https://oidc.example/issuer", "subject": "system:serviceaccount:ns:sa",
                           "audiences": ["api://AzureADTokenExchange"]}}


def _uami_path(name: str, api: str = "2024-11-30", rg: str = RG) -> str:
    return (f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/"
            f"userAssignedIdentities/{name}?api-version={api}")


def test_create_returns_201_with_arm_shape_then_200(srv: SandboxServer) -> None:
    first = raw(srv, "PUT", _uami_path("id1"), {"location": "westus"})
    assert first.status == 201
    rid = f"/subscriptions/{SUB}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    assert first.body["id"] == rid
    assert first.headers["location"] == rid
    assert first.body["tags"] == {}
    assert first.body["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    props = first.body["properties"]
    assert props["isolationScope"] == "None" and props["tenantId"] == srv.tenant_id
    assert props["principalId"] != props["clientId"]
    again = raw(srv, "PUT", _uami_path("id1"), {"location": "westus", "tags": {"k": "v"}})
    assert again.status == 200
    assert again.body["properties"] == props  # identity GUIDs never change on update
    assert again.body["tags"] == {"k": "v"}


def test_old_api_versions_omit_isolation_scope(srv: SandboxServer) -> None:
    r = raw(srv, "PUT", _uami_path("old", api="2015-08-31-preview"), {"location": "westus"})
    assert r.status == 201 and "isolationScope" not in r.body["properties"]


def test_identity_crud_through_the_sdk(c: Clients) -> None:
    created = c.msi.user_assigned_identities.create_or_update(RG, "app", {"location": "westus",
                                                                         "tags": {"owner": "me"}})
    got = c.msi.user_assigned_identities.get(RG, "APP")
    assert got.principal_id == created.principal_id and got.tags == {"owner": "me"}
    patched = c.msi.user_assigned_identities.update(RG, "app", {"tags": {"x": "y"}})
    assert patched.tags == {"x": "y"} and patched.location == "westus"
    assert [i.name for i in c.msi.user_assigned_identities.list_by_resource_group(RG)] == ["app"]
    assert c.msi.user_assigned_identities.delete(RG, "app") is None
    with pytest.raises(ResourceNotFoundError) as err:
        c.msi.user_assigned_identities.get(RG, "app")
    assert err.value.error is not None
    assert err.value.error.code == "ResourceNotFound"
    assert err.value.error.message == (
        f"The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/app' under resource group '{RG}' was "
        "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix")


def test_delete_is_200_then_204(srv: SandboxServer) -> None:
    raw(srv, "PUT", _uami_path("del1"), {"location": "westus"})
    first = raw(srv, "DELETE", _uami_path("del1"))
    second = raw(srv, "DELETE", _uami_path("del1"))
    assert (first.status, first.body) == (200, None)
    assert (second.status, second.body) == (204, None)


def test_missing_resource_group_is_404_resource_group_not_found(c: Clients) -> None:
    for call in (lambda: c.msi.user_assigned_identities.get("nope", "x"),
                 lambda: list(c.msi.user_assigned_identities.list_by_resource_group("nope"))):
        with pytest.raises(ResourceNotFoundError) as err:
            call()
        assert err.value.error is not None
        assert err.value.error.code == "ResourceGroupNotFound"


def test_invalid_bodies_and_names(srv: SandboxServer) -> None:
    no_location = raw(srv, "PUT", _uami_path("id2"), {"tags": {}})
    assert no_location.status == 400 and no_location.body["error"]["code"] == "LocationRequired"
    bad_name = raw(srv, "PUT", _uami_path("-bad"), {"location": "westus"})
    assert bad_name.status == 400 and bad_name.body["error"]["code"] == "InvalidResourceName"
    moved = raw(srv, "PUT", _uami_path("id3"), {"location": "westus"})
    assert moved.status == 201
    moved = raw(srv, "PUT", _uami_path("id3"), {"location": "eastus"})
    assert moved.status == 409 and moved.body["error"]["code"] == "InvalidResourceLocation"


def test_list_by_subscription_spans_resource_groups(srv: SandboxServer, c: Clients) -> None:
    srv.seed(resource_groups=[(SUB, "rg-two", "eastus")])
    c.msi.user_assigned_identities.create_or_update(RG, "ida", {"location": "westus"})
    c.msi.user_assigned_identities.create_or_update("rg-two", "idb", {"location": "eastus"})
    assert sorted(i.name for i in c.msi.user_assigned_identities.list_by_subscription()) == ["ida", "idb"]
    assert [i.name for i in c.msi.user_assigned_identities.list_by_resource_group("rg-two")] == ["idb"]


def test_pagination_follows_absolute_next_links(srv: SandboxServer, c: Clients) -> None:
    srv.configure(page_size=2)
    for n in range(5):
        c.msi.user_assigned_identities.create_or_update(RG, f"page{n}", {"location": "westus"})
    first = raw(srv, "GET", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/"
                            "userAssignedIdentities?api-version=2024-11-30")
    assert len(first.body["value"]) == 2
    assert first.body["nextLink"].startswith(srv.url + "/subscriptions/")
    assert "$skiptoken=" in first.body["nextLink"]
    names = [i.name for i in c.msi.user_assigned_identities.list_by_resource_group(RG)]
    assert names == [f"page{n}" for n in range(5)]
    assert srv.request_counts()["UserAssignedIdentities_ListByResourceGroup"] == 1 + 3


def test_deleting_an_identity_orphans_its_role_assignments(srv: SandboxServer, c: Clients) -> None:
    ident = c.msi.user_assigned_identities.create_or_update(RG, "orphan", {"location": "westus"})
    scope = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    c.auth.role_assignments.create(scope, "0c9e6a3e-0000-4000-8000-000000000001", {
        "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
                              "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "principal_id": ident.principal_id, "principal_type": "ServicePrincipal"})
    c.msi.user_assigned_identities.delete(RG, "orphan")
    left = list(c.auth.role_assignments.list_for_resource_group(RG, filter=f"principalId eq '{ident.principal_id}'"))
    assert [a.name for a in left] == ["0c9e6a3e-0000-4000-8000-000000000001"]


# --- federated identity credentials --------------------------------------------------------------
def test_fic_crud_through_the_sdk(c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "wl1", {"location": "westus"})
    fic = c.msi.federated_identity_credentials.create_or_update(RG, "wl1", "gh-main", FIC_BODY)
    assert fic.issuer == "https://oidc.example/issuer" and fic.audiences == ["api://AzureADTokenExchange"]
    assert fic.type == "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
    assert fic.id.endswith("/userAssignedIdentities/wl1/federatedIdentityCredentials/gh-main")
    assert c.msi.federated_identity_credentials.get(RG, "wl1", "gh-main").subject == "system:serviceaccount:ns:sa"
    assert [f.name for f in c.msi.federated_identity_credentials.list(RG, "wl1")] == ["gh-main"]
    c.msi.federated_identity_credentials.delete(RG, "wl1", "gh-main")
    with pytest.raises(ResourceNotFoundError):
        c.msi.federated_identity_credentials.get(RG, "wl1", "gh-main")


def test_fic_status_codes(srv: SandboxServer) -> None:
    raw(srv, "PUT", _uami_path("wl2"), {"location": "westus"})
    path = _uami_path("wl2").replace("?", "/federatedIdentityCredentials/fic1?")
    assert raw(srv, "PUT", path, FIC_BODY).status == 201
    assert raw(srv, "PUT", path, FIC_BODY).status == 200
    assert raw(srv, "DELETE", path).status == 200
    assert raw(srv, "DELETE", path).status == 204


def test_fic_requires_its_identity(c: Clients) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        c.msi.federated_identity_credentials.create_or_update(RG, "ghost", "fic1", FIC_BODY)
    assert err.value.error is not None
    assert err.value.error.code == "ResourceNotFound"


def test_fic_validation(c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "wl3", {"location": "westus"})
    with pytest.raises(HttpResponseError) as err:
        c.msi.federated_identity_credentials.create_or_update(
            RG, "wl3", "fic1", {"properties": {"issuer": "https://i", "audiences": ["a"]}})
    assert err.value.status_code == 400
    assert err.value.error is not None and err.value.error.message == (
        "The request format was unexpected. Federated Identity Credential must specify 'issuer', 'subject' and "
        "'audience'.")
    with pytest.raises(HttpResponseError) as err:
        c.msi.federated_identity_credentials.create_or_update(RG, "wl3", "x", FIC_BODY)
    assert err.value.error is not None
    assert (err.value.error.code, err.value.error.message) == (
        "BadRequest", "Federated Identity Credential name 'x' is invalid.")


def test_deleting_an_identity_deletes_its_fics(c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "wl4", {"location": "westus"})
    c.msi.federated_identity_credentials.create_or_update(RG, "wl4", "fic1", FIC_BODY)
    c.msi.user_assigned_identities.delete(RG, "wl4")
    c.msi.user_assigned_identities.create_or_update(RG, "wl4", {"location": "westus"})
    assert list(c.msi.federated_identity_credentials.list(RG, "wl4")) == []
