"""The sandbox is never kinder than Azure: the behaviours ARM-FACTS section 11 sourced from public
evidence (each test names the fact), and the fields `az` reads (issue 17 items 4-5)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resource.subscriptions import SubscriptionClient

from reconciler.sandbox import SandboxServer
from tests.sandbox.conftest import (
    GROUP,
    READER,
    RG,
    SUB,
    USER,
    Clients,
    StaticCredential,
    clients,
    quiet_config,
    raw,
)

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
RA = "/providers/Microsoft.Authorization/roleAssignments"
NAME = "d0000000-0000-4000-8000-000000000001"
UNKNOWN = "99999999-9999-4999-8999-999999999999"
FIC_PATH = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
            "{identity}/federatedIdentityCredentials/{fic}?api-version=2024-11-30")
UAMI_PATH = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
             "{identity}?api-version=2024-11-30")


def ra_body(principal: str = USER, principal_type: str | None = None, role: str = READER) -> dict[str, Any]:
    role_id = f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    props: dict[str, Any] = {"roleDefinitionId": role_id, "principalId": principal}
    if principal_type:
        props["principalType"] = principal_type
    return {"properties": props}


def fic(audiences: list[str] | None = None, issuer: str = "https://issuer.example",
        subject: str = "s") -> dict[str, Any]:
    return {"properties": {"issuer": issuer, "subject": subject,
                           "audiences": ["api://AzureADTokenExchange"] if audiences is None else audiences}}


def error(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as err:
        call()
    return err.value


# --- role assignments ---------------------------------------------------------------------------
def test_re_put_answers_201_and_created_by_shows_on_later_gets(srv: SandboxServer) -> None:
    """azure-cli recording test_role_assignment_create_update: 201 twice, createdBy null in PUT answers,
    the caller's object id on GET, the original createdOn kept; DELETE answers with updatedOn = now."""
    path = f"{RG_SCOPE}{RA}/{NAME}?api-version=2022-04-01"
    first = raw(srv, "PUT", path, ra_body())
    assert first.status == 201 and first.body["properties"]["createdBy"] is None
    got = raw(srv, "GET", path)
    assert got.body["properties"]["createdBy"] == srv.admin_object_id
    again = raw(srv, "PUT", path, {"properties": {**ra_body()["properties"], "description": "again"}})
    assert again.status == 201 and again.body["properties"]["createdBy"] is None
    assert again.body["properties"]["description"] == "again"
    later = raw(srv, "GET", path).body["properties"]
    assert later["createdBy"] == srv.admin_object_id and later["createdOn"] == got.body["properties"]["createdOn"]
    gone = raw(srv, "DELETE", path)
    assert gone.status == 200 and gone.body["properties"]["createdBy"] == srv.admin_object_id
    assert gone.body["properties"]["updatedOn"] >= later["updatedOn"]


@pytest.mark.parametrize("text", ["atScope() and principalId eq '11111111-1111-1111-1111-111111111111'",
                                  "principalId eq 11111111-1111-1111-1111-111111111111",
                                  "assignedTo('11111111-1111-1111-1111-111111111111') and atScope()",
                                  "roleDefinitionId eq 'x'"])
def test_unsupported_role_assignment_filters_are_unsupported_query(srv: SandboxServer, text: str) -> None:
    got = raw(srv, "GET", f"{SUB_SCOPE}{RA}?api-version=2022-04-01&$filter={text.replace(' ', '%20')}")
    assert got.status == 400 and got.body["error"]["code"] == "UnsupportedQuery"
    assert got.body["error"]["message"] == (
        f"The filter '{text}' is not supported. Supported filters are either 'atScope()' or "
        "'principalId eq '{value}' or assignedTo('{value}')'.")


@pytest.mark.parametrize("text", ["atScope()", f"assignedTo('{USER}')", f"atScope() and assignedTo('{USER}')",
                                  f"principalId eq '{USER}'"])
def test_the_four_supported_filters_work(srv: SandboxServer, text: str) -> None:
    raw(srv, "PUT", f"{RG_SCOPE}{RA}/{NAME}?api-version=2022-04-01", ra_body())
    got = raw(srv, "GET", f"{SUB_SCOPE}{RA}?api-version=2022-04-01&$filter={text.replace(' ', '%20')}")
    assert got.status == 200
    # The assignment is below the subscription: atScope() leaves it out, the principal filters find it.
    assert (NAME in [a["name"] for a in got.body["value"]]) is ("atScope" not in text)


def test_service_principal_type_skips_the_directory_but_user_and_group_are_checked(c: Clients) -> None:
    """Service team (terraform-provider-azurerm PR #4168): with ServicePrincipal an unknown principal is
    accepted; with User/Group it is looked up (Azure/modern-web-app-pattern-dotnet#129 for the text)."""
    made = c.auth.role_assignments.create(RG_SCOPE, NAME, ra_body(UNKNOWN, "ServicePrincipal"))
    assert (made.principal_id, made.principal_type) == (UNKNOWN, "ServicePrincipal")
    err = error(lambda: c.auth.role_assignments.create(
        RG_SCOPE, "d0000000-0000-4000-8000-000000000002", ra_body(UNKNOWN.replace("9", "8"), "User")))
    assert err.error is not None and err.error.code == "PrincipalNotFound"
    err = error(lambda: c.auth.role_assignments.create(
        RG_SCOPE, "d0000000-0000-4000-8000-000000000003", ra_body(GROUP, "User")))
    assert err.status_code == 400 and err.error is not None and err.error.code == "UnmatchedPrincipalType"
    assert err.error.message == (f"The PrincipalId '{GROUP}' has type 'Group' , which is different from specified "
                                 "PrinciaplType 'User'.")


def test_a_denied_write_names_the_full_assignment_id_and_a_denied_list_the_provider(srv: SandboxServer) -> None:
    user = clients(srv, srv.token_for(USER), retry_total=0)
    err = error(lambda: user.auth.role_assignments.create(RG_SCOPE, NAME, ra_body(USER, "User")))
    assert err.error is not None and err.error.message is not None
    assert (f"does not have authorization or an ABAC condition not fulfilled to perform action "
            f"'Microsoft.Authorization/roleAssignments/write' over scope '{RG_SCOPE}{RA}/{NAME}'") in err.error.message
    err = error(lambda: list(user.auth.role_assignments.list_for_resource_group(RG)))
    assert err.error is not None and err.error.message is not None
    assert f"over scope '{RG_SCOPE}/providers/Microsoft.Authorization' or" in err.error.message


def test_custom_role_definitions_need_role_definitions_read(srv: SandboxServer, c: Clients) -> None:
    """custom-roles.md: custom roles are readable with Microsoft.Authorization/roleDefinitions/read."""
    role = "7e1c4a52-2d4b-4f0e-9c3a-5b6d7e8f9a02"
    c.auth.role_definitions.create_or_update(SUB_SCOPE, role, {
        "role_name": "Private Role", "role_type": "CustomRole", "assignable_scopes": [SUB_SCOPE],
        "permissions": [{"actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/read"]}]})
    nobody = clients(srv, srv.token_for(USER), retry_total=0)
    err = error(lambda: nobody.auth.role_definitions.get(SUB_SCOPE, role))
    assert err.status_code == 403 and err.error is not None and err.error.code == "AuthorizationFailed"
    assert "Private Role" not in [r.role_name for r in nobody.auth.role_definitions.list(SUB_SCOPE)]
    assert nobody.auth.role_definitions.get(SUB_SCOPE, READER).role_name == "Reader"  # built-ins stay readable
    c.auth.role_assignments.create(SUB_SCOPE, NAME, ra_body(USER, "User"))
    assert nobody.auth.role_definitions.get(SUB_SCOPE, role).role_name == "Private Role"


def test_built_in_roles_have_created_and_updated_dates(c: Clients) -> None:
    reader = c.auth.role_definitions.get(SUB_SCOPE, READER)
    assert reader.created_on is not None and reader.updated_on is not None
    assert reader.created_on <= reader.updated_on


# --- identities and locations -------------------------------------------------------------------
def test_unknown_locations_are_refused_and_display_names_normalised(srv: SandboxServer) -> None:
    bad = raw(srv, "PUT", UAMI_PATH.format(identity="typo"), {"location": "westeruope"})
    assert bad.status == 400 and bad.body["error"]["code"] == "LocationNotAvailableForResourceType"
    assert bad.body["error"]["message"].startswith(
        "The provided location 'westeruope' is not available for resource type "
        "'Microsoft.ManagedIdentity/userAssignedIdentities'. List of available regions for the resource type is '")
    good = raw(srv, "PUT", UAMI_PATH.format(identity="typo"), {"location": "West Europe"})
    assert good.status == 201 and good.body["location"] == "westeurope"
    rg = raw(srv, "PUT", f"/subscriptions/{SUB}/resourcegroups/rg-typo?api-version=2021-04-01",
             {"location": "westeruope"})
    assert rg.status == 400 and rg.body["error"]["code"] == "LocationNotAvailableForResourceGroup"


def test_list_locations_through_the_sdk(srv: SandboxServer) -> None:
    sc = SubscriptionClient(StaticCredential(srv.admin_token()), base_url=srv.url,
                            connection_verify=srv.ca_cert_path, retry_total=0)
    found = {loc.name: loc for loc in sc.subscriptions.list_locations(SUB)}
    assert found["westeurope"].display_name == "West Europe"
    assert found["westeurope"].id == f"/subscriptions/{SUB}/locations/westeurope"
    assert found["eastus"].regional_display_name == "(US) East US"
    assert "westeruope" not in found and len(found) > 50
    sub = sc.subscriptions.get(SUB)
    assert sub.managed_by_tenants == []
    err = error(lambda: list(sc.subscriptions.list_locations("00000000-0000-0000-0000-00000000ffff")))
    assert err.status_code == 404


# --- federated identity credentials -------------------------------------------------------------
def test_fic_rules_and_texts_from_the_errors_table(srv: SandboxServer) -> None:
    raw(srv, "PUT", UAMI_PATH.format(identity="wl1"), {"location": "westus"})
    path = FIC_PATH.format(identity="wl1", fic="fic1")
    two = raw(srv, "PUT", path, fic(["api://AzureADTokenExchange", "api://other"]))
    assert (two.status, two.body["error"]["code"]) == (400, "BadRequest")
    assert two.body["error"]["message"] == "Federated identity credentials must have exactly one audience."
    empty = raw(srv, "PUT", path, {"properties": {}})
    assert empty.body["error"]["message"] == "Federated Identity Credential from HTTP body has empty properties"
    long = raw(srv, "PUT", path, fic(subject="s" * 601))
    assert long.status == 400 and "600" in long.body["error"]["message"]
    assert raw(srv, "PUT", path, fic(subject=" padded")).status == 400
    assert raw(srv, "PUT", path, fic(subject="repo:*")).status == 400
    assert raw(srv, "PUT", path, fic(subject="s" * 600)).status == 201
    # No evidence that ARM requires an https issuer.
    plain_http = fic(issuer="http://issuer.example")
    assert raw(srv, "PUT", FIC_PATH.format(identity="wl1", fic="fic2"), plain_http).status == 201


def test_fic_writes_are_throttled_per_identity_and_per_subscription() -> None:
    """One write per identity every 4 s, two per second per subscription (Microsoft's FIC page)."""
    with SandboxServer(config=quiet_config(fic_throttling=True)).start() as srv:
        srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
        for name in ("ida", "idb", "idc"):
            raw(srv, "PUT", UAMI_PATH.format(identity=name), {"location": "westus"})
        assert raw(srv, "PUT", FIC_PATH.format(identity="ida", fic="fic1"), fic(subject="1")).status == 201
        again = raw(srv, "PUT", FIC_PATH.format(identity="ida", fic="fic2"), fic(subject="2"))
        assert again.status == 429 and 1 <= int(again.headers["retry-after"]) <= 4
        assert raw(srv, "PUT", FIC_PATH.format(identity="idb", fic="fic1"), fic(subject="1")).status == 201
        # The subscription's bucket (2 per second) is now empty, whichever identity is written.
        third = raw(srv, "PUT", FIC_PATH.format(identity="idc", fic="fic1"), fic(subject="1"))
        assert third.status == 429
        assert srv.request_counts()["throttled"] == 2
