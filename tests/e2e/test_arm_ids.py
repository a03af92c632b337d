"""ARM ids in manifests are case-insensitive, as ARM is: a scope copied from an activity log
(`/SUBSCRIPTIONS/…/RESOURCEGROUPS/…`) plans, applies and converges; a broken one is reported
whole, with a hint that covers trailing slashes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.support import run

REPO = Path(__file__).resolve().parents[2]
SUB = "11111111-1111-1111-1111-111111111111"


def _copy(tmp_path: Path, old: str, new: str) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target)
    payments = target / "payments.yaml"
    text = payments.read_text(encoding="utf-8")
    assert old in text
    payments.write_text(text.replace(old, new), encoding="utf-8")
    return target


def test_activity_log_casing_and_trailing_slash_plan_apply_and_converge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], cli_env: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = _copy(tmp_path / "edited", f"scope: /subscriptions/{SUB}/resourceGroups/rg-data",
                      f"scope: /SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/rg-data/")
    code, out, err = run(capsys, "validate", str(manifests))
    assert code == 0, err
    code, out, err = run(capsys, "apply", str(manifests), *cli_env, "--auto-approve")
    assert code == 0, err
    assert "Verified: a fresh plan shows no changes." in out
    code, out, err = run(capsys, "plan", str(manifests), *cli_env, "--detailed-exitcode")
    assert code == 0, out + err
    # The same grant written in the canonical casing is the same grant: still no changes.
    (manifests / "payments.yaml").write_text(
        (manifests / "payments.yaml").read_text(encoding="utf-8").replace(
            f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/rg-data/", f"/subscriptions/{SUB}/resourceGroups/rg-data"),
        encoding="utf-8")
    code, out, err = run(capsys, "plan", str(manifests), *cli_env, "--detailed-exitcode")
    assert code == 0, out + err


def test_a_broken_scope_is_shown_whole_with_a_hint_about_slashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts//"
    manifests = _copy(tmp_path, f"scope: /subscriptions/{SUB}/resourceGroups/rg-data", f"scope: {broken}")
    code, out, err = run(capsys, "validate", str(manifests))
    assert code == 1 and out == ""
    assert f"'{broken}' is not a valid ARM scope" in err, err
    assert "trailing slash" in err
