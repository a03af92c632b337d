"""Process-local endpoints: an ARM (or Graph) reached without a socket, and paced like itself.

ArmTarget and GraphTarget built without an explicit `transport` ask `for_endpoint(url)` first and
fall back to azure-core's RequestsTransport (real HTTPS) when nothing is registered, which is
always the case outside tests. The test suite registers an in-process sandbox's URL here
(tests/inprocess.py), so the CLI's `--arm-endpoint URL` path runs unchanged up to the transport,
without TLS and TCP round trips; a representative set of tests keeps real HTTPS.

An endpoint registered with `fic_scale` gets a client budget whose FIC rates are that many times
Azure's (`fic_scale(url)`), as the embedded sandbox's budget follows its `fic_throttle_scale`:
the client paces itself like the server it talks to, not like Azure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A factory, not a transport: azure-core closes a client's transport with the client.
TransportFactory = Callable[[], Any]


@dataclass(frozen=True)
class _Endpoint:
    transport: TransportFactory | None  # None: real HTTPS
    fic_scale: float


_lock = threading.Lock()
_registered: dict[str, _Endpoint] = {}


def _key(endpoint: str) -> str:
    return endpoint.rstrip("/").lower()


def register(endpoint: str, factory: TransportFactory | None, *, fic_scale: float = 1.0) -> None:
    """Serve every client built for `endpoint` (scheme://host:port) through `factory()` (None: over
    HTTPS as usual) and pace its FIC calls at `fic_scale` times Azure's rates."""
    if fic_scale <= 0:
        raise ValueError("fic_scale must be positive")
    with _lock:
        _registered[_key(endpoint)] = _Endpoint(factory, fic_scale)


def unregister(endpoint: str) -> None:
    with _lock:
        _registered.pop(_key(endpoint), None)


def _lookup(endpoint: str) -> _Endpoint | None:
    with _lock:
        return _registered.get(_key(endpoint))


def for_endpoint(endpoint: str) -> Any:
    """A new transport for `endpoint` if one is registered, else None (use real HTTPS)."""
    found = _lookup(endpoint)
    return found.transport() if found is not None and found.transport is not None else None


def fic_scale(endpoint: str) -> float:
    """How many times Azure's FIC rates the client budget for `endpoint` may use (1.0: Azure's)."""
    found = _lookup(endpoint)
    return found.fic_scale if found is not None else 1.0
