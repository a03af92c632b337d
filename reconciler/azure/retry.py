"""ArmRetryPolicy: which ARM failures are retried, how long we wait between tries, and when we stop.

    retried       408, 429, 5xx (except 501/505); connection failures (the request never left);
                  dropped connections and read timeouts (the request may have been processed:
                  only for idempotent methods, see IDEMPOTENT_METHODS)
    not retried   every other 4xx, even when it carries Retry-After (azure-core's default
                  RetryPolicy retries any status >= 400 with Retry-After; we do not), 401 from the
                  credential, and DeadlineExceededError (the client-side budget could not grant a
                  token within the time that was left)
    waiting       Retry-After (or retry-after-ms / x-ms-retry-after-ms) when the response has one,
                  plus up to 10 % jitter; otherwise exponential backoff with "equal jitter":
                  d = min(cap, base * 2**(n-1)), wait uniformly in [d/2, d]
    stopping      after `max_retries` retries, or as soon as the next wait would end past
                  `total_seconds` after the first try. The last response (a 4xx/5xx that the SDK
                  raises as HttpResponseError) or the last exception is what the caller sees.
    fail-fast     every attempt reports to the target's shared `Reachability`: once ARM could
                  not be connected to (refused, DNS, TLS) on `FailFast.attempts` consecutive
                  attempts of any calls, spread over at least `FailFast.seconds`, ARM counts as
                  gone for the rest of the run: retries stop and no new request is sent
                  (ArmUnreachableError), so a run ends in about a minute instead of every call
                  spending its own 120 s.

The policy subclasses azure-core's RetryPolicy only so the SDK places it where its RetryPolicy
goes (and `per_retry_policies` are inserted after it); its `send` loop is our own. Clock, sleeper
and random source are injectable so tests need no real sleeps. Instances are stateless between
calls but hold their pipeline's `next` policy, so each SDK client needs its own instance; the
`RetryStats` they report to may be shared.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from requests.exceptions import InvalidHeader

Clock = Callable[[], float]
Sleeper = Callable[[float], None]

#: Methods whose request may be repeated after a dropped connection or a 5xx. PATCH is here
#: because the only PATCH reconciler sends replaces an identity's whole tag set.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})

#: Request-context key through which the retry policy tells inner policies (the rate budget) how
#: many seconds of the total retry time are left for this attempt.
MAX_WAIT_KEY = "reconciler_max_wait"


class ArmUnreachableError(ServiceRequestError):
    """Not sent: ARM has been unreachable for a while (see `Reachability`); never retried."""


class DeadlineExceededError(ServiceRequestError):
    """The request was not sent: waiting for client-side rate budget would pass the retry deadline.

    A ServiceRequestError so that callers mapping SDK errors treat it as retryable later (as
    gateway.to_arm_error does), but ArmRetryPolicy never retries it: the time is already spent.
    """


def parse_retry_after(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait as the response asks, or None. Order: retry-after-ms, x-ms-retry-after-ms,
    Retry-After (delta-seconds or an HTTP date). Negative or unreadable values are ignored."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            if name != "retry-after":
                continue
            try:
                value = max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - now())
            except (TypeError, ValueError):
                continue
        if value >= 0:
            return value
    return None


def transient_status(method: str, status: int) -> bool:
    """Is an HTTP status worth another try for this method?"""
    if status in (408, 429):
        return True  # the server refused before doing anything: safe for every method
    if 500 <= status <= 599 and status not in (501, 505):
        return method.upper() in IDEMPOTENT_METHODS or status == 503
    return False


def unbuildable_request(error: Exception) -> bool:
    """The HTTP library refused to build the request (e.g. a line break in a header value):
    nothing was sent, and the same request can never be sent."""
    return isinstance(getattr(error, "inner_exception", None), InvalidHeader)


def transient_error(method: str, error: Exception) -> bool:
    """Is an exception raised while sending worth another try for this method?"""
    if unbuildable_request(error):
        return False
    if isinstance(error, DeadlineExceededError | ArmUnreachableError | ClientAuthenticationError):
        return False
    if isinstance(error, ServiceRequestError):
        return True  # never reached the server
    if isinstance(error, ServiceResponseError):
        return method.upper() in IDEMPOTENT_METHODS  # dropped connection or read timeout
    return False


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: retry n waits in [d/2, d], d = min(cap, base * 2**(n-1))."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, retry_number: int, rand: float) -> float:
        d = min(self.cap, self.base * 2.0 ** max(0, retry_number - 1))
        return d / 2 + (d / 2) * rand


@dataclass(frozen=True)
class FailFast:
    """When a run gives up on ARM: `attempts` consecutive attempts, across all calls of a
    target, that could not connect, the first and the last at least `seconds` apart. A
    response of any status in between starts the count again."""

    attempts: int = 8
    seconds: float = 60.0


#: The bounds every target uses unless given its own (tests make them small).
DEFAULT_FAIL_FAST = FailFast()


class Reachability:
    """Whether ARM can still be connected to, as every attempt of a target reports it. Shared
    by all retry policies (threads) of a target. Once down it stays down for the run: the next
    run starts afresh (and resumes, since every step is idempotent)."""

    def __init__(self, settings: FailFast | None = None, clock: Clock = time.monotonic) -> None:
        self.settings = settings or DEFAULT_FAIL_FAST
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._first = 0.0
        self._down: str | None = None

    def connected(self) -> None:
        with self._lock:
            self._failures = 0

    def failed(self, error: Exception) -> None:
        now = self._clock()
        with self._lock:
            if self._down is not None:
                return
            if self._failures == 0:
                self._first = now
            self._failures += 1
            elapsed = now - self._first
            if self._failures >= self.settings.attempts and elapsed >= self.settings.seconds:
                cause = (str(error).strip().splitlines() or [type(error).__name__])[0]
                self._down = (f"ARM could not be reached on {self._failures} consecutive attempts over "
                              f"{elapsed:.0f} s (last: {cause})")

    @property
    def down(self) -> str | None:
        """Why ARM counts as gone, or None while it is reachable."""
        with self._lock:
            return self._down


@dataclass(frozen=True)
class RetrySnapshot:
    retries: dict[str, int]  # by reason: a status ("429", "503") or an exception class name
    slept: dict[str, float]  # seconds slept before those retries, by the same reasons
    gave_up: int  # calls that ran out of retries or time


@dataclass
class RetryStats:
    """What the retry policies of one target did; shared by them, so thread-safe."""

    retries: Counter[str] = field(default_factory=Counter)
    slept: dict[str, float] = field(default_factory=dict)
    gave_up: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_retry(self, reason: str, delay: float) -> None:
        with self.lock:
            self.retries[reason] += 1
            self.slept[reason] = self.slept.get(reason, 0.0) + delay

    def record_give_up(self) -> None:
        with self.lock:
            self.gave_up += 1

    def snapshot(self) -> RetrySnapshot:
        with self.lock:
            return RetrySnapshot(dict(self.retries), dict(self.slept), self.gave_up)


class ArmRetryPolicy(RetryPolicy[Any, Any]):
    def __init__(
        self,
        *,
        max_retries: int = 10,
        total_seconds: float = 120.0,
        backoff: Backoff | None = None,
        clock: Clock = time.monotonic,
        sleeper: Sleeper = time.sleep,
        rand: Callable[[], float] = random.random,
        stats: RetryStats | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        super().__init__(retry_total=max_retries)
        if total_seconds <= 0:
            raise ValueError("total_seconds must be positive")
        self.max_retries = max_retries
        self.total_seconds = total_seconds
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._sleeper = sleeper
        self._rand = rand
        self.stats = stats if stats is not None else RetryStats()
        self.reachability = reachability if reachability is not None else Reachability()

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        # Pops the per-call retry options (retry_total, timeout, ...) so they never reach the transport.
        settings = self.configure_retries(request.context.options)
        max_retries = int(settings["total"])
        deadline = self._clock() + min(self.total_seconds, float(settings["timeout"]))
        self._configure_positions(request, settings)
        method = request.http_request.method.upper()
        read_timeout = self._read_timeout(request)
        retries = 0
        while True:
            if (down := self.reachability.down) is not None:
                raise ArmUnreachableError(down)
            remaining = max(0.0, deadline - self._clock())
            request.context["retry_count"] = retries
            request.context[MAX_WAIT_KEY] = remaining
            if read_timeout is not None:  # a hung response must not outlive the deadline either
                request.context.options["read_timeout"] = max(0.001, min(read_timeout, remaining))
            try:
                response: PipelineResponse[Any, Any] = self.next.send(request)
            except AzureError as err:
                if isinstance(err, ServiceRequestError) and not isinstance(err, DeadlineExceededError) \
                        and not unbuildable_request(err):
                    self.reachability.failed(err)  # refused, DNS, TLS: the request never got there
                if not transient_error(method, err):
                    raise
                delay = self.backoff.delay(retries + 1, self._rand())
                gone = self.reachability.down is not None
                if gone or not self._may_retry(retries, max_retries, delay, deadline):
                    self.stats.record_give_up()
                    raise
                reason = type(err).__name__
            else:
                self.reachability.connected()
                status = response.http_response.status_code
                if not transient_status(method, status):
                    return response
                retry_after = parse_retry_after(response.http_response.headers)
                if retry_after:
                    delay = retry_after * (1 + 0.1 * self._rand())
                else:
                    delay = self.backoff.delay(retries + 1, self._rand())
                if not self._may_retry(retries, max_retries, delay, deadline):
                    self.stats.record_give_up()
                    return response
                reason = str(status)
            self.stats.record_retry(reason, delay)
            retries += 1
            self._sleeper(delay)
            self._rewind(request, settings)

    def _may_retry(self, retries: int, max_retries: int, delay: float, deadline: float) -> bool:
        return retries < max_retries and self._clock() + delay < deadline

    @staticmethod
    def _read_timeout(request: PipelineRequest[Any]) -> float | None:
        options = request.context.options
        if isinstance(options.get("connection_timeout"), tuple):
            return None  # (connect, read) given as one tuple: leave it alone
        configured = options.get("read_timeout")
        if configured is None:
            config = getattr(request.context.transport, "connection_config", None)
            configured = getattr(config, "read_timeout", None)
        return float(configured) if isinstance(configured, int | float) else None

    @staticmethod
    def _rewind(request: PipelineRequest[Any], settings: dict[str, Any]) -> None:
        position = settings.get("body_position")
        body = request.http_request.body
        if position is not None and hasattr(body, "seek"):
            cast(Any, body).seek(position)
