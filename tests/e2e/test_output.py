"""`reconciler output`: the ids pipelines need, read from ARM, for every declared identity."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run


def test_output_before_apply_fails_and_prints_nothing(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]
) -> None:
    code, out, err = run(capsys, "output", str(manifests), *cli_env)
    assert code == 1
    assert out == ""
    assert "do not exist yet" in err and "payments-api" in err and "Run apply first" in err


def test_output_matches_what_arm_assigned(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, err
    arm = {i.name: i for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}

    code, out, err = run(capsys, "output", str(manifests), *cli_env)
    assert code == 0, err
    identities = json.loads(out)["identities"]
    assert {i["name"] for i in identities} == set(arm)
    for entry in identities:
        live = arm[entry["name"]]
        assert entry["clientId"] == live.client_id
        assert entry["principalId"] == live.principal_id
        assert entry["tenantId"] == live.tenant_id
        assert entry["id"].lower() == live.id.lower()
        assert entry["subscription"] == SUB

    code, out, err = run(capsys, "output", str(manifests), "--format", "env", *cli_env)
    assert code == 0, err
    variables = dict(shlex.split(line)[0].split("=", 1) for line in out.splitlines())
    assert variables["PAYMENTS_API_CLIENT_ID"] == arm["payments-api"].client_id
    assert variables["PLATFORM_DEPLOYER_PRINCIPAL_ID"] == arm["platform-deployer"].principal_id
    assert len(variables) == 4 * len(arm)

    code, out, err = run(capsys, "output", str(manifests), "--format", "table", *cli_env)
    assert code == 0, err
    assert out.splitlines()[0].split() == ["IDENTITY", "CLIENT", "ID", "PRINCIPAL", "ID", "TENANT", "ID"]
    assert arm["payments-worker"].client_id in out
