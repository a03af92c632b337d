"""End-to-end fixtures: the real Azure SDK clients, over HTTPS, against the sandbox."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, seed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = SandboxServer(config=E2E_CONFIG).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A private copy of the example manifests that a test may edit."""
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target)
    return target


@pytest.fixture
def seeded(sandbox: SandboxServer, manifests: Path) -> SandboxServer:
    seed(sandbox, [manifests])
    return sandbox


@pytest.fixture
def cli_env(seeded: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Target options that point the CLI at the threaded sandbox, as `sandbox serve` users do."""
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", seeded.admin_token())
    return ["--arm-endpoint", seeded.url, "--ca-cert", seeded.ca_cert_path]
