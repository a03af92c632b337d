"""Apply output people can follow: on a terminal each finished step prints one line above the
progress bar; each failure is printed once, with the manifest location of its declaration and
ARM's code and message, never by its internal address."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from reconciler import cli
from tests.e2e.support import SUB, run

GHOST = "99999999-9999-4999-8999-999999999999"  # no such principal in the directory


def add_grant_to_ghost(manifests: Path) -> None:
    (manifests / "ghost.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata: {owner: ghosts}\nspec:\n"
        f"  subscription: {SUB}\n  identities: []\n  roleAssignments:\n"
        f"    - principal: {{objectId: {GHOST}, type: Group}}\n"
        f"      role: Reader\n      scope: /subscriptions/{SUB}/resourceGroups/rg-payments\n")


def printed_lines(terminal: io.StringIO) -> list[str]:
    """What a person sees printed above the live bar: split where the bar redraws."""
    pieces = re.split(r"\r|\n|\x1b\[2K", terminal.getvalue())
    return [p for p in (re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", p) for p in pieces) if p and not p.startswith("apply ")]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> io.StringIO:
    monkeypatch.chdir(tmp_path)
    buffer = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=buffer, force_terminal=True, width=250, highlight=False,
                                            soft_wrap=True, color_system=None))
    return buffer


def test_terminal_prints_a_line_per_step_and_each_failure_once_with_its_location(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], terminal: io.StringIO
) -> None:
    add_grant_to_ghost(manifests)
    code, out, _ = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 1, out
    lines = printed_lines(terminal)
    err = "\n".join(lines)
    assert any(re.fullmatch(r"identity rg-payments/payments-api: created \(principalId [0-9a-f-]{36}\) \[\d+\.\ds\]",
                            line) for line in lines), err
    assert any(line.startswith("federated credential payments-api/github-main: created [") for line in lines), err
    assert sum(1 for line in lines if re.search(r": (created|updated).* \[\d+\.\ds\]$", line)) == 18, err
    failures = [line for line in lines if "failed to create" in line]
    assert len(failures) == 1, err
    line = failures[0]
    assert line.startswith(f"{manifests / 'ghost.yaml'}:8:7: "), line
    assert f"role assignment 'Reader' to Group {GHOST} at /subscriptions/{SUB}/resourceGroups/rg-payments" in line
    assert "PrincipalNotFound: " in line
    assert "roleAssignment/" not in err, err  # never an internal address
    assert "apply incomplete: " in err and " 1 failed" in err


def test_ci_log_names_failures_once_with_location_and_no_internal_address(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    add_grant_to_ghost(manifests)
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 1, out + err
    failures = [line for line in err.splitlines() if "PrincipalNotFound" in line]
    assert len(failures) == 1, err
    assert f"{manifests / 'ghost.yaml'}:8:7: " in failures[0]
    assert "roleAssignment/" not in err and "identity/" not in err, err
