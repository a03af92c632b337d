"""Credentials, endpoints and SDK clients: the only place that knows where ARM is.

Real Azure goes through DefaultAzureCredential. A sandbox (embedded or `sandbox serve`) or any
endpoint given a bearer token in RECONCILER_ACCESS_TOKEN uses that token as it is.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

PUBLIC_ARM = "https://management.azure.com"


class StaticTokenCredential:
    """A bearer token handed to us (sandbox token, or RECONCILER_ACCESS_TOKEN). Never logged."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:  # keep the token out of any repr or log line
        return "StaticTokenCredential(<redacted>)"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def request_kind(method: str, path: str) -> str:
    """A short name for an ARM request, e.g. `GET userAssignedIdentities (list)`."""
    segments = [s for s in path.split("/") if s]
    lowered = [s.lower() for s in segments]
    kind = "resourceGroups" if "resourcegroups" in lowered else "subscriptions"
    named = True
    if "providers" in lowered:
        last = len(lowered) - 1 - lowered[::-1].index("providers")
        rest = segments[last + 2:]  # after providers/{namespace}
        if rest:
            kind = rest[-1] if len(rest) % 2 == 1 else rest[-2]
            named = len(rest) % 2 == 0
    elif lowered and lowered[-1] == "resourcegroups":
        named = False
    return f"{method} {kind}" + ("" if named else " (list)")


@dataclass
class CallCounter(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every ARM request the SDK sends (retries included), by kind."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        kind = request_kind(http.method, urlparse(http.url).path)
        with self.lock:
            self.counts[kind] += 1

    def __hash__(self) -> int:
        return id(self)


@dataclass
class ArmTarget:
    """Where ARM is and how to authenticate to it."""

    credential: TokenCredential
    endpoint: str = PUBLIC_ARM
    ca_cert: str | None = None  # PEM bundle to trust (sandbox's self-signed CA)
    credential_scopes: tuple[str, ...] | None = None
    retry_total: int = 6
    counter: CallCounter = field(default_factory=CallCounter)

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "base_url": self.endpoint,
            "per_retry_policies": [self.counter],
            "retry_total": self.retry_total,
            "retry_backoff_factor": 0.5,
            "retry_backoff_max": 30,
        }
        if self.ca_cert:
            kwargs["connection_verify"] = self.ca_cert
        if self.credential_scopes:
            kwargs["credential_scopes"] = list(self.credential_scopes)
        return kwargs

    def msi(self, subscription: str) -> ManagedServiceIdentityClient:
        return ManagedServiceIdentityClient(self.credential, subscription, **self._kwargs())

    def authorization(self, subscription: str) -> AuthorizationManagementClient:
        return AuthorizationManagementClient(self.credential, subscription, **self._kwargs())

    def resources(self, subscription: str) -> ResourceManagementClient:
        return ResourceManagementClient(self.credential, subscription, **self._kwargs())
