"""ARM's throttling: token buckets per (subscription or tenant, principal, operation kind), and the
managed-identity creation limit per subscription and region.

A throttled caller is told to come back after Retry-After seconds, and a request sent before that
moment is refused again even if the bucket has refilled a little meanwhile, as ARM does.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .config import SandboxConfig
from .errors import ArmError

Clock = Callable[[], float]

# The federated identity credential API's own limits, requests per second per tenant, per
# subscription and per identity (Microsoft's "workload identity federation considerations" page).
# 0.25 per identity is one write per identity every 4 s. Each is a bucket holding one second's worth
# (at least one request): the page gives rates, not burst sizes (UNVERIFIED burst).
FIC_LIMITS: dict[str, tuple[float, float, float]] = {
    "write": (10.0, 2.0, 0.25),
    "read": (30.0, 10.0, 0.5),
    "list": (15.0, 5.0, 0.25),
    "delete": (10.0, 2.0, 0.25),
}


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float
    updated: float
    blocked_until: float = 0.0

    def wait(self, now: float) -> float:
        """Whole seconds before a token is free (0: one is free now); consumes nothing."""
        if now < self.blocked_until:
            return math.ceil(self.blocked_until - now)
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        return 0 if tokens >= 1.0 else max(1, math.ceil((1.0 - tokens) / self.per_second))

    def take(self, now: float) -> float:
        """Consume one token; return 0 on success or the seconds to wait (>= 1, whole seconds)."""
        if now < self.blocked_until:
            return math.ceil(self.blocked_until - now)
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0
        wait = max(1, math.ceil((1.0 - self.tokens) / self.per_second))
        self.blocked_until = now + wait
        return wait


class Throttler:
    def __init__(self, clock: Clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._creates: dict[tuple[str, str], deque[float]] = {}

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._creates.clear()

    def take(self, config: SandboxConfig, scope_key: str, principal: str, kind: str) -> tuple[int, int]:
        """Returns (remaining tokens, seconds to wait); wait 0 means the request may proceed."""
        capacity = getattr(config, f"{kind}s_capacity") * config.throttle_scale
        rate = getattr(config, f"{kind}s_per_second") * config.throttle_scale
        now = self._clock()
        with self._lock:
            key = (scope_key.lower(), principal.lower(), kind)
            bucket = self._buckets.get(key)
            if bucket is None or bucket.capacity != capacity or bucket.per_second != rate:
                bucket = self._buckets[key] = TokenBucket(capacity, rate, capacity, now)
            wait = bucket.take(now)
            return int(bucket.tokens), int(wait)

    def take_fic(self, config: SandboxConfig, tenant_id: str, subscription_id: str, identity_id: str,
                 operation: str) -> None:
        """Count one FIC API call against the tenant, subscription and identity buckets of its
        operation ("write", "read", "list", "delete"); raise 429 when any of them is empty."""
        now = self._clock()
        levels = []
        with self._lock:
            for level, key, rate in zip(("tenant", "subscription", "identity"),
                                        (tenant_id, subscription_id, identity_id),
                                        FIC_LIMITS[operation], strict=True):
                per_second = rate * config.fic_throttle_scale
                capacity = max(1.0, per_second)
                bucket_key = (f"fic-{level}:{key.lower()}", "", operation)
                bucket = self._buckets.get(bucket_key)
                if bucket is None or bucket.capacity != capacity or bucket.per_second != per_second:
                    bucket = self._buckets[bucket_key] = TokenBucket(capacity, per_second, capacity, now)
                levels.append((bucket.wait(now), level, key, bucket))
            wait, level, key, refused = max(levels, key=lambda x: x[0])
            # A refused request takes no token from any level; the level that refused it stays
            # closed until Retry-After has passed, as ARM's buckets do.
            for _, _, _, bucket in levels if not wait else [(0, "", "", refused)]:
                bucket.take(now)
        if wait:
            # Status from the same page; code and wording UNVERIFIED.
            raise ArmError(
                429, "TooManyRequests",
                f"Too many Federated Identity Credential '{operation}' requests for the {level} '{key}'. "
                f"Please try again after '{int(wait)}' seconds.",
                {"Retry-After": str(int(wait))})

    def take_identity_create(self, config: SandboxConfig, subscription_id: str, location: str) -> None:
        """Count one identity creation; raise 429 when the sliding window is full."""
        limit = max(1, int(config.identity_creates_per_window * config.throttle_scale))
        window = config.identity_create_window_seconds
        now = self._clock()
        with self._lock:
            stamps = self._creates.setdefault((subscription_id.lower(), location.lower()), deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            if len(stamps) >= limit:
                wait = max(1, math.ceil(stamps[0] + window - now))
                # UNVERIFIED wording: the RP's own text for this limit was not found.
                raise ArmError(
                    429,
                    "TooManyRequests",
                    f"Too many user-assigned identities were created in subscription '{subscription_id}' and "
                    f"region '{location}': the limit is {limit} per {window:g} seconds. "
                    f"Please try again after '{wait}' seconds.",
                    {"Retry-After": str(wait)},
                )
            stamps.append(now)


def throttled(kind: str, scope_key: str, wait: int) -> ArmError:
    return ArmError(
        429,
        "TooManyRequests",
        f"The request is being throttled. Number of '{kind}' requests for '{scope_key}' exceeded the "
        f"limit. Please try again after '{wait}' seconds. Refer to https://aka.ms/arm-throttling",
        {"Retry-After": str(wait)},
    )
