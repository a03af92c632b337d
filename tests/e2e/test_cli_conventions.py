"""The CLI behaves like a conventional command-line tool: verbatim output, colour only when
wanted, a --sandbox that never eats a manifest path, help that reads like click's, completion."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.support import run

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _manifest_with_error_at_line_100_col_13(path: Path) -> None:
    lines = [
        "apiVersion: reconciler/v1", "kind: IdentitySet", "metadata:", "  owner: payments", "spec:",
        "  subscription: 11111111-1111-1111-1111-111111111111",
        "  defaults: {resourceGroup: rg-payments, location: westeurope}",
        "  identities:", "    - name: payments-api", "      federatedCredentials:",
        "          - name: github-main",
        "            issuer: https://token.actions.githubusercontent.com",
        "            subject: repo:contoso/payments:ref:refs/heads/main",
    ]
    lines += ["            # padding"] * (99 - len(lines))
    lines.append("            '[bold]x[/bold]:smile:': 1")  # line 100, column 13
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_diagnostics_are_printed_verbatim_not_as_emoji_or_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "a.yaml"
    _manifest_with_error_at_line_100_col_13(bad)
    code, out, err = run(capsys, "validate", str(bad))
    assert code == 1
    assert out == ""
    assert f"{bad}:100:13: unknown field '[bold]x[/bold]:smile:'" in err, err
    assert "\N{HUNDRED POINTS SYMBOL}" not in err


def _in_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal, as a person sees it."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path: Path) -> None:
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["PYTHONPATH"] = str(REPO)
    plan = ["plan", "manifests/", "--sandbox"]
    assert ANSI.search(_in_a_terminal(plan, tmp_path, env)), "a terminal gets colour"
    assert not ANSI.search(_in_a_terminal(plan, tmp_path, {**env, "NO_COLOR": "1"}))
    assert not ANSI.search(_in_a_terminal([*plan, "--no-color"], tmp_path, env))
    assert not ANSI.search(_in_a_terminal(["--no-color", *plan], tmp_path, env))


def test_stdout_carries_only_the_requested_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "manifests", "manifests")
    code, out, err = run(capsys, "plan", "manifests/", "--sandbox", "--format", "json", "--out", "p.json", "-v")
    assert code == 0, err
    assert json.loads(out)["format_version"]  # the whole of stdout is the JSON plan
    assert "Saved the plan" in err and "ARM calls" in err


def test_sandbox_is_a_flag_and_never_swallows_a_manifest_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(REPO / "manifests", "m")
    # A word after --sandbox that is neither a manifest path nor a .db file is refused, naming
    # the spelling that does what was probably meant.
    code, out, err = run(capsys, "plan", "--sandbox", "db", "m/")
    assert code == 1 and out == ""
    assert "--sandbox-db db" in err and "Traceback" not in err
    # --sandbox followed by a manifest folder: the folder is the manifest, the DB the default.
    code, out, err = run(capsys, "plan", "--sandbox", "m/", "--detailed-exitcode")
    assert code == 2, err
    assert Path(".reconciler/sandbox.db").is_file()
    # The file named three ways; none of them is read as a manifest.
    for args, db in ((["--sandbox-db", "state"], "state"), (["--sandbox=s2"], "s2"), (["--sandbox", "s3.db"], "s3.db")):
        code, out, err = run(capsys, "plan", *args, "m/")
        assert code == 0, err
        assert Path(db).is_file(), args
        assert "Plan: 18 to add" in out


def test_help_is_conventional(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for command in ("plan", "apply", "drift", "validate", "show"):
        assert main_help(capsys, command, "-h") == main_help(capsys, command, "--help")
    text = main_help(capsys, "plan", "-h")
    assert "Usage: reconciler plan [OPTIONS] PATH..." in text
    assert re.search(r"^  --sandbox\s", text, re.MULTILINE) and "--sandbox-db PATH" in text
    for metavar in ("--out PATH", "--subscription ID", "--format [text|markdown|json]", "--arm-endpoint URL"):
        assert metavar in text
    assert "--parallelism INTEGER" in main_help(capsys, "apply", "-h")
    commands: list[list[str]] = [["plan"], ["apply"], ["drift"], ["show"], ["validate"], [],
                                 ["sandbox", "serve"], ["sandbox", "token"]]
    for words in commands:
        text = main_help(capsys, *words, "--help")
        assert not re.search(r"<[a-z][\w\[\]|]*>|\{\w+\}", text), text  # no <list[str]>, <int>, {paths}
        assert "…" not in text, text  # nothing cut off
        assert max(map(len, text.splitlines())) <= 80, text
    assert "--install-completion" in main_help(capsys, "--help")


def main_help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def test_shell_completion_completes_commands(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "_RECONCILER_COMPLETE": "complete_bash",
           "COMP_WORDS": "reconciler pl", "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "reconciler"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plan"]


def test_a_bad_choice_says_which_values_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "manifests/", "--format", "xml")
    assert code == 1
    assert "'xml' is not one of 'text', 'markdown', 'json'" in err
    assert "Value error" not in err
    code, _, err = run(capsys, "plan", "manifests/", "--sandbox", "--cloud", "Azure")
    assert code == 1
    assert "'Azure' is not one of 'AzureCloud', 'AzureUSGovernment', 'AzureChinaCloud'" in err
