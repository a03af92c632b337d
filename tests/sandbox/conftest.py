"""Sandbox test fixtures: a fresh sandbox per test and the real Azure SDK clients pointed at it."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from reconciler.sandbox import SandboxConfig, SandboxServer

SUB = "00000000-0000-0000-0000-00000000aaaa"
SUB2 = "00000000-0000-0000-0000-00000000bbbb"
RG = "rg-one"
USER = "11111111-1111-1111-1111-111111111111"
GROUP = "22222222-2222-2222-2222-222222222222"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"


class StaticCredential:
    """What azure-core needs from a credential: get_token returning an AccessToken."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class Clients:
    msi: ManagedServiceIdentityClient
    auth: AuthorizationManagementClient
    res: ResourceManagementClient


def clients(srv: SandboxServer, token: str | None = None, sub: str = SUB, **kw: Any) -> Clients:
    cred = StaticCredential(token or srv.admin_token())
    common: dict[str, Any] = {"base_url": srv.url, "connection_verify": srv.ca_cert_path, **kw}
    return Clients(
        ManagedServiceIdentityClient(cred, sub, **common),
        AuthorizationManagementClient(cred, sub, **common),
        ResourceManagementClient(cred, sub, **common),
    )


def quiet_config(**changes: Any) -> SandboxConfig:
    """Defaults, but with no FIC write window and no FIC API limits (one write per identity every 4 s)
    so ordinary tests do not wait; the tests of those limits turn them back on."""
    return SandboxConfig(fic_write_window_seconds=0.0, fic_throttling=False).replace(**changes)


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with SandboxServer(config=quiet_config()).start() as server:
        server.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")],
                    principals=[(USER, "User", "alice"), (GROUP, "Group", "team")])
        yield server


@pytest.fixture
def c(srv: SandboxServer) -> Clients:
    return clients(srv, retry_total=0)


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: Any


def raw(srv: SandboxServer, method: str, path: str, body: Any = None, token: str | None = "admin",
        headers: dict[str, str] | None = None) -> Raw:
    """One HTTPS request with urllib, trusting only the sandbox CA."""
    ctx = ssl.create_default_context(cafile=srv.ca_cert_path)
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token == "admin":
        token = srv.admin_token()
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            payload = resp.read()
            status, hdrs = resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        payload = err.read()
        status, hdrs = err.code, dict(err.headers.items())
    return Raw(status, {k.lower(): v for k, v in hdrs.items()}, json.loads(payload) if payload else None)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
