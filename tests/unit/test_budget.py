"""The client-side rate budget and the retry policy, on a fake clock and a scripted transport.

No test sleeps: FakeClock.sleep advances the clock, and every wait is asserted as a number.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.transport import HttpTransport, RequestsTransportResponse
from azure.mgmt.msi.models import Identity

from reconciler.azure.budget import (
    DELETES,
    FIC_LIST,
    FIC_WRITE,
    READS,
    TENANT,
    WRITES,
    BucketLimit,
    BudgetConfig,
    BudgetPolicy,
    BudgetTimeout,
    FicCost,
    RateBudget,
    RequestCost,
    request_cost,
)
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.retry import (
    Backoff,
    DeadlineExceededError,
    parse_retry_after,
    transient_error,
    transient_status,
)

SUB = "00000000-0000-0000-0000-00000000000a"
OTHER = "00000000-0000-0000-0000-00000000000b"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def small(reads: float = 5, writes: float = 4, deletes: float = 3, creates: int = 3,
          window: float = 10.0, margin: float = 0.5) -> BudgetConfig:
    return BudgetConfig(reads=BucketLimit(reads, 5.0), writes=BucketLimit(writes, 2.0),
                        deletes=BucketLimit(deletes, 1.0), identity_creates_per_window=creates,
                        identity_create_window_seconds=window, window_margin=margin)


def budget_on(clock: FakeClock, config: BudgetConfig | None = None) -> RateBudget:
    return RateBudget(config or small(), clock=clock, sleeper=clock.sleep)


# -- token buckets -------------------------------------------------------------------------


def test_defaults_are_arms_limits() -> None:
    c = BudgetConfig()
    assert (c.reads, c.writes, c.deletes) == (BucketLimit(250, 25.0), BucketLimit(200, 10.0), BucketLimit(200, 10.0))
    assert (c.identity_creates_per_window, c.identity_create_window_seconds) == (80, 20.0)


def test_a_full_bucket_lets_capacity_through_then_waits_one_refill(clock: FakeClock) -> None:
    budget = budget_on(clock)
    for _ in range(4):
        assert budget.acquire(SUB, WRITES) == 0.0
    assert budget.acquire(SUB, WRITES) == pytest.approx(0.5)  # 1 token at 2/s
    assert clock.sleeps == [pytest.approx(0.5)]
    stats = budget.stats()
    assert (stats.acquired, stats.waits) == (5, 1)
    assert stats.wait_seconds == pytest.approx(0.5)


def test_refill_is_proportional_to_time_and_capped_at_capacity(clock: FakeClock) -> None:
    budget = budget_on(clock)
    for _ in range(4):
        budget.acquire(SUB, WRITES)
    clock.now += 1.0  # 2 tokens back
    assert [budget.try_acquire(SUB, WRITES) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]
    clock.now += 3600.0  # far more than capacity's worth
    granted = 0
    while budget.try_acquire(SUB, WRITES) == 0.0:
        granted += 1
    assert granted == 4


def test_buckets_are_per_subscription_and_kind(clock: FakeClock) -> None:
    budget = budget_on(clock)
    for _ in range(4):
        budget.acquire(SUB, WRITES)
    assert budget.try_acquire(SUB, WRITES) > 0
    assert budget.try_acquire(SUB.upper(), WRITES) > 0  # subscription ids are case-insensitive
    assert budget.try_acquire(OTHER, WRITES) == 0.0
    assert budget.try_acquire(SUB, READS) == 0.0
    assert budget.try_acquire(SUB, DELETES) == 0.0
    assert budget.try_acquire(TENANT, WRITES) == 0.0


def test_concurrent_acquirers_never_get_more_than_the_bucket_holds(clock: FakeClock) -> None:
    budget = budget_on(clock, small(reads=250))  # the clock stands still: no refill
    granted: list[int] = []

    def worker() -> None:
        granted.append(sum(1 for _ in range(100) if budget.try_acquire(SUB, READS) == 0.0))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 250
    assert budget.stats().acquired == 250


# -- correction from ARM's headers ----------------------------------------------------------


def test_remaining_header_lowers_our_count_but_never_raises_it(clock: FakeClock) -> None:
    budget = budget_on(clock)
    assert budget.observe_remaining(SUB, WRITES, 1) is True
    assert budget.try_acquire(SUB, WRITES) == 0.0
    assert budget.try_acquire(SUB, WRITES) == pytest.approx(0.5)
    assert budget.observe_remaining(SUB, WRITES, 200) is False
    assert budget.try_acquire(SUB, WRITES) == pytest.approx(0.5)
    assert budget.stats().corrections == 1


def test_policy_reads_every_remaining_header_of_the_requests_scope(clock: FakeClock) -> None:
    budget = budget_on(clock)
    policy = BudgetPolicy(budget)
    policy.observe(RequestCost(SUB, READS), 200, {"x-ms-ratelimit-remaining-subscription-reads": "0",
                                                  "x-ms-ratelimit-remaining-subscription-deletes": "2",
                                                  "x-ms-ratelimit-remaining-tenant-writes": "0"})
    assert budget.try_acquire(SUB, READS) > 0
    assert budget.try_acquire(SUB, WRITES) == 0.0  # a tenant header says nothing about a subscription
    assert [budget.try_acquire(SUB, DELETES) for _ in range(3)][2] > 0
    policy.observe(RequestCost(TENANT, WRITES), 200, {"x-ms-ratelimit-remaining-tenant-writes": "0"})
    assert budget.try_acquire(TENANT, WRITES) > 0


def test_the_global_subscription_header_bounds_us_too(clock: FakeClock) -> None:
    budget = budget_on(clock)
    BudgetPolicy(budget).observe(RequestCost(SUB, WRITES), 200, {
        "x-ms-ratelimit-remaining-subscription-writes": "3",
        "x-ms-ratelimit-remaining-subscription-global-writes": "0"})
    assert budget.try_acquire(SUB, WRITES) > 0


# -- 429 and Retry-After ----------------------------------------------------------------------


def test_429_pauses_the_whole_bucket_until_retry_after(clock: FakeClock) -> None:
    budget = budget_on(clock)
    budget.throttled(SUB, WRITES, 7.0)
    assert budget.try_acquire(SUB, WRITES) == pytest.approx(7.0)  # refilled by then, but paused
    assert budget.acquire(SUB, WRITES) == pytest.approx(7.0)
    assert budget.try_acquire(SUB, READS) == 0.0  # other kinds are not held back
    stats = budget.stats()
    assert (stats.throttled, stats.pauses, stats.waits) == (1, 1, 1)


def test_429_without_retry_after_empties_the_bucket(clock: FakeClock) -> None:
    budget = budget_on(clock)
    budget.throttled(SUB, WRITES, None)
    assert budget.try_acquire(SUB, WRITES) == pytest.approx(0.5)
    assert budget.stats().pauses == 0


def test_a_pause_holds_every_worker_and_releases_them_one_token_at_a_time(clock: FakeClock) -> None:
    budget = budget_on(clock, small(writes=1))
    budget.throttled(SUB, WRITES, 3.0)
    waits = [budget.acquire(SUB, WRITES) for _ in range(3)]
    # After the pause the bucket holds its capacity (1): the 2nd and 3rd wait one refill (0.5 s) each.
    assert waits == [pytest.approx(3.0), pytest.approx(0.5), pytest.approx(0.5)]


def test_acquire_gives_up_at_once_when_the_wait_would_pass_max_wait(clock: FakeClock) -> None:
    budget = budget_on(clock)
    budget.throttled(SUB, WRITES, 60.0)
    with pytest.raises(BudgetTimeout) as info:
        budget.acquire(SUB, WRITES, max_wait=10.0)
    assert info.value.wait == pytest.approx(60.0)
    assert clock.sleeps == []
    assert budget.stats().timeouts == 1
    assert budget.acquire(SUB, WRITES, max_wait=61.0) == pytest.approx(60.0)


# -- identity creation window ---------------------------------------------------------------


def test_identity_creates_are_limited_per_subscription_and_region_in_a_sliding_window(clock: FakeClock) -> None:
    budget = budget_on(clock, small(writes=100, creates=3, window=10.0, margin=0.5))
    for _ in range(3):
        assert budget.acquire(SUB, WRITES, identity_region="eastus") == 0.0
    assert budget.try_acquire(SUB, WRITES, identity_region="East US") == pytest.approx(10.5)
    assert budget.try_acquire(SUB, WRITES, identity_region="westus") == 0.0
    assert budget.try_acquire(OTHER, WRITES, identity_region="eastus") == 0.0
    assert budget.try_acquire(SUB, WRITES) == 0.0  # other writes are not held back by the window
    assert budget.acquire(SUB, WRITES, identity_region="eastus") == pytest.approx(10.5)
    # Sliding, not a bucket: the three slots taken at t0 all freed at t0+10.5, but one was used again.
    assert budget.try_acquire(SUB, WRITES, identity_region="eastus") == 0.0
    assert budget.try_acquire(SUB, WRITES, identity_region="eastus") == 0.0
    assert budget.try_acquire(SUB, WRITES, identity_region="eastus") == pytest.approx(10.5)


def test_an_identity_create_needs_a_writes_token_too(clock: FakeClock) -> None:
    budget = budget_on(clock, small(writes=1, creates=80))
    assert budget.acquire(SUB, WRITES, identity_region="eastus") == 0.0
    assert budget.try_acquire(SUB, WRITES, identity_region="eastus") == pytest.approx(0.5)


def test_identity_create_429_with_writes_left_pauses_only_the_window(clock: FakeClock) -> None:
    budget = budget_on(clock, small(writes=100))
    cost = RequestCost(SUB, WRITES, "eastus")
    BudgetPolicy(budget).observe(cost, 429, {"Retry-After": "4",
                                             "x-ms-ratelimit-remaining-subscription-writes": "50"})
    assert budget.try_acquire(SUB, WRITES) == 0.0
    assert budget.try_acquire(SUB, WRITES, identity_region="eastus") == pytest.approx(4.0)
    assert budget.try_acquire(SUB, WRITES, identity_region="westus") == 0.0


def test_identity_create_429_without_writes_left_pauses_bucket_and_window(clock: FakeClock) -> None:
    budget = budget_on(clock, small(writes=100))
    BudgetPolicy(budget).observe(RequestCost(SUB, WRITES, "eastus"), 429, {"Retry-After": "4"})
    assert budget.try_acquire(SUB, WRITES) == pytest.approx(4.0)
    assert budget.stats().throttled == 1


# -- the federated identity credential API's own limits ------------------------------------

FIC_IDENTITY = f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/x"


def fic_on(identity: str) -> FicCost:
    return FicCost(FIC_WRITE, FIC_IDENTITY[:-1] + identity)


def test_fic_writes_are_paced_one_per_identity_every_four_seconds(clock: FakeClock) -> None:
    """Microsoft's FIC page: create-update 0.25/s per identity, 2/s per subscription. The client keeps
    a margin: 4 s + 0.5 s per identity, 90% of the subscription's rate."""
    budget = budget_on(clock, BudgetConfig())
    assert budget.acquire(SUB, WRITES, fic=fic_on("a")) == 0.0
    assert budget.try_acquire(SUB, WRITES, fic=fic_on("a")) == pytest.approx(4.5)
    assert budget.acquire(SUB, WRITES, fic=fic_on("b")) == 0.0
    # The subscription's two-token bucket is empty now, whichever identity comes next.
    assert budget.try_acquire(SUB, WRITES, fic=fic_on("c")) == pytest.approx(1 / 1.8)
    assert budget.try_acquire(OTHER, WRITES, fic=FicCost(FIC_WRITE, "/subscriptions/o/x")) == 0.0
    # Ordinary writes do not pay for FICs.
    assert budget.try_acquire(SUB, WRITES) == 0.0
    assert budget.acquire(SUB, WRITES, fic=fic_on("a")) == pytest.approx(4.5)


def test_a_fic_429_pauses_the_fic_buckets_not_the_subscription_writes(clock: FakeClock) -> None:
    budget = budget_on(clock, BudgetConfig())
    cost = RequestCost(SUB, WRITES, None, fic_on("a"))
    BudgetPolicy(budget).observe(cost, 429, {"Retry-After": "6"})
    assert budget.try_acquire(SUB, WRITES) == 0.0
    assert budget.try_acquire(SUB, WRITES, fic=fic_on("a")) == pytest.approx(6.0)
    assert budget.stats().throttled == 1


def test_fic_lists_are_paced_per_subscription_and_tenant_and_wait_out_a_fic_429(clock: FakeClock) -> None:
    budget = budget_on(clock, BudgetConfig())
    # A plan lists each identity once: many identities of one subscription meet its 5 lists/s.
    waits = [budget.try_acquire(SUB, READS, fic=FicCost(FIC_LIST, f"{FIC_IDENTITY}-{n}")) for n in range(12)]
    assert waits[:5] == [0.0] * 5 and all(w > 0 for w in waits[5:])
    clock.now += 60
    listing = FicCost(FIC_LIST, FIC_IDENTITY)
    # The same identity again at once is not held back by the client (a new run's single list).
    assert [budget.acquire(SUB, READS, fic=listing) for _ in range(3)] == [0.0, 0.0, 0.0]
    BudgetPolicy(budget).observe(RequestCost(SUB, READS, None, listing), 429, {"Retry-After": "2"})
    assert budget.try_acquire(SUB, READS, fic=listing) == pytest.approx(2.0)
    assert budget.try_acquire(SUB, READS) == 0.0  # other reads of the subscription go on


def test_fic_scale_follows_the_sandbox() -> None:
    tenant, subscription, identity = BudgetConfig(fic_scale=8.0).fic_limits(FIC_WRITE)
    assert (tenant, subscription) == (BucketLimit(80.0, 72.0), BucketLimit(16.0, 16.0 * 0.9))
    assert identity == BucketLimit(2.0, 1.0)  # one per 0.5 s + the 0.5 s margin


# -- what a request costs -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "expected"), [
    ("PUT", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x",
     json.dumps({"location": "East US", "tags": {}}), RequestCost(SUB, WRITES, "eastus")),
    ("PUT", f"/subscriptions/{SUB}/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/x",
     b'{"location": "westus"}', RequestCost(SUB, WRITES, "westus")),
    ("PUT", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"
            "/federatedIdentityCredentials/f", json.dumps({"properties": {}}),
     RequestCost(SUB, WRITES, None, FicCost(FIC_WRITE, FIC_IDENTITY))),
    ("GET", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"
            "/federatedIdentityCredentials", None, RequestCost(SUB, READS, None, FicCost(FIC_LIST, FIC_IDENTITY))),
    ("PUT", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x",
     "not json", RequestCost(SUB, WRITES)),
    ("PATCH", f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x",
     json.dumps({"location": "eastus"}), RequestCost(SUB, WRITES)),
    ("GET", f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments", None, RequestCost(SUB, READS)),
    ("HEAD", f"/subscriptions/{SUB}/resourcegroups/rg", None, RequestCost(SUB, READS)),
    ("DELETE", f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments/a", None,
     RequestCost(SUB, DELETES)),
    ("POST", f"/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/register", None, RequestCost(SUB, WRITES)),
    ("GET", "/providers/Microsoft.Authorization/roleDefinitions", None, RequestCost(TENANT, READS)),
])
def test_request_cost(method: str, path: str, body: Any, expected: RequestCost) -> None:
    assert request_cost(method, f"https://management.azure.com{path}?api-version=2024-11-30", body) == expected


def test_scaled_config() -> None:
    c = BudgetConfig().scaled(0.02)
    assert c.writes == BucketLimit(4.0, 0.2)
    assert c.reads == BucketLimit(5.0, 0.5)
    assert c.identity_creates_per_window == 1


# -- retry rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "status", "retried"), [
    ("GET", 429, True), ("POST", 429, True), ("PUT", 408, True), ("PUT", 500, True), ("DELETE", 502, True),
    ("GET", 503, True), ("GET", 504, True), ("POST", 503, True), ("POST", 500, False), ("GET", 501, False),
    ("PUT", 400, False), ("PUT", 401, False), ("PUT", 403, False), ("GET", 404, False), ("PUT", 409, False),
    ("GET", 200, False), ("PUT", 201, False), ("DELETE", 202, False),
])
def test_transient_status(method: str, status: int, retried: bool) -> None:
    assert transient_status(method, status) is retried


def test_transient_error() -> None:
    assert transient_error("POST", ServiceRequestError("refused"))  # never reached the server
    assert transient_error("PUT", ServiceResponseError("dropped"))
    assert not transient_error("POST", ServiceResponseError("dropped"))  # may have been processed
    assert not transient_error("GET", DeadlineExceededError("no time left"))
    assert not transient_error("GET", ValueError("a bug"))


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "7"}) == 0.25
    assert parse_retry_after({"x-ms-retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=lambda: 1445412480.0) == 10.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=lambda: 1445412490.0) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None
    assert parse_retry_after({}) is None


def test_backoff_doubles_up_to_the_cap_with_equal_jitter() -> None:
    b = Backoff(base=1.0, cap=10.0)
    assert [b.delay(n, 1.0) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [b.delay(n, 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]


# -- the policies in a real SDK client, on a scripted transport --------------------------------


Reply = tuple[int, dict[str, str]] | Exception


class ScriptedTransport(HttpTransport[Any, RequestsTransportResponse]):  # requests: legacy or azure.core.rest
    """Answers each request with the next scripted reply; repeats the last one when the script runs out."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, str]] = []

    def send(self, request: Any, **kwargs: Any) -> RequestsTransportResponse:
        self.sent.append((request.method, request.url))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        status, headers = reply
        raw = requests.Response()
        raw.status_code = status
        raw.headers.update({"Content-Type": "application/json", **headers})
        body: dict[str, Any] = {"id": f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
                                      "Microsoft.ManagedIdentity/userAssignedIdentities/x",
                                "name": "x", "location": "eastus", "properties": {}}
        if status >= 400:
            body = {"error": {"code": "Scripted", "message": f"scripted {status}"}}
        raw._content = json.dumps(body).encode()
        raw.url = request.url
        return RequestsTransportResponse(request, raw)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> ScriptedTransport:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def sleep(self, duration: float) -> None:
        raise AssertionError("the retry policy must use its injected sleeper")


def target(clock: FakeClock, transport: ScriptedTransport, **kwargs: Any) -> ArmTarget:
    kwargs.setdefault("budget", budget_on(clock, BudgetConfig()))
    return ArmTarget(StaticTokenCredential("t"), transport=transport, clock=clock, sleeper=clock.sleep,
                     retry_backoff=Backoff(base=1.0, cap=8.0), **kwargs)


def create(t: ArmTarget) -> Any:
    return t.msi(SUB).user_assigned_identities.create_or_update("rg", "x", Identity(location="eastus"))


def test_transient_faults_are_retried_until_success(clock: FakeClock) -> None:
    transport = ScriptedTransport((503, {"Retry-After": "2"}), ServiceResponseError("dropped"), (500, {}), (200, {}))
    t = target(clock, transport)
    assert create(t).name == "x"
    assert len(transport.sent) == 4
    assert sum(t.counter.counts.values()) == 4  # the counter sees every attempt
    stats = t.stats()
    assert stats.retries == {"503": 1, "ServiceResponseError": 1, "500": 1}
    assert stats.gave_up == 0
    assert 2.0 <= clock.sleeps[0] <= 2.2  # Retry-After, plus at most 10 % jitter
    assert 1.0 <= clock.sleeps[1] <= 2.0 and 2.0 <= clock.sleeps[2] <= 4.0  # backoff of retries 2 and 3


@pytest.mark.parametrize("status", [400, 403, 404, 409])
def test_terminal_4xx_is_sent_once_even_with_retry_after(clock: FakeClock, status: int) -> None:
    transport = ScriptedTransport((status, {"Retry-After": "1"}), (200, {}))
    t = target(clock, transport)
    with pytest.raises(HttpResponseError) as info:
        create(t)
    assert info.value.status_code == status
    assert len(transport.sent) == 1
    assert clock.sleeps == []
    assert t.stats().retries == {}


def test_429_pauses_the_budget_and_the_retry_waits_it_out(clock: FakeClock) -> None:
    transport = ScriptedTransport((429, {"Retry-After": "7", "x-ms-ratelimit-remaining-subscription-writes": "0"}),
                                  (200, {}))
    t = target(clock, transport)
    started = clock.now
    assert create(t).name == "x"
    assert len(transport.sent) == 2
    assert clock.now - started >= 7.0
    stats = t.stats()
    assert (stats.budget.throttled, stats.budget.pauses) == (1, 2)  # writes bucket and the eastus window
    assert stats.retries == {"429": 1}
    assert 7.0 <= stats.retry_sleep_seconds["429"] <= 7.7
    assert stats.throttle_wait_seconds == pytest.approx(stats.budget.wait_seconds + stats.retry_sleep_seconds["429"])
    assert "429s: 1" in stats.summary() and "retries: 1 (429 x1)" in stats.summary()


def test_retries_stop_when_the_next_wait_would_pass_the_total_time(clock: FakeClock) -> None:
    transport = ScriptedTransport((503, {"Retry-After": "50"}))
    t = target(clock, transport, retry_timeout=120.0)
    started = clock.now
    with pytest.raises(HttpResponseError) as info:
        create(t)
    assert info.value.status_code == 503
    assert len(transport.sent) == 3  # t=0, ~50, ~100; one more would end past 120 s
    assert clock.now - started < 120.0
    assert t.stats().gave_up == 1


def test_retries_stop_after_retry_total(clock: FakeClock) -> None:
    transport = ScriptedTransport((500, {}))
    t = target(clock, transport, retry_total=2)
    with pytest.raises(HttpResponseError):
        create(t)
    assert len(transport.sent) == 3


def test_a_dropped_post_is_not_repeated_but_an_unsent_one_is(clock: FakeClock) -> None:
    dropped = ScriptedTransport(ServiceResponseError("dropped"), (200, {}))
    t = target(clock, dropped)
    client = t.msi(SUB)
    from azure.core.rest import HttpRequest

    with pytest.raises(ServiceResponseError):
        client._client.send_request(HttpRequest("POST", f"https://management.azure.com/subscriptions/{SUB}/x"))
    assert len(dropped.sent) == 1
    refused = ScriptedTransport(ServiceRequestError("refused"), (200, {}))
    response = target(clock, refused).msi(SUB)._client.send_request(
        HttpRequest("POST", f"https://management.azure.com/subscriptions/{SUB}/x"))
    assert response.status_code == 200
    assert len(refused.sent) == 2


def test_no_request_is_sent_when_the_budget_wait_exceeds_the_time_left(clock: FakeClock) -> None:
    transport = ScriptedTransport((200, {}))
    budget = budget_on(clock, BudgetConfig())
    budget.throttled(SUB, WRITES, 600.0)
    t = target(clock, transport, budget=budget)
    with pytest.raises(DeadlineExceededError):
        create(t)
    assert transport.sent == []
    assert clock.sleeps == []
    assert t.stats().budget.timeouts == 1


def test_without_a_budget_requests_go_straight_through(clock: FakeClock) -> None:
    transport = ScriptedTransport((200, {}))
    t = target(clock, transport, budget=None)
    for _ in range(3):
        create(t)
    assert len(transport.sent) == 3
    assert t.stats().budget.acquired == 0


def test_clients_of_one_target_share_its_budget(clock: FakeClock) -> None:
    transport = ScriptedTransport((200, {}))
    budget = budget_on(clock, BudgetConfig(writes=BucketLimit(2, 1.0)))
    t = target(clock, transport, budget=budget)
    create(t)
    t.msi(SUB).user_assigned_identities.create_or_update("rg", "y", Identity(location="eastus"))
    assert clock.sleeps == []
    create(t)  # a third client, a third write: waits for a refill
    assert clock.sleeps == [pytest.approx(1.0)]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("unit tests must not open sockets")

    monkeypatch.setattr(requests.Session, "send", refuse)
    yield


def test_shards_share_the_tenant_wide_fic_rates_only() -> None:
    alone = BudgetConfig().fic_limits(FIC_LIST)
    shard = BudgetConfig(tenant_shares=4).fic_limits(FIC_LIST)
    assert shard[0].per_second == pytest.approx(alone[0].per_second / 4)  # 15/s per tenant, split four ways
    assert shard[1:] == alone[1:]  # subscriptions and identities belong to one shard each
    with pytest.raises(ValueError, match="tenant_shares"):
        BudgetConfig(tenant_shares=0)
