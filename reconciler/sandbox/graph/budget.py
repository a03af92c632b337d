"""Graph's identity-and-access throttling: a bucket of resource units per application and tenant.

Requests cost what GRAPH-FACTS §15 lists (GET users 2, getByIds 3, other GETs 1, writes 1; `$select`
and `$top` < 20 take one off, never below 1). The bucket holds `graph_units_capacity` units and refills
them over `graph_units_window_seconds` (both scaled by `throttle_scale`); an empty bucket answers 429
with Retry-After, and a request sent before that moment is refused again, as ARM's buckets do.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    units: float
    updated: float
    blocked_until: float = 0.0


class UnitBudget:
    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def take(self, key: str, cost: int, capacity: float, window_seconds: float) -> int:
        """Spend `cost` units; return 0, or the whole seconds to wait before the next request."""
        rate = capacity / window_seconds
        cost = min(cost, max(1, int(capacity)))  # a request dearer than the whole bucket still gets through
        now = self._clock()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
            if now < bucket.blocked_until:
                return math.ceil(bucket.blocked_until - now)
            bucket.units = min(capacity, bucket.units + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.units >= cost:
                bucket.units -= cost
                return 0
            wait = max(1, math.ceil((cost - bucket.units) / rate))
            bucket.blocked_until = now + wait
            return wait
