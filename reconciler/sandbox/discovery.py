"""What a client discovers about the cloud before it calls ARM: the metadata document and the tenants.

`GET /metadata/endpoints` is served without authentication, as by ARM: `az cloud register
--endpoint-resource-manager URL` reads it to learn the login endpoint, the token audience and the
Graph endpoint. The sandbox points ARM and Graph at itself and keeps Entra's audiences, so tokens
from its managed-identity endpoint carry an audience ARM accepts. Three shapes, as ARM serves them:
2015-01-01 (the legacy object), 2019-05-01 (an array of clouds) and 2022-09-01 (one cloud object).

`GET /tenants` lists the one tenant of the sandbox (az lists tenants after a login).
"""

from __future__ import annotations

from typing import Any

from .calls import Call, Reply
from .errors import ArmError
from .tokens import AUDIENCES

METADATA_PATH = "/metadata/endpoints"
CLOUD_NAME = "ReconcilerSandbox"
METADATA_VERSIONS = ("2015-01-01", "2019-05-01", "2022-09-01")
LOGIN_ENDPOINT = "https://login.microsoftonline.com"  # nothing logs in there: tokens come from the sandbox
# Entra's ARM audiences, first the one az asks tokens for (its cloud's active_directory_resource_id).
_AUDIENCES = ["https://management.core.windows.net/", "https://management.azure.com/"]
assert set(_AUDIENCES) <= set(AUDIENCES)


def is_metadata(path: str) -> bool:
    return path.rstrip("/").lower() == METADATA_PATH


def _cloud(base_url: str) -> dict[str, Any]:
    root = base_url.rstrip("/") + "/"
    return {
        "name": CLOUD_NAME,
        "portal": root,
        "authentication": {"loginEndpoint": LOGIN_ENDPOINT, "audiences": list(_AUDIENCES), "tenant": "common",
                           "identityProvider": "AAD"},
        "media": root,
        "graphAudience": root,
        "graph": root,
        "batch": root,
        "resourceManager": root,
        "activeDirectoryDataLake": root,
        "sqlManagement": root,
        "microsoftGraphResourceId": root,
        "suffixes": {"storage": "core.windows.net", "keyVaultDns": "vault.azure.net",
                     "sqlServerHostname": "database.windows.net", "acrLoginServer": "azurecr.io"},
    }


def metadata_endpoints(method: str, api_version: str | None, base_url: str) -> Reply:
    if method not in ("GET", "HEAD"):
        raise ArmError(405, "MethodNotAllowed", f"The sandbox serves only GET on '{METADATA_PATH}'.")
    if not api_version:
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    version = api_version.lower()
    if version not in METADATA_VERSIONS:
        raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid. The "
                       f"supported versions are '{','.join(METADATA_VERSIONS)}'.")
    root = base_url.rstrip("/") + "/"
    if version == "2015-01-01":
        return Reply(200, {"galleryEndpoint": root, "graphEndpoint": root, "portalEndpoint": root,
                           "authentication": {"loginEndpoint": LOGIN_ENDPOINT + "/", "audiences": list(_AUDIENCES)}})
    if version == "2019-05-01":
        return Reply(200, [_cloud(base_url)])
    return Reply(200, _cloud(base_url))


def list_tenants(call: Call) -> Reply:
    tenant_id = call.backend.directory.tenant_id
    return Reply(200, {"value": [{
        "id": f"/tenants/{tenant_id}",
        "tenantId": tenant_id,
        "countryCode": "US",
        "displayName": "Reconciler sandbox",
        "domains": ["sandbox.onmicrosoft.com"],
        "tenantCategory": "Home",
        "defaultDomain": "sandbox.onmicrosoft.com",
        "tenantType": "AAD",
    }]})
