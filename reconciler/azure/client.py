"""Credentials, endpoints and SDK clients: the only place that knows where ARM is.

Real Azure goes through DefaultAzureCredential. A sandbox (embedded or `sandbox serve`) or any
endpoint given a bearer token in RECONCILER_ACCESS_TOKEN uses that token as it is.

Every SDK client an ArmTarget builds has the same request path (azure-core pipeline order):

    ... -> ArmRetryPolicy -> BudgetPolicy -> CallCounter -> auth -> ... -> transport
           (retry.py)        (budget.py)     (counts every attempt actually sent)

The retry and budget policies are new instances per client (an HTTPPolicy holds its pipeline's
`next`), but they share the target's RateBudget, RetryStats and CallCounter: one budget per
target, i.e. per principal, shared by every client and thread of a run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from reconciler.azure import transports
from reconciler.azure.budget import BudgetPolicy, BudgetStats, RateBudget
from reconciler.azure.retry import ArmRetryPolicy, Backoff, Reachability, RetryStats
from reconciler.resource_id import RESOURCE_GROUPS, SUBSCRIPTIONS, ResourceId

PUBLIC_ARM = "https://management.azure.com"


def checked_token(raw: str, source: str) -> str:
    """A bearer token as handed to us, fit for an Authorization header.

    Surrounding whitespace is stripped: `$(cat token)`, `echo` and CI secret stores add line
    breaks, and no token contains whitespace. Anything else outside visible ASCII is refused,
    by position only: the message never quotes the token."""
    token = raw.strip()
    if not token:
        raise ValueError(f"{source} is set but empty")
    for position, ch in enumerate(token, start=1):
        if not "!" <= ch <= "~":
            what = "whitespace" if ch.isspace() else "a control character" if ord(ch) < 32 else "a non-ASCII character"
            raise ValueError(f"{source} holds {what} at character {position}, which an HTTP header cannot carry; "
                             "set it to the bare token")
    return token


class StaticTokenCredential:
    """A bearer token handed to us (sandbox token, or RECONCILER_ACCESS_TOKEN). Never logged."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:  # keep the token out of any repr or log line
        return "StaticTokenCredential(<redacted>)"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def close_credential(credential: TokenCredential) -> None:
    """Close a credential that holds HTTP sessions (DefaultAzureCredential's sources do); a
    static token holds none."""
    close = getattr(credential, "close", None)
    if callable(close):
        close()


def request_kind(method: str, path: str) -> str:
    """A short name for an ARM request, e.g. `GET userAssignedIdentities (list)`."""
    parsed = ResourceId.of_request_path(path)
    if parsed is None:
        return f"{method} other"
    rid, collection = parsed
    if collection is not None:
        return f"{method} {collection} (list)"
    if rid.providers:
        kind = rid.providers[-1].levels[-1][0]
    else:
        kind = RESOURCE_GROUPS if rid.resource_group is not None else SUBSCRIPTIONS
    return f"{method} {kind}"


@dataclass
class CallCounter(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every request the pipeline sends (retries included), by kind: `kind_of(method,
    path)`, ARM's by default (Microsoft Graph's: graph.graph_request_kind)."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    kind_of: Callable[[str, str], str] = request_kind

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        kind = self.kind_of(http.method, urlparse(http.url).path)
        with self.lock:
            self.counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def __hash__(self) -> int:
        return id(self)


@dataclass(frozen=True)
class TargetStats:
    """What throttling and retries cost a run, for the CLI's summary."""

    budget: BudgetStats
    retries: dict[str, int]  # by reason: a status ("429", "503") or an exception class name
    retry_sleep_seconds: dict[str, float]  # seconds slept before those retries, by reason
    gave_up: int  # calls that ran out of retries or time

    @property
    def throttle_wait_seconds(self) -> float:
        """Time spent waiting on ARM's rate limits: in the client budget, and after 429s."""
        return self.budget.wait_seconds + self.retry_sleep_seconds.get("429", 0.0)

    def summary(self) -> str:
        b = self.budget
        text = f"throttling waits: {b.waits} ({self.throttle_wait_seconds:.1f} s), 429s: {b.throttled}"
        total = sum(self.retries.values())
        if total:
            reasons = ", ".join(f"{reason} x{n}" for reason, n in sorted(self.retries.items()))
            text += f", retries: {total} ({reasons})"
        if self.gave_up:
            text += f", gave up: {self.gave_up}"
        return text


@dataclass
class ArmTarget:
    """Where ARM is, how to authenticate to it, and how politely to call it."""

    credential: TokenCredential
    endpoint: str = PUBLIC_ARM
    ca_cert: str | None = None  # PEM bundle to trust (sandbox's self-signed CA)
    credential_scopes: tuple[str, ...] | None = None
    retry_total: int = 10  # retries per call, at most
    retry_timeout: float = 120.0  # seconds from a call's first try after which no retry starts
    retry_backoff: Backoff = field(default_factory=Backoff)
    read_timeout: float | None = None  # seconds per attempt; None keeps azure-core's 300
    # Client-side copy of ARM's throttling buckets; None sends as fast as the callers ask.
    budget: RateBudget | None = field(default_factory=RateBudget)
    counter: CallCounter = field(default_factory=CallCounter)
    retry_stats: RetryStats = field(default_factory=RetryStats)
    # Shared by every call: when ARM stays unreachable, the run stops instead of every call
    # spending its own retry time (retry.FailFast says when).
    reachability: Reachability = field(default_factory=Reachability)
    # Seams for tests: an in-process transport, and the retry policy's clock and sleeper (a
    # RateBudget passed in carries its own).
    transport: Any = None
    clock: Callable[[], float] = time.monotonic
    sleeper: Callable[[float], None] = time.sleep

    def _kwargs(self, session: requests.Session | None = None) -> dict[str, Any]:
        retry = ArmRetryPolicy(max_retries=self.retry_total, total_seconds=self.retry_timeout,
                               backoff=self.retry_backoff, stats=self.retry_stats,
                               clock=self.clock, sleeper=self.sleeper, reachability=self.reachability)
        per_retry: list[Any] = [BudgetPolicy(self.budget)] if self.budget is not None else []
        per_retry.append(self.counter)  # last: it counts what actually goes out
        kwargs: dict[str, Any] = {
            "base_url": self.endpoint,
            "retry_policy": retry,
            "per_retry_policies": per_retry,
        }
        transport = self.transport if self.transport is not None else transports.for_endpoint(self.endpoint)
        if transport is None and session is not None:
            # The connection settings belong to the transport, which the client builds only when given none.
            options: dict[str, Any] = {"connection_verify": self.ca_cert} if self.ca_cert else {}
            if self.read_timeout is not None:
                options["read_timeout"] = self.read_timeout
            transport = RequestsTransport(session=session, session_owner=False, **options)
        if transport is not None:
            kwargs["transport"] = transport
        if self.read_timeout is not None:
            kwargs["read_timeout"] = self.read_timeout
        if self.ca_cert:
            kwargs["connection_verify"] = self.ca_cert
        if self.credential_scopes:
            kwargs["credential_scopes"] = list(self.credential_scopes)
        return kwargs

    def stats(self) -> TargetStats:
        retry = self.retry_stats.snapshot()
        budget = self.budget.stats() if self.budget is not None else BudgetStats()
        return TargetStats(budget=budget, retries=retry.retries, retry_sleep_seconds=retry.slept,
                           gave_up=retry.gave_up)

    # Each client gets its own HTTP session unless given one to share (http_session()): the
    # caller then closes it, after the clients.
    def msi(self, subscription: str, session: requests.Session | None = None) -> ManagedServiceIdentityClient:
        return ManagedServiceIdentityClient(self.credential, subscription, **self._kwargs(session))

    def authorization(self, subscription: str,
                      session: requests.Session | None = None) -> AuthorizationManagementClient:
        return AuthorizationManagementClient(self.credential, subscription, **self._kwargs(session))

    def resources(self, subscription: str, session: requests.Session | None = None) -> ResourceManagementClient:
        return ResourceManagementClient(self.credential, subscription, **self._kwargs(session))

    def subscriptions(self, session: requests.Session | None = None) -> SubscriptionClient:
        return SubscriptionClient(self.credential, **self._kwargs(session))


def http_session(pool_size: int = 64) -> requests.Session:
    """One pool of HTTPS connections for many SDK clients: ARM is one host, and a client per
    subscription and API each with its own session opened 46 TLS connections (a TLS context
    each) for a plan of 10 subscriptions where 8 threads read at a time. Set up as azure-core
    sets up the sessions it makes: no retries below its own retry policy. `pool_size` bounds
    the connections kept for reuse, not those opened: more threads than that still get one."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=pool_size, max_retries=Retry(total=False, redirect=False,
                                                                    raise_on_status=False))
    for scheme in ("https://", "http://"):
        session.mount(scheme, adapter)
    return session
