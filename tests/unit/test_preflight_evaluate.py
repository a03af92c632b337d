"""The core's preflight evaluator, pure: scopes, groups, deny assignments, unknowns, limits."""

from __future__ import annotations

from reconciler.model import LiveRoleAssignment
from reconciler.payloads import FederatedCredentialValue, IdentityValue, RoleAssignmentValue
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.preflight import actions
from reconciler.preflight.evaluate import (
    EVERYONE,
    DenyAssignment,
    Facts,
    PermissionBlock,
    RoleDefinition,
    preflight,
)
from reconciler.preflight_reads import builtin_definitions

SUB = "11111111-1111-1111-1111-111111111111"
ME = "aaaaaaaa-0000-4000-8000-000000000001"
GROUP = "aaaaaaaa-0000-4000-8000-0000000000a1"
MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CUSTOM = "cccccccc-0000-4000-8000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-a"


def ra(scope: str, role: str, principal: str = ME, condition: str | None = None, n: int = 0) -> LiveRoleAssignment:
    return LiveRoleAssignment(id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/{role}{principal}{n}",
                              name=f"{n}", scope=scope, role_definition_id=role, principal_id=principal,
                              principal_type="Group" if principal == GROUP else "ServicePrincipal",
                              condition=condition)


def identity(name: str = "id1", rg: str = "rg-a") -> Change:
    return Change(f"identity/{SUB}/{rg}/{name}", ResourceType.IDENTITY, Action.CREATE,
                  after=IdentityValue(SUB, rg, name, "westeurope", {}))


def fic(name: str, ident: str = "id1") -> Change:
    return Change(f"identity/{SUB}/rg-a/{ident}/federatedCredential/{name}", ResourceType.FEDERATED_CREDENTIAL,
                  Action.CREATE, after=FederatedCredentialValue(ident, name, "https://issuer", "s", ("x",)))


def grant(role: str = READER, scope: str = RG, n: int = 0) -> Change:
    return Change(f"roleAssignment[{scope}|{role}|x{n}]", ResourceType.ROLE_ASSIGNMENT, Action.CREATE, owner="o",
                  after=RoleAssignmentValue(scope, role, "r", {"identity": "i"}, principal_id=None,
                                            principal_type="ServicePrincipal"), unknown=("principalId", "name"))


def facts(*assignments: LiveRoleAssignment, **kw: object) -> Facts:
    base: dict[str, object] = {"principal": ME, "assignments": assignments, "roles": builtin_definitions(),
                               "subscriptions": frozenset({SUB}), "check_reads": False}
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def addresses(plan: Plan, f: Facts) -> tuple[set[str], set[str]]:
    result = preflight(plan, f)
    return {x.address for x in result.failures}, {x.address for x in result.unknown}


def test_a_grant_at_a_management_group_or_the_root_reaches_down() -> None:
    plan = Plan(changes=(identity(),))
    assert addresses(plan, facts(ra("/providers/Microsoft.Management/managementGroups/mg", MI_CONTRIBUTOR))) == (
        set(), set())  # a management group is above every subscription in it; ARM lists it with them
    assert addresses(plan, facts(ra(f"/subscriptions/{SUB}/resourceGroups/rg-b", MI_CONTRIBUTOR)))[0] == {
        f"identity/{SUB}/rg-a/id1"}
    assert addresses(plan, facts(ra("/", MI_CONTRIBUTOR))) == (set(), set())
    # with several subscriptions read, which of them a management group is above is not known
    two = frozenset({SUB, "22222222-2222-2222-2222-222222222222"})
    assert addresses(plan, facts(ra("/providers/Microsoft.Management/managementGroups/mg", MI_CONTRIBUTOR),
                                 subscriptions=two)) == (set(), {f"identity/{SUB}/rg-a/id1"})


def test_a_group_grant_counts_only_when_memberships_say_so() -> None:
    plan = Plan(changes=(identity(),))
    grant_ = ra(RG, MI_CONTRIBUTOR, GROUP)
    assert addresses(plan, facts(grant_, groups=frozenset({GROUP}))) == (set(), set())
    assert addresses(plan, facts(grant_, groups=frozenset()))[0] == {f"identity/{SUB}/rg-a/id1"}
    failures, unknown = addresses(plan, facts(grant_, groups=None, groups_problem="403"))
    assert failures == set() and unknown == {f"identity/{SUB}/rg-a/id1"}


def test_a_custom_role_that_could_not_be_read_is_unknown_never_allowed() -> None:
    failures, unknown = addresses(Plan(changes=(identity(),)), facts(ra(RG, CUSTOM)))
    assert failures == set() and unknown == {f"identity/{SUB}/rg-a/id1"}
    roles = {**builtin_definitions(), CUSTOM: RoleDefinition(CUSTOM, "c", (PermissionBlock(("*",)),))}
    assert addresses(Plan(changes=(identity(),)), facts(ra(RG, CUSTOM), roles=roles)) == (set(), set())


def test_deny_assignments_win_over_grants_unless_excluded() -> None:
    plan = Plan(changes=(identity(), fic("f1")))
    deny = DenyAssignment(scope=f"/subscriptions/{SUB}", principals=frozenset({EVERYONE}), excluded=frozenset(),
                          permissions=(PermissionBlock((f"{actions.FIC}/*",)),), name="stack")
    failures, _ = addresses(plan, facts(ra(RG, MI_CONTRIBUTOR), deny_assignments=(deny,)))
    assert failures == {f"identity/{SUB}/rg-a/id1/federatedCredential/f1"}
    excluded = DenyAssignment(deny.scope, deny.principals, frozenset({ME}), deny.permissions)
    assert addresses(plan, facts(ra(RG, MI_CONTRIBUTOR), deny_assignments=(excluded,))) == (set(), set())
    elsewhere = DenyAssignment(f"/subscriptions/{SUB}/resourceGroups/rg-b", deny.principals, frozenset(),
                               deny.permissions)
    assert addresses(plan, facts(ra(RG, MI_CONTRIBUTOR), deny_assignments=(elsewhere,))) == (set(), set())


def test_reads_apply_makes_are_checked_per_subscription() -> None:
    result = preflight(Plan(changes=()), facts(ra(RG, MI_CONTRIBUTOR), check_reads=True))
    assert {f.action for f in result.failures} == set(actions.READS)
    assert {f.address for f in result.failures} == {f"subscription/{SUB}"}
    assert preflight(Plan(changes=()), facts(ra(f"/subscriptions/{SUB}", READER), check_reads=True)).failures == ()


def test_role_assignments_over_the_subscription_limit_fail() -> None:
    admin = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
    live = tuple(ra(RG, READER, f"bbbbbbbb-0000-4000-8000-{i:012d}", n=i) for i in range(3998))
    plan = Plan(changes=(grant(n=1), grant(n=2), grant(n=3)))
    failures = preflight(plan, facts(ra(f"/subscriptions/{SUB}", admin), *live)).failures
    # 3998 + the apply identity's own + 3 = 4002: the last two creates are over ARM's 4,000
    assert [f.address for f in failures] == [grant(n=2).address, grant(n=3).address]
    assert "RoleAssignmentLimitExceeded" in failures[0].reason


def test_more_than_20_federated_credentials_on_an_identity_fail() -> None:
    plan = Plan(changes=tuple(fic(f"f{i}") for i in range(3)))
    f = facts(ra(RG, MI_CONTRIBUTOR), fic_counts={f"identity/{SUB}/rg-a/id1": 18})
    assert [x.address for x in preflight(plan, f).failures] == [fic("f2").address]


def test_a_condition_that_does_not_parse_never_allows() -> None:
    admin = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
    result = preflight(Plan(changes=(grant(),)), facts(ra(RG, admin, condition="((broken")))
    assert [f.address for f in result.failures] == [grant().address]
    assert "does not parse" in result.failures[0].reason
