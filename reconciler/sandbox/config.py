"""SandboxConfig: every knob of the sandbox's simulated Azure behaviour, in one frozen record.

The same fields are reachable from Python (`SandboxServer(config=...)`, `srv.configure(**changes)`),
from the control API (`PATCH /_sandbox/config`) and from `reconciler sandbox serve` flags.
Defaults mimic Azure; tests shrink the buckets and windows instead of sleeping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FAULT_KINDS = ("500", "503", "drop", "slow")


@dataclass(frozen=True)
class SandboxConfig:
    # Throttling: ARM's token buckets per subscription (or tenant) and principal
    # (learn.microsoft.com request-limits-and-throttling: reads 250 refilled 25/s, writes and deletes
    # 200 refilled 10/s). `throttle_scale` multiplies every size and rate at once.
    throttling: bool = True
    throttle_scale: float = 1.0
    reads_capacity: int = 250
    reads_per_second: float = 25.0
    writes_capacity: int = 200
    writes_per_second: float = 10.0
    deletes_capacity: int = 200
    deletes_per_second: float = 10.0
    # Microsoft Graph's identity-and-access budget per application and tenant, in resource units per
    # window (3,500 per 10 s for a tenant under 50 users: shared/GRAPH-FACTS.md §15).
    graph_units_capacity: int = 3500
    graph_units_window_seconds: float = 10.0
    # Managed identity creation limit per subscription and region (80 per 20 s).
    identity_creates_per_window: int = 80
    identity_create_window_seconds: float = 20.0

    # The federated identity credential API's own limits per tenant, subscription and identity
    # (throttle.FIC_LIMITS: one write per identity every 4 s); on when `throttling` is on.
    # `fic_throttle_scale` multiplies their rates (tests raise it to run fast).
    fic_throttling: bool = True
    fic_throttle_scale: float = 1.0

    # Added latency per operation kind, in milliseconds (off by default).
    latency_read_ms: float = 0.0
    latency_write_ms: float = 0.0
    latency_delete_ms: float = 0.0

    # Seeded random fault injection (off by default): each routed request fails with probability
    # fault_rate, with a kind drawn from fault_kinds using fault_seed.
    fault_rate: float = 0.0
    fault_seed: int = 0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    fault_retry_after_seconds: int = 1
    slow_seconds: float = 2.0

    # UNVERIFIED choice: 10 s for a new identity's service principal to reach the directory that
    # Microsoft.Authorization reads (real Entra replication is usually seconds, sometimes minutes).
    replication_delay_seconds: float = 10.0
    # ARM does not look up a principal sent with principalType ServicePrincipal (see
    # providers/authorization.py). False makes it look every principal up, so tests can meet a
    # new identity's PrincipalNotFound although reconciler always sends principalType.
    service_principal_type_skips_lookup: bool = True

    # How long one federated identity credential write keeps its identity busy; a second write to
    # any FIC of the same identity inside that window gets 409
    # ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity.
    fic_write_window_seconds: float = 0.2

    # Items per list page before a nextLink is emitted (UNVERIFIED: ARM page sizes vary by RP).
    page_size: int = 100

    # Retry-After on the 202 of a resource group delete; azure-core polls after this many seconds.
    lro_retry_after_seconds: int = 1

    def __post_init__(self) -> None:
        for name in ("reads_capacity", "writes_capacity", "deletes_capacity", "page_size",
                     "identity_creates_per_window", "graph_units_capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown or not self.fault_kinds:
            raise ValueError(f"fault_kinds must be a non-empty subset of {FAULT_KINDS}")
        if self.throttle_scale <= 0 or self.fic_throttle_scale <= 0:
            raise ValueError("throttle_scale and fic_throttle_scale must be positive")

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with `changes` applied; unknown names raise TypeError, bad values ValueError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        if "fault_kinds" in changes:
            changes["fault_kinds"] = tuple(changes["fault_kinds"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}
