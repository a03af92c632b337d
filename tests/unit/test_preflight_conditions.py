"""The core's ABAC evaluator (reconciler/preflight) on the documented delegation conditions, each
case also asked of the sandbox's independent evaluator: both must give the documented answer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.preflight import actions
from reconciler.preflight import conditions as core
from reconciler.sandbox import conditions as oracle
from reconciler.sandbox.rbac import action_matches

WRITE = "Microsoft.Authorization/roleAssignments/write"
DELETE = "Microsoft.Authorization/roleAssignments/delete"
NS = "microsoft.authorization/roleassignments"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
GROUP_1 = "a1a1a1a1-0000-4000-8000-000000000001"
SELF = "b2b2b2b2-0000-4000-8000-000000000002"
OTHER = "c3c3c3c3-0000-4000-8000-000000000003"
RD = "Microsoft.Authorization/roleAssignments:RoleDefinitionId"
PT = "Microsoft.Authorization/roleAssignments:PrincipalType"
PID = "Microsoft.Authorization/roleAssignments:PrincipalId"
DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"

# learn.microsoft.com/azure/role-based-access-control/delegate-role-assignments-examples
CONSTRAIN_ROLES = f"""(
 (
  !(ActionMatches{{'{WRITE}'}})
 )
 OR
 (
  @Request[{RD}] ForAnyOfAnyValues:GuidEquals {{{READER}, {CONTRIBUTOR}}}
 )
)
AND
(
 (
  !(ActionMatches{{'{DELETE}'}})
 )
 OR
 (
  @Resource[{RD}] ForAnyOfAnyValues:GuidEquals {{{READER}, {CONTRIBUTOR}}}
 )
)"""
# "Constrain roles and principal types"
ROLES_AND_TYPES = f"""(
 (!(ActionMatches{{'{WRITE}'}}))
 OR
 (@Request[{RD}] ForAnyOfAnyValues:GuidEquals {{{READER}}}
  AND @Request[{PT}] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'User', 'Group'}})
)"""
# "Constrain roles and specific groups"
ROLES_AND_GROUPS = f"""(
 (!(ActionMatches{{'{WRITE}'}}))
 OR
 (@Request[{RD}] ForAnyOfAnyValues:GuidEquals {{{READER}}}
  AND @Request[{PID}] ForAnyOfAnyValues:GuidEquals {{{GROUP_1}}})
)"""
# "Allow most roles, but don't allow others to assign roles"
NOT_PRIVILEGED = f"""(
 (!(ActionMatches{{'{WRITE}'}}))
 OR
 (@Request[{RD}] ForAnyOfAllValues:GuidNotEquals {{{OWNER}, {UAA}, {RBAC_ADMIN}}})
)"""
# docs/permissions.md, optional hardening: never to the apply identity itself
NOT_SELF = f"""(
 (!(ActionMatches{{'{WRITE}'}}))
 OR
 (@Request[{PID}] ForAnyOfAllValues:GuidNotEquals {{{SELF}}})
)"""


def documented_condition() -> str:
    block = re.search(r'CONDITION="(.*?)"\n', DOC.read_text(), re.S)
    assert block, "docs/permissions.md lost its CONDITION block"
    return block.group(1)


def attrs(role: str | None = None, principal: str | None = OTHER,
          ptype: str | None = "ServicePrincipal") -> dict[str, str]:
    out = {}
    if role:
        out[f"{NS}:roledefinitionid"] = role
    if principal:
        out[f"{NS}:principalid"] = principal
    if ptype:
        out[f"{NS}:principaltype"] = ptype
    return out


def both(condition: str, action: str, source: str, attributes: dict[str, str]) -> tuple[bool | None, bool]:
    mine = core.holds(core.parse(condition), action, {source: attributes})
    theirs = oracle.evaluate(oracle.parse(condition), action, {source: attributes}, action_matches)
    return mine, theirs


CASES = [
    (CONSTRAIN_ROLES, WRITE, "request", attrs(READER), True),
    (CONSTRAIN_ROLES, WRITE, "request", attrs(CONTRIBUTOR.upper()), True),
    (CONSTRAIN_ROLES, WRITE, "request", attrs(OWNER), False),
    (CONSTRAIN_ROLES, DELETE, "resource", attrs(READER), True),
    (CONSTRAIN_ROLES, DELETE, "resource", attrs(OWNER), False),
    (CONSTRAIN_ROLES, DELETE, "request", attrs(READER), False),  # @Resource is what a delete checks
    (CONSTRAIN_ROLES, "Microsoft.Authorization/roleAssignments/read", "request", {}, True),
    (ROLES_AND_TYPES, WRITE, "request", attrs(READER, ptype="Group"), True),
    (ROLES_AND_TYPES, WRITE, "request", attrs(READER, ptype="group"), True),
    (ROLES_AND_TYPES, WRITE, "request", attrs(READER, ptype="ServicePrincipal"), False),
    (ROLES_AND_TYPES, WRITE, "request", attrs(CONTRIBUTOR, ptype="User"), False),
    (ROLES_AND_GROUPS, WRITE, "request", attrs(READER, principal=GROUP_1), True),
    (ROLES_AND_GROUPS, WRITE, "request", attrs(READER, principal=OTHER), False),
    (NOT_PRIVILEGED, WRITE, "request", attrs(CONTRIBUTOR), True),
    (NOT_PRIVILEGED, WRITE, "request", attrs(OWNER), False),
    (NOT_PRIVILEGED, WRITE, "request", attrs(RBAC_ADMIN), False),
    (NOT_SELF, WRITE, "request", attrs(READER, principal=SELF), False),
    (NOT_SELF, WRITE, "request", attrs(READER, principal=OTHER), True),
]


@pytest.mark.parametrize(("condition", "action", "source", "attributes", "expected"), CASES)
def test_documented_conditions_give_the_documented_answer_in_both_evaluators(
    condition: str, action: str, source: str, attributes: dict[str, str], expected: bool
) -> None:
    assert both(condition, action, source, attributes) == (expected, expected)


@pytest.mark.parametrize(("role", "expected"), [(READER, True), (CONTRIBUTOR, True), (OWNER, False), (UAA, False)])
def test_the_condition_of_docs_permissions_md(role: str, expected: bool) -> None:
    text = documented_condition()
    assert both(text, WRITE, "request", attrs(role)) == (expected, expected)
    assert both(text, DELETE, "resource", attrs(role)) == (expected, expected)


def test_a_new_identity_s_principal_id_is_a_fresh_guid() -> None:
    request = attrs(READER, principal=actions.FRESH)
    assert core.holds(core.parse(NOT_SELF), WRITE, {"request": request}) is True
    assert core.holds(core.parse(ROLES_AND_GROUPS), WRITE, {"request": request}) is False


def test_attributes_it_cannot_know_make_the_answer_unknown_never_true() -> None:
    storage = (f"(!(ActionMatches{{'{WRITE}'}})) OR "
               "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'logs')")
    assert core.holds(core.parse(storage), WRITE, {"request": attrs(READER)}) is None
    assert core.holds(core.parse(storage), DELETE, {"resource": attrs(READER)}) is True  # not this action
    principal = (f"(!(ActionMatches{{'{WRITE}'}})) OR "
                 "(@Principal[Microsoft.Directory/CustomSecurityAttributes/Attributes:x_y] StringEquals 'z')")
    assert core.holds(core.parse(principal), WRITE, {"request": attrs(READER)}) is None
    # false AND unknown is false; true OR unknown is true
    assert core.holds(core.parse(f"{principal} AND ActionMatches{{'x/y'}}"), WRITE, {}) is False


@pytest.mark.parametrize("text", ["", "(", "@Request[x] StringEquals {'a', 'b'}", "ActionMatches{x}",
                                  "@Request[a:b] Frobnicates 'x'", "@Nowhere[a:b] StringEquals 'x'"])
def test_bad_conditions_do_not_parse(text: str) -> None:
    with pytest.raises(core.ConditionSyntaxError):
        core.parse(text)


@pytest.mark.parametrize(("pattern", "action", "expected"), [
    ("*", "Microsoft.ManagedIdentity/userAssignedIdentities/write", True),
    ("*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/write", False),
    ("Microsoft.ManagedIdentity/userAssignedIdentities/*", "microsoft.managedidentity/USERASSIGNEDIDENTITIES/write",
     True),
    ("Microsoft.ManagedIdentity/userAssignedIdentities/*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/read",
     True),
    ("Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
     "Microsoft.ManagedIdentity/userAssignedIdentities/write", False),
    ("Microsoft.Authorization/*/Delete", "Microsoft.Authorization/roleAssignments/delete", True),
    ("Microsoft.Authorization/*/Write", "Microsoft.ManagedIdentity/userAssignedIdentities/write", False),
])
def test_action_wildcards_like_the_sandbox(pattern: str, action: str, expected: bool) -> None:
    assert actions.matches(pattern, action) is expected
    assert action_matches(pattern, action) is expected
