"""ABAC conditions on role assignments: delegated role assignment ("RBAC Administrator with a
condition") is enforced through the real SDK, and the condition language is parsed as Azure writes it."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer
from reconciler.sandbox import conditions as cond
from reconciler.sandbox.rbac import action_matches

from .conftest import CONTRIBUTOR, GROUP, OWNER, READER, RG, SUB, USER, Clients, clients

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
DELEGATE = "55555555-5555-5555-5555-555555555555"  # the service principal that gets the conditioned role
TARGET = "66666666-6666-6666-6666-666666666666"  # a service principal it hands roles to
WRITE = "Microsoft.Authorization/roleAssignments/write"
DELETE = "Microsoft.Authorization/roleAssignments/delete"
PERMISSIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"


def only_roles(*guids: str) -> str:
    """Azure's "constrain roles" template: write and delete limited to the listed roles."""
    listed = ", ".join(guids)
    return (f"((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] "
            f"ForAnyOfAnyValues:GuidEquals {{{listed}}})) AND ((!(ActionMatches{{'{DELETE}'}})) OR "
            f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
            f"{{{listed}}}))")


def rd(guid: str) -> str:
    return f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assignment(role: str, principal: str = TARGET, **extra: Any) -> dict[str, Any]:
    return {"role_definition_id": rd(role), "principal_id": principal, "principal_type": "ServicePrincipal", **extra}


def name(n: int) -> str:
    return f"d0000000-0000-4000-8000-{n:012d}"


@pytest.fixture
def delegate(srv: SandboxServer) -> SandboxServer:
    srv.seed(principals=[(DELEGATE, "ServicePrincipal", "apply"), (TARGET, "ServicePrincipal", "workload")])
    return srv


def conditioned(srv: SandboxServer, c: Clients, condition: str, role: str = RBAC_ADMIN, scope: str = SUB_SCOPE,
                principal: str = DELEGATE, n: int = 900) -> Clients:
    c.auth.role_assignments.create(scope, name(n), assignment(role, principal, condition=condition,
                                                              condition_version="2.0"))
    return clients(srv, token=srv.token_for(DELEGATE), retry_total=0)


def denied(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as err:
        call()
    assert err.value.error is not None
    assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
    return err.value


def test_rbac_admin_limited_to_reader_assigns_and_deletes_only_reader(delegate: SandboxServer, c: Clients) -> None:
    me = conditioned(delegate, c, only_roles(READER))
    created = me.auth.role_assignments.create(RG_SCOPE, name(1), assignment(READER))
    assert created.role_definition_id.endswith(READER)
    err = denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(2), assignment(OWNER)))
    assert err.error is not None and err.error.message is not None
    # Since about 2023 ARM mentions ABAC here, and names the full assignment id as the scope.
    assert err.error.message.startswith(
        f"The client '{DELEGATE}' with object id '{DELEGATE}' does not have authorization or an ABAC condition not "
        f"fulfilled to perform action '{WRITE}' over scope "
        f"'{RG_SCOPE}/providers/Microsoft.Authorization/roleAssignments/{name(2)}'")
    assert [a.name for a in c.auth.role_assignments.list_for_resource_group(RG)
            if a.principal_id == TARGET] == [name(1)]
    # Deletes: only assignments of the listed roles, whoever made them.
    c.auth.role_assignments.create(RG_SCOPE, name(3), assignment(CONTRIBUTOR))
    denied(lambda: me.auth.role_assignments.delete(RG_SCOPE, name(3)))
    assert me.auth.role_assignments.delete(RG_SCOPE, name(1)).name == name(1)
    # Reads are not conditioned, and the delegate cannot widen its own grant.
    assert len(list(me.auth.role_assignments.list_for_subscription())) >= 3
    denied(lambda: me.auth.role_assignments.create(SUB_SCOPE, name(4), assignment(RBAC_ADMIN, DELEGATE)))


def test_the_condition_from_docs_permissions_is_accepted_and_enforced(delegate: SandboxServer, c: Clients) -> None:
    assert PERMISSIONS_DOC.is_file(), "docs/permissions.md is part of the repository"
    found = re.search(r'CONDITION="(.*?)"\n', PERMISSIONS_DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert found, "docs/permissions.md no longer has a CONDITION=\"...\" block"
    me = conditioned(delegate, c, found.group(1))  # multi-line, exactly as the doc's shell variable holds it
    allowed = set(re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", found.group(1)))
    assert READER in allowed and OWNER not in allowed
    me.auth.role_assignments.create(RG_SCOPE, name(10), assignment(READER))
    me.auth.role_assignments.create(RG_SCOPE, name(11), assignment(CONTRIBUTOR))
    for n, role in enumerate((OWNER, UAA, RBAC_ADMIN), start=12):
        denied(lambda role=role, n=n: me.auth.role_assignments.create(RG_SCOPE, name(n), assignment(role)))
    c.auth.role_assignments.create(RG_SCOPE, name(20), assignment(OWNER))
    denied(lambda: me.auth.role_assignments.delete(RG_SCOPE, name(20)))
    me.auth.role_assignments.delete(RG_SCOPE, name(10))
    me.auth.role_assignments.delete(RG_SCOPE, name(11))


def test_any_one_unconditioned_assignment_is_enough(delegate: SandboxServer, c: Clients) -> None:
    me = conditioned(delegate, c, only_roles(READER))
    denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(30), assignment(OWNER)))
    # User Access Administrator on the group, without a condition: Owner there is now allowed...
    c.auth.role_assignments.create(RG_SCOPE, name(31), assignment(UAA, DELEGATE))
    me.auth.role_assignments.create(RG_SCOPE, name(30), assignment(OWNER))
    # ...but still not at the subscription, where only the conditioned assignment applies.
    denied(lambda: me.auth.role_assignments.create(SUB_SCOPE, name(32), assignment(OWNER)))


def test_conditions_on_group_assignments_apply_to_members(delegate: SandboxServer, c: Clients) -> None:
    delegate.add_group_member(GROUP, DELEGATE)
    me = conditioned(delegate, c, only_roles(READER), principal=GROUP)
    me.auth.role_assignments.create(RG_SCOPE, name(40), assignment(READER))
    denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(41), assignment(CONTRIBUTOR)))


def test_principal_type_and_principal_id_constraints(delegate: SandboxServer, c: Clients) -> None:
    condition = (f"(!(ActionMatches{{'{WRITE}'}})) OR ("
                 "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] "
                 "ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'} AND "
                 "@Request[Microsoft.Authorization/roleAssignments:PrincipalId] "
                 f"ForAnyOfAllValues:GuidNotEquals {{{DELEGATE}}})")
    me = conditioned(delegate, c, condition)
    me.auth.role_assignments.create(RG_SCOPE, name(50), assignment(READER))
    # principalType omitted: the directory's type (User) is what the condition sees.
    denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(51), {
        "role_definition_id": rd(READER), "principal_id": USER}))
    denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(52), assignment(CONTRIBUTOR, DELEGATE)))
    # The condition says nothing about deletes, so they are unconstrained.
    me.auth.role_assignments.delete(RG_SCOPE, name(50))


def test_a_conditioned_caller_deleting_a_missing_assignment_gets_403(delegate: SandboxServer, c: Clients) -> None:
    me = conditioned(delegate, c, only_roles(READER))
    denied(lambda: me.auth.role_assignments.delete(RG_SCOPE, name(60)))
    assert c.auth.role_assignments.delete(RG_SCOPE, name(60)) is None  # 204 for an unconditioned caller


@pytest.mark.parametrize(("condition", "version"), [
    ("@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals", "2.0"),
    (f"(!(ActionMatches{{'{WRITE}'}})", "2.0"),  # unbalanced
    ("@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForSomeValues:GuidEquals {x}", "2.0"),
    ("@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {a, b}", "2.0"),
    ("@Nowhere[x:y] StringEquals 'a'", "2.0"),
    (only_roles(READER), "1.0"),
])
def test_invalid_conditions_are_refused(delegate: SandboxServer, c: Clients, condition: str, version: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.create(RG_SCOPE, name(70), assignment(RBAC_ADMIN, DELEGATE, condition=condition,
                                                                      condition_version=version))
    assert err.value.error is not None and err.value.error.message is not None
    assert err.value.status_code == 400 and err.value.error.code == "InvalidCondition"
    assert err.value.error.message.startswith("The given role assignment condition is invalid.")


def test_a_valid_condition_is_stored_and_echoed_as_sent(delegate: SandboxServer, c: Clients) -> None:
    text = "  " + only_roles(READER).replace(" OR ", "\n OR\n ") + "\n"
    made = c.auth.role_assignments.create(RG_SCOPE, name(80), assignment(RBAC_ADMIN, DELEGATE, condition=text,
                                                                          condition_version="2.0"))
    assert (made.condition, made.condition_version) == (text, "2.0")
    assert c.auth.role_assignments.get(RG_SCOPE, name(80)).condition == text


# --- the language itself ----------------------------------------------------------------------------
def attrs(source: str = "request", **values: str) -> dict[str, dict[str, str]]:
    return {source: {f"{cond.RA_NAMESPACE}:{k.lower()}": v for k, v in values.items()}}


@pytest.mark.parametrize(("text", "action", "attributes", "expected"), [
    (only_roles(READER), WRITE, attrs(RoleDefinitionId=READER), True),
    (only_roles(READER), WRITE, attrs(RoleDefinitionId=READER.upper()), True),
    (only_roles(READER), WRITE, attrs(RoleDefinitionId=OWNER), False),
    (only_roles(READER), WRITE, {}, False),  # an absent attribute never matches
    (only_roles(READER), DELETE, attrs("resource", RoleDefinitionId=READER), True),
    (only_roles(READER), DELETE, attrs("request", RoleDefinitionId=READER), False),
    (only_roles(READER), "Microsoft.Authorization/roleAssignments/read", {}, True),
    # GUIDs compare as GUIDs: without dashes and in either case
    ("@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals"
     "{ACDD72A7338548EFBD42F606FBA81AE7}", WRITE, attrs(RoleDefinitionId=READER), True),
    ("@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'servicePrincipal'", WRITE,
     attrs(PrincipalType="ServicePrincipal"), False),
    ("@Request[Microsoft.Authorization/roleAssignments:PrincipalType] stringequalsignorecase 'servicePrincipal'",
     WRITE, attrs(PrincipalType="ServicePrincipal"), True),
    ("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals "
     f"{{{USER}, {GROUP}}}", WRITE, attrs(PrincipalId=USER), False),
    ("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAnyOfAllValues:GuidNotEquals "
     f"{{{USER}, {GROUP}}}", WRITE, attrs(PrincipalId=DELEGATE), True),
    ("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] ForAllOfAnyValues:GuidEquals "
     f"{{{USER}, {GROUP}}}", WRITE, attrs(PrincipalId=GROUP), True),
    ("NOT @Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'User' && "
     "Exists @Request[Microsoft.Authorization/roleAssignments:PrincipalId]", WRITE,
     attrs(PrincipalType="Group", PrincipalId=USER), True),
    # AND binds tighter than OR
    (f"ActionMatches{{'{DELETE}'}} OR ActionMatches{{'{WRITE}'}} AND ActionMatches{{'x'}}", WRITE, {}, False),
    ("ActionMatches{'Microsoft.Authorization/*'} || SubOperationMatches{'x'}", WRITE, {}, True),
    ("@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'logs'", WRITE, {},
     False),
])
def test_evaluation(text: str, action: str, attributes: cond.Attributes, expected: bool) -> None:
    assert cond.evaluate(cond.parse(text), action, attributes, action_matches) is expected


def test_every_builtin_role_condition_parses() -> None:
    raw = json.loads(resources.files("reconciler.data").joinpath("builtin_roles.json").read_text("utf-8"))
    found = [p["condition"] for r in raw for p in r["permissions"] if p.get("condition")]
    assert len(found) >= 31
    for text in found:
        cond.parse(text)


def test_builtin_role_conditions_are_enforced(delegate: SandboxServer, c: Clients) -> None:
    # Key Vault Data Access Administrator may only assign Key Vault data roles (its own block condition).
    kv_admin = "8b54135c-b56d-4d72-a534-26097cfdc8d8"
    kv_secrets_user = "4633458b-17de-408a-b874-0445c86b69e6"
    c.auth.role_assignments.create(RG_SCOPE, name(90), assignment(kv_admin, DELEGATE))
    me = clients(delegate, token=delegate.token_for(DELEGATE), retry_total=0)
    me.auth.role_assignments.create(RG_SCOPE, name(91), assignment(kv_secrets_user))
    denied(lambda: me.auth.role_assignments.create(RG_SCOPE, name(92), assignment(READER)))
