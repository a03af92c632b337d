"""Throttling, latency, fault injection, the control API and concurrent writers."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
from pathlib import Path
from typing import Any, cast

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.rest import HttpResponse

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.throttle import TokenBucket

from .conftest import READER, RG, SUB, USER, clients, quiet_config, raw

LIST = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities" \
       "?api-version=2024-11-30"


def test_token_bucket_refills_and_blocks_until_retry_after() -> None:
    bucket = TokenBucket(capacity=2, per_second=0.5, tokens=2, updated=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == 2  # needs 2 s for one token
    assert bucket.take(1.9) == 1  # still inside the advertised wait: refused again
    assert bucket.take(2.0) == 0


def test_read_bucket_empties_to_429_with_retry_after(srv: SandboxServer) -> None:
    srv.configure(reads_capacity=3, reads_per_second=0.5)
    remaining = [raw(srv, "GET", LIST).headers["x-ms-ratelimit-remaining-subscription-reads"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    throttled = raw(srv, "GET", LIST)
    assert throttled.status == 429
    assert throttled.body["error"]["code"] == "TooManyRequests"
    assert throttled.headers["retry-after"] == "2"
    again = raw(srv, "GET", LIST)  # sent before Retry-After elapsed
    assert again.status == 429 and int(again.headers["retry-after"]) >= 1
    # Writes have their own bucket.
    put = raw(srv, "PUT", LIST.replace("?", "/w1w?"), {"location": "westus"})
    assert put.status == 201 and "x-ms-ratelimit-remaining-subscription-writes" in put.headers
    assert srv.request_counts()["throttled"] == 2


def test_buckets_are_per_principal(srv: SandboxServer) -> None:
    srv.configure(reads_capacity=1, reads_per_second=0.01)
    assert raw(srv, "GET", LIST).status == 200
    assert raw(srv, "GET", LIST).status == 429
    other = raw(srv, "GET", LIST, token=srv.token_for(USER))
    assert other.status == 403  # throttling passed; the user simply has no role


def test_sdk_honours_retry_after_transparently(srv: SandboxServer) -> None:
    srv.configure(reads_capacity=1, reads_per_second=5)
    c = clients(srv)  # default azure-core retry policy
    assert list(c.msi.user_assigned_identities.list_by_resource_group(RG)) == []
    started = time.monotonic()
    assert list(c.msi.user_assigned_identities.list_by_resource_group(RG)) == []
    assert time.monotonic() - started >= 1.0  # it waited for Retry-After, then succeeded
    assert srv.request_counts()["throttled"] == 1


def test_sdk_without_retries_sees_429(srv: SandboxServer) -> None:
    srv.configure(deletes_capacity=1, deletes_per_second=0.01)
    c = clients(srv, retry_total=0)
    c.msi.user_assigned_identities.delete(RG, "none1")
    with pytest.raises(HttpResponseError) as err:
        c.msi.user_assigned_identities.delete(RG, "none2")
    assert err.value.status_code == 429


def test_identity_creation_limit_per_subscription_and_region(srv: SandboxServer) -> None:
    srv.configure(identity_creates_per_window=2, identity_create_window_seconds=600)
    c = clients(srv, retry_total=0)
    for name in ("lim1", "lim2"):
        c.msi.user_assigned_identities.create_or_update(RG, name, {"location": "westus"})
    with pytest.raises(HttpResponseError) as err:
        c.msi.user_assigned_identities.create_or_update(RG, "lim3", {"location": "westus"})
    assert err.value.status_code == 429
    assert int(cast(HttpResponse, err.value.response).headers["Retry-After"]) > 500
    c.msi.user_assigned_identities.create_or_update(RG, "lim1", {"location": "westus", "tags": {"a": "b"}})
    c.msi.user_assigned_identities.create_or_update(RG, "lim4", {"location": "eastus"})


def test_throttling_can_be_switched_off(srv: SandboxServer) -> None:
    srv.configure(throttling=False, reads_capacity=1)
    assert [raw(srv, "GET", LIST).status for _ in range(3)] == [200, 200, 200]


def test_latency_per_operation_kind(srv: SandboxServer) -> None:
    srv.configure(latency_read_ms=300)
    started = time.monotonic()
    assert raw(srv, "GET", LIST).status == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert raw(srv, "DELETE", LIST.replace("?", "/nothing?")).status == 204
    assert time.monotonic() - started < 0.3


def test_scripted_503_then_success(srv: SandboxServer) -> None:
    srv.inject_fault("503", "UserAssignedIdentities_ListByResourceGroup")
    failed = raw(srv, "GET", LIST)
    assert failed.status == 503 and failed.headers["retry-after"] == "1"
    assert failed.body["error"]["code"] == "ServiceUnavailable"
    assert raw(srv, "GET", LIST).status == 200


def test_sdk_retries_through_500_and_dropped_connections(srv: SandboxServer) -> None:
    srv.configure(fault_retry_after_seconds=0)
    srv.inject_fault("500", "UserAssignedIdentities_Get")
    srv.inject_fault("drop", "UserAssignedIdentities_Get")
    c = clients(srv, retry_backoff_factor=0.01)
    c.msi.user_assigned_identities.create_or_update(RG, "flaky", {"location": "westus"})
    assert c.msi.user_assigned_identities.get(RG, "flaky").name == "flaky"
    counts = srv.request_counts()
    assert counts["UserAssignedIdentities_Get"] == 3 and counts["faults"] == 2


def test_dropped_connection_is_seen_by_a_raw_client(srv: SandboxServer) -> None:
    srv.inject_fault("drop")
    with pytest.raises((urllib.error.URLError, http.client.RemoteDisconnected, ConnectionError)):
        raw(srv, "GET", LIST)


def test_slow_fault_delays_the_response(srv: SandboxServer) -> None:
    srv.configure(slow_seconds=0.3)
    srv.inject_fault("slow", "*")
    started = time.monotonic()
    assert raw(srv, "GET", LIST).status == 200
    assert time.monotonic() - started >= 0.3


def _statuses(seed: int) -> list[int]:
    with SandboxServer(config=quiet_config(fault_rate=0.5, fault_seed=seed, fault_kinds=("500", "503"))) as s:
        s.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
        return [raw(s, "GET", LIST).status for _ in range(12)]


def test_random_faults_are_reproducible_from_the_seed() -> None:
    first, second = _statuses(7), _statuses(7)
    assert first == second
    assert {500, 503} & set(first) and 200 in first


def test_control_api(srv: SandboxServer) -> None:
    assert raw(srv, "PATCH", "/_sandbox/config", {"page_size": 7}).body["page_size"] == 7
    assert srv.config.page_size == 7
    assert raw(srv, "GET", "/_sandbox/config").body["page_size"] == 7
    bad = raw(srv, "PATCH", "/_sandbox/config", {"no_such_knob": 1})
    assert bad.status == 400 and "no_such_knob" in bad.body["error"]["message"]
    assert raw(srv, "POST", "/_sandbox/seed", {"subscriptions": ["00000000-0000-0000-0000-00000000dddd"],
                                              "principals": [[READER, "Group", "readers"]]}).status == 200
    assert raw(srv, "GET", "/subscriptions/00000000-0000-0000-0000-00000000dddd?api-version=2022-12-01").status == 200
    token = raw(srv, "GET", "/_sandbox/token?principal=readers").body
    assert token["objectId"] == READER
    assert raw(srv, "POST", "/_sandbox/faults", {"kind": "500", "operation": "Subscriptions_List"}).status == 200
    assert raw(srv, "GET", "/subscriptions?api-version=2022-12-01").status == 500
    counts = raw(srv, "GET", "/_sandbox/requests").body
    assert counts["Subscriptions_List"] == 1 and counts["faults"] == 1
    assert raw(srv, "POST", "/_sandbox/reset").status == 200
    assert raw(srv, "GET", f"/subscriptions/{SUB}?api-version=2022-12-01").status == 404
    assert raw(srv, "GET", "/_sandbox/config", token=srv.token_for(USER)).status == 403
    assert raw(srv, "GET", "/_sandbox/config", token=None).status == 401


def test_parallel_writers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    config = quiet_config(identity_creates_per_window=1000, throttle_scale=10)
    with SandboxServer(db_path=str(tmp_path / "s.db"), config=config).start() as srv:
        srv.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")], principals=[(USER, "User", "u")])
        outcomes: list[Any] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            c = clients(srv, retry_total=0)
            for i in range(8):
                c.msi.user_assigned_identities.create_or_update(RG, f"par-{n}-{i}", {"location": "westus"})
            try:
                c.auth.role_assignments.create(
                    f"/subscriptions/{SUB}", f"d0000000-0000-4000-8000-00000000000{n}",
                    {"role_definition_id": f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
                     "principal_id": USER})
                result: Any = "created"
            except ResourceExistsError as err:
                assert err.error is not None
                result = err.error.code
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        names = [i.name for i in clients(srv).msi.user_assigned_identities.list_by_resource_group(RG)]
        assert sorted(names) == sorted(f"par-{n}-{i}" for n in range(8) for i in range(8))
        assert sorted(outcomes) == ["RoleAssignmentExists"] * 7 + ["created"]
        principals = {i.principal_id for i in clients(srv).msi.user_assigned_identities.list_by_resource_group(RG)}
        assert len(principals) == 64


def test_a_stuck_client_does_not_stall_the_server(srv: SandboxServer) -> None:
    # One connection that never finishes its TLS handshake, one that speaks plain HTTP.
    with socket.create_connection(("127.0.0.1", srv.port)), \
            socket.create_connection(("127.0.0.1", srv.port)) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert raw(srv, "GET", LIST).status == 200
