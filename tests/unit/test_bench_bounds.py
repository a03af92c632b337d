"""The apply bound of benchmark figures 2 and 3 knows the FIC API's limits (Microsoft's FIC page:
create-update 2/s per subscription, 0.25/s per identity)."""

from __future__ import annotations

import math

import pytest

from bench.bounds import Limits, apply_bound, read_floor_spread


def test_fic_writes_are_bounded_by_the_subscription_bucket() -> None:
    b = apply_bound(writes=110, identity_creates=10, fics=100, max_fics_per_identity=10, limits=Limits(1.0),
                    write_latency=0.05, parallelism=8, fic_busy=0.2)
    # The 100th FIC write token exists (100 - 2) / 2 s after the start; then its request.
    assert b.fic_subscription == pytest.approx(49.0 + 0.25)
    # One identity's ten FICs: one write every 4 s after its creation.
    assert b.chain == pytest.approx(0.05 + 0.25 + 9 * 4.0)
    assert b.bound == b.fic_subscription and b.binding == "FIC subscription bucket"
    one = apply_bound(writes=11, identity_creates=1, fics=10, max_fics_per_identity=10, limits=Limits(1.0),
                      write_latency=0.05, parallelism=8, fic_busy=0.2)
    assert one.binding == "FIC chain"


def test_without_fics_the_fic_terms_vanish() -> None:
    b = apply_bound(writes=300, identity_creates=10, fics=0, max_fics_per_identity=0, limits=Limits(1.0),
                    write_latency=0.05, parallelism=8)
    assert b.fic_subscription == 0.0 and b.chain == pytest.approx(0.05)
    assert b.binding == "writes bucket"


def test_read_floor_counts_the_fic_list_limits() -> None:
    limits = Limits(1.0)
    without = read_floor_spread(10_620, 10, limits, 0.04, 8)
    assert without == pytest.approx(max((1062 - 250) / 25, (math.ceil(10_620 / 8) - 1) * 0.04) + 0.04)
    # 10,000 FIC lists at 15/s per tenant (5/s per subscription over 10 is less binding).
    assert read_floor_spread(10_620, 10, limits, 0.04, 8, fic_lists=10_000) == pytest.approx((10_000 - 15) / 15 + 0.04)
    assert read_floor_spread(10_620, 1, limits, 0.04, 8, fic_lists=10_000) == pytest.approx((10_000 - 5) / 5 + 0.04)
