"""Test-suite settings shared by every folder."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from hypothesis import settings

# CI replays the same examples every run (a submission must not fail on a fresh random draw
# that no developer has seen); developers' runs keep exploring new ones.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _close_gateways() -> Iterator[None]:
    """Close what tests.e2e.support.gateway_for handed out during the test: unclosed HTTP
    sessions are ResourceWarnings, which pytest's filterwarnings turns into failures."""
    yield
    support = sys.modules.get("tests.e2e.support")
    if support is not None:
        support.close_gateways()
