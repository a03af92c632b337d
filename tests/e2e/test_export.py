"""`reconciler export`: an estate made by hand (SDK only) becomes manifests that plan only
adoptions; after apply the next plan is empty, and removing an adopted grant deletes exactly it."""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.manifest.loader import load_manifests
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

SUB_SCOPE = f"/subscriptions/{SUB}"
GROUP = "33333333-3333-3333-3333-333333333333"
OTHER_GROUP = "44444444-4444-4444-4444-444444444444"
CUSTOM_ROLE = "7e1c4a52-2d4b-4f0e-9c3a-5b6d7e8f9a77"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
STORAGE = f"{SUB_SCOPE}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/stdata"
CONDITION = ("((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})) OR "
             "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'invoices'))")
GITHUB = "https://token.actions.githubusercontent.com"
AKS = "https://westeurope.oic.prod-aks.azure.com/00000000-0000-0000-0000-000000000001/5f1d7a0e-aaaa-bbbb-cccc-000000000001/"


@dataclass
class Estate:
    server: SandboxServer
    env: list[str]
    grants: dict[str, str]  # label -> assignment id, as made by hand


def _identity_id(rg: str, name: str) -> str:
    return f"{SUB_SCOPE}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


@pytest.fixture
def estate(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    """Two resource groups in two regions, built only through the SDK as a person would."""
    sandbox.seed(subscriptions=[SUB], resource_groups=[(SUB, "rg-app", "westeurope"), (SUB, "rg-data", "northeurope")],
                 principals=[(GROUP, "Group", "identity-admins"), (OTHER_GROUP, "Group", "readers")])
    sandbox.configure(replication_delay_seconds=0.0)
    gw = gateway_for(sandbox)
    msi, auth = gw.msi(SUB), gw.auth(SUB)
    made: dict[str, Any] = {}
    for rg, name, location, tags in (
        ("rg-app", "app-api", "westeurope", {"team": "payments", "component": "api", "cost-center": "4711"}),
        ("rg-app", "app-worker", "westeurope", {"team": "payments", "component": "worker"}),
        ("rg-data", "data-loader", "northeurope", {"team": "data"}),
        ("rg-app", "platform-tool", "westeurope", {"managed-by": "reconciler", "reconciler-owner": "platform"}),
    ):
        made[name] = msi.user_assigned_identities.create_or_update(rg, name, {"location": location, "tags": tags})
    msi.federated_identity_credentials.create_or_update("rg-app", "app-api", "github-main", {
        "issuer": GITHUB, "subject": "repo:contoso/app:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]})
    msi.federated_identity_credentials.create_or_update("rg-app", "app-worker", "aks-worker", {
        "issuer": AKS, "subject": "system:serviceaccount:jobs:worker", "audiences": ["api://AzureADTokenExchange"]})
    auth.role_definitions.create_or_update(SUB_SCOPE, CUSTOM_ROLE, {
        "role_name": "Invoice Reader", "description": "reads invoices", "role_type": "CustomRole",
        "assignable_scopes": [SUB_SCOPE], "permissions": [{"actions": ["Microsoft.Storage/*/read"]}]})

    grants: dict[str, str] = {}

    def grant(label: str, scope: str, role: str, principal: str, principal_type: str = "ServicePrincipal",
              **extra: str) -> None:
        body = {"role_definition_id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                "principal_id": principal, "principal_type": principal_type, **extra}
        grants[label] = auth.role_assignments.create(scope, str(uuid.uuid4()), body).id

    api, worker, loader = (made[n].principal_id for n in ("app-api", "app-worker", "data-loader"))
    grant("subscription", SUB_SCOPE, READER, api)
    grant("resource", STORAGE, BLOB_READER, api, condition=CONDITION, condition_version="2.0")
    grant("custom", f"{SUB_SCOPE}/resourceGroups/rg-data", CUSTOM_ROLE, worker, description="reads invoices")
    grant("identity", _identity_id("rg-app", "app-worker"), MI_OPERATOR, loader)
    grant("group-on-identity", _identity_id("rg-app", "app-api"), MI_OPERATOR, GROUP, "Group")
    grant("unrelated", f"{SUB_SCOPE}/resourceGroups/rg-data", READER, OTHER_GROUP, "Group")
    grant("foreign", SUB_SCOPE, READER, made["platform-tool"].principal_id)
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", sandbox.admin_token())
    yield Estate(sandbox, ["--arm-endpoint", sandbox.url, "--ca-cert", sandbox.ca_cert_path], grants)


def _plan(capsys: pytest.CaptureFixture[str], out: Path, env: list[str]) -> dict[str, Any]:
    code, text, err = run(capsys, "plan", str(out), "--format", "json", *env)
    assert code == 0, err
    plan: dict[str, Any] = json.loads(text)
    return plan


def _live_grants(server: SandboxServer) -> dict[str, Any]:
    return {a.id.lower(): a for a in gateway_for(server).auth(SUB).role_assignments.list_for_subscription()}


# One scenario (export, plan, apply the saved plan, edit, apply), each step on the estate the
# previous one left: long by nature, hence the noqa on PLR0915 (too many statements).
def test_export_plans_only_adoptions_then_nothing_and_an_adopted_grant_can_be_removed(  # noqa: PLR0915
    capsys: pytest.CaptureFixture[str], tmp_path: Path, estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "exported"
    code, _, err = run(capsys, "export", "--subscription", SUB, "--owner", "payments", "--out", str(out), *estate.env)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["rg-app.yaml", "rg-data.yaml"]
    assert "Exported 3 identities, 2 federated credentials and 5 role assignments in 2 file(s)." in err
    assert "Skipped 1 identities owned by another reconciler owner (platform)." in err
    # the group's Reader on rg-data, platform-tool's grant and the sandbox admin's Owner
    assert "Skipped 3 role assignments neither to nor on an identity of the set." in err
    app = (out / "rg-app.yaml").read_text()
    assert app.startswith("# yaml-language-server: $schema=")
    # written as a person would: defaults factored out, names not GUIDs, references, no default audience
    assert "    resourceGroup: rg-app\n    location: westeurope\n    tags:\n      team: payments\n" in app
    assert "role: Managed Identity Operator\n      scope: {identity: app-api}" in app
    assert f"principal: {{objectId: {GROUP}, type: Group}}  # a Group" in app
    assert "role: Invoice Reader" in app and "description: reads invoices" in app
    assert "cost-center: \"4711\"" in app and "audiences" not in app and "platform-tool" not in app
    assert "reconciler-owner" not in app
    # loads without a single diagnostic (custom role names resolve against ARM, as plan does)
    gw = gateway_for(estate.server)
    _, warnings = load_manifests([out], RoleCatalog(live_lookup=gw.lookup_role))
    assert warnings == []

    plan = _plan(capsys, out, estate.env)
    actions = {c["address"]: c["action"] for c in plan["changes"] if c["action"] != "no-op"}
    assert set(actions.values()) == {"adopt"}, actions
    assert plan["summary"]["adopt"] == 3 + 5  # every identity and every grant; FICs need no adoption
    schema = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(plan)
    code, text, err = run(capsys, "plan", str(out), *estate.env)
    assert "Plan: 8 to adopt, 0 to add, 0 to change, 0 to replace, 0 to destroy." in text

    # A saved plan of adoptions is a commitment like any other: apply re-plans and finds it identical.
    before = _live_grants(estate.server)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "plan", "exported", "--out", "adopt.json", *estate.env)
    assert code == 0, err
    code, _, err = run(capsys, "apply", "adopt.json", "--auto-approve", "--ca-cert", estate.server.ca_cert_path)
    assert code == 0, err
    assert "The saved plan is current: applying its 8 change(s)" in err
    code, text, err = run(capsys, "plan", str(out), "--detailed-exitcode", *estate.env)
    assert code == 0, text + err
    assert "No changes. Azure matches the manifests." in text
    after = _live_grants(estate.server)
    assert set(after) == set(before)  # nothing re-created: the same assignments, by id
    custom = after[estate.grants["custom"].lower()]
    assert custom.description == "reads invoices [reconciler:owner=payments]"
    assert after[estate.grants["resource"].lower()].condition == CONDITION
    api = gw.msi(SUB).user_assigned_identities.get("rg-app", "app-api")
    assert api.tags == {"team": "payments", "component": "api", "cost-center": "4711",
                        "managed-by": "reconciler", "reconciler-owner": "payments",
                        "reconciler-source": "exported"}  # the manifests' folder: no .git above it
    foreign = gw.msi(SUB).user_assigned_identities.get("rg-app", "platform-tool")
    assert foreign.tags["reconciler-owner"] == "platform"

    # Removing an adopted grant from the exported files deletes exactly that grant.
    text = (out / "rg-app.yaml").read_text()
    entry = f"        - role: Reader\n          scope: {SUB_SCOPE}\n"
    assert text.count(entry) == 1, text
    (out / "rg-app.yaml").write_text(text.replace(entry, ""))
    plan = _plan(capsys, out, estate.env)
    actionable = [c for c in plan["changes"] if c["action"] != "no-op"]
    assert [(c["action"], c["before"]["id"].lower()) for c in actionable] == [
        ("delete", estate.grants["subscription"].lower())]
    code, _, err = run(capsys, "apply", str(out), "--auto-approve", *estate.env)
    assert code == 0, err
    assert set(_live_grants(estate.server)) == set(before) - {estate.grants["subscription"].lower()}


def test_export_refuses_a_folder_that_is_not_empty_unless_forced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, estate: Estate
) -> None:
    out = tmp_path / "exported"
    out.mkdir()
    (out / "mine.yaml").write_text("# someone's file\n")
    args = ["export", "--subscription", SUB, "--owner", "payments", "--out", str(out), *estate.env]
    code, _, err = run(capsys, *args)
    assert code == 1 and "is not empty" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.yaml"]
    code, _, err = run(capsys, *args, "--force", "--per", "subscription", "--resource-group", "rg-data")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [f"{SUB}.yaml", "mine.yaml"]
    assert (out / "mine.yaml").read_text() == "# someone's file\n"
    text = (out / f"{SUB}.yaml").read_text()
    assert "name: data-loader" in text and "app-api" not in text
    # a grant on an identity of another resource group is written with its ARM id
    assert re.search(r"scope: /subscriptions/.*/userAssignedIdentities/app-worker", text)


def test_export_to_stdout_writes_no_files_and_bad_input_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, estate: Estate
) -> None:
    code, out, err = run(capsys, "export", "--subscription", SUB, "--owner", "payments", "--stdout", *estate.env)
    assert code == 0, err
    assert out.count("apiVersion: reconciler/v1") == 2 and "\n---\n" in out
    code, _, err = run(capsys, "export", "--subscription", SUB, "--owner", "Payments", "--stdout", *estate.env)
    assert code == 1 and "not a valid owner" in err and "Traceback" not in err
    code, _, err = run(capsys, "export", "--subscription", "nope", "--owner", "payments", "--stdout", *estate.env)
    assert code == 1 and "not a subscription id" in err


def test_readme_bring_an_existing_estate_runs_as_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commands of README's "Bring an existing estate", pointed at the sandbox estate."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring an existing estate", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["reconciler", "export"], ["reconciler", "plan"], ["reconciler", "apply"],
                                         ["reconciler", "plan"]]
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:
        code, out, err = run(capsys, *command[1:], *estate.env)
        assert code == 0, f"{command}: {err}"
        outputs.append(out)
    assert "to adopt, 0 to add, 0 to change, 0 to replace, 0 to destroy." in outputs[1]
    assert outputs[3].rstrip().endswith("No changes. Azure matches the manifests.")


def test_renaming_an_owner_with_take_over_from_transfers_without_recreating(
    capsys: pytest.CaptureFixture[str], manifests: Path, cli_env: list[str], seeded: SandboxServer
) -> None:
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    gw = gateway_for(seeded)
    before = {a.id.lower() for a in gw.auth(SUB).role_assignments.list_for_subscription()}
    principals = {i.name: i.principal_id for i in gw.msi(SUB).user_assigned_identities.list_by_subscription()}
    text = (manifests / "payments.yaml").read_text()
    renamed = text.replace("  owner: payments\n", "  owner: payments-team\n", 1)
    # without takeOverFrom the new owner may take nothing
    (manifests / "payments.yaml").write_text(renamed)
    code, _, err = run(capsys, "plan", str(manifests), *cli_env)
    assert code == 1 and "owned by 'payments', not 'payments-team'" in err and "takeOverFrom: [payments]" in err
    (manifests / "payments.yaml").write_text(
        renamed.replace("  owner: payments-team\n", "  owner: payments-team\n  takeOverFrom: [payments]\n", 1))
    plan = _plan(capsys, manifests, cli_env)
    actionable = [c for c in plan["changes"] if c["action"] != "no-op"]
    assert actionable and {c["action"] for c in actionable} == {"adopt"}
    assert all(c["reason"].startswith("transfer from payments") for c in actionable)
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    code, text_out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 0, text_out + err
    after = gw.auth(SUB).role_assignments.list_for_subscription()
    assert {a.id.lower() for a in after} == before  # not one grant re-created
    identities = list(gw.msi(SUB).user_assigned_identities.list_by_subscription())
    assert {i.name: i.principal_id for i in identities} == principals  # not one identity re-created
    owners = {i.name: (i.tags or {}).get("reconciler-owner") for i in identities}
    assert owners["payments-api"] == "payments-team" and owners["platform-deployer"] == "platform"
