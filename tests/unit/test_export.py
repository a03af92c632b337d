"""The YAML emitter and export_estate, without I/O: what is written reads back exactly, and an
exported estate plans only adoptions against the live state it came from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.export import PER_SUBSCRIPTION, ExportOptions, export_estate
from reconciler.manifest.emitter import Commented, Flow, emit, scalar
from reconciler.manifest.loader import load_manifests
from reconciler.model import (
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    identity_id,
)
from reconciler.plan import Action
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog

SUB = "11111111-1111-1111-1111-111111111111"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
GROUP = "22222222-2222-2222-2222-222222222222"

TRICKY = ["yes", "No", "on", "~", "null", "4711", "0777", "1e3", "2026-01-01", "", " lead", "trail ", "a: b",
          "#x", "a #b", "x:", "- item", "[x]", "{x}", "*alias", "&anchor", "!tag", "%x", "@x", "`x`", "'q'",
          '"dq"', "multi\nline", "tab\there", "é", "repo:contoso/app:ref:refs/heads/main",
          "https://token.actions.githubusercontent.com", SUB, "a,b", "|", ">"]


@pytest.mark.parametrize("text", TRICKY)
def test_every_scalar_reads_back_as_the_same_string(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}\n") == {"k": text}
    assert yaml.safe_load(f"{scalar(text)}: v\n") == {text: "v"}
    assert yaml.safe_load(f"k: {{a: {scalar(text)}}}\n") == {"k": {"a": text}}


def test_plain_where_a_person_would_write_plain() -> None:
    for text in ("payments-api", "Storage Blob Data Reader", SUB, "https://token.actions.githubusercontent.com",
                 "repo:contoso/app:ref:refs/heads/main", "/subscriptions/x/resourceGroups/rg-data"):
        assert scalar(text) == text
    assert scalar("4711") == '"4711"' and scalar("yes") == '"yes"'


def test_emit_nests_lists_flows_and_comments() -> None:
    text = emit({"a": {"b": [Commented({"c": Flow({"identity": "x"}), "d": "e"}, "why"), {"f": []}]}, "g": True},
                ["header"])
    assert text == ("# header\na:\n  b:\n    - c: {identity: x}  # why\n      d: e\n    - f: []\ng: true\n")
    assert yaml.safe_load(text) == {"a": {"b": [{"c": {"identity": "x"}, "d": "e"}, {"f": []}]}, "g": True}


def _identity(rg: str, name: str, principal: str, location: str = "westeurope",
              tags: dict[str, str] | None = None) -> LiveIdentity:
    return LiveIdentity(id=identity_id(SUB, rg, name), subscription=SUB, resource_group=rg, name=name,
                        location=location, tags=tags or {}, principal_id=principal, client_id="c", tenant_id="t")


def _grant(n: int, scope: str, role: str, principal: str, principal_type: str = "ServicePrincipal",
           description: str | None = None) -> LiveRoleAssignment:
    name = f"0b0e1a3c-7d0f-4e43-9c54-{n:012d}"
    return LiveRoleAssignment(id=f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}",
                              name=name, scope=scope, role_definition_id=role, principal_id=principal,
                              principal_type=principal_type, description=description)


def _estate() -> LiveState:
    api = _identity("rg-app", "api", "aaaa0000-0000-0000-0000-000000000001",
                    tags={"team": "pay", "component": "api", "reconciler-protected": "true"})
    job = _identity("rg-app", "job", "aaaa0000-0000-0000-0000-000000000002", tags={"team": "pay"})
    etl = _identity("rg-data", "etl", "aaaa0000-0000-0000-0000-000000000003", location="northeurope")
    theirs = _identity("rg-app", "theirs", "aaaa0000-0000-0000-0000-000000000004",
                       tags={"managed-by": "reconciler", "reconciler-owner": "platform"})
    fic = LiveFederatedCredential(api.key, "fic-id", "github", "https://token.actions.githubusercontent.com",
                                  "repo:c/a:ref:refs/heads/main", ("api://AzureADTokenExchange",))
    odd = LiveFederatedCredential(job.key, "fic-id2", "aks", "https://oidc.example", "system:serviceaccount:a:b",
                                  ("api://custom",))
    grants = (
        _grant(1, f"/subscriptions/{SUB}", READER, api.principal_id, description="read all"),
        _grant(2, api.id, MI_OPERATOR, GROUP, "Group"),
        _grant(3, job.id, MI_OPERATOR, etl.principal_id),
        _grant(4, "/", READER, api.principal_id),  # tenant root: not expressible in a manifest
        _grant(5, f"/subscriptions/{SUB}", READER, GROUP, "Group"),  # neither to nor on one of ours
        _grant(6, f"/subscriptions/{SUB}/resourceGroups/rg-data", READER, job.principal_id,
               description="[reconciler:owner=platform]"),  # another owner's grant
    )
    identities = {i.key: i for i in (api, job, etl, theirs)}
    return LiveState(identities=identities, federated_credentials={api.key: (fic,), job.key: (odd,), etl.key: ()},
                     role_assignments=grants, subscriptions=frozenset({SUB}),
                     resource_groups=frozenset({(SUB, "rg-app"), (SUB, "rg-data")}))


def _names(_sub: str, guid: str) -> str | None:
    role = RoleCatalog().resolve(guid, SUB)
    return role.name if role else None


@pytest.mark.parametrize("per", ["resource-group", PER_SUBSCRIPTION])
def test_an_exported_estate_loads_cleanly_and_plans_only_adoptions(tmp_path: Path, per: str) -> None:
    live = _estate()
    result = export_estate(live, ExportOptions(owner="pay", subscriptions=(SUB,), per=per, out_dir=str(tmp_path),
                                               schema_path=str(tmp_path / "schemas/manifest.schema.json")),
                           _names)
    for rel, text in result.files.items():
        (tmp_path / rel).write_text(text)
        assert text.startswith("# yaml-language-server: $schema=schemas/manifest.schema.json\n")
    desired, warnings = load_manifests([tmp_path], RoleCatalog())
    assert warnings == []
    assert (result.identities, result.credentials, result.assignments) == (3, 2, 3)
    assert dict(result.skipped) == {
        "identities owned by another reconciler owner (platform)": 1,
        "role assignments at a scope above a subscription (not expressible in a manifest)": 1,
        "role assignments neither to nor on an identity of the set": 1,
        "role assignments owned by another reconciler owner (platform)": 1,
    }
    api = next(i for i in desired.identities if i.name == "api")
    assert api.protect and dict(api.tags) == {"team": "pay", "component": "api"}
    job_fic = next(f for f in desired.federated_credentials if f.name == "aks")
    assert job_fic.audiences == ("api://custom",)
    plan = make_plan(desired, live)
    assert {c.action for c in plan.actionable} == {Action.ADOPT}
    assert len(plan.actionable) == 3 + 3
    assert IdentityKey.of(SUB, "rg-app", "theirs") not in {i.key for i in desired.identities}


def test_defaults_are_factored_out(tmp_path: Path) -> None:
    result = export_estate(_estate(), ExportOptions(owner="pay", subscriptions=(SUB,), per=PER_SUBSCRIPTION), _names)
    text = result.files[f"{SUB}.yaml"]
    assert "  defaults:\n    resourceGroup: rg-app\n    location: westeurope\n" in text
    assert "    - name: etl\n      resourceGroup: rg-data\n      location: northeurope\n" in text
    assert "protect: true" in text and "reconciler-protected" not in text
    assert f"principal: {{objectId: {GROUP}, type: Group}}  # a Group" in text
    assert "scope: {identity: job}" in text and "role: Managed Identity Operator" in text
    assert "description: read all" in text
