"""docs/permissions.md, proven: the roles it prescribes are enough for plan and apply, and no
more than that. The sandbox enforces RBAC and ABAC conditions from its own role assignments."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

REPO = Path(__file__).resolve().parents[2]
PLAN_SP = "88888888-0000-4000-8000-000000000001"
APPLY_SP = "88888888-0000-4000-8000-000000000002"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"


def documented_condition(role_guids: list[str]) -> str:
    """The condition of docs/permissions.md with its role list replaced by `role_guids`."""
    text = (REPO / "docs" / "permissions.md").read_text()
    block = re.search(r'CONDITION="(.*?)"\n', text, re.S)
    assert block, "docs/permissions.md lost its CONDITION block"
    return re.sub(r"GuidEquals \{[^}]*\}", "GuidEquals {" + ", ".join(role_guids) + "}", block.group(1))


def grant(server: SandboxServer, scope: str, role: str, principal: str, condition: str | None = None) -> None:
    gateway_for(server).auth(SUB).role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        principal_id=principal, principal_type="ServicePrincipal", condition=condition,
        condition_version="2.0" if condition else None,
    ))


@pytest.fixture
def pipeline(seeded: SandboxServer, manifests: Path) -> SandboxServer:
    """The two pipeline identities of docs/permissions.md, with exactly the roles it lists."""
    seeded.add_principal(PLAN_SP, "ServicePrincipal", "reconciler-plan")
    seeded.add_principal(APPLY_SP, "ServicePrincipal", "reconciler-apply")
    sub = f"/subscriptions/{SUB}"
    grant(seeded, sub, READER, PLAN_SP)
    grant(seeded, sub, READER, APPLY_SP)
    for rg in ("rg-payments", "rg-platform"):
        grant(seeded, f"{sub}/resourceGroups/{rg}", MI_CONTRIBUTOR, APPLY_SP)
    roles = subprocess.run([sys.executable, "-m", "reconciler", "validate", str(manifests), "--list-roles"],
                           capture_output=True, text=True, check=True).stdout
    guids = [line.split("\t")[0] for line in roles.splitlines()]
    assert READER in guids and len(guids) >= 5
    grant(seeded, sub, RBAC_ADMIN, APPLY_SP, condition=documented_condition(guids))
    return seeded


def as_principal(server: SandboxServer, object_id: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.token_for(object_id))
    return ["--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path]


def test_plan_identity_can_plan_and_drift_but_not_apply(
    capsys: pytest.CaptureFixture[str], pipeline: SandboxServer, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = as_principal(pipeline, PLAN_SP, monkeypatch)
    # Preflight for the caller: a Reader may apply none of it, and plan says so (exit 1)...
    code, _, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *env)
    assert code == 1 and "preflight:" in err
    assert run(capsys, "plan", str(manifests), "--detailed-exitcode", "--no-preflight", *env)[0] == 2
    # ...while the apply identity, with the roles docs/permissions.md prescribes, may apply all of it.
    assert run(capsys, "plan", str(manifests), "--detailed-exitcode", "--apply-as", APPLY_SP, *env)[0] == 2
    assert run(capsys, "drift", str(manifests), *env)[0] == 2
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
    assert code == 1 and "AuthorizationFailed" in err
    assert list(gateway_for(pipeline).msi(SUB).user_assigned_identities.list_by_subscription()) == []


def test_apply_identity_applies_the_manifests_with_the_documented_roles(
    capsys: pytest.CaptureFixture[str], pipeline: SandboxServer, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = as_principal(pipeline, APPLY_SP, monkeypatch)
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
    assert code == 0, out + err
    assert "Verified: a fresh plan shows no changes." in out


def test_apply_identity_cannot_grant_a_role_outside_its_condition(
    capsys: pytest.CaptureFixture[str], pipeline: SandboxServer, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = as_principal(pipeline, APPLY_SP, monkeypatch)
    path = manifests / "platform.yaml"
    path.write_text(path.read_text() + """    - principal: {identity: platform-deployer}
      role: Owner
      scope: /subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-platform
""")
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
    assert code == 1
    assert "AuthorizationFailed" in err and "Owner" in err
    # every other step was done; only the Owner grant is missing
    gw = gateway_for(pipeline)
    deployer = gw.msi(SUB).user_assigned_identities.get("rg-platform", "platform-deployer")
    grants = [a.role_definition_id.rsplit("/", 1)[-1] for a in gw.auth(SUB).role_assignments.list_for_subscription()
              if a.principal_id == deployer.principal_id]
    assert "8e3af657-a8ff-443c-a75c-2fe8c4bcb635" not in grants and len(grants) == 3
    assert len(list(gw.msi(SUB).user_assigned_identities.list_by_subscription())) == 4
