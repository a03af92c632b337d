"""Shared fixtures: a real sandbox over HTTPS on loopback, and the real SDK pointed at it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EXAMPLES = REPO / "manifests"
