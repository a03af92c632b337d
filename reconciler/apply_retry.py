"""Waiting out ARM answers that mean "not yet", without holding a worker.

Two answers pass with time: PrincipalNotFound for a principal this run created (Entra ID has not
yet replicated it to the directory Microsoft.Authorization reads), and 409
ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity (another writer touched the
identity's credentials). A step that gets one raises `RetryLater` with the delay and how to resume;
the applier puts it back with a not-before time (controller-runtime's `AddAfter`) and its workers
serve other steps meanwhile. Transport retries (429, 5xx, dropped connections) are
azure/retry.py's, inside one call.

`RetryPolicy` holds the delays (a public value passed to `apply_plan`); `Clock` is how the
applier reads time and idles, so tests advance time instead of sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from reconciler.errors import ArmError

PRINCIPAL_NOT_FOUND = "PrincipalNotFound"
CONCURRENT_FIC_WRITES = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"


@dataclass(frozen=True)
class RetryPolicy:
    """Seconds between the retries of a step, one entry per retry (their number is the attempt
    limit). The principal delays add up to about two minutes, longer than Entra ID's usual
    replication delay; FIC delays are stretched by a random factor in [0.5, 1.5) so that two
    writers that collided do not collide again."""

    principal_backoff: tuple[float, ...] = (2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
    fic_backoff: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    jitter: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def principal_delay(self, retry: int) -> float | None:
        """The wait before retry number `retry` (0-based), or None once they are spent."""
        return self.principal_backoff[retry] if retry < len(self.principal_backoff) else None

    def fic_delay(self, retry: int) -> float | None:
        return self.fic_backoff[retry] * (0.5 + self.jitter()) if retry < len(self.fic_backoff) else None


class Clock(Protocol):
    """Time as the applier sees it: `now()` in seconds (monotonic), and `wait(wake, timeout)`,
    which returns once `wake` is set or `timeout` seconds have passed (None: no timeout)."""

    def now(self) -> float: ...

    def wait(self, wake: threading.Event, timeout: float | None) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, wake: threading.Event, timeout: float | None) -> None:
        wake.wait(timeout)


class RetryLater(Exception):
    """Raised by a step: run `resume` (the next attempt) no sooner than `delay` seconds from now.
    `error` is the answer that asked for the wait: the step's outcome if it is never resumed."""

    def __init__(self, delay: float, resume: Callable[[], str], error: ArmError) -> None:
        super().__init__(f"retry in {delay:.2f} s after {error.code}")
        self.delay = delay
        self.resume = resume
        self.error = error


def retrying(attempt: Callable[[], str], delay_for: Callable[[int, ArmError], float | None],
             retry: int = 0) -> str:
    """Run `attempt`; when it fails with an ArmError for which `delay_for(retry, error)` gives a
    delay, raise RetryLater to run it again (as retry number `retry + 1`) after that delay."""
    try:
        return attempt()
    except ArmError as e:
        delay = delay_for(retry, e)
        if delay is None:
            raise
        raise RetryLater(delay, partial(retrying, attempt, delay_for, retry + 1), e) from e


class DelayedSteps:
    """Steps waiting for their not-before time, earliest first (ties in the order added)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._heap)

    def add(self, address: str, not_before: float) -> None:
        heapq.heappush(self._heap, (not_before, next(self._order), address))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[str]:
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def clear(self) -> None:
        self._heap.clear()
