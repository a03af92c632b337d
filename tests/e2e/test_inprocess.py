"""The in-process transport the e2e tests use (tests/inprocess.py) answers like the HTTPS server:
same bodies, statuses and headers, same dropped connections; and the CLI's `--arm-endpoint` path
picks it up for a registered sandbox only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.msi.models import Identity

from reconciler.azure import transports
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB
from tests.inprocess import serve_in_process

RG = "rg-inprocess"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SandboxServer, list[Any]]]:
    """A sandbox that records every TCP connection it accepts."""
    with SandboxServer(config=E2E_CONFIG).start() as srv:
        srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westeurope")])
        httpd = srv._httpd
        assert httpd is not None
        accepted: list[Any] = []
        finish = httpd.finish_request

        def counting(request: Any, client_address: Any) -> None:
            accepted.append(client_address)
            finish(request, client_address)

        monkeypatch.setattr(httpd, "finish_request", counting)
        yield srv, accepted


def target(srv: SandboxServer) -> ArmTarget:
    return ArmTarget(StaticTokenCredential(srv.admin_token()), srv.url, srv.ca_cert_path, budget=None,
                     retry_total=3, sleeper=lambda _: None)


def observe(srv: SandboxServer, name: str) -> tuple[Any, ...]:
    """What a client sees of a create, a read, a list and a 404."""
    msi = target(srv).msi(SUB).user_assigned_identities
    made = msi.create_or_update(RG, name, Identity(location="West Europe", tags={"k": "v"}))
    got = msi.get(RG, name)
    listed = sorted(i.name for i in msi.list_by_resource_group(RG))
    with pytest.raises(ResourceNotFoundError) as missing:
        msi.get(RG, "absent")
    return (made.location, made.tags, made.id.replace(name, "NAME"), got.principal_id == made.principal_id,
            len(listed), missing.value.status_code, missing.value.error.code if missing.value.error else None)


def test_in_process_answers_like_https_without_a_connection(server: tuple[SandboxServer, list[Any]]) -> None:
    srv, accepted = server
    over_https = observe(srv, "over-https")
    assert accepted, "the first round went over TCP"
    accepted.clear()
    with serve_in_process(srv):
        in_process = observe(srv, "in-process")
    assert accepted == []
    assert in_process[:4] == over_https[:4] and in_process[5:] == over_https[5:] == (404, "ResourceNotFound")
    assert (over_https[4], in_process[4]) == (1, 2)


@pytest.mark.parametrize("in_process", [False, True])
def test_a_dropped_connection_is_retried_the_same_way(server: tuple[SandboxServer, list[Any]],
                                                      in_process: bool) -> None:
    srv, _ = server
    srv.inject_fault("drop", "UserAssignedIdentities_Get", count=2)
    arm = target(srv)
    if in_process:
        with serve_in_process(srv):
            arm = target(srv)
            msi = arm.msi(SUB).user_assigned_identities
            with pytest.raises(ResourceNotFoundError):
                msi.get(RG, "absent")
    else:
        with pytest.raises(ResourceNotFoundError):
            arm.msi(SUB).user_assigned_identities.get(RG, "absent")
    assert arm.stats().retries == {"ServiceResponseError": 2}


def test_only_a_registered_endpoint_is_served_in_process(server: tuple[SandboxServer, list[Any]]) -> None:
    srv, _ = server
    assert transports.for_endpoint(srv.url) is None
    assert transports.fic_scale(srv.url) == 1.0
    with serve_in_process(srv):
        assert transports.for_endpoint(srv.url + "/") is not None
        assert transports.fic_scale(srv.url) == E2E_CONFIG.fic_throttle_scale
        assert transports.for_endpoint("https://management.azure.com") is None
    assert transports.for_endpoint(srv.url) is None
