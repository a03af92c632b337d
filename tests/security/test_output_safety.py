"""Text from manifests, Azure or a saved plan is printed with control characters escaped, and
never starts an output line: no terminal escapes, no CI logging commands (`##vso[…]`,
`::set-output`) injected through a tag, a reason, a warning or a file name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.model import DesiredState, LiveState
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.render import drift
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.textsafe import json_safe, lines, one_line
from tests.unit.test_planner import RG, SUB, ident, live_ident

INJECT = "x\n##vso[task.setvariable variable=owned]1\r\n::set-output name=a::b\x1b[2J\u202e"
# What a CI runner would read as a command: Azure Pipelines finds `##vso[` anywhere in a line,
# GitHub Actions reads `::` at the start of one.
_COMMAND = re.compile(r"##vso\[|^\s*::", re.MULTILINE | re.IGNORECASE)


def _safe(output: str) -> None:
    assert not _COMMAND.search(output), output
    assert "\x1b[2J" not in output and "\u202e" not in output and "\r" not in output


def test_one_line_escapes_every_control_character() -> None:
    assert one_line("a\nb\r\x1b[0m\u2028\u202ec\td") == "a\\nb\\r\\x1b[0m\\u2028\\u202ec\\td"
    assert lines("first\nsecond\x1b") == "first\nsecond\\x1b"
    assert one_line("plain → text…") == "plain → text…"
    assert one_line("tag ##vso[task.setvariable]x") == "tag \\x23#vso[task.setvariable]x"
    assert json.loads(json_safe(json.dumps({"k": "##VSO[x]"}))) == {"k": "##VSO[x]"}


def _drifted_plan() -> Plan:
    # Tags edited out of band in Azure: a key and a value that try to start a line of their own.
    have = live_ident(tags={**live_ident().tags, INJECT: INJECT, "team": INJECT})
    live = LiveState(identities={have.key: have}, subscriptions=frozenset({SUB}),
                     resource_groups=frozenset({(SUB, RG.lower())}))
    return make_plan(DesiredState(identities=(ident(),), owners=frozenset({"payments"})), live)


def test_values_from_azure_never_start_a_line_in_any_format() -> None:
    plan = _drifted_plan()
    assert plan.has_changes
    for output in (render_text(plan), render_text(plan, color=True, verbose=True), render_markdown(plan),
                   drift.render_text(plan), drift.render_markdown(plan)):
        _safe(output)


@pytest.fixture
def tampered_plan(tmp_path: Path) -> Path:
    """A saved plan whose reason and warnings were edited to carry escapes and commands."""
    data = json.loads(_drifted_plan().dumps())
    data["warnings"] = [INJECT]
    data["changes"][0]["reason"] = INJECT
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_show_escapes_reason_and_warnings_of_a_saved_plan(
    tampered_plan: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(tampered_plan), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert "set-output" in out  # shown, but escaped
    _safe(out + err)
    if fmt == "json":
        assert json.loads(out)["warnings"] == [INJECT]  # escaped for the log, not altered


def test_file_names_with_escapes_are_escaped_in_diagnostics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = tmp_path / "bad\x1b[31m\n##vso[task.complete result=Succeeded]x.yaml"
    name.write_text("apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata: {}\n", encoding="utf-8")
    assert main(["validate", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "bad\\x1b[31m\\n\\x23#vso" in err
    _safe(out + err)


def test_arm_messages_stay_on_one_line_wherever_the_error_is_shown() -> None:
    from reconciler.errors import ArmError, LiveReadError

    error = ArmError("BadRequest", f"description '{INJECT}' is invalid", address="identity/x")
    assert all(line.startswith("  | ") for line in str(error).splitlines()[1:])
    _safe(f"Error: {LiveReadError(f'reading live state failed: {error}')}")
    # A credential's own list of what it tried stays readable, line by line.
    tried = ArmError("CredentialUnavailable", "failed.\nAttempted credentials:\n\tEnvironmentCredential: unset")
    assert str(tried).splitlines() == ["CredentialUnavailable: failed.", "  | Attempted credentials:",
                                       "  |     EnvironmentCredential: unset"]
