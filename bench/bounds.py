"""The floors and lower bounds the figures are compared with, as plain formulas.

Notation: C bucket capacity, r refill per second, L added latency of one request, P the client's
parallelism, N requests to send.

read_floor (figure 1): the i-th request of a run cannot leave before its token exists, at
    max(0, (i - C) / r), nor before (ceil(i / P) - 1) * L (P requests in flight, each at least L
    long); it ends L later. So
        floor(N) = max((N - C) / r, (ceil(N / P) - 1) * L) + L.

apply_bound (figures 2 and 3), W writes of which I identity creations and F FIC writes in one
subscription and region, K creations allowed per T-second window, writes bucket (C_w, r_w), write
latency L_w; the FIC API's own create-update buckets (Microsoft's FIC page) hold one second's worth:
per subscription (C_s, r_s) = (max(1, 2), 2/s), per identity r_i = 0.25/s (one write every 4 s):
    writes    max(0, (W - C_w) / r_w) + L_w          the W-th write token, then its request
    window    floor((I - 1) / K) * T + 2 * L_w       the last identity's window, its PUT, then at
                                                    least one dependent write (every identity here
                                                    has role assignments)
    fic_sub   max(0, (F - C_s) / r_s) + L_w + B      the F-th FIC write token of the subscription
    chain     2 * L_w + B                            identity -> its FICs: the first FIC write after
              + (F_max - 1) * max(1 / r_i, L_w + B)  the identity's PUT, each further one at least
                                                    1 / r_i later (the identity's bucket) and never
                                                    overlapping (ARM takes one at a time per
                                                    identity; the sandbox keeps it busy B s per
                                                    write, fic_write_window_seconds)
    workers   (W * L_w + F * B) / P                  P writes in flight at most
    bound = max(writes, window, fic_sub, chain, workers)
Each term is a lower bound on its own, so their maximum is one too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """ARM's limits (the sandbox's defaults) multiplied by one throttle scale factor."""

    scale: float

    @property
    def reads_capacity(self) -> float:
        return 250 * self.scale

    @property
    def reads_per_second(self) -> float:
        return 25 * self.scale

    @property
    def writes_capacity(self) -> float:
        return 200 * self.scale

    @property
    def writes_per_second(self) -> float:
        return 10 * self.scale

    @property
    def identity_creates_per_window(self) -> int:
        return max(1, int(80 * self.scale))

    # The FIC API's create-update limits; `throttle_scale` does not change them (the sandbox's
    # fic_throttle_scale does, and the benchmarks leave it at 1).
    fic_scale: float = 1.0

    @property
    def fic_writes_per_second_subscription(self) -> float:
        return 2.0 * self.fic_scale

    @property
    def fic_writes_capacity_subscription(self) -> float:
        return max(1.0, self.fic_writes_per_second_subscription)

    @property
    def fic_writes_per_second_identity(self) -> float:
        return 0.25 * self.fic_scale

    identity_create_window_seconds: float = 20.0

    def describe(self) -> str:
        return (f"reads {self.reads_capacity:g} + {self.reads_per_second:g}/s, writes {self.writes_capacity:g} + "
                f"{self.writes_per_second:g}/s, identity creation {self.identity_creates_per_window} per "
                f"{self.identity_create_window_seconds:g} s (per subscription and principal; creation per "
                f"subscription and region), FIC writes {self.fic_writes_per_second_subscription:g}/s per subscription "
                f"and {self.fic_writes_per_second_identity:g}/s per identity")


def read_floor(calls: int, limits: Limits, latency: float, parallelism: int) -> float:
    tokens = max(0.0, (calls - limits.reads_capacity) / limits.reads_per_second)
    pipeline = (math.ceil(calls / parallelism) - 1) * latency
    return max(tokens, pipeline) + latency


# The FIC API's list limits (Microsoft's FIC considerations page, as the sandbox applies them), per
# second, per tenant and per subscription; buckets hold one second's worth.
FIC_LISTS_PER_SECOND_TENANT = 15.0
FIC_LISTS_PER_SECOND_SUBSCRIPTION = 5.0


def read_floor_spread(calls: int, subscriptions: int, limits: Limits, latency: float, parallelism: int,
                      fic_lists: int = 0) -> float:
    """read_floor when the calls are spread evenly over `subscriptions`, each with its own bucket
    (ARM's buckets are per subscription) but one pool of P workers. `fic_lists` of the calls are
    FIC lists, which the FIC API also limits per tenant and per subscription:
        fic_tenant        max(0, (F - R_t) / R_t)          the F-th list's tenant token
        fic_subscription  max(0, (F / S - R_s) / R_s)      the last subscription's F / S-th token
    """
    per_subscription = math.ceil(calls / max(1, subscriptions))
    tokens = max(0.0, (per_subscription - limits.reads_capacity) / limits.reads_per_second)
    pipeline = (math.ceil(calls / parallelism) - 1) * latency
    fic_tenant = max(0.0, (fic_lists - FIC_LISTS_PER_SECOND_TENANT) / FIC_LISTS_PER_SECOND_TENANT)
    per_sub_fics = math.ceil(fic_lists / max(1, subscriptions))
    fic_subscription = max(0.0, (per_sub_fics - FIC_LISTS_PER_SECOND_SUBSCRIPTION) / FIC_LISTS_PER_SECOND_SUBSCRIPTION)
    return max(tokens, pipeline, fic_tenant, fic_subscription) + latency


@dataclass(frozen=True)
class ApplyBound:
    writes: float
    window: float
    chain: float
    workers: float
    fic_subscription: float = 0.0

    @property
    def bound(self) -> float:
        return max(self.writes, self.window, self.fic_subscription, self.chain, self.workers)

    @property
    def binding(self) -> str:
        terms = {"writes bucket": self.writes, "identity-creation window": self.window,
                 "FIC subscription bucket": self.fic_subscription, "FIC chain": self.chain,
                 "parallelism": self.workers}
        return max(terms, key=lambda k: terms[k])


def apply_bound(*, writes: int, identity_creates: int, fics: int, max_fics_per_identity: int, limits: Limits,
                write_latency: float, parallelism: int, fic_busy: float = 0.2) -> ApplyBound:
    k = limits.identity_creates_per_window
    fic_write = write_latency + fic_busy
    return ApplyBound(
        writes=max(0.0, (writes - limits.writes_capacity) / limits.writes_per_second) + write_latency,
        window=((identity_creates - 1) // k) * limits.identity_create_window_seconds + 2 * write_latency
        if identity_creates else 0.0,
        chain=write_latency + fic_write
        + (max_fics_per_identity - 1) * max(1.0 / limits.fic_writes_per_second_identity, fic_write)
        if max_fics_per_identity else write_latency,
        workers=(writes * write_latency + fics * fic_busy) / parallelism,
        fic_subscription=max(0.0, (fics - limits.fic_writes_capacity_subscription)
                             / limits.fic_writes_per_second_subscription) + fic_write if fics else 0.0,
    )
