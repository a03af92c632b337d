"""A gateway's SDK clients (one per subscription and API) share one pool of HTTPS connections:
a read of several subscriptions over real TLS opens one connection, not one per client."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import gateway_for

OTHER = "22222222-2222-2222-2222-222222222222"
THIRD = "33333333-3333-3333-3333-333333333333"


@pytest.mark.https
def test_one_connection_serves_every_client_of_a_gateway(sandbox: SandboxServer) -> None:
    sandbox.seed(subscriptions=[OTHER, THIRD], resource_groups=[(OTHER, "rg-a", "westeurope")], principals=[])
    accepted: list[Any] = []
    lock = threading.Lock()
    httpd = sandbox._httpd
    assert httpd is not None
    serve = httpd.process_request

    def counted(request: Any, address: Any) -> None:
        with lock:
            accepted.append(address)
        serve(request, address)

    httpd.process_request = counted  # type: ignore[method-assign, assignment]
    try:
        with gateway_for(sandbox) as gateway:
            for sub in (OTHER, THIRD):  # 7 SDK clients: identities, grants, groups (per subscription), regions
                gateway.list_identities(sub)
                gateway.list_role_assignments(sub)
                assert gateway.list_resource_groups(sub) == ({(OTHER, "rg-a")} if sub == OTHER else set())
                assert "westeurope" in gateway.list_locations(sub)
    finally:
        httpd.process_request = serve  # type: ignore[method-assign]
    assert len(accepted) == 1, f"{len(accepted)} connections for 8 sequential reads"
