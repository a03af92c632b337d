"""Test-suite settings shared by every folder."""

from __future__ import annotations

import os

from hypothesis import settings

# CI replays the same examples every run (a submission must not fail on a fresh random draw
# that no developer has seen); developers' runs keep exploring new ones.
if os.environ.get("CI"):
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.load_profile("ci")
