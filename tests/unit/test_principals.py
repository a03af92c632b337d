"""reconciler/principals.py against an in-memory directory: how many lookups a plan makes, what is a
located error, what is one warning, and what a plan shows and a saved plan pins. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from reconciler.errors import ManifestError, SourceLocation
from reconciler.model import (
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    Modified,
    PrincipalRef,
)
from reconciler.payloads import RoleAssignmentValue
from reconciler.planner import make_plan
from reconciler.principals import (
    PINS_KEY,
    DirectoryPermissionError,
    Unavailable,
    annotate,
    describe,
    resolve,
)
from reconciler.render.describe import title
from reconciler.savedplan import field_differences

SUB = "11111111-1111-1111-1111-111111111111"
SCOPE = f"/subscriptions/{SUB}/resourceGroups/rg-data"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
ADMINS = "aaaaaaaa-0000-0000-0000-000000000001"
TWIN = "aaaaaaaa-0000-0000-0000-000000000002"
ALICE = "bbbbbbbb-0000-0000-0000-000000000001"
BILLING = "cccccccc-0000-0000-0000-000000000001"
BILLING_APP = "cccccccc-0000-0000-0000-0000000000aa"
MI = "dddddddd-0000-0000-0000-000000000001"


@dataclass(frozen=True)
class Entry:
    object_id: str
    type: str
    display_name: str | None
    user_principal_name: str | None = None
    app_id: str | None = None


class Denied(DirectoryPermissionError):
    permission = "User.Read.All"


@dataclass
class FakeDirectory:
    entries: list[Entry]
    calls: list[str] = field(default_factory=list)
    deny: bool = False

    def _find(self, what: str, match: object) -> list[Entry]:
        self.calls.append(what)
        if self.deny:
            raise Denied("403")
        return [e for e in self.entries if match(e)]  # type: ignore[operator]

    def find_users(self, upn: str) -> list[Entry]:
        return self._find(f"user {upn}", lambda e: e.type == "User" and (e.user_principal_name or "").lower()
                          == upn.lower())

    def find_groups(self, name: str) -> list[Entry]:
        return self._find(f"group {name}", lambda e: e.type == "Group" and (e.display_name or "").lower()
                          == name.lower())

    def find_service_principals(self, key: str) -> list[Entry]:
        return self._find(f"sp {key}", lambda e: e.type == "ServicePrincipal" and key.lower() in
                          ((e.app_id or "").lower(), (e.display_name or "").lower()))

    def get_by_ids(self, ids: Iterable[str]) -> dict[str, Entry]:
        wanted = list(ids)
        self.calls.append(f"getByIds {len(wanted)}")
        if self.deny:
            raise Denied("403")
        return {e.object_id: e for e in self.entries if e.object_id in wanted}


def directory() -> FakeDirectory:
    return FakeDirectory([
        Entry(ADMINS, "Group", "sg-admins"),
        Entry(ALICE, "User", "Alice", user_principal_name="alice@contoso.com"),
        Entry(BILLING, "ServicePrincipal", "billing-api", app_id=BILLING_APP),
        Entry(MI, "ServicePrincipal", "payments-api", app_id="dddddddd-0000-0000-0000-0000000000aa"),
    ])


def ra(principal: PrincipalRef, line: int, scope: str = SCOPE) -> DesiredRoleAssignment:
    return DesiredRoleAssignment(owner="payments", scope=scope, role_definition_id=READER, role_name="Reader",
                                 principal=principal, source=SourceLocation("m.yaml", line, 7))


def named(kind: str, name: str, ptype: str) -> PrincipalRef:
    return PrincipalRef(principal_type=ptype, name=(kind, name))


def by_id(oid: str, ptype: str) -> PrincipalRef:
    return PrincipalRef(object_id=oid, principal_type=ptype)


def desired(*ras: DesiredRoleAssignment) -> DesiredState:
    return DesiredState(role_assignments=ras, owners=frozenset({"payments"}))


def errors(state: DesiredState, d: FakeDirectory | Unavailable, live: LiveState | None = None) -> list[str]:
    with pytest.raises(ManifestError) as info:
        resolve(state, live or LiveState(), d)
    return [f"{x.location}: {x.message}" for x in info.value.diagnostics]


def test_one_query_per_distinct_name_and_one_get_by_ids_per_plan() -> None:
    d = directory()
    state = desired(ra(named("group", "sg-admins", "Group"), 10), ra(named("group", "SG-Admins", "Group"), 13,
                                                                       scope=f"/subscriptions/{SUB}"),
                    ra(named("user", "alice@contoso.com", "User"), 16),
                    ra(named("servicePrincipal", BILLING_APP, "ServicePrincipal"), 19),
                    ra(by_id(ADMINS, "Group"), 22, scope=f"/subscriptions/{SUB}/resourceGroups/rg-x"),
                    ra(by_id(ALICE, "User"), 25, scope=f"/subscriptions/{SUB}/resourceGroups/rg-x"))
    live = LiveState(role_assignments=(LiveRoleAssignment(
        "id1", "n1", SCOPE, READER, BILLING, "ServicePrincipal", modified=Modified(ALICE, "2026-01-01", "User")),))
    result = resolve(state, live, d)
    assert d.calls == ["group sg-admins", "user alice@contoso.com", f"sp {BILLING_APP}", "getByIds 3"]
    assert [r.principal.object_id for r in result.desired.role_assignments] == [ADMINS, ADMINS, ALICE, BILLING,
                                                                                ADMINS, ALICE]
    assert result.names[BILLING] == {"type": "ServicePrincipal", "displayName": "billing-api", "appId": BILLING_APP}
    assert not result.warnings


def test_unknown_ambiguous_missing_mistyped_and_duplicate_principals_are_located_errors() -> None:
    d = directory()
    d.entries.append(Entry(TWIN, "Group", "sg-admins"))
    found = errors(desired(
        ra(named("group", "sg-admins", "Group"), 10), ra(named("user", "nobody@contoso.com", "User"), 13),
        ra(by_id("eeeeeeee-0000-0000-0000-000000000001", "Group"), 16), ra(by_id(ALICE, "Group"), 19),
        ra(named("servicePrincipal", "billing-api", "ServicePrincipal"), 22, scope=f"/subscriptions/{SUB}"),
        ra(by_id(BILLING, "ServicePrincipal"), 25, scope=f"/subscriptions/{SUB}"),
    ), d)
    assert found == [
        f"m.yaml:10:7: group 'sg-admins' matches 2 groups: Group 'sg-admins' ({ADMINS}); Group 'sg-admins' ({TWIN})",
        "m.yaml:13:7: user 'nobody@contoso.com' matches no user in the directory",
        "m.yaml:16:7: object id eeeeeeee-0000-0000-0000-000000000001 (Group) does not exist in the directory",
        f"m.yaml:19:7: object id {ALICE} is declared as type Group, but the directory has User 'Alice' "
        f"<alice@contoso.com> ({ALICE})",
        f"m.yaml:25:7: role 'Reader' on /subscriptions/{SUB} is granted to ServicePrincipal 'billing-api' <appId "
        f"{BILLING_APP}> ({BILLING}) twice; first at m.yaml:22:7",
    ]


def test_our_identities_and_uncheckable_types_are_not_checked() -> None:
    # An identity created in this same apply may not have replicated to Graph yet: it is ours.
    ours = LiveIdentity("/x", SUB, "rg", "payments-api", "westeurope", {}, MI.replace("d", "e"), "c", "t")
    d = FakeDirectory([])
    result = resolve(desired(ra(by_id(ours.principal_id, "ServicePrincipal"), 10),
                             ra(by_id(TWIN, "ForeignGroup"), 13)),
                     LiveState(identities={IdentityKey.of(SUB, "rg", "payments-api"): ours}), d)
    assert d.calls == [] and len(result.desired.role_assignments) == 2


def test_without_directory_read_ids_plan_with_one_warning_and_names_fail_with_the_permission() -> None:
    d = directory()
    d.deny = True
    result = resolve(desired(ra(by_id(ADMINS, "Group"), 10), ra(by_id(ALICE, "User"), 13)), LiveState(), d)
    assert len(result.warnings) == 1 and "User.Read.All" in result.warnings[0] and not result.names
    with pytest.raises(ManifestError) as info:
        resolve(desired(ra(named("user", "alice@contoso.com", "User"), 10)), LiveState(), d)
    (diag,) = info.value.diagnostics
    assert diag.message == "cannot resolve user 'alice@contoso.com': the credential may not read the directory " \
                           "(Microsoft Graph answered 403)"
    assert diag.hint is not None and "User.Read.All" in diag.hint
    gone = Unavailable("no Graph token", "set it")
    assert resolve(desired(), LiveState(), gone).warnings == ()  # nothing to name: no warning
    assert len(resolve(desired(ra(by_id(ADMINS, "Group"), 10)), LiveState(), gone).warnings) == 1
    assert errors(desired(ra(named("group", "sg-admins", "Group"), 10)), gone) == [
        "m.yaml:10:7: cannot resolve group 'sg-admins': no Graph token"]


def test_plans_show_names_beside_ids_pin_them_and_compare_ids_only() -> None:
    state = desired(ra(named("group", "sg-admins", "Group"), 10))
    actor = Modified(ALICE, "2026-01-01T00:00:00Z", "User")
    live = LiveState(role_assignments=(LiveRoleAssignment("/ra", "n", SCOPE, READER, ADMINS, "Group",
                                                          modified=actor),), subscriptions=frozenset({SUB}),
                     resource_groups=frozenset({(SUB, "rg-data")}))
    result = resolve(state, live, directory())
    plan = annotate(make_plan(result.desired, live), result)
    (change,) = plan.changes
    assert isinstance(change.after, RoleAssignmentValue) and change.after.principal == {
        "objectId": ADMINS, "type": "Group", "displayName": "sg-admins"}
    assert title(change) == f"role assignment 'Reader' to Group 'sg-admins' ({ADMINS}) at {SCOPE}"
    assert change.modified is not None and change.modified["byName"] == f"User 'Alice' <alice@contoso.com> ({ALICE})"
    assert plan.inputs[PINS_KEY] == {"group:sg-admins": ADMINS}
    # Offline (no names known) the title is the id, as before.
    bare = make_plan(result.desired, live).changes[0]
    assert title(bare) == f"role assignment 'Reader' to Group {ADMINS} at {SCOPE}"
    # A renamed group changes no grant: display info is not compared by the saved-plan check.
    assert field_differences(change, bare) == []
    assert describe(ADMINS, None, "Group") == f"Group {ADMINS}"


def test_the_planner_refuses_unresolved_names() -> None:
    from reconciler.errors import PlanError

    with pytest.raises(PlanError, match="group 'sg-admins'"):
        make_plan(desired(ra(named("group", "sg-admins", "Group"), 10)), LiveState())
