"""What a run opens is closed when it ends: the gateway's SDK clients, the Graph directory's
session and the credential (no network: a transport that records being closed)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport

from reconciler.azure import credentials as credentials_module
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.credentials import TenantCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.azure.graph import GraphTarget
from reconciler.errors import ReconcilerError
from reconciler.target import TOKEN_ENV, TargetOptions, open_target

SUB = "11111111-1111-1111-1111-111111111111"


class ClosingTransport(HttpTransport):  # type: ignore[type-arg]
    """Sends nothing; counts how often a client closed it."""

    def __init__(self) -> None:
        self.closed = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        self.closed += 1

    def __enter__(self) -> ClosingTransport:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def send(self, request: Any, **kwargs: Any) -> Any:
        raise AssertionError("no request is expected")


class ClosingCredential:
    def __init__(self) -> None:
        self.closed = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("t", 0)

    def close(self) -> None:
        self.closed += 1


def test_the_gateway_closes_every_client_it_built() -> None:
    transport = ClosingTransport()
    with AzureGateway(ArmTarget(StaticTokenCredential("t"), transport=transport)) as gateway:
        gateway.msi(SUB)
        gateway.msi("22222222-2222-2222-2222-222222222222")
        gateway.auth(SUB)
        gateway.resources(SUB)
        gateway.subscription_client()
        assert gateway.msi(SUB) is gateway.msi(SUB)  # one client per subscription, reused
        assert transport.closed == 0
    assert transport.closed == 5
    gateway.close()  # twice is harmless: nothing is left to close
    assert transport.closed == 5


def test_a_graph_directory_closes_its_session() -> None:
    transport = ClosingTransport()
    with GraphTarget(StaticTokenCredential("t"), transport=transport).directory():
        assert transport.closed == 0
    assert transport.closed == 1


def test_the_run_closes_the_credential_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[ClosingCredential] = []

    def credential(*args: Any) -> ClosingCredential:
        made.append(ClosingCredential())
        return made[-1]

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setattr(credentials_module, "default_credential", credential)
    with open_target(TargetOptions()) as opened:
        assert opened.gateway.target.credential is made[0] and made[0].closed == 0
    assert made[0].closed == 1
    # Also when opening the target fails after the credential was made.
    with pytest.raises(ReconcilerError, match="https"), \
            open_target(TargetOptions(arm_endpoint="http://127.0.0.1:1")):
        pass
    assert made[1].closed == 1


def test_a_tenant_credential_closes_the_one_it_wraps() -> None:
    inner = ClosingCredential()
    TenantCredential(inner, "tenant-1").close()
    assert inner.closed == 1
