"""Crash safety: an apply killed with SIGKILL at any point, then run again, converges with no
duplicates and no errors; two applies of the same manifests at once converge too.

The reconciler runs as a real subprocess (`reconciler apply` via tests/paced_cli.py) against a threaded
sandbox in the test process, so killing it leaves ARM exactly as a crash would."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB, gateway_for, seed
from tests.paced_cli import PACED_CLI, pace_env

IDENTITIES = 24
GITHUB = "https://token.actions.githubusercontent.com"


def write_manifests(folder: Path) -> Path:
    folder.mkdir()
    lines = [
        "apiVersion: reconciler/v1", "kind: IdentitySet", "metadata: {owner: crash}", "spec:",
        f"  subscription: {SUB}", "  defaults: {resourceGroup: rg-crash, location: westeurope}", "  identities:",
    ]
    for i in range(IDENTITIES):
        lines += [
            f"    - name: app-{i:03d}",
            "      federatedCredentials:",
            f"        - {{name: gh-{i}, issuer: '{GITHUB}', subject: 'repo:c/a{i}:x'}}",
            f"        - {{name: gh-{i}-pr, issuer: '{GITHUB}', subject: 'repo:c/a{i}:pr'}}",
            "      roles:",
            f"        - {{role: Reader, scope: /subscriptions/{SUB}/resourceGroups/rg-crash}}",
            f"        - {{role: Monitoring Reader, scope: /subscriptions/{SUB}}}",
        ]
    (folder / "crash.yaml").write_text("\n".join(lines) + "\n")
    return folder


def apply_cmd(manifests: Path, server: SandboxServer) -> list[str]:
    """`reconciler apply`, its FIC calls paced at the sandbox's scale (tests/paced_cli.py)."""
    return [sys.executable, str(PACED_CLI), "apply", str(manifests), "--auto-approve",
            "--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path]


def env_for(server: SandboxServer) -> dict[str, str]:
    return {**os.environ, "RECONCILER_ACCESS_TOKEN": server.admin_token(),
            **pace_env(server.url, server.config.fic_throttle_scale)}


def assert_converged_without_duplicates(server: SandboxServer) -> None:
    gw = gateway_for(server)
    identities = [i for i in gw.msi(SUB).user_assigned_identities.list_by_subscription()]
    assert sorted(i.name for i in identities) == [f"app-{i:03d}" for i in range(IDENTITIES)]
    principals = {i.principal_id for i in identities}
    keys = Counter(
        (a.scope.lower(), a.role_definition_id.lower().rsplit("/", 1)[-1], a.principal_id)
        for a in gw.auth(SUB).role_assignments.list_for_subscription() if a.principal_id in principals
    )
    assert len(keys) == 2 * IDENTITIES and set(keys.values()) == {1}
    for i in range(IDENTITIES):
        fics = list(gw.msi(SUB).federated_identity_credentials.list("rg-crash", f"app-{i:03d}"))
        assert len(fics) == 2


@pytest.fixture
def crash_sandbox(tmp_path: Path) -> Iterator[tuple[SandboxServer, Path]]:
    server = SandboxServer(config=E2E_CONFIG).start()
    manifests = write_manifests(tmp_path / "m")
    seed(server, [manifests])
    yield server, manifests
    server.stop()


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_sigkill_mid_apply_then_apply_again_converges(
    crash_sandbox: tuple[SandboxServer, Path], seed_value: int
) -> None:
    server, manifests = crash_sandbox
    total_steps = IDENTITIES * 5
    kill_after = random.Random(seed_value).randrange(1, total_steps - 5)
    with subprocess.Popen(apply_cmd(manifests, server), env=env_for(server), stderr=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, text=True) as proc:
        assert proc.stderr is not None
        done = 0
        for line in proc.stderr:  # wait on the condition "k steps reported done", not on time
            if " done " in line:
                done += 1
                if done >= kill_after:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    again = subprocess.run(apply_cmd(manifests, server), env=env_for(server), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Verified: a fresh plan shows no changes." in again.stdout
    assert_converged_without_duplicates(server)


def test_two_applies_at_once_converge(crash_sandbox: tuple[SandboxServer, Path]) -> None:
    server, manifests = crash_sandbox
    procs = [subprocess.Popen(apply_cmd(manifests, server), env=env_for(server), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, out + err
    assert_converged_without_duplicates(server)
