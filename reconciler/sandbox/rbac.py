"""Azure RBAC evaluation over the sandbox's own role assignments and role definitions.

A principal may perform an action at a scope when some role assignment at or above that scope,
made to the principal or to any group it is (transitively) a member of, names a role with a
permission block whose `actions` match the action and whose `notActions` do not, and whose ABAC
conditions hold: the block's own condition (31 built-in roles carry one) and the assignment's
condition. A condition only restricts the assignment it is on; any one assignment that allows the
action is enough.

Matching is case-insensitive; `*` matches any text, and a whole-segment `/*/` also matches no segment
at all, which is how Azure lets Managed Identity Operator's
`Microsoft.ManagedIdentity/userAssignedIdentities/*/read` read the identity itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from . import conditions, roles, scopes
from .errors import ArmError
from .store import Doc

Permission = dict[str, Any]
Resolver = Callable[[str], roles.RoleDefinition | None]  # role GUID -> definition (built-in or custom)


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    escaped = re.escape(pattern)
    escaped = escaped.replace(r"/\*/", "/(?:.*/)?").replace(r"\*", ".*")
    return re.compile(escaped, re.IGNORECASE)


def action_matches(pattern: str, action: str) -> bool:
    return _compile(pattern).fullmatch(action) is not None


def block_allows(block: Permission, action: str) -> bool:
    return any(action_matches(p, action) for p in block.get("actions", ())) and not any(
        action_matches(p, action) for p in block.get("notActions", ())
    )


def condition_holds(condition: object, action: str, attributes: conditions.Attributes) -> bool:
    """An absent condition holds; one that does not parse never does (it was refused on PUT)."""
    if condition is None or condition == "":
        return True
    if not isinstance(condition, str):
        return False
    try:
        tree = conditions.parse(condition)
    except conditions.ConditionError:
        return False
    return conditions.evaluate(tree, action, attributes, action_matches)


def _principals(principal_ids: str | Collection[str]) -> set[str]:
    return {principal_ids.lower()} if isinstance(principal_ids, str) else {p.lower() for p in principal_ids}


def assignments_for(assignments: Iterable[Doc], principal_ids: str | Collection[str], scope: str) -> list[Doc]:
    """The assignments at or above `scope` made to any of `principal_ids` (a principal and its groups)."""
    wanted = _principals(principal_ids)
    return [
        a for a in assignments
        if a["properties"]["principalId"].lower() in wanted and scopes.is_at_or_above(a["properties"]["scope"], scope)
    ]


def _builtin(guid: str) -> roles.RoleDefinition | None:
    return roles.builtin_roles().get(guid)


def effective_permissions(assignments: Iterable[Doc], principal_ids: str | Collection[str], scope: str,
                          resolve: Resolver = _builtin) -> list[Permission]:
    """One block per permission of each distinct role the principals hold at or above `scope`."""
    seen: set[str] = set()
    blocks: list[Permission] = []
    for a in assignments_for(assignments, principal_ids, scope):
        guid = roles.trailing_guid(a["properties"]["roleDefinitionId"])
        role = resolve(guid)
        if role is None or guid in seen:
            continue
        seen.add(guid)
        blocks.extend(role.permissions)
    return blocks


def allowed(assignments: Iterable[Doc], principal_ids: str | Collection[str], action: str, scope: str,
            resolve: Resolver = _builtin, attributes: conditions.Attributes | None = None) -> bool:
    """Whether any one assignment of the principals allows `action` at `scope`, conditions included.

    `attributes` are the ABAC attributes of the request ({"request": {...}, "resource": {...}}); an
    attribute a condition names but `attributes` lacks makes that comparison false.
    """
    attrs = attributes or {}
    for a in assignments_for(assignments, principal_ids, scope):
        role = resolve(roles.trailing_guid(a["properties"]["roleDefinitionId"]))
        if role is None:
            continue
        if not any(block_allows(b, action) and condition_holds(b.get("condition"), action, attrs)
                   for b in role.permissions):
            continue
        if condition_holds(a["properties"].get("condition"), action, attrs):
            return True
    return False


def authorization_failed(client: str, object_id: str, action: str, scope: str) -> ArmError:
    # Wording from learn.microsoft.com role-based-access-control/troubleshooting. Since about 2023 ARM
    # says "or an ABAC condition not fulfilled" for the role-assignment actions that conditions govern
    # (public deployment captures; ARM-FACTS section 11).
    abac = " or an ABAC condition not fulfilled" if action.lower().startswith(
        "microsoft.authorization/roleassignments/") and not action.lower().endswith("/read") else ""
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{client}' with object id '{object_id}' does not have authorization{abac} to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please "
        "refresh your credentials.",
    )
