"""Names, not GUIDs (issue 18), end to end: groups and users created through the sandbox's Graph API,
manifests that name them, and the CLI driving the real SDK clients and the Graph client (in process,
tests/inprocess.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.azure.graph import GraphTarget, graph_scope
from reconciler.model import DesiredRoleAssignment, DesiredState, LiveState, PrincipalRef
from reconciler.principals import resolve
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB, gateway_for, run, seed
from tests.inprocess import serve_in_process
from tests.sandbox.graphapi import DOMAIN, create_app_and_sp, create_group, create_user, graph_token

RG = f"/subscriptions/{SUB}/resourceGroups/rg-names"
IDENTITY = f"{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/names-api"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
MIO = "f1a07417-d97a-45cb-824c-7a7467783830"  # Managed Identity Operator

HEAD = f"""apiVersion: reconciler/v1
kind: IdentitySet
metadata: {{owner: names}}
spec:
  subscription: {SUB}
  defaults: {{resourceGroup: rg-names, location: westeurope}}
  identities:
    - name: names-api
  roleAssignments:
    - principal: {{group: sg-readers}}
      role: Reader
      scope: {RG}
    - principal: {{user: alice@{DOMAIN}}}
      role: Managed Identity Operator
      scope: {{identity: names-api}}
"""


def grant(principal: str, role: str = "Reader", scope: str = RG) -> str:
    return f"    - principal: {principal}\n      role: {role}\n      scope: {scope}\n"


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with SandboxServer(config=E2E_CONFIG.replace(replication_delay_seconds=0.0)).start() as server, \
            serve_in_process(server):
        yield server


@pytest.fixture
def manifests(tmp_path: Path, srv: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "names.yaml").write_text(HEAD)
    seed(srv, [folder])
    monkeypatch.chdir(tmp_path)  # saved plans record paths relative to the working directory
    return folder


@pytest.fixture
def people(srv: SandboxServer) -> dict[str, str]:
    """Object ids of a group and users made through Graph, as a directory admin would."""
    return {"sg-readers": create_group(srv, "sg-readers")["id"], "alice": create_user(srv, "alice", "Alice")["id"],
            "bob": create_user(srv, "bob", "Bob")["id"]}


@pytest.fixture
def env(srv: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`sandbox serve` as users point at it: ARM and Graph on one URL, one token each."""
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", srv.admin_token())
    monkeypatch.setenv("RECONCILER_GRAPH_ACCESS_TOKEN", graph_token(srv))
    return ["--arm-endpoint", srv.url, "--ca-cert", srv.ca_cert_path, "--graph-endpoint", srv.url]


def grantees(srv: SandboxServer) -> set[tuple[str, str, str]]:
    """(scope, role GUID, principal id) of every role assignment in the names resource group."""
    auth = gateway_for(srv).auth(SUB)
    return {(a.scope.lower(), a.role_definition_id.rsplit("/", 1)[-1], a.principal_id)
            for a in auth.role_assignments.list_for_scope(RG) if a.scope.lower().startswith(RG.lower())}


def test_names_plan_shown_apply_to_the_right_ids_and_replan_no_changes(
    capsys: pytest.CaptureFixture[str], srv: SandboxServer, manifests: Path, people: dict[str, str], env: list[str]
) -> None:
    code, out, err = run(capsys, "plan", str(manifests), *env)
    assert code == 0, err
    assert f"to Group 'sg-readers' ({people['sg-readers']})" in out
    assert f"to User 'Alice' <alice@{DOMAIN}> ({people['alice']})" in out
    code, out, err = run(capsys, "plan", str(manifests), "--format", "markdown", *env)
    assert code == 0 and f"Group 'sg-readers' ({people['sg-readers']})" in out and "User 'Alice'" in out, err
    code, out, err = run(capsys, "plan", str(manifests), "--format", "json", *env)
    plan = json.loads(out)
    principals = [c["after"]["principal"] for c in plan["changes"] if c["type"] == "roleAssignment"]
    assert {"objectId": people["sg-readers"], "type": "Group", "displayName": "sg-readers"} in principals
    assert plan["inputs"]["principals"] == {"group:sg-readers": people["sg-readers"],
                                           f"user:alice@{DOMAIN}": people["alice"]}
    before = srv.request_counts()

    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
    assert code == 0, out + err
    assert "Verified: a fresh plan shows no changes." in out
    # The plan and the verification each made one query per name and ONE getByIds.
    after = srv.request_counts()
    assert after.get("graph.directoryObjects.getByIds", 0) - before.get("graph.directoryObjects.getByIds", 0) == 2
    assert after.get("graph.groups.list", 0) - before.get("graph.groups.list", 0) == 2
    assert (RG.lower(), READER, people["sg-readers"]) in grantees(srv)
    assert (IDENTITY.lower(), MIO, people["alice"]) in grantees(srv)

    code, out, err = run(capsys, "plan", str(manifests), "--detailed-exitcode", *env)
    assert code == 0 and "No changes." in out, out + err

    # `-v` counts Microsoft Graph calls beside ARM's, as the directory received them
    before = srv.request_counts()
    code, out, err = run(capsys, "plan", str(manifests), "-v", *env)
    sent = {k: n - before.get(k, 0) for k, n in srv.request_counts().items() if k.startswith("graph.")}
    assert code == 0 and sum(sent.values()) >= 3, err
    assert f"Microsoft Graph calls (plan): {sum(sent.values())}" in err, err
    assert f"{sent['graph.directoryObjects.getByIds']:6d}  POST directoryObjects/getByIds" in err, err


def test_embedded_sandbox_serves_graph_for_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "state.db")
    with SandboxServer(db_path=db).start() as server:  # the directory `--sandbox DB` will find
        group, alice = create_group(server, "sg-readers")["id"], create_user(server, "alice", "Alice")["id"]
    monkeypatch.delenv("RECONCILER_ACCESS_TOKEN", raising=False)
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", "--sandbox", db)
    assert code == 0, out + err
    assert f"Group 'sg-readers' ({group})" in out and f"User 'Alice' <alice@{DOMAIN}> ({alice})" in out
    code, out, err = run(capsys, "plan", str(manifests), "--sandbox", db)
    assert code == 0 and "No changes." in out, err


@pytest.mark.parametrize("line, principal, expected", [
    (16, "{group: sg-nobody}", "group 'sg-nobody' matches no group in the directory"),
    (16, "{group: sg-twins}", "group 'sg-twins' matches 2 groups: Group 'sg-twins'"),
    (16, "{objectId: 44444444-4444-4444-4444-444444444444, type: Group}",
     "object id 44444444-4444-4444-4444-444444444444 (Group) does not exist in the directory"),
    (16, "{servicePrincipal: no-such-app}", "servicePrincipal 'no-such-app' matches no service principal"),
])
def test_unknown_ambiguous_and_nonexistent_principals_fail_the_plan_at_file_and_line(
    capsys: pytest.CaptureFixture[str], srv: SandboxServer, manifests: Path, people: dict[str, str], env: list[str],
    line: int, principal: str, expected: str,
) -> None:
    twins = [create_group(srv, "sg-twins", "t1")["id"], create_group(srv, "sg-twins", "t2")["id"]]
    (manifests / "names.yaml").write_text(HEAD + grant(principal))
    code, out, err = run(capsys, "plan", str(manifests), *env)
    assert code == 1 and not out
    assert f"names.yaml:{line}:7: {expected}" in err, err
    if "twins" in principal:
        assert all(t in err for t in twins)  # the candidates, to pick one by object id
    assert "Traceback" not in err


def test_declared_type_must_match_the_directory(
    capsys: pytest.CaptureFixture[str], manifests: Path, people: dict[str, str], env: list[str]
) -> None:
    (manifests / "names.yaml").write_text(HEAD + grant(f"{{objectId: {people['bob']}, type: Group}}"))
    code, _, err = run(capsys, "plan", str(manifests), *env)
    assert code == 1
    assert f"names.yaml:16:7: object id {people['bob']} is declared as type Group, but the directory has User " \
           f"'Bob' <bob@{DOMAIN}>" in err
    assert "write type: User" in err


def test_drift_names_who_made_an_out_of_band_grant(
    capsys: pytest.CaptureFixture[str], srv: SandboxServer, manifests: Path, people: dict[str, str], env: list[str]
) -> None:
    assert run(capsys, "apply", str(manifests), "--auto-approve", *env)[0] == 0
    admin = gateway_for(srv).auth(SUB)
    admin.role_assignments.create(RG, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{OWNER}",
        principal_id=people["bob"], principal_type="User"))
    # Bob, not the pipeline, grants our identity a role by hand.
    api = gateway_for(srv).msi(SUB).user_assigned_identities.get("rg-names", "names-api")
    with AzureGateway(ArmTarget(StaticTokenCredential(srv.token_for(people["bob"])), srv.url,
                                srv.ca_cert_path)) as as_bob:
        as_bob.auth(SUB).role_assignments.create(RG, str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
            principal_id=api.principal_id, principal_type="ServicePrincipal"))

    code, out, err = run(capsys, "drift", str(manifests), *env)
    assert code == 2, err
    assert f"last modified by User 'Bob' <bob@{DOMAIN}> ({people['bob']})" in out
    code, out, _ = run(capsys, "drift", str(manifests), "--format", "json", *env)
    unmanaged = json.loads(out)["drift"]["unmanaged"]
    assert any((c["modified"] or {}).get("byName", "").startswith("User 'Bob'") for c in unmanaged)
    code, out, _ = run(capsys, "drift", str(manifests), "--format", "markdown", *env)
    assert "User 'Bob'" in out


def test_saved_plan_is_refused_when_a_name_now_resolves_to_another_object(
    capsys: pytest.CaptureFixture[str], srv: SandboxServer, manifests: Path, people: dict[str, str], env: list[str],
    tmp_path: Path,
) -> None:
    plan_file = tmp_path / "plan.json"
    assert run(capsys, "plan", str(manifests), "--out", str(plan_file), *env)[0] == 0
    # Out of band: the group is renamed and another group takes its name.
    srv.add_principal(people["sg-readers"], "Group", "sg-readers-old")
    newcomer = create_group(srv, "sg-readers", "newcomer")["id"]
    code, out, err = run(capsys, "apply", str(plan_file), *env)
    assert code == 1, out + err
    assert f"group 'sg-readers' now resolves to a different object: {newcomer} (the plan was made for " \
           f"{people['sg-readers']})" in err
    assert (RG.lower(), READER, newcomer) not in grantees(srv)


def test_without_directory_read_plans_show_ids_with_one_warning_and_names_fail(
    capsys: pytest.CaptureFixture[str], srv: SandboxServer, manifests: Path, people: dict[str, str], env: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids_only = HEAD.split("  roleAssignments:")[0] + "  roleAssignments:\n" + grant(
        f"{{objectId: {people['sg-readers']}, type: Group}}")
    (manifests / "names.yaml").write_text(ids_only)
    _, app = create_app_and_sp(srv, "no-directory-role")  # applications read only with a directory role
    monkeypatch.setenv("RECONCILER_GRAPH_ACCESS_TOKEN", graph_token(srv, app["id"]))
    code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(manifests), *env)
    assert code == 0, err
    assert out.count("Warning: principals are shown by object id only") == 1
    assert "Directory.Read.All" in out
    (manifests / "names.yaml").write_text(HEAD)
    code, out, err = run(capsys, "plan", str(manifests), *env)
    assert code == 1
    assert "names.yaml:10:7: cannot resolve group 'sg-readers': the credential may not read the directory" in err
    assert "GroupMember.Read.All" in err and "User.Read.All" in err


def test_static_arm_token_without_graph_token_plans_ids_and_says_what_to_set(
    capsys: pytest.CaptureFixture[str], manifests: Path, people: dict[str, str], env: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RECONCILER_GRAPH_ACCESS_TOKEN")
    code, _, err = run(capsys, "plan", str(manifests), *env)
    assert code == 1
    assert "names.yaml:10:7: cannot resolve group 'sg-readers': RECONCILER_ACCESS_TOKEN carries an ARM token " \
           "only" in err and "set RECONCILER_GRAPH_ACCESS_TOKEN" in err


class NoGraphCredential:
    """Signs in to ARM but gets no Graph token, as a credential without consent for Graph does."""

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError("AADSTS65001: consent required for Microsoft Graph")


def test_a_credential_without_a_graph_token_plans_ids_with_one_warning(srv: SandboxServer) -> None:
    d = GraphTarget(NoGraphCredential(), srv.url, graph_scope("AzureCloud"), ca_cert=srv.ca_cert_path).directory()
    declared = DesiredRoleAssignment("names", RG, READER, "Reader", PrincipalRef(object_id=str(uuid.uuid4()),
                                                                                principal_type="Group"))
    result = resolve(DesiredState(role_assignments=(declared,)), LiveState(), d)
    (warning,) = result.warnings
    assert "could not get a Microsoft Graph token (AADSTS65001: consent required" in warning
    assert result.desired.role_assignments == (declared,)
