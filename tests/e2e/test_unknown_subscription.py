"""`--subscription X` where no manifest declares X is an error naming the declared ones,
never "No changes" (a typo in a CI matrix would otherwise hide drift for ever)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.support import SUB, run

TYPO = "11111111-1111-1111-1111-11111111111f"


@pytest.mark.parametrize("command", ["plan", "apply", "drift"])
def test_unknown_subscription_is_an_error_naming_the_declared_ones(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], command: str
) -> None:
    extra = ["--auto-approve"] if command == "apply" else []
    code, out, err = run(capsys, command, str(manifests), "--subscription", TYPO, *extra, *cli_env)
    assert code == 1, out + err
    assert "No changes" not in out
    assert f"--subscription {TYPO}: no manifest declares this subscription" in err
    assert f"the manifests declare {SUB}" in err


def test_declared_subscription_in_other_case_is_accepted(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]
) -> None:
    code, out, err = run(capsys, "plan", str(manifests), "--subscription", SUB.upper(), *cli_env)
    assert code == 0, out + err


def test_subscription_of_an_empty_identity_set_is_declared(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]
) -> None:
    other = "22222222-2222-2222-2222-222222222299"
    (manifests / "retired.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata: {owner: retired}\n"
        f"spec:\n  subscription: {other}\n  identities: []\n")
    _, _, err = run(capsys, "plan", str(manifests), "--subscription", other, *cli_env)
    assert "no manifest declares" not in err, err
