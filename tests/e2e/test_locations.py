"""Locations and missing resource groups are caught before apply (issue 10 item 9), through the
CLI, the real SDK (SubscriptionClient included) and HTTPS, against the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.model import ReadScope
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run


def test_validate_catches_a_location_typo_with_file_line_and_suggestion(
    capsys: pytest.CaptureFixture[str], manifests: Path
) -> None:
    file = manifests / "payments.yaml"
    file.write_text(file.read_text().replace("location: westeurope", "location: westeruope"))
    code, out, err = run(capsys, "validate", str(manifests))
    assert code == 1
    assert f"{file}:13:15: unknown Azure region 'westeruope'" in out + err
    assert "did you mean 'westeurope'?" in out + err


def test_display_names_validate_and_plan_to_the_short_name(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]
) -> None:
    file = manifests / "payments.yaml"
    file.write_text(file.read_text().replace("location: westeurope", "location: West Europe"))
    code, out, err = run(capsys, "plan", str(manifests), "--format", "json", *cli_env)
    assert code == 0, err
    assert '"location": "westeurope"' in out and "West Europe" not in out


def test_the_gateway_reads_each_subscriptions_locations(seeded: SandboxServer) -> None:
    live = gateway_for(seeded).read_live(ReadScope(frozenset({SUB})))
    assert {"westeurope", "eastus", "swedencentral"} <= live.locations[SUB]
    assert "westeruope" not in live.locations[SUB]


def test_a_grant_in_a_missing_resource_group_fails_the_plan_located(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]
) -> None:
    file = manifests / "payments.yaml"
    text = file.read_text()
    line = text.splitlines().index(f"          scope: /subscriptions/{SUB}/resourceGroups/rg-data") + 1
    file.write_text(text.replace("resourceGroups/rg-data", "resourceGroups/rg-gone"))
    code, out, err = run(capsys, "plan", str(manifests), *cli_env)
    assert code == 1
    assert f"{file}:{line - 1}:" in err + out  # the grant entry starts at its `role:` line
    assert "resource group 'rg-gone', which does not exist" in err + out
