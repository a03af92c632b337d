"""Privileged-role warnings mean something: shown by validate (located) and by the plan that
adds such a grant, at any scope; not repeated by plans that keep it; silenced by
`acknowledgePrivileged: true` on the grant."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.support import run

REPO = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"
ANCHOR = "  roleAssignments:\n"
OWNER_AT_RG = (f"        - role: Owner\n"
               f"          scope: /subscriptions/{SUB}/resourceGroups/rg-payments\n")


def _manifests(tmp_path: Path, extra: str = "") -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target, dirs_exist_ok=True)
    payments = target / "payments.yaml"
    text = payments.read_text(encoding="utf-8")
    assert text.count(ANCHOR) == 1
    payments.write_text(text.replace(ANCHOR, OWNER_AT_RG + extra + ANCHOR), encoding="utf-8")
    return target


def test_warned_when_added_and_by_validate_not_on_every_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cli_env: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = _manifests(tmp_path)
    warning = f"'Owner' at resource group scope /subscriptions/{SUB}/resourceGroups/rg-payments lets its holder"

    code, out, err = run(capsys, "validate", str(manifests))
    assert code == 0, err
    assert f"payments.yaml:46:11: warning: {warning}" in err, err
    assert "acknowledgePrivileged: true" in err

    code, out, err = run(capsys, "plan", str(manifests), *cli_env)
    assert code == 0, err
    assert warning in out + err  # the plan that adds the grant says so

    code, out, err = run(capsys, "apply", str(manifests), *cli_env, "--auto-approve")
    assert code == 0, err
    code, out, err = run(capsys, "plan", str(manifests), *cli_env, "--detailed-exitcode")
    assert code == 0, out + err
    assert "grant any access" not in out + err  # kept, not added: nothing to warn about


def test_an_acknowledged_grant_is_not_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = _manifests(tmp_path, extra="")
    payments = manifests / "payments.yaml"
    payments.write_text(payments.read_text(encoding="utf-8").replace(
        OWNER_AT_RG, OWNER_AT_RG + "          acknowledgePrivileged: true\n"), encoding="utf-8")
    code, out, err = run(capsys, "validate", str(manifests))
    assert code == 0, err
    assert "grant any access" not in err
    code, out, err = run(capsys, "plan", str(manifests), "--sandbox")
    assert code == 0, err
    assert "grant any access" not in out + err
    assert "Plan: 19 to add" in out
