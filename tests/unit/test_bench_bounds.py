"""The apply bound of benchmark figures 2 and 3 knows the FIC API's limits (Microsoft's FIC page:
create-update 2/s per subscription, 0.25/s per identity)."""

from __future__ import annotations

import pytest

from bench.bounds import Limits, apply_bound


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
