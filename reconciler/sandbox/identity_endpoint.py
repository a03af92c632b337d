"""The managed-identity token endpoints: how `az login --identity` and the SDKs get sandbox tokens.

Two protocols, both answered with tokens the sandbox signs:

* App Service (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, what MSAL and azure-identity pick first):
  `GET /msi/token?api-version=2019-08-01&resource=R[&client_id=|object_id=|principal_id=|mi_res_id=]`
  with `X-IDENTITY-HEADER: <secret>`; answers `{access_token, expires_on, resource, token_type, client_id}`.
* IMDS: `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=|object_id=|
  msi_res_id=]` with `Metadata: true`; answers the IMDS fields (`expires_in`, `expires_on`, ...).

Unlike Azure's (reachable only from inside the VM or app), these endpoints are on a network port,
so both require the per-database secret in `X-IDENTITY-HEADER` (`reconciler sandbox env` prints
it): never anonymous. Without a selector the token is the sandbox admin's; `client_id` selects an
identity (its client id logs in as that identity), `object_id`/`principal_id` any known principal,
`mi_res_id`/`msi_res_id` an identity by ARM id. The token's audience is the requested resource,
which must be ARM's, Graph's, or the sandbox's own URL (its cloud metadata names it for Graph).
"""

from __future__ import annotations

import hmac
import re
import secrets as _secrets
import time
from typing import Any

from .backend import IDENTITY, Backend
from .calls import Reply
from .directory import Principal
from .errors import ArmError
from .store import Store
from .tokens import AUDIENCES, DEFAULT_LIFETIME_SECONDS, GRAPH_AUDIENCES, issue

APP_SERVICE_PATH = "/msi/token"
IMDS_PATH = "/metadata/identity/oauth2/token"
APP_SERVICE_VERSIONS = ("2019-08-01",)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECRET_META = "identity_header"


def secret(store: Store) -> str:
    """The database's identity-header secret, created on first use."""
    with store.transaction():
        value = store.meta(_SECRET_META)
        if value is None:
            value = _secrets.token_urlsafe(32)
            store.set_meta(_SECRET_META, value)
    return value


def is_token_path(path: str) -> bool:
    return path.rstrip("/").lower() in (APP_SERVICE_PATH, IMDS_PATH)


def check_secret(headers: dict[str, str], expected: str) -> None:
    given = headers.get("x-identity-header", "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ArmError(401, "InvalidIdentityHeader", "The X-IDENTITY-HEADER header is missing or wrong: use the "
                       "IDENTITY_HEADER that `reconciler sandbox env` prints for this database.")


def token(backend: Backend, method: str, path: str, query: dict[str, str], headers: dict[str, str],
          key: bytes, base_url: str) -> Reply:
    imds = path.rstrip("/").lower() == IMDS_PATH
    try:
        if method != "GET":
            raise _Refused(405, "invalid_request", f"Only GET is served on '{path}'.")
        if imds and headers.get("metadata", "").lower() != "true":
            raise _Refused(400, "invalid_request", "Required metadata header not specified")
        version = query.get("api-version", "")
        if not version:
            raise _Refused(400, "invalid_request", "Required query variable 'api-version' is missing")
        if (imds and not _DATE.match(version)) or (not imds and version not in APP_SERVICE_VERSIONS):
            raise _Refused(400, "invalid_request", f"Unsupported api-version '{version}'.")
        resource = query.get("resource", "")
        if resource not in _resources(base_url):
            raise _Refused(400, "invalid_resource", f"AADSTS500011: The resource principal named {resource!r} "
                           "was not found in the sandbox tenant. Ask for ARM (https://management.azure.com/) or "
                           "Graph.")
        principal = _select(backend, query)
    except _Refused as refused:
        return refused.reply(imds)
    now = time.time()
    expires_on = int(now + DEFAULT_LIFETIME_SECONDS)
    access_token = issue(principal.object_id, backend.directory.tenant_id, principal.app_id, now=now, key=key,
                         audience=resource)
    body: dict[str, Any] = {"access_token": access_token, "expires_on": str(expires_on), "resource": resource,
                            "token_type": "Bearer", "client_id": principal.app_id or principal.object_id}
    if imds:
        body.update({"refresh_token": "", "expires_in": str(DEFAULT_LIFETIME_SECONDS),
                     "ext_expires_in": str(DEFAULT_LIFETIME_SECONDS), "not_before": str(int(now))})
    return Reply(200, body)


def _resources(base_url: str) -> set[str]:
    root = base_url.rstrip("/")
    return {*AUDIENCES, *GRAPH_AUDIENCES, root, root + "/"}


def _select(backend: Backend, query: dict[str, str]) -> Principal:
    directory = backend.directory
    client_id = query.get("client_id") or query.get("clientid")
    object_id = query.get("object_id") or query.get("principal_id")
    resource_id = query.get("mi_res_id") or query.get("msi_res_id")
    given = [v for v in (client_id, object_id, resource_id) if v]
    if len(given) > 1:
        raise _Refused(400, "invalid_request", "Give only one of client_id, object_id/principal_id, mi_res_id.")
    found: Principal | None
    if client_id:
        found = directory.by_app_id(client_id)
    elif object_id:
        found = directory.get(object_id)
    elif resource_id:
        doc = backend.store.get(IDENTITY, resource_id)
        found = directory.get(doc["properties"]["principalId"]) if doc else None
    else:
        found = directory.get(directory.admin_object_id)
    if found is None:
        raise _Refused(400, "invalid_request", "Identity not found")
    return found


class _Refused(Exception):
    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description

    def reply(self, imds: bool) -> Reply:
        if imds:  # IMDS's OAuth-style error body
            return Reply(self.status, {"error": self.error, "error_description": self.description})
        # App Service's error body (MSAL reads statusCode and message)
        return Reply(self.status, {"statusCode": self.status, "message": self.description,
                                   "correlationId": ""})
