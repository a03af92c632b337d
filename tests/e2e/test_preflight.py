"""Preflight, done-when: `plan --apply-as` lists exactly the steps an apply by that principal then
fails with 403 AuthorizationFailed, no more and no fewer, while the other steps succeed. The
sandbox enforces RBAC and ABAC with its own evaluator, independent of reconciler/preflight."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from azure.mgmt.authorization.v2022_04_01.models import (
    Permission,
    RoleAssignmentCreateParameters,
    RoleDefinition,
)

from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

APPLY_SP = "99999999-0000-4000-8000-000000000001"
GROUP = "99999999-0000-4000-8000-0000000000a1"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
CUSTOM_ROLE = "5a5a5a5a-0000-4000-8000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups"

MANIFEST = f"""\
apiVersion: reconciler/v1
kind: IdentitySet
metadata: {{owner: preflight}}
spec:
  subscription: {SUB}
  defaults: {{location: westeurope}}
  identities:
    - name: id-a
      resourceGroup: rg-a
      federatedCredentials:
        - {{name: main, issuer: https://token.actions.githubusercontent.com, subject: "repo:c/a:ref:refs/heads/main"}}
      roles:
        - {{role: Reader, scope: {RG}/rg-a}}
        - {{role: Monitoring Reader, scope: {RG}/rg-a}}
    - name: id-b
      resourceGroup: rg-b
      federatedCredentials:
        - {{name: main, issuer: https://token.actions.githubusercontent.com, subject: "repo:c/b:ref:refs/heads/main"}}
      roles:
        - {{role: Reader, scope: {RG}/rg-b}}
    - name: id-c
      resourceGroup: rg-c
      federatedCredentials:
        - {{name: main, issuer: https://token.actions.githubusercontent.com, subject: "repo:c/c:ref:refs/heads/main"}}
"""

# Only Reader may be assigned or removed (docs/permissions.md's condition, with one role).
CONDITION = f"""((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR
 (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{READER}}}))
AND ((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})) OR
 (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{READER}}}))"""


def grant(server: SandboxServer, scope: str, role: str, principal: str, principal_type: str = "ServicePrincipal",
          condition: str | None = None) -> None:
    gateway_for(server).auth(SUB).role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        principal_id=principal, principal_type=principal_type, condition=condition,
        condition_version="2.0" if condition else None,
    ))


@pytest.fixture
def estate(sandbox: SandboxServer, tmp_path: Path) -> tuple[SandboxServer, Path]:
    sandbox.seed(subscriptions=[SUB], resource_groups=[(SUB, rg, "westeurope") for rg in ("rg-a", "rg-b", "rg-c")])
    sandbox.add_principal(APPLY_SP, "ServicePrincipal", "reconciler-apply")
    sandbox.add_principal(GROUP, "Group", "identity-admins")
    sandbox.add_group_member(GROUP, APPLY_SP)
    gateway_for(sandbox).auth(SUB).role_definitions.create_or_update(
        f"/subscriptions/{SUB}", CUSTOM_ROLE, RoleDefinition(
            role_name="Identity writer without federation", role_type="CustomRole",
            permissions=[Permission(actions=["Microsoft.ManagedIdentity/userAssignedIdentities/*"],
                                    not_actions=["Microsoft.ManagedIdentity/userAssignedIdentities/"
                                                 "federatedIdentityCredentials/write"])],
            assignable_scopes=[f"/subscriptions/{SUB}"]))
    grant(sandbox, f"/subscriptions/{SUB}", READER, APPLY_SP)
    grant(sandbox, f"{RG}/rg-a", MI_CONTRIBUTOR, APPLY_SP)
    grant(sandbox, f"{RG}/rg-a", RBAC_ADMIN, APPLY_SP, condition=CONDITION)
    grant(sandbox, f"{RG}/rg-b", MI_CONTRIBUTOR, GROUP, principal_type="Group")
    grant(sandbox, f"{RG}/rg-c", CUSTOM_ROLE, APPLY_SP)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "ids.yaml").write_text(MANIFEST)
    return sandbox, tmp_path / "m"


def target(server: SandboxServer, monkeypatch: pytest.MonkeyPatch, object_id: str) -> list[str]:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.token_for(object_id))
    monkeypatch.setenv("RECONCILER_GRAPH_ACCESS_TOKEN", server.token_for(object_id, audience="https://graph.microsoft.com"))
    return ["--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path]


def test_plan_apply_as_lists_exactly_the_steps_apply_then_fails(
    capsys: pytest.CaptureFixture[str], estate: tuple[SandboxServer, Path], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, manifests = estate
    env = target(server, monkeypatch, server.admin_object_id)  # a reader plans for the apply identity
    code, out, err = run(capsys, "plan", str(manifests), "--apply-as", APPLY_SP, "--format", "json", *env)
    assert code == 1, err
    assert "preflight: 3 step(s) of this plan will fail" in err
    plan = json.loads(out)
    pre = plan["preflight"]
    assert pre["principal"] == APPLY_SP and pre["unknown"] == []
    predicted = {f["address"] for f in pre["failures"]}
    actions_ = {f["address"]: f["action"] for f in pre["failures"]}
    changes = {c["address"] for c in plan["changes"]}
    assert predicted <= changes

    report = tmp_path / "report.json"
    env = target(server, monkeypatch, APPLY_SP)
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", "--report", str(report), *env)
    assert code == 1
    results = json.loads(report.read_text())["steps"]
    failed = {r["address"] for r in results if r["status"] == "failed"}
    assert {r["error_code"] for r in results if r["status"] == "failed"} == {"AuthorizationFailed"}
    assert failed == predicted  # no false alarm, none missed
    assert {r["status"] for r in results if r["address"] not in failed} == {"done"}
    assert len(results) == len(changes)
    # the three kinds the brief names: a role outside the condition, no RBAC admin, notActions
    assert sorted(actions_.values()) == sorted([
        "Microsoft.Authorization/roleAssignments/write", "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"])
    assert any(a.startswith("roleAssignment[") and MONITORING_READER in a and "/rg-a|" in a for a in predicted)
    assert any(a.startswith("roleAssignment[") and "/rg-b|" in a for a in predicted)
    assert "identity/" + SUB + "/rg-c/id-c/federatedCredential/main" in predicted


def test_group_grant_needs_memberships_and_without_graph_is_unknown_not_allowed(
    capsys: pytest.CaptureFixture[str], estate: tuple[SandboxServer, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, manifests = estate
    env = target(server, monkeypatch, server.admin_object_id)
    monkeypatch.delenv("RECONCILER_GRAPH_ACCESS_TOKEN")
    code, out, _ = run(capsys, "plan", str(manifests), "--apply-as", APPLY_SP, "--format", "json", *env)
    pre = json.loads(out)["preflight"]
    unknown = {f["address"] for f in pre["unknown"]}
    # rg-b's identity and FIC are allowed only through the group: not decidable without Graph
    assert f"identity/{SUB}/rg-b/id-b" in unknown
    assert f"identity/{SUB}/rg-b/id-b/federatedCredential/main" in unknown
    assert all("group memberships could not be read" in f["reason"] for f in pre["unknown"])
    assert "RECONCILER_GRAPH_ACCESS_TOKEN" in pre["unknown"][0]["reason"]
    # what a direct grant allows stays decided; what a group might still grant is never a failure
    assert f"identity/{SUB}/rg-a/id-a" not in unknown and f"identity/{SUB}/rg-c/id-c" not in unknown
    assert pre["failures"] == [] and len(unknown) == 5
    assert code == 0


def test_no_preflight_prints_and_saves_the_plan_and_exits_by_changes(
    capsys: pytest.CaptureFixture[str], estate: tuple[SandboxServer, Path], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server, manifests = estate
    env = target(server, monkeypatch, server.admin_object_id)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "plan", str(manifests.relative_to(tmp_path)), "--apply-as", APPLY_SP,
                       "--format", "markdown", "--out", "plan.json", *env)
    assert code == 1
    assert "#### Preflight" in out and out.index("#### Preflight") < out.index("identity")
    assert "preflight" in json.loads((tmp_path / "plan.json").read_text())
    code, shown, _ = run(capsys, "show", "plan.json")  # the saved plan is valid against the schema
    assert code == 0 and "3 step(s) will fail" in shown
    code, out, _ = run(capsys, "plan", str(manifests.relative_to(tmp_path)), "--apply-as", APPLY_SP,
                       "--no-preflight", "--detailed-exitcode", *env)
    assert code == 2 and "Preflight" not in out
    # preflight is not a change: applying the saved plan (here as the admin) compares changes only
    code, _, err = run(capsys, "apply", "plan.json", *env)
    assert code == 0, err


def test_the_caller_is_the_default_principal(
    capsys: pytest.CaptureFixture[str], estate: tuple[SandboxServer, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, manifests = estate
    env = target(server, monkeypatch, APPLY_SP)
    code, out, _ = run(capsys, "plan", str(manifests), "--format", "json", *env)
    pre = json.loads(out)["preflight"]
    assert pre["principal"] == APPLY_SP  # from the token's oid claim
    # The apply identity may not read the directory: what its group might grant is unknown, with
    # the Graph permission that would let preflight decide.
    assert pre["unknown"] and all("Application.Read.All" in f["reason"] for f in pre["unknown"])
    assert code == 0 and pre["failures"] == []
