"""plan -> apply -> plan through the CLI, the real SDK and HTTPS, against the sandbox."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import Identity

from reconciler.manifest.loader import load_manifests
from reconciler.model import OWNER_TAG, assignment_name, ownership_tags
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def plan_json(capsys: pytest.CaptureFixture[str], paths: str, env: list[str], *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", paths, "--format", "json", *env, *extra)
    assert code == 0, err
    plan: dict[str, Any] = json.loads(out)
    return plan


def live_identities(server: SandboxServer) -> dict[str, Identity]:
    return {i.name: i for i in gateway_for(server).msi(SUB).user_assigned_identities.list_by_subscription()}


def live_assignments(server: SandboxServer) -> list[Any]:  # the multi-API AuthorizationManagementClient is untyped
    return list(gateway_for(server).auth(SUB).role_assignments.list_for_subscription())


def test_plan_apply_plan_is_empty_and_second_apply_is_a_noop(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    desired, _ = load_manifests([manifests], RoleCatalog())
    expected = len(desired.identities) + len(desired.federated_credentials) + len(desired.role_assignments)
    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 2, err
    assert f"Plan: {expected} to add, 0 to change, 0 to replace, 0 to destroy." in out
    assert "(known after apply)" in out

    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, err + out
    assert "Verified: a fresh plan shows no changes." in out

    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 0, err
    assert "No changes." in out

    identities = live_identities(seeded)
    assert set(identities) == {"payments-api", "payments-worker", "platform-deployer", "platform-monitoring"}
    api = identities["payments-api"]
    assert api.tags is not None
    assert api.tags[OWNER_TAG] == "payments"
    fics = list(gateway_for(seeded).msi(SUB).federated_identity_credentials.list("rg-payments", "payments-api"))
    assert {f.name for f in fics} == {"github-main", "aks-payments-api"}
    # every assignment to our identities carries the deterministic name of its owner
    principals = {i.principal_id: i for i in identities.values()}
    ours = [a for a in live_assignments(seeded) if a.principal_id in principals]
    assert ours and all(a.principal_type == "ServicePrincipal" for a in ours)

    counts = seeded.request_counts()
    writes_before = counts.get("write", 0) + counts.get("delete", 0)
    assert writes_before > 0
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, err
    assert "No changes." in out
    counts = seeded.request_counts()
    writes_after = counts.get("write", 0) + counts.get("delete", 0)
    assert writes_after == writes_before, "a second apply must not write anything"


def test_assignment_made_by_hand_under_a_random_name_is_adopted(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    auth = gateway_for(seeded).auth(SUB)
    api = live_identities(seeded)["payments-api"]
    assert api.principal_id is not None
    blob_reader = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    ours = next(a for a in auth.role_assignments.list_for_subscription()
                if a.principal_id == api.principal_id and a.role_definition_id.endswith(blob_reader))
    scope = ours.scope
    assert scope
    auth.role_assignments.delete_by_id(ours.id)
    random_name = str(uuid.uuid4())
    auth.role_assignments.create(scope, random_name, RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{blob_reader}",
        principal_id=api.principal_id, principal_type="ServicePrincipal", description="read invoices",
    ))
    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 2, out + err
    assert "Plan: 1 to adopt, 0 to add, 0 to change, 0 to replace, 0 to destroy." in out
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 0 and "No changes." in out
    # adopted under its own name; ownership is recorded after the user's description
    found = [(a.name, a.description) for a in live_assignments(seeded) if a.principal_id == api.principal_id
             and a.role_definition_id.endswith(blob_reader)]
    assert found == [(random_name, "read invoices [reconciler:owner=payments]")]


def test_removing_an_identity_deletes_it_and_its_assignments(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    worker = live_identities(seeded)["payments-worker"]
    assert any(a.principal_id == worker.principal_id for a in live_assignments(seeded))
    text = (manifests / "payments.yaml").read_text()
    start = text.index("    - name: payments-worker")
    end = text.index("  roleAssignments:")
    (manifests / "payments.yaml").write_text(text[:start] + text[end:])

    plan = plan_json(capsys, str(manifests), cli_env)
    deletes = {c["address"]: c for c in plan["changes"] if c["action"] == "delete"}
    assert any(a.endswith("/payments-worker") for a in deletes)
    assert any(c["type"] == "roleAssignment" for c in deletes.values())

    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    assert "payments-worker" not in live_identities(seeded)
    assert not any(a.principal_id == worker.principal_id for a in live_assignments(seeded))
    assert "payments-api" in live_identities(seeded)


def test_resources_of_another_owner_are_never_touched(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    msi = gateway_for(seeded).msi(SUB)
    other = msi.user_assigned_identities.create_or_update(
        "rg-payments", "billing-batch",
        Identity(location="westeurope", tags={**ownership_tags("billing"), "team": "billing"}),
    )
    msi.user_assigned_identities.create_or_update("rg-payments", "hand-made", Identity(location="westeurope"))
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-payments"
    auth = gateway_for(seeded).auth(SUB)
    name = assignment_name("billing", scope, READER, other.principal_id)
    auth.role_assignments.create(scope, name, RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
        principal_id=other.principal_id, principal_type="ServicePrincipal",
    ))
    # Apply only the payments set: platform's identities don't exist yet and must not be made.
    code, out, err = run(capsys, "apply", str(manifests / "payments.yaml"), "--auto-approve", *cli_env)
    assert code == 0, out + err
    names = set(live_identities(seeded))
    assert {"billing-batch", "hand-made", "payments-api"} <= names
    assert "platform-deployer" not in names
    assert any(a.name == name for a in live_assignments(seeded))
    assert live_identities(seeded)["hand-made"].tags in ({}, None)
    # and removing every payments identity from the manifests still leaves them alone
    (manifests / "payments.yaml").write_text((manifests / "payments.yaml").read_text().replace(
        "protect: true", "protect: false"))
    assert run(capsys, "apply", str(manifests / "payments.yaml"), "--auto-approve", *cli_env)[0] == 0
    assert {"billing-batch", "hand-made"} <= set(live_identities(seeded))


def test_embedded_sandbox_keeps_state_in_its_file(
    capsys: pytest.CaptureFixture[str], manifests: Path, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    code, out, err = run(capsys, "apply", str(manifests), "--sandbox", str(db), "--auto-approve")
    assert code == 0, out + err
    assert db.exists()
    code, out, err = run(capsys, "plan", str(manifests), "--sandbox", str(db), "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out + err


def test_manifest_errors_stop_before_anything_is_applied(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    bad = manifests / "payments.yaml"
    bad.write_text(bad.read_text().replace("role: Storage Blob Data Reader", "role: Storage Blob Data Raeder"))
    code, _, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 1
    assert re.search(r"payments\.yaml:\d+:\d+: .*Storage Blob Data Raeder", err), err
    assert "Traceback" not in err
    assert live_identities(seeded) == {}


def test_sandbox_serve_serves_the_embedded_sandbox_state(
    capsys: pytest.CaptureFixture[str], manifests: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "shared.db"
    assert run(capsys, "apply", str(manifests), "--sandbox", str(db), "--auto-approve")[0] == 0
    served = SandboxServer(db_path=str(db)).start()  # what `reconciler sandbox serve --db` runs
    try:
        monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", served.admin_token())
        code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode",
                             "--arm-endpoint", served.url, "--ca-cert", served.ca_cert_path)
        assert code == 0 and "No changes." in out, out + err
    finally:
        served.stop()


def test_missing_resource_group_on_a_real_endpoint_is_a_clear_plan_error(
    capsys: pytest.CaptureFixture[str], manifests: Path, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.seed(subscriptions=[SUB], resource_groups=[(SUB, "rg-platform", "westeurope")])
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", sandbox.admin_token())
    code, _, err = run(capsys, "plan", str(manifests), "--arm-endpoint", sandbox.url, "--ca-cert",
                       sandbox.ca_cert_path)
    assert code == 1
    assert "resource group 'rg-payments' does not exist" in err and "payments.yaml:" in err
    assert "Traceback" not in err


@pytest.mark.https  # the debug log of real connections (urllib3, azure-core) is what must stay token-free
def test_tokens_never_appear_in_output_even_when_debugging(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    monkeypatch.setenv("RECONCILER_DEBUG", "1")
    caplog.set_level(logging.DEBUG)
    token = seeded.admin_token()
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", "-v", *cli_env)
    assert code == 0, out + err
    code, out2, err2 = run(capsys, "plan", str(manifests), "-v", "--format", "json", *cli_env)
    everything = out + err + out2 + err2 + caplog.text
    assert caplog.text, "debug logging was captured, so the check below means something"
    assert token not in everything
    assert token.split(".")[1] not in everything  # not even the claims part


def test_custom_role_names_resolve_against_live_role_definitions(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    custom = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    gateway_for(seeded).auth(SUB).role_definitions.create_or_update(f"/subscriptions/{SUB}", custom, {
        "role_name": "Invoice Reader", "description": "reads invoices", "role_type": "CustomRole",
        "assignable_scopes": [f"/subscriptions/{SUB}"],
        "permissions": [{"actions": ["Microsoft.Resources/subscriptions/resourceGroups/read"]}],
    })
    path = manifests / "payments.yaml"
    path.write_text(path.read_text().replace("role: Key Vault Secrets User", "role: Invoice Reader"))
    # offline, a custom role name cannot be known: a located error with a hint
    code, _, err = run(capsys, "validate", str(manifests))
    assert code == 1 and "Invoice Reader" in err and "online" in err
    # online, it resolves against the subscription's role definitions
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    api = live_identities(seeded)["payments-api"]
    assert any(a.principal_id == api.principal_id and a.role_definition_id.endswith(custom)
               for a in live_assignments(seeded))
    assert "Invoice Reader" in run(capsys, "plan", str(manifests), "-v", *cli_env)[1]
