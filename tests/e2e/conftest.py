"""End-to-end fixtures: the real Azure SDK clients against the sandbox.

The `sandbox` fixture serves the SDK in process (tests/inprocess.py): the same clients, pipeline,
policies and sandbox request handling, without TLS and TCP. Tests marked `https` get a sandbox
reached over real HTTPS instead, as do the tests that start a SandboxServer of their own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.azure import transports
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, seed
from tests.inprocess import serve_in_process

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    server = SandboxServer(config=E2E_CONFIG).start()
    try:
        if request.node.get_closest_marker("https") is not None:
            # Over TLS, but the CLI's budget still paces FIC calls like this sandbox.
            transports.register(server.url, None, fic_scale=server.config.fic_throttle_scale)
            try:
                yield server
            finally:
                transports.unregister(server.url)
        else:
            with serve_in_process(server):
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
