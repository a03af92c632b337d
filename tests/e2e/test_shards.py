"""A three-subscription estate planned as three shards: one review, each shard applied on its
own, and then the whole estate plans "No changes". A shard without a plan is never silent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.render.markdown import md_text
from reconciler.sandbox import SandboxServer
from tests.e2e.support import run, seed

SUBS = [f"{c * 8}-{c * 4}-{c * 4}-{c * 4}-{c * 12}" for c in "abc"]


def write_estate(root: Path) -> Path:
    folder = root / "estate"
    folder.mkdir()
    for n, sub in enumerate(SUBS):
        identities = "\n".join(
            f"""    - name: app{n}-{i}
      federatedCredentials:
        - name: github
          issuer: https://token.actions.githubusercontent.com
          subject: repo:contoso/app{n}:environment:prod{i}
      roles:
        - role: Reader
          scope: /subscriptions/{sub}/resourceGroups/rg-{n}"""
            for i in range(n + 1)
        )
        (folder / f"team{n}.yaml").write_text(
            f"""apiVersion: reconciler/v1
kind: IdentitySet
metadata:
  owner: team{n}
spec:
  subscription: {sub}
  defaults: {{resourceGroup: rg-{n}, location: westeurope}}
  identities:
{identities}
""",
            encoding="utf-8",
        )
    return folder


@pytest.fixture
def target(tmp_path: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The estate written to ./estate and seeded; the options that point the CLI at the sandbox."""
    seed(sandbox, [write_estate(tmp_path)])
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", sandbox.admin_token())
    monkeypatch.chdir(tmp_path)
    return ["--arm-endpoint", sandbox.url, "--ca-cert", sandbox.ca_cert_path]


def test_three_shards_one_review_each_applies_then_no_changes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target: list[str]
) -> None:
    code, out, err = run(capsys, "matrix", "estate", "--max-jobs", "3")
    assert code == 0, err
    (tmp_path / "matrix.json").write_text(out, encoding="utf-8")
    include = json.loads(out)["include"]
    assert len(include) == 3
    assert sorted(e["subscriptions"] for e in include) == sorted(SUBS)

    plans = []
    for entry in include:
        plan_file = f"plan-{entry['name']}.json"
        code, _, err = run(capsys, "plan", "estate", *entry["args"].split(), "--out", plan_file, *target)
        assert code == 0, err
        plans.append(plan_file)

    code, out, err = run(capsys, "show", *plans, "--matrix", "matrix.json", "--format", "json")
    assert code == 0, err
    review = json.loads(out)
    assert review["complete"] is True
    # 1 + 2 + 3 identities, each with a credential and a grant.
    assert review["summary"]["create"] == 3 * 6
    assert {c["shard"] for c in review["changes"]} == {e["name"] for e in include}
    code, md, err = run(capsys, "show", *plans, "--matrix", "matrix.json", "--format", "markdown")
    assert code == 0, err
    assert md.count("| shard\\_") == 3 and "incomplete" not in md
    assert len(md) < 65_536

    for plan_file in plans:
        code, _, err = run(capsys, "apply", plan_file, *target)
        assert code == 0, err

    code, out, err = run(capsys, "plan", "estate", "--detailed-exitcode", *target)
    assert code == 0, out + err
    assert "No changes" in out


def test_a_shard_without_a_plan_makes_the_review_incomplete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, target: list[str]
) -> None:
    code, out, _ = run(capsys, "matrix", "estate", "--max-jobs", "3")
    (tmp_path / "matrix.json").write_text(out, encoding="utf-8")
    first, second, third = json.loads(out)["include"]
    for entry in (first, second):
        code, _, err = run(capsys, "plan", "estate", *entry["args"].split(), "--out", f"{entry['name']}.json", *target)
        assert code == 0, err
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")

    code, md, err = run(capsys, "show", f"{first['name']}.json", f"{second['name']}.json", "broken.json",
                        "--matrix", "matrix.json", "--format", "markdown")
    assert code == 1
    assert "This review is incomplete" in md
    assert md_text(third["name"]) in md and "no plan for this shard" in md
    assert "broken" in md and "not a readable plan file" in md
    assert "incomplete" in err

    code, out, _ = run(capsys, "show", f"{first['name']}.json", "--matrix", "matrix.json", "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["complete"] is False
    assert [s["status"] for s in data["shards"]].count("error") == 2
