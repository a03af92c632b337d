"""Azure RBAC evaluation over the sandbox's own role assignments and the built-in definitions.

A principal may perform an action at a scope when some role assignment of theirs at or above that
scope names a role with a permission block whose `actions` match the action and whose `notActions`
do not. Matching is case-insensitive; `*` matches any text, and a whole-segment `/*/` also matches
no segment at all, which is how Azure lets Managed Identity Operator's
`Microsoft.ManagedIdentity/userAssignedIdentities/*/read` read the identity itself. ABAC conditions
on assignments and group memberships are not evaluated (the sandbox directory has no groups' members).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from . import roles, scopes
from .errors import ArmError
from .store import Doc

Permission = dict[str, Any]


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


def assignments_for(assignments: Iterable[Doc], principal_id: str, scope: str) -> list[Doc]:
    """The principal's assignments at or above `scope`."""
    pid = principal_id.lower()
    return [
        a for a in assignments
        if a["properties"]["principalId"].lower() == pid and scopes.is_at_or_above(a["properties"]["scope"], scope)
    ]


def effective_permissions(assignments: Iterable[Doc], principal_id: str, scope: str) -> list[Permission]:
    """One block per permission of each distinct role the principal holds at or above `scope`."""
    seen: set[str] = set()
    blocks: list[Permission] = []
    for a in assignments_for(assignments, principal_id, scope):
        guid = roles.trailing_guid(a["properties"]["roleDefinitionId"])
        role = roles.builtin_roles().get(guid)
        if role is None or guid in seen:
            continue
        seen.add(guid)
        blocks.extend(role.permissions)
    return blocks


def allowed(assignments: Iterable[Doc], principal_id: str, action: str, scope: str) -> bool:
    return any(block_allows(b, action) for b in effective_permissions(assignments, principal_id, scope))


def authorization_failed(client: str, object_id: str, action: str, scope: str) -> ArmError:
    # Wording from learn.microsoft.com role-based-access-control/troubleshooting.
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{client}' with object id '{object_id}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please "
        "refresh your credentials.",
    )
