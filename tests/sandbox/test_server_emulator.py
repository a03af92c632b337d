"""The sandbox as an emulator for other clients (issue 17 items 1-3): the anonymous cloud metadata
document, /tenants, the managed-identity token endpoints and `reconciler sandbox env`."""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.identity import ManagedIdentityCredential
from azure.mgmt.msi import ManagedServiceIdentityClient
from typer.testing import CliRunner

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.cli import record_serve_info, sandbox_app

from .conftest import RG, SUB, Clients, quiet_config, raw

ARM = "https://management.azure.com/"
GRAPH = "https://graph.microsoft.com/"
MSI_LIST = f"/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2024-11-30"


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def _app_service(srv: SandboxServer, resource: str = ARM, secret: str | None = "ok", **selector: str) -> Any:
    query = f"api-version=2019-08-01&resource={quote(resource, safe='')}"
    query += "".join(f"&{k}={v}" for k, v in selector.items())
    headers = {} if secret is None else {"X-IDENTITY-HEADER": srv.identity_header if secret == "ok" else secret}
    return raw(srv, "GET", f"/msi/token?{query}", token=None, headers=headers)


# --- metadata endpoints -------------------------------------------------------------------------------
def test_metadata_endpoints_are_anonymous_and_point_at_the_sandbox(srv: SandboxServer) -> None:
    new = raw(srv, "GET", "/metadata/endpoints?api-version=2022-09-01", token=None)
    assert new.status == 200
    root = srv.url + "/"
    assert new.body["resourceManager"] == root and new.body["microsoftGraphResourceId"] == root
    assert new.body["authentication"]["audiences"][0] == "https://management.core.windows.net/"
    assert new.body["authentication"]["loginEndpoint"].startswith("https://")
    assert new.body["name"] and isinstance(new.body["suffixes"], dict)
    clouds = raw(srv, "GET", "/metadata/endpoints?api-version=2019-05-01", token=None)
    assert clouds.status == 200 and clouds.body == [new.body]
    legacy = raw(srv, "GET", "/metadata/endpoints?api-version=2015-01-01", token=None)
    assert legacy.status == 200
    assert legacy.body["graphEndpoint"] == root
    assert legacy.body["authentication"]["audiences"] == new.body["authentication"]["audiences"]


def test_metadata_endpoints_check_the_api_version(srv: SandboxServer) -> None:
    assert raw(srv, "GET", "/metadata/endpoints", token=None).body["error"]["code"] == "MissingApiVersionParameter"
    bad = raw(srv, "GET", "/metadata/endpoints?api-version=1999-01-01", token=None)
    assert (bad.status, bad.body["error"]["code"]) == (400, "InvalidApiVersionParameter")


def test_tenants_lists_the_sandbox_tenant_and_needs_a_token(srv: SandboxServer) -> None:
    r = raw(srv, "GET", "/tenants?api-version=2022-12-01")
    assert r.status == 200
    assert [t["tenantId"] for t in r.body["value"]] == [srv.tenant_id]
    assert r.body["value"][0]["id"] == f"/tenants/{srv.tenant_id}"
    assert raw(srv, "GET", "/tenants?api-version=2022-12-01", token=None).status == 401


# --- token endpoints ----------------------------------------------------------------------------------
def test_app_service_endpoint_issues_admin_tokens_that_arm_accepts(srv: SandboxServer) -> None:
    r = _app_service(srv)
    assert r.status == 200
    assert r.body["token_type"] == "Bearer" and r.body["resource"] == ARM
    assert int(r.body["expires_on"]) > 0
    claims = _claims(r.body["access_token"])
    assert (claims["oid"], claims["aud"], claims["tid"]) == (srv.admin_object_id, ARM, srv.tenant_id)
    assert raw(srv, "GET", MSI_LIST, token=r.body["access_token"]).status == 200


@pytest.mark.parametrize("secret", [None, "wrong"])
def test_token_endpoints_are_never_anonymous(srv: SandboxServer, secret: str | None) -> None:
    r = _app_service(srv, secret=secret)
    assert r.status == 401 and "access_token" not in json.dumps(r.body)
    imds = raw(srv, "GET", f"/metadata/identity/oauth2/token?api-version=2018-02-01&resource={quote(ARM)}",
               token=None, headers={"Metadata": "true", **({"X-IDENTITY-HEADER": secret} if secret else {})})
    assert imds.status == 401


def test_an_identitys_client_id_logs_in_as_that_identity(srv: SandboxServer, c: Clients) -> None:
    identity = c.msi.user_assigned_identities.create_or_update(RG, "app", {"location": "westus"})
    by_client = _app_service(srv, client_id=identity.client_id)
    assert by_client.status == 200
    claims = _claims(by_client.body["access_token"])
    assert claims["oid"] == identity.principal_id and claims["appid"] == identity.client_id
    assert by_client.body["client_id"] == identity.client_id
    by_object = _app_service(srv, object_id=identity.principal_id)
    assert _claims(by_object.body["access_token"])["oid"] == identity.principal_id
    by_principal = _app_service(srv, principal_id=identity.principal_id)
    assert _claims(by_principal.body["access_token"])["oid"] == identity.principal_id
    by_res = _app_service(srv, mi_res_id=quote(identity.id, safe=""))
    assert _claims(by_res.body["access_token"])["oid"] == identity.principal_id
    # The identity holds no role yet: ARM answers with its own 403, proving who the caller is.
    denied = raw(srv, "GET", MSI_LIST, token=by_client.body["access_token"])
    assert (denied.status, denied.body["error"]["code"]) == (403, "AuthorizationFailed")


def test_unknown_identity_and_unknown_resource_are_400(srv: SandboxServer) -> None:
    unknown = _app_service(srv, client_id="99999999-9999-9999-9999-999999999999")
    assert unknown.status == 400 and unknown.body["message"] == "Identity not found"
    bad = _app_service(srv, resource="https://vault.azure.net")
    assert bad.status == 400 and "AADSTS500011" in bad.body["message"]


def test_graph_tokens_carry_the_graph_audience_which_arm_refuses(srv: SandboxServer) -> None:
    graph = _app_service(srv, resource=GRAPH)
    assert graph.status == 200 and _claims(graph.body["access_token"])["aud"] == GRAPH
    refused = raw(srv, "GET", MSI_LIST, token=graph.body["access_token"])
    assert (refused.status, refused.body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    own = _app_service(srv, resource=srv.url + "/")  # the metadata's Graph resource is the sandbox itself
    assert own.status == 200 and _claims(own.body["access_token"])["aud"] == srv.url + "/"


def test_imds_form_needs_the_metadata_header_and_answers_imds_fields(srv: SandboxServer) -> None:
    path = f"/metadata/identity/oauth2/token?api-version=2018-02-01&resource={quote(ARM)}"
    secret = {"X-IDENTITY-HEADER": srv.identity_header}
    missing = raw(srv, "GET", path, token=None, headers=secret)
    assert missing.status == 400 and missing.body["error"] == "invalid_request"
    ok = raw(srv, "GET", path, token=None, headers={**secret, "Metadata": "true"})
    assert ok.status == 200
    assert int(ok.body["expires_in"]) > 0 and ok.body["resource"] == ARM
    assert raw(srv, "GET", MSI_LIST, token=ok.body["access_token"]).status == 200


def test_azure_identity_managed_identity_credential_works_against_the_sandbox(
        srv: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real SDK credential, configured only by the environment `sandbox env` prints.
    monkeypatch.setenv("IDENTITY_ENDPOINT", srv.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", srv.identity_header)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", srv.ca_cert_path)
    credential = ManagedIdentityCredential()
    token = credential.get_token("https://management.azure.com/.default")
    assert _claims(token.token)["oid"] == srv.admin_object_id
    msi = ManagedServiceIdentityClient(credential, SUB, base_url=srv.url, connection_verify=srv.ca_cert_path)
    created = msi.user_assigned_identities.create_or_update(RG, "via-mi", {"location": "westus"})
    assert created.name == "via-mi"


# --- sandbox env --------------------------------------------------------------------------------------
def _exports(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            found[name] = shlex.split(value)[0]
    return found


def test_env_prints_what_az_needs_for_the_running_sandbox(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with SandboxServer(db_path=db, config=quiet_config()).start() as srv:
        info = record_serve_info(db, srv)
        assert oct(info.stat().st_mode & 0o777) == "0o600"
        out = CliRunner().invoke(sandbox_app, ["env", "--db", db])
        assert out.exit_code == 0, out.output
        exported = _exports(out.output)
        assert exported["IDENTITY_ENDPOINT"] == srv.identity_endpoint
        assert exported["IDENTITY_HEADER"] == srv.identity_header
        assert Path(exported["REQUESTS_CA_BUNDLE"]).read_text() == Path(srv.ca_cert_path).read_text()
        config_dir = Path(exported["AZURE_CONFIG_DIR"])
        assert config_dir.is_dir() and oct(config_dir.stat().st_mode & 0o777) == "0o700"
        assert f"--endpoint-resource-manager {srv.url}/" in out.output
        assert "az cloud set --name ReconcilerSandbox" in out.output
        assert "az login --identity" in out.output
        pwsh = CliRunner().invoke(sandbox_app, ["env", "--db", db, "--shell", "pwsh"])
        assert pwsh.exit_code == 0
        assert f"$env:IDENTITY_HEADER = '{srv.identity_header}'" in pwsh.output


def test_env_without_a_running_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    out = CliRunner().invoke(sandbox_app, ["env", "--db", str(tmp_path / "none.db")])
    assert out.exit_code == 1
    assert "reconciler sandbox serve --db" in out.output
