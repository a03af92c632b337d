"""RateBudget: a client-side copy of ARM's throttling limits, so a run waits instead of collecting 429s.

ARM throttles per (subscription or tenant, principal, operation kind) with token buckets: reads 250
refilled 25/s, writes 200 refilled 10/s, deletes 200 refilled 10/s; and the managed-identity
resource provider allows 80 identity creations per 20 s per subscription and region. One
RateBudget belongs to one ArmTarget, i.e. one principal, so its buckets are keyed by subscription
(or TENANT for requests outside any subscription) and kind. Every SDK client of the target shares
it, so parallel workers draw from the same buckets.

    acquire()          blocks (injectable clock and sleeper) until a token is free, and takes it;
                       an identity PUT also needs a slot in the (subscription, region) window
    observe_remaining() x-ms-ratelimit-remaining-subscription-{reads,writes,deletes} said fewer
                       tokens remain than we think (other processes, same principal): lower ours
    throttled()        a 429 came back: empty the bucket and pause it until Retry-After has passed,
                       so every worker waits, not just the one that was refused

The federated identity credential API has limits of its own, per tenant, per subscription and per
identity, for each of create-update, get, list and delete (Microsoft's "workload identity federation
considerations" page: writes 10/s per tenant, 2/s per subscription, 0.25/s per identity, i.e. one
write per identity every 4 s). A FIC write or delete also takes a token from each of those three
buckets, which hold one second's worth (at least one request): the page gives rates, not burst sizes.
FIC gets and lists take a token from the tenant and subscription buckets only: a plan lists every
identity's credentials once, so the per-identity limit (one list per 4 s) is met by construction,
while the subscription's 5 lists/s and the tenant's 15/s are what a plan of hundreds of identities
runs into (an unpaced plan of 1,000 identities in 20 subscriptions drew 467 429s). A 429 on any FIC
request pauses that operation's FIC buckets until Retry-After, not the subscription's ARM bucket,
and FIC requests of that operation wait for the pause.

The identity-creation window is a sliding log of send times, as ARM's limit is "N in any window"
(a token bucket would let 2N through in one window). A slot is held `window_margin` seconds
longer than the window, because we stamp the send time and ARM stamps the (later) arrival time.

BudgetPolicy is the azure-core policy that applies a RateBudget to every request the SDK sends.
It sits in `per_retry_policies`, i.e. after the RetryPolicy, so that:
  * every attempt pays a token, retries included (ARM charges each of them);
  * it sees the response of every attempt (headers, 429) before the RetryPolicy decides to retry;
  * a 429's pause is in place before the retry policy's own wait ends, so the retry (and every
    other worker) waits in acquire() until the server will accept it.
It learns an identity PUT's region by parsing the JSON body's `location`, the one place the SDK
call carries it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from reconciler.azure.retry import MAX_WAIT_KEY, DeadlineExceededError, parse_retry_after
from reconciler.model import norm_location
from reconciler.resource_id import IDENTITY_TYPE, ResourceId

Clock = Callable[[], float]
Sleeper = Callable[[float], None]

READS, WRITES, DELETES = "reads", "writes", "deletes"
# FIC API operations and their limits (requests per second per tenant, subscription and identity).
FIC_WRITE, FIC_READ, FIC_LIST, FIC_DELETE = "fic-write", "fic-read", "fic-list", "fic-delete"
FIC_LIMITS: dict[str, tuple[float, float, float]] = {
    FIC_WRITE: (10.0, 2.0, 0.25),
    FIC_READ: (30.0, 10.0, 0.5),
    FIC_LIST: (15.0, 5.0, 0.25),
    FIC_DELETE: (10.0, 2.0, 0.25),
}
PACED_FIC_OPERATIONS = frozenset({FIC_WRITE, FIC_DELETE})
KINDS = (READS, WRITES, DELETES)
TENANT = ""  # the bucket key of requests outside any subscription


def operation_kind(method: str) -> str:
    """ARM's bucket for an HTTP method: GET/HEAD read, DELETE deletes, everything else writes."""
    upper = method.upper()
    if upper in ("GET", "HEAD", "OPTIONS"):
        return READS
    return DELETES if upper == "DELETE" else WRITES


@dataclass(frozen=True)
class BucketLimit:
    capacity: float
    per_second: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.per_second <= 0:
            raise ValueError(f"a bucket needs capacity >= 1 and a positive refill rate, got {self}")


@dataclass(frozen=True)
class BudgetConfig:
    """Bucket sizes and refill rates; the defaults are ARM's."""

    reads: BucketLimit = BucketLimit(250, 25.0)
    writes: BucketLimit = BucketLimit(200, 10.0)
    deletes: BucketLimit = BucketLimit(200, 10.0)
    identity_creates_per_window: int = 80
    identity_create_window_seconds: float = 20.0
    window_margin: float = 1.0
    fic_scale: float = 1.0  # multiplies every FIC_LIMITS rate (the sandbox's fic_throttle_scale)
    # We stamp a FIC write when we send it, ARM when it arrives; a later request can arrive sooner
    # after its predecessor than it left. So the per-identity interval is this much longer, and the
    # tenant and subscription rates are `fic_headroom` of ARM's.
    fic_margin: float = 0.5
    fic_headroom: float = 0.9
    # This process is one of N concurrent shards of one tenant (a CI job matrix, `--shards N`):
    # the tenant-wide FIC rates are shared, so each takes 1/N of them. Per-subscription and
    # per-identity limits are not shared: shards own disjoint subscriptions.
    tenant_shares: int = 1

    def __post_init__(self) -> None:
        if self.identity_creates_per_window < 1 or self.identity_create_window_seconds <= 0:
            raise ValueError("the identity-creation window needs a limit >= 1 and a positive length")
        if self.window_margin < 0:
            raise ValueError("window_margin must not be negative")
        if self.fic_scale <= 0:
            raise ValueError("fic_scale must be positive")
        if self.tenant_shares < 1:
            raise ValueError("tenant_shares must be at least 1")

    def fic_limits(self, operation: str) -> tuple[BucketLimit, BucketLimit, BucketLimit]:
        """Tenant, subscription and identity buckets of one FIC operation."""
        tenant_rate, subscription_rate, identity_rate = (r * self.fic_scale for r in FIC_LIMITS[operation])
        tenant_rate /= self.tenant_shares
        tenant, subscription = (BucketLimit(max(1.0, r), r * self.fic_headroom)
                                for r in (tenant_rate, subscription_rate))
        identity = BucketLimit(max(1.0, identity_rate), 1.0 / (1.0 / identity_rate + self.fic_margin))
        return tenant, subscription, identity

    def limit(self, kind: str) -> BucketLimit:
        return {READS: self.reads, WRITES: self.writes, DELETES: self.deletes}[kind]

    def scaled(self, factor: float) -> BudgetConfig:
        """Every size and rate multiplied by `factor` (sizes and the creation limit stay >= 1)."""
        def scale(b: BucketLimit) -> BucketLimit:
            return BucketLimit(max(1.0, b.capacity * factor), b.per_second * factor)

        return replace(self, reads=scale(self.reads), writes=scale(self.writes), deletes=scale(self.deletes),
                       identity_creates_per_window=max(1, int(self.identity_creates_per_window * factor)))


@dataclass(frozen=True)
class FicCost:
    """A FIC API request: which operation, and the identity (its lower-case ARM id) it is under."""

    operation: str
    identity: str


@dataclass(frozen=True)
class BudgetStats:
    acquired: int = 0  # tokens handed out (requests let through)
    waits: int = 0  # acquisitions that had to wait
    wait_seconds: float = 0.0  # total time spent waiting, over all threads
    throttled: int = 0  # 429 responses seen
    pauses: int = 0  # buckets or windows paused for a Retry-After
    corrections: int = 0  # times a remaining-count header lowered our count
    timeouts: int = 0  # acquisitions given up because the wait would pass the caller's deadline


class BudgetTimeout(Exception):
    """acquire() would have to wait longer than the caller's `max_wait`."""

    def __init__(self, subscription: str, kind: str, wait: float, max_wait: float) -> None:
        self.subscription, self.kind, self.wait, self.max_wait = subscription, kind, wait, max_wait
        where = f"subscription {subscription}" if subscription else "the tenant"
        super().__init__(f"client-side ARM rate budget: {kind} for {where} would wait {wait:.1f} s, "
                         f"more than the {max_wait:.1f} s left")


@dataclass
class _Bucket:
    limit: BucketLimit
    tokens: float
    updated: float
    paused_until: float = 0.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.limit.capacity, self.tokens + (now - self.updated) * self.limit.per_second)
            self.updated = now

    def wait(self, now: float) -> float:
        """Seconds until one token is free (0 if now)."""
        self.refill(now)
        start = max(now, self.paused_until)
        tokens = min(self.limit.capacity, self.tokens + (start - now) * self.limit.per_second)
        missing = max(0.0, 1.0 - tokens)
        return (start - now) + missing / self.limit.per_second


@dataclass
class _Window:
    limit: int
    seconds: float
    stamps: deque[float] = field(default_factory=deque)
    paused_until: float = 0.0

    def wait(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.seconds:
            self.stamps.popleft()
        full = self.stamps[0] + self.seconds - now if len(self.stamps) >= self.limit else 0.0
        return max(0.0, full, self.paused_until - now)


class RateBudget:
    """Thread-safe token buckets per (subscription, kind) plus identity-creation windows."""

    def __init__(self, config: BudgetConfig | None = None, *, clock: Clock = time.monotonic,
                 sleeper: Sleeper = time.sleep) -> None:
        self.config = config or BudgetConfig()
        self._clock = clock
        self._sleeper = sleeper
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._windows: dict[tuple[str, str], _Window] = {}
        self._stats = BudgetStats()

    # -- state ---------------------------------------------------------------------------

    def _bucket(self, subscription: str, kind: str, now: float) -> _Bucket:
        key = (subscription.lower(), kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            limit = self.config.limit(kind)
            bucket = self._buckets[key] = _Bucket(limit, limit.capacity, now)
        return bucket

    def _fic_buckets(self, subscription: str, fic: FicCost, now: float) -> list[_Bucket]:
        out = []
        keys = (f"fic-tenant:{fic.operation}", f"fic-subscription:{subscription.lower()}",
                f"fic-identity:{fic.identity.lower()}")
        for key, limit in zip(keys, self.config.fic_limits(fic.operation), strict=True):
            bucket = self._buckets.get((key, fic.operation))
            if bucket is None:
                bucket = self._buckets[(key, fic.operation)] = _Bucket(limit, limit.capacity, now)
            out.append(bucket)
        return out

    def _window(self, subscription: str, region: str) -> _Window:
        key = (subscription.lower(), norm_location(region))
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(self.config.identity_creates_per_window,
                                                  self.config.identity_create_window_seconds
                                                  + self.config.window_margin)
        return window

    def _count(self, **deltas: float) -> None:
        s = self._stats
        self._stats = replace(s, **{k: getattr(s, k) + v for k, v in deltas.items()})

    # -- the API -------------------------------------------------------------------------

    def try_acquire(self, subscription: str, kind: str, *, identity_region: str | None = None,
                    fic: FicCost | None = None) -> float:
        """Take a token (and an identity-creation slot, and FIC tokens) if free now: return 0. Else the
        seconds to wait."""
        with self._lock:
            return self._try_locked(subscription, kind, identity_region, self._clock(), fic)

    def _try_locked(self, subscription: str, kind: str, region: str | None, now: float,
                    fic: FicCost | None = None) -> float:
        buckets = [self._bucket(subscription, kind, now)]
        paused = 0.0
        if fic is not None:
            fic_buckets = self._fic_buckets(subscription, fic, now)
            # Writes and deletes: tenant, subscription and identity; gets and lists: the first two.
            buckets += fic_buckets if fic.operation in PACED_FIC_OPERATIONS else fic_buckets[:2]
            paused = max(b.paused_until - now for b in fic_buckets)
        window = self._window(subscription, region) if region else None
        wait = max(max(b.wait(now) for b in buckets), window.wait(now) if window else 0.0, paused)
        if wait > 0:
            return wait
        for bucket in buckets:
            bucket.tokens -= 1.0
        if window:
            window.stamps.append(now)
        self._count(acquired=1)
        return 0.0

    def acquire(self, subscription: str, kind: str, *, identity_region: str | None = None,
                max_wait: float | None = None, fic: FicCost | None = None) -> float:
        """Block until a token is taken; return the seconds waited.

        Raises BudgetTimeout, without waiting, as soon as the wait would exceed `max_wait`.
        """
        started: float | None = None
        while True:
            with self._lock:
                now = self._clock()
                wait = self._try_locked(subscription, kind, identity_region, now, fic)
                waited = 0.0 if started is None else now - started
                if wait <= 0:
                    if started is not None:
                        self._count(waits=1, wait_seconds=waited)
                    return waited
                if max_wait is not None and waited + wait > max_wait:
                    self._count(timeouts=1, **({"waits": 1, "wait_seconds": waited} if waited else {}))
                    raise BudgetTimeout(subscription, kind, waited + wait, max_wait)
                if started is None:
                    started = now
            self._sleeper(wait)

    def observe_remaining(self, subscription: str, kind: str, remaining: int) -> bool:
        """ARM says `remaining` tokens are left; lower our count if we think more are. True if lowered."""
        with self._lock:
            now = self._clock()
            bucket = self._bucket(subscription, kind, now)
            bucket.refill(now)
            if remaining < bucket.tokens:
                bucket.tokens = float(max(0, remaining))
                self._count(corrections=1)
                return True
            return False

    def throttled(self, subscription: str, kind: str, retry_after: float | None, *,
                  bucket: bool = True, identity_region: str | None = None) -> None:
        """Record a 429 and hold back the bucket (and/or the identity-creation window) it came from.

        The bucket is emptied, and paused until Retry-After has passed when the response said so;
        the window is paused for Retry-After (or for a full window when it did not say).
        """
        with self._lock:
            now = self._clock()
            self._count(throttled=1)
            if bucket:
                b = self._bucket(subscription, kind, now)
                b.refill(now)
                b.tokens = min(b.tokens, 0.0)
                if retry_after:
                    b.paused_until = max(b.paused_until, now + retry_after)
                    self._count(pauses=1)
            if identity_region:
                w = self._window(subscription, identity_region)
                w.paused_until = max(w.paused_until, now + (retry_after or w.seconds))
                self._count(pauses=1)

    def fic_throttled(self, subscription: str, fic: FicCost, retry_after: float | None) -> None:
        """A FIC request got 429: empty its FIC buckets and pause them until Retry-After has passed
        (ARM's writes bucket for the subscription is not what refused it)."""
        with self._lock:
            now = self._clock()
            self._count(throttled=1)
            for b in self._fic_buckets(subscription, fic, now):
                b.refill(now)
                b.tokens = min(b.tokens, 0.0)
                if retry_after:
                    b.paused_until = max(b.paused_until, now + retry_after)
            if retry_after:
                self._count(pauses=1)

    def stats(self) -> BudgetStats:
        with self._lock:
            return self._stats


# -- the pipeline policy -------------------------------------------------------------------


@dataclass(frozen=True)
class RequestCost:
    """Which bucket a request draws from, and for an identity PUT the region it creates in."""

    subscription: str
    kind: str
    identity_region: str | None = None
    fic: FicCost | None = None


def _fic_cost(method: str, lowered: list[str]) -> FicCost | None:
    """/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/
    {name}/federatedIdentityCredentials[/{fic}]"""
    if not (len(lowered) in (9, 10) and lowered[0] == "subscriptions" and lowered[2] == "resourcegroups"
            and lowered[4:7] == ["providers", "microsoft.managedidentity", "userassignedidentities"]
            and lowered[8] == "federatedidentitycredentials"):
        return None
    identity = "/" + "/".join(lowered[:8])
    upper = method.upper()
    if len(lowered) == 9:
        return FicCost(FIC_LIST, identity) if upper == "GET" else None
    operation = {"GET": FIC_READ, "HEAD": FIC_READ, "PUT": FIC_WRITE, "DELETE": FIC_DELETE}.get(upper)
    return FicCost(operation, identity) if operation else None


def request_cost(method: str, url: str, body: Any = None) -> RequestCost:
    parsed = ResourceId.of_request_path(urlparse(url).path)
    rid, collection = parsed if parsed is not None else (ResourceId(), None)
    subscription = rid.subscription or TENANT
    kind = operation_kind(method)
    fic = _fic_cost(method, [s.lower() for s in urlparse(url).path.split("/") if s])
    if fic is not None:
        return RequestCost(subscription, kind, None, fic)
    region = None
    if (method.upper() == "PUT" and collection is None and rid.is_type(IDENTITY_TYPE)
            and rid.resource_group is not None and len(rid.providers) == 1):
        region = _location(body)
    return RequestCost(subscription, kind, region)


def _location(body: Any) -> str | None:
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return None
    try:
        location = json.loads(body).get("location")
    except (ValueError, AttributeError):
        return None
    return norm_location(location) if isinstance(location, str) and location else None


def remaining_header(subscription: str, kind: str) -> str:
    return f"x-ms-ratelimit-remaining-{'subscription' if subscription else 'tenant'}-{kind}"


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(float(raw)) if raw is not None else None
    except ValueError:
        return None


class BudgetPolicy(HTTPPolicy[Any, Any]):
    """Applies a RateBudget to every attempt; one instance per SDK client (it holds `next`)."""

    def __init__(self, budget: RateBudget) -> None:
        super().__init__()
        self.budget = budget

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        cost = request_cost(http.method, http.url, http.body)
        max_wait = request.context.get(MAX_WAIT_KEY)  # set by ArmRetryPolicy; None without it
        try:
            self.budget.acquire(cost.subscription, cost.kind, identity_region=cost.identity_region,
                                max_wait=max_wait, fic=cost.fic)
        except BudgetTimeout as e:
            raise DeadlineExceededError(str(e)) from e
        response: PipelineResponse[Any, Any] = self.next.send(request)
        self.observe(cost, response.http_response.status_code, response.http_response.headers)
        return response

    def observe(self, cost: RequestCost, status: int, headers: Mapping[str, str]) -> None:
        for kind in KINDS:
            # ARM also limits all principals of a subscription together (15x one principal's
            # bucket, "-global-" headers); whichever has less left bounds what we may send.
            names = [remaining_header(cost.subscription, kind)]
            if cost.subscription:
                names.append(f"x-ms-ratelimit-remaining-subscription-global-{kind}")
            values = [v for v in (_int_header(headers, n) for n in names) if v is not None]
            if values:
                self.budget.observe_remaining(cost.subscription, kind, min(values))
        if status != 429:
            return
        retry_after = parse_retry_after(headers)
        if cost.fic is not None:
            self.budget.fic_throttled(cost.subscription, cost.fic, retry_after)
            return
        if cost.identity_region is None:
            self.budget.throttled(cost.subscription, cost.kind, retry_after)
            return
        # An identity PUT's 429 is the writes bucket or the creation window. If ARM says writes
        # remain, it was the window; if it does not say, hold both back (identity creates need a
        # writes token anyway, so pausing the window too costs nothing when it was the bucket).
        writes_left = _int_header(headers, remaining_header(cost.subscription, WRITES))
        self.budget.throttled(cost.subscription, cost.kind, retry_after,
                              bucket=not (writes_left is not None and writes_left >= 1),
                              identity_region=cost.identity_region)

