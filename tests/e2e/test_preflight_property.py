"""Property: for random grants (direct and through a group, at every scope level, built-in and
custom roles, with and without ABAC conditions) and random steps, preflight's prediction equals
the sandbox's answer, obtained by actually attempting each step in the sandbox as that principal.

The two evaluators are independent on purpose (reconciler/preflight vs reconciler/sandbox/rbac.py
and conditions.py): agreement on random inputs is evidence that both read Azure RBAC the same way.
20 examples (about 20 s) in `make test`; PREFLIGHT_EXAMPLES=500 explores further."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.authorization.v2022_04_01.models import Permission, RoleAssignmentCreateParameters, RoleDefinition
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.model import LiveState, ReadScope
from reconciler.payloads import FederatedCredentialValue, IdentityValue, RoleAssignmentValue
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.preflight.evaluate import Facts, preflight
from reconciler.preflight_reads import builtin_definitions
from reconciler.sandbox import SandboxConfig, SandboxServer
from tests.e2e.support import SUB, gateway_for
from tests.inprocess import serve_in_process

P = "9a9a9a9a-0000-4000-8000-000000000001"  # the principal whose writes are predicted
GROUP = "9a9a9a9a-0000-4000-8000-0000000000a1"  # P is a member
OTHER = "9a9a9a9a-0000-4000-8000-000000000002"  # who the attempted grants are for
CUSTOM = "9a9a9a9a-0000-4000-8000-0000000000c1"
ROLES = {
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "custom": CUSTOM,
}
GRANTABLE = ("Reader", "Contributor", "Managed Identity Operator", "Owner")
RA = "Microsoft.Authorization/roleAssignments"
MI = "Microsoft.ManagedIdentity/userAssignedIdentities"
CUSTOM_ACTIONS = ("*", f"{MI}/*", f"{MI}/write", f"{MI}/*/write", f"{MI}/federatedIdentityCredentials/*",
                  f"{RA}/*", f"{RA}/write", "Microsoft.Authorization/*/Delete", "*/read")
GUIDS = [ROLES[r] for r in GRANTABLE]


def scope_of(level: str) -> str:
    return {"sub": f"/subscriptions/{SUB}", "rg-a": f"/subscriptions/{SUB}/resourceGroups/rg-a",
            "rg-b": f"/subscriptions/{SUB}/resourceGroups/rg-b",
            "id-a": f"/subscriptions/{SUB}/resourceGroups/rg-a/providers/{MI}/id-a"}[level]


LEVELS = ("sub", "rg-a", "rg-b", "id-a")


@st.composite
def conditions(draw: st.DrawFn) -> str | None:
    kind = draw(st.sampled_from(["none", "roles", "not", "type", "principal"]))
    if kind == "none":
        return None
    roles = ", ".join(draw(st.lists(st.sampled_from(GUIDS), min_size=1, max_size=3, unique=True)))
    write, delete = f"{RA}/write", f"{RA}/delete"
    if kind == "roles":
        return (f"((!(ActionMatches{{'{write}'}})) OR (@Request[{RA}:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals "
                f"{{{roles}}})) AND ((!(ActionMatches{{'{delete}'}})) OR (@Resource[{RA}:RoleDefinitionId] "
                f"ForAnyOfAnyValues:GuidEquals {{{roles}}}))")
    if kind == "not":
        return (f"(!(ActionMatches{{'{write}'}})) OR (@Request[{RA}:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals "
                f"{{{roles}}})")
    if kind == "type":
        types = draw(st.sampled_from(["'ServicePrincipal'", "'User', 'Group'", "'serviceprincipal', 'User'"]))
        return (f"(!(ActionMatches{{'{write}'}})) OR (@Request[{RA}:PrincipalType] "
                f"ForAnyOfAnyValues:StringEqualsIgnoreCase {{{types}}})")
    principal = draw(st.sampled_from([OTHER, P]))
    return (f"(!(ActionMatches{{'{write}'}})) OR (@Request[{RA}:PrincipalId] ForAnyOfAllValues:GuidNotEquals "
            f"{{{principal}}})")


grants = st.lists(st.tuples(
    st.sampled_from(sorted(ROLES)), st.sampled_from(LEVELS), st.sampled_from([P, GROUP]), conditions()),
    min_size=0, max_size=4, unique_by=lambda g: (g[0], g[1], g[2]))  # ARM refuses a second one with a key
NOT_ACTIONS = (f"{MI}/*", f"{MI}/federatedIdentityCredentials/write", f"{MI}/federatedIdentityCredentials/*",
               f"{MI}/delete", f"{RA}/write", f"{RA}/*", "*/delete")
custom_role = st.tuples(st.lists(st.sampled_from(CUSTOM_ACTIONS), min_size=1, max_size=3, unique=True),
                        st.lists(st.sampled_from(NOT_ACTIONS), max_size=2, unique=True))
# The custom role, granted most of the time, so that its notActions are exercised.
custom_grant = st.none() | st.tuples(st.just("custom"), st.sampled_from(LEVELS), st.sampled_from([P, GROUP]),
                                     conditions())
steps = st.lists(st.tuples(
    st.sampled_from(["identity-write", "identity-delete", "fic-write", "fic-delete", "ra-write", "ra-delete"]),
    st.sampled_from(["rg-a", "rg-b"]), st.sampled_from(GRANTABLE), st.sampled_from(LEVELS)),
    min_size=1, max_size=5, unique_by=lambda s: (s[0], s[2], s[3]) if s[0].startswith("ra") else (s[0], s[1]))


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    # One request at a time, so the FIC write window (the sandbox's model of a write's duration,
    # 0.2 s, which only concurrent writes to one identity can run into) would only add waiting.
    srv = SandboxServer(config=SandboxConfig(fic_write_window_seconds=0.0)).start()
    srv.configure(throttling=False)
    with serve_in_process(srv):
        yield srv
    srv.stop()


def _as(server: SandboxServer, object_id: str) -> AzureGateway:
    return AzureGateway(ArmTarget(StaticTokenCredential(server.token_for(object_id)), server.url,
                                  server.ca_cert_path, budget=None, retry_total=0))


def _identity_change(address: str, rg: str, name: str, delete: bool) -> Change:
    fields = IdentityValue(SUB, rg, name, "westeurope", {})
    return Change(address, ResourceType.IDENTITY, Action.DELETE if delete else Action.CREATE,
                  before=fields if delete else None, after=None if delete else fields)


def _setup(server: SandboxServer, drawn_grants: list[tuple[str, str, str, str | None]],
           custom: tuple[list[str], list[str]]) -> None:
    server.reset()
    server.configure(throttling=False)
    server.seed(subscriptions=[SUB], resource_groups=[(SUB, "rg-a", "westeurope"), (SUB, "rg-b", "westeurope")])
    server.add_principal(P, "ServicePrincipal", "predicted")
    server.add_principal(GROUP, "Group", "group")
    server.add_principal(OTHER, "ServicePrincipal", "other")
    server.add_group_member(GROUP, P)
    admin = gateway_for(server)
    admin.auth(SUB).role_definitions.create_or_update(f"/subscriptions/{SUB}", CUSTOM, RoleDefinition(
        role_name="random custom", role_type="CustomRole",
        permissions=[Permission(actions=custom[0], not_actions=custom[1])],
        assignable_scopes=[f"/subscriptions/{SUB}"]))
    for rg in ("rg-a", "rg-b"):
        admin.msi(SUB).user_assigned_identities.create_or_update(rg, f"id-{rg[-1]}", Identity(location="westeurope"))
        admin.msi(SUB).federated_identity_credentials.create_or_update(
            rg, f"id-{rg[-1]}", "old", FederatedIdentityCredential(
                issuer="https://issuer.example", subject=f"s-{rg}", audiences=["api://AzureADTokenExchange"]))
    for role, level, who, condition in drawn_grants:
        admin.auth(SUB).role_assignments.create(scope_of(level), str(uuid.uuid4()), RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}",
            principal_id=who, principal_type="Group" if who == GROUP else "ServicePrincipal",
            condition=condition, condition_version="2.0" if condition else None))


def _step(server: SandboxServer, i: int, kind: str, rg: str, role: str, level: str
          ) -> tuple[Change, Callable[[AzureGateway], Any]]:
    """A change, and the SDK call apply makes for it."""
    ident = f"id-{rg[-1]}"
    base = f"identity/{SUB}/{rg}/{ident}"
    if kind == "identity-write":
        return (_identity_change(f"identity/{SUB}/{rg}/new{i}", rg, f"new{i}", delete=False),
                lambda g: g.msi(SUB).user_assigned_identities.create_or_update(rg, f"new{i}",
                                                                              Identity(location="westeurope")))
    if kind == "identity-delete":
        return (_identity_change(base, rg, ident, delete=True),
                lambda g: g.msi(SUB).user_assigned_identities.delete(rg, ident))
    if kind == "fic-write":
        fic = FederatedCredentialValue(ident, f"f{i}", "https://issuer.example", f"s{i}", ("api://AzureADTokenExchange",))
        return (Change(f"{base}/federatedCredential/f{i}", ResourceType.FEDERATED_CREDENTIAL, Action.CREATE,
                       after=fic),
                lambda g: g.msi(SUB).federated_identity_credentials.create_or_update(
                    rg, ident, f"f{i}", FederatedIdentityCredential(
                        issuer="https://issuer.example", subject=f"s{i}", audiences=["api://AzureADTokenExchange"])))
    if kind == "fic-delete":
        return (Change(f"{base}/federatedCredential/old", ResourceType.FEDERATED_CREDENTIAL, Action.DELETE,
                       before=FederatedCredentialValue(ident, "old", "https://issuer.example", f"s-{rg}",
                                                       ("api://AzureADTokenExchange",))),
                lambda g: g.msi(SUB).federated_identity_credentials.delete(rg, ident, "old"))
    scope = scope_of(level)
    fields = RoleAssignmentValue(scope, ROLES[role], role, {"objectId": OTHER}, principal_id=OTHER,
                                 principal_type="ServicePrincipal")
    address = f"roleAssignment[{scope}|{ROLES[role]}|{OTHER}|{i}]"
    params = RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}",
        principal_id=OTHER, principal_type="ServicePrincipal")
    if kind == "ra-write":
        return (Change(address, ResourceType.ROLE_ASSIGNMENT, Action.CREATE, owner="o", after=fields),
                lambda g: g.auth(SUB).role_assignments.create(scope, str(uuid.uuid4()), params))
    # ra-delete: an existing grant, made by the admin
    name = str(uuid.uuid4())
    live = gateway_for(server).auth(SUB).role_assignments.create(scope, name, params)
    return (Change(address, ResourceType.ROLE_ASSIGNMENT, Action.DELETE, before=replace(fields, id=live.id)),
            lambda g: g.auth(SUB).role_assignments.delete(scope, name))


@settings(max_examples=int(os.environ.get("PREFLIGHT_EXAMPLES", "20")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(drawn_grants=grants, custom=custom_role, custom_granted=custom_grant, drawn_steps=steps)
# Replayed every run, whatever is drawn: notActions, a conditioned RBAC Administrator, a group grant.
@example(drawn_grants=[], custom=(["*"], [f"{MI}/federatedIdentityCredentials/write"]),
         custom_granted=("custom", "sub", P, None),
         drawn_steps=[("fic-write", "rg-a", "Reader", "sub"), ("identity-write", "rg-b", "Reader", "sub")])
@example(drawn_grants=[("Role Based Access Control Administrator", "rg-a", P,
                        f"((!(ActionMatches{{'{RA}/write'}})) OR (@Request[{RA}:RoleDefinitionId] "
                        f"ForAnyOfAnyValues:GuidEquals {{{ROLES['Reader']}}})) AND "
                        f"((!(ActionMatches{{'{RA}/delete'}})) OR (@Resource[{RA}:RoleDefinitionId] "
                        f"ForAnyOfAnyValues:GuidEquals {{{ROLES['Reader']}}}))")],
         custom=(["*/read"], []), custom_granted=None,
         drawn_steps=[("ra-write", "rg-a", "Owner", "rg-a"), ("ra-write", "rg-a", "Reader", "rg-a"),
                      ("ra-delete", "rg-a", "Contributor", "rg-a"), ("ra-delete", "rg-a", "Reader", "rg-a"),
                      ("ra-write", "rg-a", "Reader", "sub")])
@example(drawn_grants=[("Managed Identity Contributor", "rg-b", GROUP, None)], custom=(["*/read"], []),
         custom_granted=None, drawn_steps=[("identity-write", "rg-b", "Reader", "sub"),
                                           ("identity-write", "rg-a", "Reader", "sub"),
                                           ("fic-delete", "rg-b", "Reader", "sub")])
def test_prediction_equals_the_sandbox_answer(
    server: SandboxServer, drawn_grants: list[tuple[str, str, str, str | None]],
    custom: tuple[list[str], list[str]], custom_granted: tuple[str, str, str, str | None] | None,
    drawn_steps: list[tuple[str, str, str, str]],
) -> None:
    if custom_granted is not None and custom_granted[:3] not in {g[:3] for g in drawn_grants}:
        drawn_grants = [*drawn_grants, custom_granted]
    _setup(server, drawn_grants, custom)
    made = [_step(server, i, *s) for i, s in enumerate(drawn_steps)]
    admin = gateway_for(server)
    live: LiveState = admin.read_live(ReadScope(frozenset({SUB})))
    roles = {**builtin_definitions(), **admin.custom_role_definitions([SUB])}
    facts = Facts(principal=P, assignments=live.role_assignments, roles=roles, groups=frozenset({GROUP}),
                  subscriptions=frozenset({SUB}), check_reads=False)
    plan = Plan(changes=tuple(c for c, _ in made))
    result = preflight(plan, facts)
    assert result.unknown == ()
    predicted = {f.address for f in result.failures}
    actual: set[str] = set()
    with _as(server, P) as as_p:
        for change, attempt in made:
            try:
                attempt(as_p)
            except HttpResponseError as e:
                if e.status_code == 403:
                    actual.add(change.address)
                # other refusals (409, 404…) are not authorization: preflight does not predict them
    assert predicted == actual, [f.to_json() for f in result.failures]
