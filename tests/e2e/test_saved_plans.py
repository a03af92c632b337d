"""Saved plans, safe deletes and drift, end to end against the sandbox."""

from __future__ import annotations

import json
import shlex
import uuid
from pathlib import Path

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import IdentityUpdate

from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

OWNER_ROLE = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Saved plans record manifest paths relative to the working directory, and apply reads
    only manifests inside it: work where the test's manifests are, as a CI checkout does."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def applied(capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str]) -> Path:
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    return manifests


def test_saved_plan_applies_exactly_and_show_renders_it(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    code, _, err = run(capsys, "plan", str(manifests), "--out", str(plan_file), *cli_env)
    assert code == 0, err
    saved = json.loads(plan_file.read_text())
    assert saved["fingerprints"]["manifests"] and saved["inputs"]["paths"] == ["manifests"]
    for fmt, needle in (("text", "to add"), ("markdown", "|"), ("json", '"format_version"')):
        code, out, err = run(capsys, "show", str(plan_file), "--format", fmt)
        assert code == 0 and needle in out, err
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 0, out + err
    assert "Verified: a fresh plan shows no changes." in out


def test_saved_plan_is_refused_when_live_state_changed(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    # make a change worth planning, save the plan, then change a touched resource out of band
    text = (applied / "payments.yaml").read_text().replace("component: worker", "component: batch")
    (applied / "payments.yaml").write_text(text)
    plan_file = tmp_path / "plan.json"
    assert run(capsys, "plan", str(applied), "--out", str(plan_file), *cli_env)[0] == 0
    msi = gateway_for(seeded).msi(SUB)
    worker = msi.user_assigned_identities.get("rg-payments", "payments-worker")
    msi.user_assigned_identities.update("rg-payments", "payments-worker",
                                        IdentityUpdate(tags={**(worker.tags or {}), "edited": "by-hand"}))
    code, _, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1
    assert "stale" in err and "payments-worker" in err
    assert msi.user_assigned_identities.get("rg-payments", "payments-worker").tags["component"] == "worker"


def test_saved_plan_still_applies_after_comment_and_layout_edits(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    assert run(capsys, "plan", str(manifests), "--out", str(plan_file), *cli_env)[0] == 0
    path = manifests / "platform.yaml"
    # comments, blank lines and flow style: the same desired state, other bytes and lines
    text = path.read_text().replace("  identities:\n", "  # reviewed\n\n  identities:\n", 1)
    text = text.replace("      tags:\n        component: monitoring", "      tags: {component: monitoring}")
    path.write_text(text + "\n# edited\n")
    code, out, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 0, out + err
    assert "Verified: a fresh plan shows no changes." in out
    names = {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}
    assert {"platform-deployer", "platform-monitoring", "payments-api"} <= names


def test_saved_plan_refused_after_a_real_edit_names_the_file_and_entry(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    assert run(capsys, "plan", str(manifests), "--out", str(plan_file), *cli_env)[0] == 0
    path = manifests / "platform.yaml"
    path.write_text(path.read_text().replace("component: monitoring", "component: metrics"))
    code, _, err = run(capsys, "apply", str(plan_file), *cli_env)
    assert code == 1, err
    assert "desired state changed" in err
    assert "manifests/platform.yaml: identity rg-platform/platform-monitoring: tags changed" in err
    assert "payments" not in err  # only what changed is named
    assert list(gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()) == []


def test_emptying_a_set_is_refused_as_a_mass_delete(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    text = (applied / "platform.yaml").read_text()
    head = text[: text.index("  identities:")]
    (applied / "platform.yaml").write_text(head + "  identities: []\n")
    code, _, err = run(capsys, "apply", str(applied), "--auto-approve", *cli_env)
    assert code == 1 and "every identity owned by 'platform'" in err and "--allow-mass-delete" in err
    names = {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}
    assert {"platform-deployer", "platform-monitoring"} <= names
    code, out, err = run(capsys, "apply", str(applied), "--auto-approve", "--allow-mass-delete", *cli_env)
    assert code == 0, out + err
    names = {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}
    assert not names & {"platform-deployer", "platform-monitoring"}


def test_empty_manifest_folder_is_an_error_not_delete_all(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "apply", str(empty), "--auto-approve", *cli_env)
    assert code == 1 and "Traceback" not in err


def test_drift_reports_each_out_of_band_change_in_its_class(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    code, out, _ = run(capsys, "drift", str(applied), *cli_env)
    assert code == 0 and "No drift" in out
    gw = gateway_for(seeded)
    msi, auth = gw.msi(SUB), gw.auth(SUB)
    # changed: tags edited by hand
    api = msi.user_assigned_identities.get("rg-payments", "payments-api")
    msi.user_assigned_identities.update("rg-payments", "payments-api",
                                        IdentityUpdate(tags={**(api.tags or {}), "team": "someone-else"}))
    # unmanaged: a grant to one of our identities made by hand
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-payments"
    auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_ROLE}",
        principal_id=api.principal_id, principal_type="ServicePrincipal",
    ))
    # missing: one of our grants deleted by hand
    monitoring = msi.user_assigned_identities.get("rg-platform", "platform-monitoring")
    grant = next(a for a in auth.role_assignments.list_for_subscription()
                 if a.principal_id == monitoring.principal_id)
    auth.role_assignments.delete_by_id(grant.id)
    # orphaned: an identity deleted by hand leaves its grants behind
    worker = msi.user_assigned_identities.get("rg-payments", "payments-worker")
    msi.user_assigned_identities.delete("rg-payments", "payments-worker")

    code, out, err = run(capsys, "drift", str(applied), "--format", "json", *cli_env)
    assert code == 2, err
    report = json.loads(out)
    drift = report["drift"]
    changed = next(c for c in drift["changed"] if c["address"].endswith("/payments-api"))
    # who edited the tags and when, from ARM's systemData
    assert changed["modified"]["by"] == "sandbox-admin" and changed["modified"]["byType"] == "User"
    assert changed["modified"]["at"]
    assert any(c["type"] == "roleAssignment" and c["before"]["principalId"] == api.principal_id
               for c in drift["unmanaged"])
    assert any(c["type"] == "roleAssignment" and "platform-monitoring" in json.dumps(c["after"]["principal"])
               for c in drift["missing"])
    assert any(c["address"].endswith("/payments-worker") for c in drift["missing"])
    assert any(c["before"]["principalId"] == worker.principal_id for c in drift["orphaned"])
    # who changed the grant, from ARM's updatedBy
    assert any((c.get("modified") or {}).get("by") for c in drift["unmanaged"])

    assert run(capsys, "drift", str(applied), "--fail-on", "orphaned", *cli_env)[0] == 2
    code, out, _ = run(capsys, "drift", str(applied), "--fail-on", "none", *cli_env)
    assert code == 0 and "orphaned" in out
    code, out, _ = run(capsys, "drift", str(applied), "--format", "markdown", *cli_env)
    assert code == 2 and "| orphaned |" in out


def test_unknown_principal_fails_fast_with_its_manifest_line_and_the_rest_is_applied(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    nobody = "44444444-4444-4444-4444-444444444444"  # never seeded: nobody in the directory
    text = (manifests / "platform.yaml").read_text()
    text += f"""    - principal: {{objectId: {nobody}, type: User}}
      role: Reader
      scope: {{identity: platform-monitoring}}
"""
    (manifests / "platform.yaml").write_text(text)
    report_file = tmp_path / "report.json"
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", "--report", str(report_file), *cli_env)
    assert code == 1
    assert "PrincipalNotFound" in err and nobody in err and "platform.yaml:" in err
    report = json.loads(report_file.read_text())
    failed = [s for s in report["steps"] if s["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error_code"] == "PrincipalNotFound"
    assert report["counts"]["done"] == len(report["steps"]) - 1
    names = {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}
    assert "platform-monitoring" in names


def test_subscription_option_restricts_the_run(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    other = "55555555-5555-5555-5555-555555555555"
    seeded.seed(subscriptions=[other], resource_groups=[(other, "rg-other", "westeurope")])
    (manifests / "other.yaml").write_text(f"""apiVersion: reconciler/v1
kind: IdentitySet
metadata: {{owner: other-team}}
spec:
  subscription: {other}
  defaults: {{resourceGroup: rg-other, location: westeurope}}
  identities:
    - name: other-api
""")
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", "--subscription", other, *cli_env)
    assert code == 0, out + err
    assert [i.name for i in gateway_for(seeded).msi(other).user_assigned_identities.list_by_subscription()] == [
        "other-api"]
    assert list(gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()) == []
    code, out, _ = run(capsys, "plan", str(manifests), "--subscription", other, "--detailed-exitcode", *cli_env)
    assert code == 0 and "No changes." in out


def test_changing_the_role_of_a_grant_replaces_it(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    path = applied / "platform.yaml"
    path.write_text(path.read_text().replace("role: Monitoring Reader", "role: Monitoring Contributor"))
    plan = json.loads(run(capsys, "plan", str(applied), "--format", "json", *cli_env)[1])
    assert plan["summary"]["replace"] == 1 and plan["summary"]["create"] == 0 and plan["summary"]["delete"] == 0
    code, out, err = run(capsys, "apply", str(applied), "--auto-approve", *cli_env)
    assert code == 0, out + err
    gw = gateway_for(seeded)
    monitoring = gw.msi(SUB).user_assigned_identities.get("rg-platform", "platform-monitoring")
    roles = [a.role_definition_id.rsplit("/", 1)[-1] for a in gw.auth(SUB).role_assignments.list_for_subscription()
             if a.principal_id == monitoring.principal_id]
    assert roles == ["749f88d5-cbae-40b8-bcfc-e573ddc772fa"]  # Monitoring Contributor only


def test_protected_identity_cannot_be_removed_from_the_manifests(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    path = applied / "payments.yaml"
    text = path.read_text()
    start, end = text.index("    - name: payments-api"), text.index("    - name: payments-worker")
    path.write_text(text[:start] + text[end:])
    code, out, err = run(capsys, "apply", str(applied), "--auto-approve", *cli_env)
    assert code == 1 and "protected" in err, out + err
    assert gateway_for(seeded).msi(SUB).user_assigned_identities.get("rg-payments", "payments-api").name


def test_location_change_replaces_the_identity_and_recreates_what_hangs_on_it(
    capsys: pytest.CaptureFixture[str], applied: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    gw = gateway_for(seeded)
    old = gw.msi(SUB).user_assigned_identities.get("rg-platform", "platform-deployer")
    path = applied / "platform.yaml"
    text = path.read_text()
    path.write_text(text.replace("    - name: platform-deployer\n",
                                 "    - name: platform-deployer\n      location: northeurope\n", 1))
    plan = json.loads(run(capsys, "plan", str(applied), "--format", "json", *cli_env)[1])
    replaced = [c for c in plan["changes"] if c["action"] == "replace"]
    assert [c["type"] for c in replaced] == ["identity"]
    consequences = [c for c in plan["changes"] if c["consequence_of"] == replaced[0]["address"]]
    assert {c["type"] for c in consequences} == {"federatedCredential", "roleAssignment"}
    assert any("principal id" in w for w in plan["warnings"])
    code, out, err = run(capsys, "apply", str(applied), "--auto-approve", *cli_env)
    assert code == 0, out + err
    new = gw.msi(SUB).user_assigned_identities.get("rg-platform", "platform-deployer")
    assert new.location == "northeurope" and new.principal_id != old.principal_id
    grants = list(gw.auth(SUB).role_assignments.list_for_subscription())
    assert not any(a.principal_id == old.principal_id for a in grants), "old grants must not be orphaned"
    assert sum(a.principal_id == new.principal_id for a in grants) == 3
    fics = list(gw.msi(SUB).federated_identity_credentials.list("rg-platform", "platform-deployer"))
    assert len(fics) == 2


def _hinted_command(err: str) -> list[str]:
    """The command `plan --out` says applies the plan, as argv after `reconciler`."""
    line = next(x for x in err.splitlines() if "Saved the plan" in x)
    argv = shlex.split(line.split(" with: ", 1)[1])
    assert argv[0] == "reconciler"
    return argv[1:]


def test_saved_plan_goes_to_the_embedded_sandbox_it_was_made_against(
    capsys: pytest.CaptureFixture[str], manifests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECONCILER_ACCESS_TOKEN", raising=False)
    code, _, plan_err = run(capsys, "plan", "manifests", "--sandbox", "a.db", "--out", "p.json")
    assert code == 0, plan_err
    assert "embedded sandbox (a.db)" in plan_err
    assert json.loads((tmp_path / "p.json").read_text())["inputs"]["target_options"]["sandbox_db"] == "a.db"
    # another target named on the command line: refused before anything is opened
    for other in (["--sandbox", "b.db"], ["--arm-endpoint", "https://127.0.0.1:9"], ["--cloud", "AzureChinaCloud"]):
        code, out, err = run(capsys, "apply", "p.json", *other)
        assert code == 1 and "embedded sandbox (a.db)" in err and "refusing" in err, out + err
    assert not (tmp_path / "b.db").exists()
    # the command plan printed, as printed: no target options, and it goes to a.db
    code, out, err = run(capsys, *_hinted_command(plan_err))
    assert code == 0, out + err
    assert "Verified: a fresh plan shows no changes." in out
    code, out, err = run(capsys, "plan", "manifests", "--sandbox", "a.db", "--detailed-exitcode")
    assert code == 0 and "No changes" in out, out + err


def test_saved_plan_goes_to_the_endpoint_it_was_made_against(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer, tmp_path: Path
) -> None:
    code, _, plan_err = run(capsys, "plan", str(manifests), "--out", "plan.json", *cli_env)
    assert code == 0, plan_err
    assert "RECONCILER_ACCESS_TOKEN set" in plan_err
    code, out, err = run(capsys, "apply", "plan.json", "--arm-endpoint", "https://127.0.0.1:9")
    assert code == 1 and "refusing to apply it elsewhere" in err and "--arm-endpoint" in err, out + err
    assert list(gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()) == []
    code, out, err = run(capsys, *_hinted_command(plan_err))
    assert code == 0, out + err
    assert "platform-deployer" in {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities
                                   .list_by_subscription()}
