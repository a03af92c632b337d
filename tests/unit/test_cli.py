"""The CLI's contract: exit codes, the error boundary, the --sandbox flag (no ARM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import _rewrite_sandbox_flag, main

REPO = Path(__file__).resolve().parents[2]


def test_validate_examples_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "manifests")]) == 0
    assert "Valid:" in capsys.readouterr().out


def test_empty_path_argument_is_an_error_not_the_current_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", ""]) == 1
    assert "empty manifest path" in capsys.readouterr().err


def test_usage_errors_exit_1_not_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--no-such-option"]) == 1
    assert main(["no-such-command"]) == 1
    assert main(["drift", str(REPO / "manifests"), "--fail-on", "bogus", "--sandbox", "x.db"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_unreadable_plan_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    assert main(["show", str(bad)]) == 1
    assert "not a readable plan file" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["plan", "m", "--sandbox"], ["plan", "m", "--sandbox-db", ".reconciler/sandbox.db"]),
    (["plan", "--sandbox", "m"], ["plan", "--sandbox-db", ".reconciler/sandbox.db", "m"]),
    (["plan", "m", "--sandbox", "s.db"], ["plan", "m", "--sandbox-db", "s.db"]),
    (["plan", "m", "--sandbox=x/s.db"], ["plan", "m", "--sandbox-db", "x/s.db"]),
])
def test_sandbox_flag_takes_an_optional_db(argv: list[str], expected: list[str]) -> None:
    assert _rewrite_sandbox_flag(argv) == expected


def test_public_api_exports_resolve_and_the_sandbox_import_loads_no_core() -> None:
    import subprocess
    import sys

    import reconciler

    for name in reconciler.__all__:
        assert getattr(reconciler, name) is not None
    probe = ("import sys, reconciler.sandbox; "
             "print([m for m in sys.modules if m.startswith('reconciler.') "
             "and not m.startswith(('reconciler.sandbox', 'reconciler.data'))])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_comes_from_the_package_metadata_and_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    import reconciler

    assert reconciler.__version__ == version("managed-identity-reconciler")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"managed-identity-reconciler {reconciler.__version__}\n"
    assert main(["--help"]) == 0


def test_version_without_the_distribution_installed_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    import reconciler

    assert reconciler.__version__ == "0+unknown"
    assert main(["--version"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "managed-identity-reconciler is not installed" in captured.err
    assert "pipx install managed-identity-reconciler" in captured.err
