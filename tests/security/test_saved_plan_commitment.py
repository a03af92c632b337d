"""A saved plan is a commitment, not an instruction (issue 9.1): whatever the file says,
apply writes only what a fresh plan of the manifests and Azure calls for, and only when the
file commits to exactly that. Attacks on the file, end to end against the sandbox."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import IdentityUpdate

from reconciler.applier import apply_plan
from reconciler.plan import Change
from reconciler.sandbox import SandboxServer
from reconciler.savedplan import live_fingerprint
from tests.e2e import conftest as e2e
from tests.e2e.support import SUB, gateway_for, run

# The end-to-end fixtures: the threaded sandbox, a copy of the example manifests, CLI options.
sandbox, manifests, seeded, cli_env = e2e.sandbox, e2e.manifests, e2e.seeded, e2e.cli_env

OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
KEY = "not-a-real-secret-0123456789"
SCRATCH = """    - name: platform-scratch
      tags: {component: scratch}
"""


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_PLAN_KEY", raising=False)


def identities(server: SandboxServer) -> set[str]:
    return {i.name for i in gateway_for(server).msi(SUB).user_assigned_identities.list_by_subscription()}


def grant_ids(server: SandboxServer) -> set[str]:
    return {a.id.lower() for a in gateway_for(server).auth(SUB).role_assignments.list_for_subscription()}


def save_plan(capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], tmp_path: Path) -> Path:
    plan_file = tmp_path / "plan.json"
    code, out, err = run(capsys, "plan", str(manifests), "--out", str(plan_file), *cli_env)
    assert code == 0, out + err
    return plan_file


def tamper(plan_file: Path, pick: Callable[[dict[str, Any]], bool], edit: Callable[[dict[str, Any]], None],
           refingerprint: bool = False) -> str:
    """Edit the first change `pick` selects. The fingerprints were made from the live state
    ARM had, so leaving them alone passes a check of fresh live state against them (the attack
    of issue 9.1); `refingerprint` also recomputes the change's, as one who knows the format
    would."""
    data = json.loads(plan_file.read_text())
    change = next(c for c in data["changes"] if pick(c))
    edit(change)
    key = "live:" + change["address"]
    if refingerprint and key in data["fingerprints"]:
        data["fingerprints"][key] = live_fingerprint(Change.from_json(change))
    plan_file.write_text(json.dumps(data))
    return str(change["address"])


@pytest.fixture
def applied(capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]) -> Path:
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    return manifests


def test_tampered_role_is_refused_and_nothing_written(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    grants = grant_ids(seeded)  # the sandbox admin's own

    def to_owner(c: dict[str, Any]) -> None:
        c["after"]["roleDefinitionId"] = OWNER_ROLE

    address = tamper(plan_file, lambda c: c["type"] == "roleAssignment" and c["action"] == "create", to_owner)
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1, out + err
    assert "nothing was applied" in err and address in err and "after.roleDefinitionId" in err
    assert identities(seeded) == set() and grant_ids(seeded) == grants


@pytest.mark.parametrize("refingerprint", [False, True])
def test_delete_redirected_to_another_owners_grant_is_refused(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    refingerprint: bool,
) -> None:
    gw = gateway_for(seeded)
    # someone else's grant, made by hand
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-payments"
    theirs = gw.auth(SUB).role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_ROLE}",
        principal_id="22222222-2222-2222-2222-222222222222", principal_type="Group",
    ))
    # a legitimate delete: drop the deployer's subscription Reader grant from the manifest
    path = applied / "platform.yaml"
    text = path.read_text()
    reader = "        - role: Reader\n          scope: /subscriptions/11111111-1111-1111-1111-111111111111\n"
    path.write_text(text.replace(reader, "", 1))
    plan_file = save_plan(capsys, applied, cli_env, tmp_path)
    before = grant_ids(seeded)

    def redirect(c: dict[str, Any]) -> None:
        c["before"]["id"] = theirs.id

    address = tamper(plan_file, lambda c: c["type"] == "roleAssignment" and c["action"] == "delete", redirect,
                     refingerprint)
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1, out + err
    assert address in err and "nothing was applied" in err
    assert grant_ids(seeded) == before and theirs.id.lower() in before


@pytest.mark.parametrize("refingerprint", [False, True])
def test_delete_redirected_to_a_protected_identity_is_refused(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    refingerprint: bool,
) -> None:
    path = manifests / "platform.yaml"
    text = path.read_text()
    path.write_text(text.replace("    - name: platform-monitoring\n", SCRATCH + "    - name: platform-monitoring\n"))
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    path.write_text(text)  # platform-scratch is to be deleted: a legitimate plan
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    api = gateway_for(seeded).msi(SUB).user_assigned_identities.get("rg-payments", "payments-api")

    def redirect(c: dict[str, Any]) -> None:
        c["before"].update(id=api.id, name="payments-api", resourceGroup="rg-payments")

    tamper(plan_file, lambda c: c["type"] == "identity" and c["action"] == "delete", redirect, refingerprint)
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1, out + err
    assert "platform-scratch" in err and "before.name" in err and "nothing was applied" in err
    assert {"payments-api", "platform-scratch"} <= identities(seeded)


@pytest.mark.parametrize(("field", "value"), [
    ("requires", []),
    ("unknown", []),
    ("consequence_of", "identity/11111111-1111-1111-1111-111111111111/rg-platform/platform-deployer"),
    ("owner", "someone-else"),
    ("action", "update"),
])
def test_tampered_bookkeeping_fields_are_refused(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    field: str, value: Any,
) -> None:
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    grants = grant_ids(seeded)

    def edit(c: dict[str, Any]) -> None:
        c[field] = value

    address = tamper(plan_file, lambda c: c["action"] == "create" and bool(c["requires"]) and bool(c["unknown"]),
                     edit)
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1, out + err
    assert address in err and field in err
    assert identities(seeded) == set() and grant_ids(seeded) == grants


def test_dropping_a_change_from_the_file_is_refused(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    data = json.loads(plan_file.read_text())
    dropped = data["changes"].pop()
    plan_file.write_text(json.dumps(data))
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1 and dropped["address"] in err and "does not have" in err, out + err
    assert identities(seeded) == set()


def test_signed_plan_applies_and_unsigned_or_altered_ones_are_refused(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unsigned = save_plan(capsys, manifests, cli_env, tmp_path).rename(tmp_path / "unsigned.json")
    assert "signature" not in json.loads(unsigned.read_text())
    monkeypatch.setenv("RECONCILER_PLAN_KEY", KEY)
    code, out, err = run(capsys, "apply", str(unsigned), *cli_env)
    assert code == 1 and "not signed" in err, out + err

    signed = save_plan(capsys, manifests, cli_env, tmp_path)
    data = json.loads(signed.read_text())
    assert data["signature"].startswith("hmac-sha256:")
    # a change the commitment check would let through (a warning for the reviewer) still breaks the signature
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps({**data, "warnings": ["all reviewed, safe to apply"]}))
    code, out, err = run(capsys, "apply", str(altered), *cli_env)
    assert code == 1 and "signature is not valid" in err, out + err
    monkeypatch.setenv("RECONCILER_PLAN_KEY", "another-key")
    code, out, err = run(capsys, "apply", str(signed), *cli_env)
    assert code == 1 and "signature is not valid" in err, out + err
    assert identities(seeded) == set()

    monkeypatch.setenv("RECONCILER_PLAN_KEY", KEY)
    code, out, err = run(capsys, "apply", str(signed), *cli_env)
    assert code == 0, out + err
    assert "platform-deployer" in identities(seeded)


def test_plan_hint_names_the_key_when_signed(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECONCILER_PLAN_KEY", KEY)
    code, _, err = run(capsys, "plan", str(manifests), "--out", str(tmp_path / "p.json"), *cli_env)
    assert code == 0 and "signed" in err and "RECONCILER_PLAN_KEY set" in err
    assert KEY not in err


@pytest.mark.parametrize("where", ["../elsewhere", "/etc"])
def test_plan_naming_manifests_outside_the_working_directory_is_refused(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    where: str,
) -> None:
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    data = json.loads(plan_file.read_text())
    data["inputs"]["paths"] = [where]
    plan_file.write_text(json.dumps(data))
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1 and "outside the working directory" in err and where in err, out + err
    assert identities(seeded) == set()


def test_plan_out_refuses_manifests_outside_the_working_directory(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    code, out, err = run(capsys, "plan", str(manifests), "--out", "plan.json", *cli_env)
    assert code == 1 and "outside the working directory" in err, out + err
    assert not (tmp_path / "work" / "plan.json").exists()


def test_failed_verification_makes_the_report_not_ok(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def apply_then_edit_out_of_band(*args: Any, **kwargs: Any) -> Any:
        report = apply_plan(*args, **kwargs)
        msi = gateway_for(seeded).msi(SUB)
        worker = msi.user_assigned_identities.get("rg-payments", "payments-worker")
        msi.user_assigned_identities.update("rg-payments", "payments-worker",
                                            IdentityUpdate(tags={**(worker.tags or {}), "component": "edited"}))
        return report

    monkeypatch.setattr("reconciler.workflow.apply.apply_plan", apply_then_edit_out_of_band)
    report_file = tmp_path / "report.json"
    plan_file = save_plan(capsys, manifests, cli_env, tmp_path)
    code, out, err = run(capsys, "apply", str(plan_file), "--report", str(report_file), *cli_env)
    assert code == 1 and "does not match the manifests after apply" in err, out + err
    report = json.loads(report_file.read_text())
    assert report["ok"] is False and report["verified"] is False
    assert report["counts"]["failed"] == 0  # every step was done; verification is what failed
