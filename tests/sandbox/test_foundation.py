"""HTTPS, authentication, api-version checks, routing, subscriptions and resource groups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import cast

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from reconciler.sandbox import SandboxServer, tokens

from .conftest import RG, SUB, SUB2, Clients, clients, quiet_config, raw

MSI_LIST = f"/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"


def test_serves_https_with_a_certificate_only_its_ca_vouches_for(srv: SandboxServer) -> None:
    assert srv.url.startswith("https://127.0.0.1:")
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(srv.url + "/subscriptions?api-version=2022-12-01",
                               context=ssl.create_default_context(), timeout=10)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert raw(srv, "GET", "/subscriptions?api-version=2022-12-01").status == 200


def test_localhost_is_covered_by_the_certificate(srv: SandboxServer) -> None:
    ctx = ssl.create_default_context(cafile=srv.ca_cert_path)
    req = urllib.request.Request(f"https://localhost:{srv.port}/subscriptions?api-version=2022-12-01",
                                 headers={"Authorization": f"Bearer {srv.admin_token()}"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.status == 200


def test_every_response_carries_request_and_correlation_ids(srv: SandboxServer) -> None:
    ok = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", headers={"x-ms-correlation-request-id": "corr-1"})
    bad = raw(srv, "GET", MSI_LIST, token=None)
    for r in (ok, bad):
        assert r.headers["x-ms-request-id"]
        assert r.headers["x-ms-correlation-request-id"]
    assert ok.headers["x-ms-correlation-request-id"] == "corr-1"
    assert ok.headers["x-ms-request-id"] != bad.headers["x-ms-request-id"]


def test_missing_authorization_is_401_with_www_authenticate(srv: SandboxServer) -> None:
    r = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", token=None)
    assert r.status == 401
    assert r.body == {"error": {"code": "AuthenticationFailed",
                                "message": "Authentication failed. The 'Authorization' header is missing."}}
    assert r.headers["www-authenticate"].startswith(f'Bearer authorization_uri="https://login.windows.net/{srv.tenant_id}"')


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x.eyJvaWQiOjF9."])
def test_malformed_token_is_401_invalid_authentication_token(srv: SandboxServer, token: str) -> None:
    r = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", token=token)
    assert r.status == 401
    assert r.body["error"]["code"] == "InvalidAuthenticationToken"
    assert "www-authenticate" in r.headers


def _token(srv: SandboxServer, claims: dict[str, object]) -> str:
    """A token with these claims, signed with the sandbox's key (so only the claims are wrong)."""
    enc = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    signed = f"eyJhbGciOiJIUzI1NiJ9.{enc}"
    mac = hmac.new(tokens.signing_key(srv.store), signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def test_expired_and_foreign_tenant_tokens_are_refused(srv: SandboxServer) -> None:
    base = {"aud": "https://management.azure.com/", "oid": srv.admin_object_id, "tid": srv.tenant_id,
            "exp": int(time.time()) + 600}
    expired = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", token=_token(srv, {**base, "exp": 1}))
    assert (expired.status, expired.body["error"]["code"]) == (401, "ExpiredAuthenticationToken")
    other = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30",
                token=_token(srv, {**base, "tid": "99999999-9999-9999-9999-999999999999"}))
    assert (other.status, other.body["error"]["code"]) == (401, "InvalidAuthenticationTokenTenant")
    aud = raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", token=_token(srv, {**base, "aud": "api://other"}))
    assert (aud.status, aud.body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert raw(srv, "GET", MSI_LIST + "?api-version=2024-11-30", token=_token(srv, base)).status == 200


def test_sdk_surfaces_401_as_client_authentication_error(srv: SandboxServer) -> None:
    c = clients(srv, token="not-a-jwt", retry_total=0)
    with pytest.raises(ClientAuthenticationError) as err:
        c.msi.user_assigned_identities.get(RG, "x")
    assert err.value.error is not None
    assert err.value.error.code == "InvalidAuthenticationToken"


def test_api_version_missing_and_unknown(srv: SandboxServer) -> None:
    missing = raw(srv, "GET", MSI_LIST)
    assert missing.status == 400
    assert missing.body["error"] == {
        "code": "MissingApiVersionParameter",
        "message": "The api-version query parameter (?api-version=) is required for all requests."}
    unknown = raw(srv, "GET", MSI_LIST + "?api-version=2099-01-01")
    assert unknown.status == 400
    assert unknown.body["error"]["code"] == "InvalidApiVersionParameter"
    message = unknown.body["error"]["message"]
    assert message.startswith("The api-version '2099-01-01' is invalid. The supported versions are '")
    assert "2024-11-30" in message and "2015-08-31-preview" in message


def test_federated_credentials_reject_api_versions_that_predate_them(srv: SandboxServer) -> None:
    path = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/"
            "userAssignedIdentities/id1/federatedIdentityCredentials?api-version=2018-11-30")
    r = raw(srv, "GET", path)
    assert r.status == 400 and r.body["error"]["code"] == "InvalidApiVersionParameter"


def test_unknown_route_is_a_loud_error_naming_the_path(srv: SandboxServer) -> None:
    r = raw(srv, "GET", f"/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts?api-version=2023-01-01")
    assert r.status == 400
    assert r.body["error"]["code"] == "NotImplementedInSandbox"
    assert "/providers/Microsoft.Storage/storageAccounts" in r.body["error"]["message"]
    wrong_method = raw(srv, "POST", MSI_LIST + "?api-version=2024-11-30", body={})
    assert wrong_method.status == 405


def test_subscriptions_get_list_and_not_found(srv: SandboxServer) -> None:
    got = raw(srv, "GET", f"/subscriptions/{SUB}?api-version=2022-12-01")
    assert got.status == 200
    assert got.body["subscriptionId"] == SUB and got.body["tenantId"] == srv.tenant_id
    assert got.body["state"] == "Enabled"
    listed = raw(srv, "GET", "/subscriptions?api-version=2022-12-01")
    assert [s["subscriptionId"] for s in listed.body["value"]] == [SUB]
    missing = raw(srv, "GET", f"/subscriptions/{SUB2}?api-version=2022-12-01")
    assert missing.status == 404
    assert missing.body["error"] == {"code": "SubscriptionNotFound",
                                     "message": f"The subscription '{SUB2}' could not be found."}
    c = clients(srv, sub=SUB2, retry_total=0)
    with pytest.raises(ResourceNotFoundError) as err:
        list(c.msi.user_assigned_identities.list_by_subscription())
    assert err.value.error is not None
    assert err.value.error.code == "SubscriptionNotFound"


def test_resource_groups_through_the_sdk(c: Clients) -> None:
    created = c.res.resource_groups.create_or_update("rg-new", {"location": "eastus", "tags": {"a": "b"}})
    assert created.name == "rg-new" and created.location == "eastus" and created.tags == {"a": "b"}
    assert created.id == f"/subscriptions/{SUB}/resourceGroups/rg-new"
    assert created.properties is not None
    assert created.properties.provisioning_state == "Succeeded"
    again = c.res.resource_groups.create_or_update("RG-NEW", {"location": "eastus"})
    assert again.name == "rg-new"  # names are case-insensitive; the first casing sticks
    assert c.res.resource_groups.get("Rg-New").id == created.id
    assert sorted(cast(str, g.name) for g in c.res.resource_groups.list()) == sorted([RG, "rg-new"])
    assert c.res.resource_groups.check_existence("rg-new") is True
    c.res.resource_groups.begin_delete("rg-new").result()
    assert c.res.resource_groups.check_existence("rg-new") is False
    with pytest.raises(ResourceNotFoundError) as err:
        c.res.resource_groups.get("rg-new")
    assert err.value.error is not None
    assert err.value.error.code == "ResourceGroupNotFound"
    assert err.value.error.message == "Resource group 'rg-new' could not be found."


def test_resource_group_put_status_codes_and_location_conflict(srv: SandboxServer) -> None:
    path = f"/subscriptions/{SUB}/resourcegroups/rg-x?api-version=2021-04-01"
    assert raw(srv, "PUT", path, {"location": "westus"}).status == 201
    assert raw(srv, "PUT", path, {"location": "westus"}).status == 200
    moved = raw(srv, "PUT", path, {"location": "eastus"})
    assert moved.status == 409 and moved.body["error"]["code"] == "InvalidResourceGroupLocation"
    head = raw(srv, "HEAD", path)
    assert head.status == 204 and head.body is None


def test_resource_group_delete_is_202_with_location_and_cascades_identities(srv: SandboxServer,
                                                                           c: Clients) -> None:
    c.res.resource_groups.create_or_update("rg-del", {"location": "westus"})
    c.msi.user_assigned_identities.create_or_update("rg-del", "doomed", {"location": "westus"})
    r = raw(srv, "DELETE", f"/subscriptions/{SUB}/resourcegroups/rg-del?api-version=2025-04-01")
    assert r.status == 202
    assert r.headers["location"].startswith(srv.url + f"/subscriptions/{SUB}/operationresults/")
    assert r.headers["retry-after"] == "1"
    assert [i.name for i in c.msi.user_assigned_identities.list_by_subscription()] == []
    with pytest.raises(ResourceNotFoundError):
        c.res.resource_groups.begin_delete("rg-del").result()


def test_state_persists_in_a_database_file(tmp_path: Path) -> None:
    db = str(tmp_path / "state" / "sandbox.db")
    with SandboxServer(db_path=db, config=quiet_config()).start() as first:
        first.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
        clients(first).msi.user_assigned_identities.create_or_update(RG, "kept", {"location": "westus"})
        token = first.admin_token()
        ca = Path(first.ca_cert_path).read_text()
    with SandboxServer(db_path=db, config=quiet_config()).start() as second:
        assert Path(second.ca_cert_path).read_text() == ca  # certificate cached beside the database
        got = clients(second, token=token).msi.user_assigned_identities.get(RG, "kept")
        assert got.name == "kept"


def test_reset_forgets_state_but_keeps_the_admin(srv: SandboxServer, c: Clients) -> None:
    c.msi.user_assigned_identities.create_or_update(RG, "gone", {"location": "westus"})
    assert srv.request_counts()["UserAssignedIdentities_CreateOrUpdate"] == 1
    srv.reset()
    assert srv.request_counts() == {}
    r = raw(srv, "GET", f"/subscriptions/{SUB}?api-version=2022-12-01")
    assert r.status == 404  # subscriptions are state too; seed again after a reset
    srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
    assert list(c.msi.user_assigned_identities.list_by_resource_group(RG)) == []


def test_seed_is_idempotent(srv: SandboxServer, c: Clients) -> None:
    before = list(c.auth.role_assignments.list_for_subscription())
    srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
    srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
    after = list(c.auth.role_assignments.list_for_subscription())
    assert [a.id for a in after] == [a.id for a in before]
    assert len([a for a in after if a.role_definition_id.endswith("8e3af657-a8ff-443c-a75c-2fe8c4bcb635")]) == 1
    assert [g.name for g in c.res.resource_groups.list()] == [RG]


def test_sandbox_internal_error_is_not_disguised(srv: SandboxServer) -> None:
    r = raw(srv, "PUT", f"/subscriptions/{SUB}/resourcegroups/{RG}?api-version=2021-04-01",
            body=None, headers={"Content-Type": "application/json"})
    # No body at all is a client error ARM reports as such, not a crash.
    assert r.status == 400


def test_sdk_error_format_is_arm(c: Clients) -> None:
    with pytest.raises(HttpResponseError) as err:
        c.msi.user_assigned_identities.create_or_update("no-such-rg", "x", {"location": "westus"})
    assert str(err.value).startswith("(ResourceGroupNotFound) Resource group 'no-such-rg' could not be found.")
