"""Predict which steps of a plan the applying principal will be refused, and which limits apply
would hit. Pure: `Facts` holds everything read beforehand.

ARM allows an action at a scope when some role assignment at that scope or above it (management
group, subscription, resource group, resource), made to the principal or to a group it is a
transitive member of, names a role whose permission block lists the action in `actions` and not
in `notActions`, and whose conditions (the block's and the assignment's) hold; and no deny
assignment at or above the scope denies it to the principal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.addresses import Address
from reconciler.model import LiveRoleAssignment, norm_scope, scope_subscription
from reconciler.payloads import RoleAssignmentValue, expect
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.preflight import actions, conditions

ROLE_ASSIGNMENTS_PER_SUBSCRIPTION = 4000  # ARM-FACTS §3 (eligible and scheduled ones do not count)
FICS_PER_IDENTITY = 20
EVERYONE = "00000000-0000-0000-0000-000000000000"  # the principal a deny assignment uses for "all"


@dataclass(frozen=True)
class PermissionBlock:
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] = ()
    condition: str | None = None


@dataclass(frozen=True)
class RoleDefinition:
    guid: str  # lower case
    name: str
    permissions: tuple[PermissionBlock, ...]


@dataclass(frozen=True)
class DenyAssignment:
    scope: str
    principals: frozenset[str]  # lower-case object ids; EVERYONE for all
    excluded: frozenset[str]
    permissions: tuple[PermissionBlock, ...]
    applies_to_children: bool = True
    name: str = ""


@dataclass(frozen=True)
class Facts:
    """What preflight evaluates against. `groups` None: memberships could not be read
    (`groups_problem` says why); `roles` lacks a GUID whose definition could not be read."""

    principal: str
    assignments: tuple[LiveRoleAssignment, ...]
    roles: Mapping[str, RoleDefinition]
    groups: frozenset[str] | None = frozenset()
    groups_problem: str = ""
    deny_assignments: tuple[DenyAssignment, ...] = ()
    deny_problem: str = ""  # non-empty: deny assignments could not be read
    subscriptions: frozenset[str] = frozenset()
    fic_counts: Mapping[str, int] = field(default_factory=dict)  # identity address -> live FICs
    check_reads: bool = True


@dataclass(frozen=True)
class Finding:
    address: str
    action: str
    scope: str
    reason: str
    hint: str

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "action": self.action, "scope": self.scope,
                "reason": self.reason, "hint": self.hint}


@dataclass(frozen=True)
class Preflight:
    principal: str
    failures: tuple[Finding, ...] = ()
    unknown: tuple[Finding, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"principal": self.principal, "failures": [f.to_json() for f in self.failures],
                "unknown": [f.to_json() for f in self.unknown]}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Preflight:
        def findings(items: Iterable[dict[str, str]]) -> tuple[Finding, ...]:
            return tuple(Finding(i["address"], i["action"], i["scope"], i["reason"], i["hint"]) for i in items)
        return Preflight(str(data["principal"]), findings(data.get("failures", ())), findings(data.get("unknown", ())))


def _at_or_above(outer: str, inner: str) -> bool:
    a, b = norm_scope(outer), norm_scope(inner)
    return a == "/" or a == b or b.startswith(a + "/")


def _group_scope(scope: str) -> bool:
    """A management group scope: above the subscriptions it was listed with (ARM lists a
    subscription's inherited assignments), though its path is no prefix of theirs."""
    return norm_scope(scope).startswith("/providers/microsoft.management/managementgroups/")


def _block_allows(block: PermissionBlock, action: str) -> bool:
    return (any(actions.matches(p, action) for p in block.actions)
            and not any(actions.matches(p, action) for p in block.not_actions))


def _condition(text: str | None, action: str, attributes: conditions.Attributes) -> tuple[bool | None, str]:
    if not text:
        return True, ""
    try:
        term = conditions.parse(text)
    except conditions.ConditionSyntaxError as e:
        return False, f"its condition does not parse ({e})"
    return conditions.holds(term, action, attributes), ""


@dataclass(frozen=True)
class _Verdict:
    allowed: bool | None  # None: cannot tell
    why: str
    hint: str


def _decide(facts: Facts, check: actions.Check) -> _Verdict:
    direct = {facts.principal.lower()}
    groups = facts.groups if facts.groups is not None else frozenset()
    holders = direct | {g.lower() for g in groups}
    attributes = {"request": check.request, "resource": check.resource}
    denied = _denied(facts, check, holders)
    if denied is not None:
        return denied
    unsure: list[str] = []
    conditioned: list[str] = []
    relevant = [a for a in facts.assignments
                if a.principal_id.lower() in holders and (_at_or_above(a.scope, check.scope) or _group_scope(a.scope))]
    for ra in relevant:
        outcome = _grant(facts, ra, check, attributes)
        if outcome is None:
            continue
        allowed, text = outcome
        if allowed is True:
            return _Verdict(True, "", "")
        (conditioned if allowed is False else unsure).append(text)
    if facts.groups is None:
        unsure.append(f"group memberships could not be read ({facts.groups_problem})")
    if facts.deny_problem:
        unsure.append(f"deny assignments could not be read ({facts.deny_problem})")
    if unsure:
        return _Verdict(None, "; ".join(unsure), "")
    if conditioned:
        return _Verdict(False, "the condition of " + "; ".join(conditioned) + " does not allow it",
                        "add the role to the condition of the apply identity's assignment "
                        "(docs/permissions.md#the-condition) before merging")
    return _Verdict(False, "no role assignment of the principal (or of its groups) at or above this scope allows it",
                    f"grant a role with {check.action} at {check.scope} or above (docs/permissions.md)")


def _denied(facts: Facts, check: actions.Check, holders: set[str]) -> _Verdict | None:
    """The refusal of the first deny assignment that blocks `check` for `holders`, if any."""
    for deny in facts.deny_assignments:
        reach = _at_or_above(deny.scope, check.scope) if deny.applies_to_children \
            else norm_scope(deny.scope) == norm_scope(check.scope)
        if not reach or holders & deny.excluded:
            continue
        if (EVERYONE in deny.principals or holders & deny.principals) and any(
                _block_allows(b, check.action) for b in deny.permissions):
            return _Verdict(False, f"deny assignment {deny.name or deny.scope} denies it",
                            "deny assignments are made by Azure (managed applications, deployment stacks); "
                            "change the resource that created it")
    return None


def _grant(
    facts: Facts, ra: LiveRoleAssignment, check: actions.Check, attributes: conditions.Attributes
) -> tuple[bool | None, str] | None:
    """What one of the principal's assignments says about `check`: None when its role does not
    cover the action; (True, "") when it allows it; (False, why) when its condition refuses;
    (None, why) when that cannot be told."""
    role = facts.roles.get(ra.role_definition_id.lower())
    if role is None:
        return None, f"the definition of role {ra.role_definition_id} (assigned at {ra.scope}) could not be read"
    block_verdicts: list[bool | None] = []
    for block in role.permissions:
        if not _block_allows(block, check.action):
            continue
        verdict, _ = _condition(block.condition, check.action, attributes)
        block_verdicts.append(verdict)
    role_ok = True if True in block_verdicts else (None if None in block_verdicts else False)
    if role_ok is False:
        return None
    ra_ok, problem = _condition(ra.condition, check.action, attributes)
    if role_ok is True and ra_ok is True:
        if not _group_scope(ra.scope) or len(facts.subscriptions) <= 1:
            return True, ""
        # ARM lists a management group's assignments with each subscription below it, but
        # the plan's live state does not say which of several subscriptions that was.
        return None, f"{role.name} at management group {ra.scope} may not be above this subscription"
    if ra_ok is False:
        return False, f"{role.name} at {ra.scope}" + (f": {problem}" if problem else "")
    return None, f"the condition of {role.name} at {ra.scope} uses an attribute preflight cannot evaluate"


def _read_checks(facts: Facts) -> list[actions.Check]:
    if not facts.check_reads:
        return []
    return [actions.Check(f"subscription/{sub}", action, f"/subscriptions/{sub}")
            for sub in sorted(facts.subscriptions) for action in actions.READS]


def _limits(plan: Plan, facts: Facts) -> list[Finding]:
    return _assignment_limits(plan, facts) + _credential_limits(plan, facts)


def _assignment_limits(plan: Plan, facts: Facts) -> list[Finding]:
    """Role assignments the plan would create beyond the subscription's limit."""
    out: list[Finding] = []
    per_sub: Counter[str] = Counter()
    for ra in facts.assignments:
        sub = scope_subscription(ra.scope)
        if sub:
            per_sub[sub.lower()] += 1
    creates: dict[str, list[Change]] = {}
    for c in plan.actionable:
        if c.type is not ResourceType.ROLE_ASSIGNMENT:
            continue
        if c.action is Action.DELETE and c.before is not None:
            sub = scope_subscription(expect(c.before, RoleAssignmentValue).scope)
            if sub:
                per_sub[sub.lower()] -= 1
        elif c.action is Action.CREATE and c.after is not None:
            sub = scope_subscription(expect(c.after, RoleAssignmentValue).scope)
            if sub:
                per_sub[sub.lower()] += 1
                creates.setdefault(sub.lower(), []).append(c)
    for sub, total in sorted(per_sub.items()):
        over = total - ROLE_ASSIGNMENTS_PER_SUBSCRIPTION
        for c in creates.get(sub, [])[-over:] if over > 0 else []:
            out.append(Finding(c.address, actions.RA_WRITE, f"/subscriptions/{sub}",
                               f"the subscription would hold {total} role assignments; ARM allows "
                               f"{ROLE_ASSIGNMENTS_PER_SUBSCRIPTION} (RoleAssignmentLimitExceeded)",
                               "remove unused role assignments, or grant to groups instead of to each identity"))
    return out


def _credential_limits(plan: Plan, facts: Facts) -> list[Finding]:
    """Federated credentials the plan would create beyond the identity's limit."""
    out: list[Finding] = []
    fics: Counter[str] = Counter(facts.fic_counts)
    fic_creates: dict[str, list[Change]] = {}
    for c in plan.actionable:
        if c.type is not ResourceType.FEDERATED_CREDENTIAL:
            continue
        identity = str(Address.parse(c.address).identity)
        if c.action is Action.DELETE:
            fics[identity] -= 1
        elif c.action is Action.CREATE:
            fics[identity] += 1
            fic_creates.setdefault(identity, []).append(c)
    for identity, total in sorted(fics.items()):
        over = total - FICS_PER_IDENTITY
        for c in fic_creates.get(identity, [])[-over:] if over > 0 else []:
            out.append(Finding(c.address, actions.FIC_WRITE, identity,
                               f"the identity would hold {total} federated credentials; Azure allows "
                               f"{FICS_PER_IDENTITY}", "delete unused federated credentials of this identity"))
    return out


def preflight(plan: Plan, facts: Facts) -> Preflight:
    """Every step of `plan` the principal is predicted to be refused (`failures`) or whose outcome
    cannot be predicted (`unknown`), with the reason and what to do."""
    failures: list[Finding] = []
    unknown: list[Finding] = []
    # Only the principal's and its groups' assignments can allow anything: filter them once.
    holders = {facts.principal.lower()} | {g.lower() for g in (facts.groups or ())}
    theirs = replace(facts, assignments=tuple(a for a in facts.assignments if a.principal_id.lower() in holders))
    checks: Sequence[actions.Check] = _read_checks(facts) + [
        chk for c in plan.actionable for chk in actions.checks(c)]
    seen: set[tuple[str, str]] = set()
    for check in checks:
        if (check.address, check.action) in seen:
            continue
        verdict = _decide(theirs, check)
        finding = Finding(check.address, check.action, check.scope, verdict.why, verdict.hint)
        if verdict.allowed is False:
            failures.append(finding)
            seen.add((check.address, check.action))
        elif verdict.allowed is None:
            unknown.append(finding)
            seen.add((check.address, check.action))
    failures.extend(_limits(plan, facts))
    return Preflight(facts.principal, tuple(failures), tuple(unknown))
