"""Helpers for end-to-end tests: the real SDK pointed at a sandbox, seeding from manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.azure.budget import BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.cli import main
from reconciler.manifest.loader import load_manifests
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxConfig, SandboxServer
from reconciler.target import seed_of

SUB = "11111111-1111-1111-1111-111111111111"

# Azure's defaults, except that the FIC API's per-identity limits (one list or write every 4 s) are
# 40 times looser: a test runs CLI commands back to back, seconds apart, where a pipeline's plan and
# apply are minutes apart. The client still paces FIC writes at Azure's real rate; test_fic_pacing
# runs an apply against the real limits.
E2E_CONFIG = SandboxConfig(fic_throttle_scale=40.0)


def seed(server: SandboxServer, paths: list[Path]) -> None:
    """Give an empty sandbox what the manifests reference, as `--sandbox` does."""
    desired, _ = load_manifests(paths, RoleCatalog())
    data = seed_of(desired)
    server.seed(
        subscriptions=[s for (s,) in data["subscriptions"]],
        resource_groups=[(s, r, loc) for s, r, loc in data["resource_groups"]],
        principals=[(o, t, n) for o, t, n in data["principals"]],
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI as a user runs it: exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


_OPEN: list[AzureGateway] = []


def gateway_for(server: SandboxServer) -> AzureGateway:
    """The sandbox's admin through the real SDK clients, closed when the test ends (tests/conftest.py);
    its client budget paced like the sandbox's limits (as the embedded sandbox's is): Azure's
    rates, FIC calls at the sandbox's `fic_throttle_scale`."""
    budget = RateBudget(BudgetConfig(fic_scale=server.config.fic_throttle_scale))
    gateway = AzureGateway(ArmTarget(StaticTokenCredential(server.admin_token()), server.url, server.ca_cert_path,
                                     budget=budget))
    _OPEN.append(gateway)
    return gateway


def close_gateways() -> None:
    """Close every gateway `gateway_for` handed out (their SDK clients hold HTTP sessions)."""
    while _OPEN:
        _OPEN.pop().close()
