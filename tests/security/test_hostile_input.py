"""Hostile and odd input ends in a located error, promptly: non-regular files are never
opened, YAML is bounded in documents, values and depth, saved plans and output paths that
cannot work are refused with a message (never "Internal error"), output paths are checked
before Azure is touched, and a JSON manifest is not taken for a saved plan."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.manifest import yaml_source
from reconciler.manifest.yaml_source import MAX_DEPTH, MAX_DOCUMENTS, parse
from tests.e2e.support import SUB, run

# Nothing listens here: a command that reached ARM would fail with a connection error instead.
NOWHERE = ["--arm-endpoint", "https://127.0.0.1:9"]
MANIFEST = {
    "apiVersion": "reconciler/v1", "kind": "IdentitySet", "metadata": {"owner": "hostile"},
    "spec": {"subscription": SUB, "defaults": {"resourceGroup": "rg-hostile", "location": "westeurope"},
             "identities": [{"name": "hostile-api"}]},
}


def _finishes(args: list[str], seconds: float = 60.0) -> int:
    """Run the CLI in a thread; fail (instead of hanging the suite) if it does not finish."""
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(main(args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"reconciler {' '.join(args)} did not finish"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_yaml_is_reported_not_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text(json.dumps(MANIFEST), encoding="utf-8")
    os.mkfifo(tmp_path / "pipe.yaml")
    assert _finishes(["validate", str(tmp_path)]) == 1
    _, err = capsys.readouterr()
    assert f"{tmp_path / 'pipe.yaml'}:1:1: not a regular file (a FIFO)" in err
    assert "Internal error" not in err


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_behind_a_yaml_symlink_is_reported_not_read(tmp_path: Path) -> None:
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    docs, diags = yaml_source.read_file(str(tmp_path / "zero.yaml"))
    assert not docs and [d.message for d in diags] == ["not a regular file (a character device); it is not read"]


def test_documents_per_file_are_bounded() -> None:
    docs, diags = parse("---\n" * (MAX_DOCUMENTS * 5), "m.yaml")
    assert len(docs) == MAX_DOCUMENTS
    assert [str(d).splitlines()[0] for d in diags] == [
        f"m.yaml:{MAX_DOCUMENTS + 1}:1: file has more than {MAX_DOCUMENTS:,} documents; the rest is not read"]


def test_values_per_file_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaml_source, "MAX_NODES", 1_000)
    _, diags = parse("a:\n" + "".join(f"  - {i}\n" for i in range(2_000)), "m.yaml")
    assert [d.message for d in diags] == ["file has more than 1,000 values"]
    assert diags[0].location is not None and diags[0].location.line > 900


def test_deep_nesting_is_a_located_error_without_exhausting_the_stack() -> None:
    _, diags = parse("a: " + "[" * 200_000 + "]" * 200_000, "m.yaml")
    assert [str(d).splitlines()[0] for d in diags] == [f"m.yaml:1:{MAX_DEPTH + 4}: value nested deeper than "
                                                       f"{MAX_DEPTH} levels"]


def test_a_deeply_nested_plan_file_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plan.json"
    path.write_text('{"format_version": "1.0", "changes": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    code, _, err = run(capsys, "show", str(path))
    assert code == 1 and "nested too deeply" in err and "Internal error" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_given_as_a_plan_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "plan.json")
    assert _finishes(["show", str(tmp_path / "plan.json")]) == 1
    assert "not a regular file" in capsys.readouterr().err


def _manifest(tmp_path: Path) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    return str(path)


def test_plan_out_to_a_directory_is_refused_before_azure_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", "not-used-token")
    code, _, err = run(capsys, "plan", _manifest(tmp_path), *NOWHERE, "--out", str(tmp_path))
    assert code == 1 and "--out" in err and "is a directory" in err
    assert "Internal error" not in err and "reached" not in err


def test_apply_report_to_a_directory_is_refused_before_azure_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", "not-used-token")
    code, _, err = run(capsys, "apply", _manifest(tmp_path), *NOWHERE, "--auto-approve", "--report", str(tmp_path))
    assert code == 1 and "--report" in err and "is a directory" in err
    assert "Internal error" not in err and "reached" not in err


def test_unwritable_report_parent_is_refused_before_azure_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", "not-used-token")
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    code, _, err = run(capsys, "apply", _manifest(tmp_path), *NOWHERE, "--auto-approve",
                       "--report", str(blocker / "report.json"))
    assert code == 1 and "--report" in err and "cannot create it" in err and "Internal error" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_failed_write_of_the_plan_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a saved plan's manifests must lie inside the working directory
    _manifest(tmp_path)
    code, _, err = run(capsys, "plan", "m.yaml", "--sandbox", "s.db", "--out", "/dev/full")
    assert code == 1 and "--out /dev/full: cannot write it" in err and "Internal error" not in err


def test_a_json_manifest_given_to_apply_is_applied_as_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "estate.json"
    path.write_text(json.dumps(MANIFEST), encoding="utf-8")
    code, out, err = run(capsys, "apply", str(path), "--sandbox", str(tmp_path / "s.db"), "--auto-approve")
    assert code == 0, err
    assert "Verified" in out and "hostile-api" in out
