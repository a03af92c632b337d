"""Drift names which tags and fields differ (as plan does), and names who changed a role
assignment when the writer is one of the live identities (ARM gives only its object id)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.model import assignment_name, role_guid
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"  # Role Based Access Control Administrator
KV_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-payments"


def test_drift_lists_each_tag_that_differs_and_names_an_identity_that_changed_a_grant(
    capsys: pytest.CaptureFixture[str], manifests: Path, seeded: SandboxServer, cli_env: list[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err

    admin = gateway_for(seeded)
    api = admin.msi(SUB).user_assigned_identities.get("rg-payments", "payments-api")
    tags = dict(api.tags or {})
    tags["team"] = "hijacked"
    tags["extra"] = "x"
    del tags["cost-center"]
    admin.update_identity_tags(SUB, "rg-payments", "payments-api", tags)

    # platform-deployer may manage grants in rg-payments: it plays a pipeline changing things by hand.
    deployer = admin.msi(SUB).user_assigned_identities.get("rg-platform", "platform-deployer")
    admin.put_role_assignment(scope=RG, name=str(uuid.uuid4()), role_definition_guid=RBAC_ADMIN,
                              principal_id=deployer.principal_id, principal_type="ServicePrincipal",
                              description=None, condition=None, condition_version=None)
    name = assignment_name("payments", RG, KV_SECRETS_USER, api.principal_id)
    with AzureGateway(ArmTarget(StaticTokenCredential(seeded.token_for(deployer.principal_id)),
                                seeded.url, seeded.ca_cert_path)) as as_deployer:
        as_deployer.put_role_assignment(scope=RG, name=name, role_definition_guid=role_guid(KV_SECRETS_USER),
                                        principal_id=api.principal_id, principal_type="ServicePrincipal",
                                        description="changed by hand", condition=None, condition_version=None)

    code, text, err = run(capsys, "drift", str(manifests), *cli_env)
    assert code == 2, text + err
    assert '      ~ tags.team = "hijacked" -> "payments"' in text, text
    assert '      - tags.extra = "x"' in text
    assert '      + tags.cost-center = "4711"' in text
    assert '      ~ description = "changed by hand" -> null' in text
    assert f"last modified by identity rg-platform/platform-deployer (principal {deployer.principal_id}) " \
           "(ManagedIdentity)" in text
    assert "value in Azure -> value in the manifests" in text

    code, md, _ = run(capsys, "drift", str(manifests), "--format", "markdown", *cli_env)
    assert code == 2
    assert '`~ tags.team = "hijacked" -> "payments"`' in md
    assert "identity rg-platform/platform-deployer" in md

    code, data, _ = run(capsys, "drift", str(manifests), "--format", "json", *cli_env)
    (ra,) = [c for c in json.loads(data)["drift"]["changed"] if c["type"] == "roleAssignment"]
    assert ra["modified"]["by"].startswith("identity rg-platform/platform-deployer")
