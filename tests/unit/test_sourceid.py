"""The source id is the same whatever the working directory or checkout location."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sourceid import source_id


def test_relative_to_the_repository_root_from_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "checkout" / "identities"
    (repo / ".git").mkdir(parents=True)
    (repo / "teams" / "manifests").mkdir(parents=True)
    monkeypatch.chdir(repo)
    assert source_id(["teams/manifests/"], {}) == "teams/manifests"
    monkeypatch.chdir(repo / "teams")
    assert source_id(["./manifests"], {}) == "teams/manifests"
    monkeypatch.chdir(tmp_path)
    assert source_id([str(repo / "teams" / "manifests")], {}) == "teams/manifests"


def test_outside_a_repository_the_folder_name_and_an_explicit_setting_wins(tmp_path: Path) -> None:
    (tmp_path / "a" / "manifests").mkdir(parents=True)
    assert source_id([str(tmp_path / "a" / "manifests")], {}) == "manifests"
    assert source_id([str(tmp_path / "a" / "manifests")], {"RECONCILER_SOURCE": "contoso/ids"}) == "contoso/ids"
