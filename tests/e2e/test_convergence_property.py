"""Property: for random manifests and random live states, plan → apply → plan is empty.

Runs through the real SDK against the sandbox. The live state is made by hand first, the way
people and other tools leave it: identities with drifted tags or another location, unowned and
foreign identities, grants under random names (same key as declared, or extra ones), stray
federated credentials. No noise in casing, ids or defaults may survive as a perpetual diff."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.applier import apply_plan
from reconciler.manifest.loader import load_manifests
from reconciler.model import ownership_tags
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB, gateway_for
from tests.inprocess import serve_in_process

ROLES = {"Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
         "Monitoring Reader": "43d0d8ad-25c7-4714-9337-8ba259a9fe05",
         "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"}
# Tag Contributor: never declared here, so a grant of it by hand can never clash with the
# hand-made copy of a declared grant (ARM would refuse the second with RoleAssignmentExists).
UNDECLARED_ROLE = "4a9ae827-6dc8-4573-8ac7-8239d42aa03f"
GROUP = "77777777-7777-7777-7777-777777777777"
RGS = ("rg-a", "rg-b")
NAMES = ("api", "worker", "batch", "web")
GITHUB = "https://token.actions.githubusercontent.com"


class IdentitySpec(TypedDict):
    name: str
    resourceGroup: str
    location: str
    tags: dict[str, str]
    fics: list[str]
    roles: list[tuple[str, str, str | None]]  # (role name, "sub" or a resource group, description)


class Spec(TypedDict):
    identities: list[IdentitySpec]
    group_grant: bool


class Noise(TypedDict):
    precreate: list[str]
    tag_drift: bool
    hand_grant_same_key: bool
    extra_grant: bool
    stray_fic: bool
    foreign: bool
    scope_case: str


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = SandboxServer(config=E2E_CONFIG).start()
    with serve_in_process(srv):
        yield srv
    srv.stop()


def scope_text(scope: str) -> str:
    return f"/subscriptions/{SUB}" if scope == "sub" else f"/subscriptions/{SUB}/resourceGroups/{scope}"


@st.composite
def manifests(draw: st.DrawFn) -> Spec:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    identities: list[IdentitySpec] = []
    for name in names:
        identities.append({
            "name": name,
            "resourceGroup": draw(st.sampled_from(RGS)),
            "location": draw(st.sampled_from(("westeurope", "West Europe", "northeurope"))),
            "tags": draw(st.dictionaries(st.sampled_from(("tier", "Cost", "app")), st.sampled_from(("a", "B", "")),
                                         max_size=2)),
            "fics": draw(st.lists(st.sampled_from(("main", "pr", "tag")), max_size=2, unique=True)),
            "roles": draw(st.lists(st.tuples(st.sampled_from(sorted(ROLES)), st.sampled_from(("sub", *RGS)),
                                             st.sampled_from((None, "why", " spaced  out "))),
                                   max_size=2, unique_by=lambda r: (r[0], r[1]))),
        })
    group_grant = draw(st.booleans())
    return {"identities": identities, "group_grant": group_grant}


@st.composite
def live_noise(draw: st.DrawFn) -> Noise:
    return {
        "precreate": draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True)),
        "tag_drift": draw(st.booleans()),
        "hand_grant_same_key": draw(st.booleans()),
        "extra_grant": draw(st.booleans()),
        "stray_fic": draw(st.booleans()),
        "foreign": draw(st.booleans()),
        "scope_case": draw(st.sampled_from(("lower", "upper", "as-is"))),
    }


def write(folder: Path, spec: Spec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["apiVersion: reconciler/v1", "kind: IdentitySet", "metadata: {owner: prop}", "spec:",
             f"  subscription: {SUB}", "  identities:"]
    for ident in spec["identities"]:
        lines += [f"    - name: {ident['name']}", f"      resourceGroup: {ident['resourceGroup']}",
                  f"      location: {ident['location']}"]
        if ident["tags"]:
            lines.append("      tags: {" + ", ".join(f"{k}: '{v}'" for k, v in ident["tags"].items()) + "}")
        if ident["fics"]:
            lines.append("      federatedCredentials:")
            lines += [f"        - {{name: gh-{f}, issuer: '{GITHUB}', subject: 'repo:c/{ident['name']}:{f}'}}"
                      for f in ident["fics"]]
        if ident["roles"]:
            lines.append("      roles:")
            for role, scope, desc in ident["roles"]:
                entry = f"        - {{role: {role}, scope: '{scope_text(scope)}'"
                lines.append(entry + (f", description: '{desc}'}}" if desc is not None else "}"))
    if spec["group_grant"]:
        first = spec["identities"][0]["name"]
        lines += ["  roleAssignments:", f"    - principal: {{objectId: {GROUP}, type: Group}}",
                  "      role: Managed Identity Operator", f"      scope: {{identity: {first}}}"]
    (folder / "set.yaml").write_text("\n".join(lines) + "\n")
    return folder


def make_noise(server: SandboxServer, spec: Spec, noise: Noise) -> None:
    gw = gateway_for(server)
    msi, auth = gw.msi(SUB).user_assigned_identities, gw.auth(SUB).role_assignments
    declared = {i["name"]: i for i in spec["identities"]}
    for name in noise["precreate"]:
        want = declared.get(name)
        rg = want["resourceGroup"] if want else "rg-a"
        tags = ownership_tags("prop")
        if noise["tag_drift"]:
            tags = {**tags, "Tier": "drifted"}
        made = msi.create_or_update(rg, name, Identity(location="southcentralus" if want and noise["tag_drift"]
                                                          else "westeurope", tags=tags))
        if want and noise["hand_grant_same_key"] and want["roles"]:
            role, scope, _ = want["roles"][0]
            scope_id = scope_text(scope)
            scope_id = {"lower": scope_id.lower(), "upper": scope_id.upper(), "as-is": scope_id}[noise["scope_case"]]
            auth.create(scope_id, str(uuid.uuid4()), RoleAssignmentCreateParameters(
                role_definition_id=f"/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role].upper()}",
                principal_id=made.principal_id, principal_type="ServicePrincipal"))
        if noise["extra_grant"]:
            auth.create(f"/subscriptions/{SUB}/resourceGroups/rg-b", str(uuid.uuid4()),
                        RoleAssignmentCreateParameters(
                            role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/"
                                               f"roleDefinitions/{UNDECLARED_ROLE}",
                            principal_id=made.principal_id, principal_type="ServicePrincipal"))
        if noise["stray_fic"]:
            gw.msi(SUB).federated_identity_credentials.create_or_update(
                rg, name, "stray", FederatedIdentityCredential(issuer=GITHUB, subject=f"repo:x/{name}:stray",
                                                                audiences=["api://AzureADTokenExchange"]))
    if noise["foreign"]:
        msi.create_or_update("rg-b", "someone-elses", Identity(location="westeurope",
                                                               tags=ownership_tags("other")))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(spec=manifests(), noise=live_noise())
def test_plan_apply_plan_is_empty(server: SandboxServer, tmp_path_factory: pytest.TempPathFactory,
                                  spec: Spec, noise: Noise) -> None:
    server.reset()
    server.seed(subscriptions=[SUB], resource_groups=[(SUB, rg, "westeurope") for rg in RGS],
                principals=[(GROUP, "Group", "ops")])
    make_noise(server, spec, noise)
    folder = write(tmp_path_factory.mktemp("prop"), spec)
    desired, _ = load_manifests([folder], RoleCatalog())
    gw = gateway_for(server)

    def plan() -> Plan:
        live = gw.read_live(desired.read_scope())
        return make_plan(desired, live, RoleCatalog().name_of)

    first = plan()
    report = apply_plan(first, gw)
    assert report.ok, [r for r in report.results if r.status != "done"]
    second = plan()
    assert not second.has_changes, second.dumps()
    # applying the empty plan again writes nothing
    writes = server.request_counts().get("write", 0)
    assert apply_plan(second, gw).ok
    assert server.request_counts().get("write", 0) == writes
