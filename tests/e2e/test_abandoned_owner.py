"""Deleting every manifest of an owner is never invisible: plan (text, Markdown, JSON) and
drift say which owner still has identities and grants in Azure, how many, and how to delete
them, while another repository's owners in the same subscription stay out of the output.
Identities carry the source they were created from (tag `reconciler-source`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.model import SOURCE_TAG
from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, gateway_for, run

OTHER_REPO = f"""apiVersion: reconciler/v1
kind: IdentitySet
metadata: {{owner: analytics}}
spec:
  subscription: {SUB}
  defaults: {{resourceGroup: rg-payments, location: westeurope}}
  identities:
    - name: analytics-etl
      roles:
        - {{role: Reader, scope: /subscriptions/{SUB}/resourceGroups/rg-payments}}
"""


def test_an_owner_without_manifests_is_reported_and_another_repositorys_owner_is_not(
    capsys: pytest.CaptureFixture[str], manifests: Path, seeded: SandboxServer, cli_env: list[str],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another team's repository manages 'analytics' in the same subscription.
    other = tmp_path / "other-repo"
    other.mkdir()
    (other / "analytics.yaml").write_text(OTHER_REPO)
    monkeypatch.setenv("RECONCILER_SOURCE", "contoso/analytics-identities")
    assert run(capsys, "apply", str(other), "--auto-approve", *cli_env)[0] == 0
    monkeypatch.delenv("RECONCILER_SOURCE")

    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)
    assert code == 0, out + err
    api = gateway_for(seeded).msi(SUB).user_assigned_identities.get("rg-payments", "payments-api")
    assert (api.tags or {})[SOURCE_TAG] == "manifests"  # the folder's name: no .git above it

    # payments.yaml is deleted; payments-api is protected, so unprotect it first, as a team would.
    text = (manifests / "payments.yaml").read_text().replace("      protect: true\n", "")
    (manifests / "payments.yaml").write_text(text)
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    saved = manifests.parent / "payments.yaml.bak"
    shutil.move(manifests / "payments.yaml", saved)

    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 0, out + err  # nothing to change...
    # ...but it says what is left behind, how much, and how to delete it.
    assert ("Note: owner 'payments' has 2 identities and 4 role assignments in Azure created from this "
            "repository (tag reconciler-source=manifests) but no manifest any more: "
            "rg-payments/payments-api, rg-payments/payments-worker") in out
    assert ("add an IdentitySet with `metadata.owner: payments`, `identities: []` and `defaults.resourceGroup` "
            "naming its resource group (one set per subscription and group: rg-payments)") in out
    assert "No changes. 1 owner has identities in Azure but no manifest." in out
    assert "analytics" not in out  # another repository's owner: not ours to mention

    code, md, _ = run(capsys, "plan", str(manifests), "--format", "markdown", *cli_env)
    assert code == 0
    assert "> [!IMPORTANT]" in md and "owner 'payments' has 2 identities and 4 role assignments" in md
    assert "analytics" not in md

    code, data, _ = run(capsys, "plan", str(manifests), "--format", "json", *cli_env)
    assert code == 0
    (abandoned,) = json.loads(data)["abandoned_owners"]
    assert abandoned["owner"] == "payments" and abandoned["role_assignments"] == 4
    assert abandoned["identities"] == ["rg-payments/payments-api", "rg-payments/payments-worker"]
    assert "identities: []" in abandoned["how_to_delete"]

    code, drift, _ = run(capsys, "drift", str(manifests), *cli_env)
    assert code == 2 and "owner 'payments' has 2 identities" in drift and "analytics" not in drift

    # Following the hint deletes them; then nothing is left to report.
    (manifests / "payments-retired.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: IdentitySet\nmetadata: {{owner: payments}}\n"
        f"spec:\n  subscription: {SUB}\n  defaults: {{resourceGroup: rg-payments}}\n  identities: []\n")
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", "--allow-mass-delete", *cli_env)
    assert code == 0, out + err
    assert "Plan: 0 to add, 0 to change, 0 to replace, 9 to destroy." in out  # 2 identities, 3 FICs, 4 grants
    code, out, _ = run(capsys, "plan", str(manifests), *cli_env)
    assert code == 0
    assert "No changes. Azure matches the manifests." in out and "no manifest any more" not in out
    names = {i.name for i in gateway_for(seeded).msi(SUB).user_assigned_identities.list_by_subscription()}
    assert "analytics-etl" in names and not names & {"payments-api", "payments-worker"}


def test_identities_from_before_the_source_tag_get_it_once(
    capsys: pytest.CaptureFixture[str], manifests: Path, seeded: SandboxServer, cli_env: list[str],
) -> None:
    assert run(capsys, "apply", str(manifests), "--auto-approve", *cli_env)[0] == 0
    gw = gateway_for(seeded)
    api = gw.msi(SUB).user_assigned_identities.get("rg-payments", "payments-api")
    tags = {k: v for k, v in (api.tags or {}).items() if k != SOURCE_TAG}
    gw.update_identity_tags(SUB, "rg-payments", "payments-api", tags)  # as an older version left it
    code, out, _ = run(capsys, "plan", str(manifests), "--detailed-exitcode", *cli_env)
    assert code == 2
    assert '+ tags.reconciler-source = "manifests"' in out and "1 to change" in out
