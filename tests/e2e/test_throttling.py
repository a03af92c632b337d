"""Throttling and transient faults, end to end: the real SDK clients an ArmTarget builds, over HTTPS,
against a sandbox with small buckets and injected faults.

Counts are asserted (requests sent, 429s seen, retries), never durations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity, IdentityUpdate

from reconciler.azure.budget import BucketLimit, BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.retry import Backoff
from reconciler.sandbox import SandboxConfig, SandboxServer

SUB = "22222222-2222-2222-2222-222222222222"
RG = "rg-throttle"
CREATE = "UserAssignedIdentities_CreateOrUpdate"

# Small enough that a burst of a few dozen requests crosses them, large enough to stay quick; the
# FIC API's limits loosened as for every e2e test (support.E2E_CONFIG), the client's budget alike.
SMALL = SandboxConfig(writes_capacity=10, writes_per_second=10.0, identity_creates_per_window=8,
                      identity_create_window_seconds=1.0, fault_retry_after_seconds=0, fic_throttle_scale=40.0)


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    server = SandboxServer(config=SMALL).start()
    try:
        server.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westeurope")])
        yield server
    finally:
        server.stop()


def budget_like(config: SandboxConfig, margin: float = 1.0) -> RateBudget:
    """A client budget with the sandbox's limits (what the defaults are to real ARM)."""
    return RateBudget(BudgetConfig(
        reads=BucketLimit(config.reads_capacity, config.reads_per_second),
        writes=BucketLimit(config.writes_capacity, config.writes_per_second),
        deletes=BucketLimit(config.deletes_capacity, config.deletes_per_second),
        identity_creates_per_window=config.identity_creates_per_window,
        identity_create_window_seconds=config.identity_create_window_seconds,
        window_margin=margin,
        fic_scale=config.fic_throttle_scale,
    ))


def target_for(server: SandboxServer, token: str | None = None, **kwargs: Any) -> ArmTarget:
    kwargs.setdefault("budget", budget_like(server.config))
    kwargs.setdefault("retry_backoff", Backoff(base=0.05, cap=0.4))
    return ArmTarget(StaticTokenCredential(token or server.admin_token()), server.url, server.ca_cert_path, **kwargs)


def burst_create(target: ArmTarget, names: list[str], workers: int = 8) -> list[Any]:
    def create(name: str) -> Any:
        return target.msi(SUB).user_assigned_identities.create_or_update(RG, name, Identity(location="westeurope"))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(create, names))


def identity_names(server: SandboxServer, target: ArmTarget) -> set[str]:
    return {i.name for i in target.msi(SUB).user_assigned_identities.list_by_resource_group(RG)}


def test_a_burst_of_identity_creates_waits_instead_of_being_throttled(srv: SandboxServer) -> None:
    target = target_for(srv)
    names = [f"burst-{i:02d}" for i in range(24)]  # 3 creation windows' worth, 2.4 write buckets' worth
    created = burst_create(target, names)
    assert sorted(i.name for i in created) == names
    assert identity_names(srv, target) == set(names)
    stats = target.stats()
    assert stats.budget.throttled <= 2
    assert stats.retries.get("429", 0) <= 2
    assert stats.gave_up == 0
    assert stats.budget.waits >= 8  # the budget, not ARM, held the burst back
    assert srv.request_counts().get("throttled", 0) <= 2
    assert target.counter.counts["PUT userAssignedIdentities"] == 24 + stats.retries.get("429", 0)


def test_without_a_budget_the_same_burst_collects_429s(srv: SandboxServer) -> None:
    """The control for the test above: the sandbox does throttle this burst."""
    target = target_for(srv, budget=None)
    names = [f"burst-{i:02d}" for i in range(24)]
    assert len(burst_create(target, names)) == 24  # the retry policy alone still gets there
    stats = target.stats()
    assert stats.retries.get("429", 0) > 2
    assert stats.gave_up == 0


def test_remaining_headers_teach_a_budget_what_another_client_spent(srv: SandboxServer) -> None:
    # A slow refill, so ARM's bucket stays low however slowly this machine runs the requests.
    srv.configure(writes_per_second=2.0)
    other, ours = target_for(srv), target_for(srv)  # same principal, separate budgets
    ours.msi(SUB).user_assigned_identities.create_or_update(RG, "shared", Identity(location="westeurope"))
    ops = other.msi(SUB).user_assigned_identities
    for i in range(7):
        ops.update(RG, "shared", IdentityUpdate(tags={"round": str(i)}))
    mine = ours.msi(SUB).user_assigned_identities
    for i in range(5):  # ours believes it has 9 writes left; ARM has about 2
        mine.update(RG, "shared", IdentityUpdate(tags={"mine": str(i)}))
    stats = ours.stats()
    assert stats.budget.corrections >= 1
    assert stats.budget.throttled <= 1
    assert stats.gave_up == 0


def test_injected_503s_and_dropped_connections_are_retried(srv: SandboxServer) -> None:
    srv.inject_fault("503", CREATE, 2)
    srv.inject_fault("drop", CREATE, 2)
    target = target_for(srv)
    created = target.msi(SUB).user_assigned_identities.create_or_update(RG, "flaky", Identity(location="westeurope"))
    assert created.name == "flaky"
    assert srv.request_counts()["faults"] == 4
    assert target.counter.counts["PUT userAssignedIdentities"] == 5
    assert target.stats().retries == {"503": 2, "ServiceResponseError": 2}


def test_injected_500s_on_reads_are_retried(srv: SandboxServer) -> None:
    target = target_for(srv)
    target.msi(SUB).user_assigned_identities.create_or_update(RG, "readme", Identity(location="westeurope"))
    srv.inject_fault("500", "UserAssignedIdentities_Get", 3)
    assert target.msi(SUB).user_assigned_identities.get(RG, "readme").name == "readme"
    assert target.counter.counts["GET userAssignedIdentities"] == 4
    assert target.stats().retries == {"500": 3}


def test_a_read_timeout_is_retried(srv: SandboxServer) -> None:
    srv.configure(slow_seconds=1.0)
    target = target_for(srv, read_timeout=0.3)
    target.msi(SUB).user_assigned_identities.create_or_update(RG, "slowpoke", Identity(location="westeurope"))
    srv.inject_fault("slow", "UserAssignedIdentities_Get", 1)
    assert target.msi(SUB).user_assigned_identities.get(RG, "slowpoke").name == "slowpoke"
    assert target.counter.counts["GET userAssignedIdentities"] == 2
    assert target.stats().retries == {"ServiceResponseTimeoutError": 1}


def test_random_faults_do_not_fail_a_run(srv: SandboxServer) -> None:
    srv.configure(fault_rate=0.3, fault_seed=7, fault_kinds=("500", "503", "drop"))
    target = target_for(srv)
    names = [f"soak-{i:02d}" for i in range(12)]
    burst_create(target, names, workers=4)
    ops = target.msi(SUB).federated_identity_credentials
    for name in names[:4]:
        ops.create_or_update(RG, name, "github", FederatedIdentityCredential(
            issuer="https://token.actions.githubusercontent.com", subject=f"repo:o/{name}:ref:refs/heads/main",
            audiences=["api://AzureADTokenExchange"]))
    srv.configure(fault_rate=0.0)
    assert identity_names(srv, target) >= set(names)
    assert srv.request_counts()["faults"] >= 1
    assert target.stats().gave_up == 0


def test_a_400_is_sent_once(srv: SandboxServer) -> None:
    target = target_for(srv)
    with pytest.raises(HttpResponseError) as info:
        target.msi(SUB).user_assigned_identities.create_or_update(RG, "x", Identity(location="westeurope"))
    assert (info.value.status_code, info.value.error.code if info.value.error else None) == (400, "InvalidResourceName")
    assert sum(target.counter.counts.values()) == 1
    assert srv.request_counts()[CREATE] == 1
    assert target.stats().retries == {}


def test_a_403_is_sent_once(srv: SandboxServer) -> None:
    nobody = str(uuid.uuid4())
    srv.add_principal(nobody, "ServicePrincipal", "no-roles")
    target = target_for(srv, token=srv.token_for(nobody))
    with pytest.raises(HttpResponseError) as info:
        target.msi(SUB).user_assigned_identities.create_or_update(RG, "denied", Identity(location="westeurope"))
    assert info.value.status_code == 403
    assert sum(target.counter.counts.values()) == 1
    assert srv.request_counts()[CREATE] == 1
    assert target.stats().retries == {}
