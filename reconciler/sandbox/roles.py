"""The built-in role definitions (928 roles copied from Azure), loaded once from package data."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

ROLE_DEFINITIONS_SEGMENT = "/providers/Microsoft.Authorization/roleDefinitions/"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    role_name: str
    description: str
    permissions: tuple[dict[str, Any], ...]
    role_type: str = "BuiltInRole"

    def to_arm(self, scope_prefix: str) -> dict[str, Any]:
        """ARM's JSON; `scope_prefix` is "" (tenant form) or "/subscriptions/{sub}"."""
        return {
            "properties": {
                "roleName": self.role_name,
                "type": self.role_type,
                "description": self.description,
                "assignableScopes": ["/"],
                "permissions": [dict(p) for p in self.permissions],
            },
            "id": f"{scope_prefix}{ROLE_DEFINITIONS_SEGMENT}{self.guid}",
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": self.guid,
        }


@functools.cache
def builtin_roles() -> dict[str, RoleDefinition]:
    """Built-in roles keyed by lower-case GUID."""
    raw = json.loads(resources.files("reconciler.data").joinpath("builtin_roles.json").read_text("utf-8"))
    roles = {}
    for entry in raw:
        role = RoleDefinition(entry["id"].lower(), entry["roleName"], entry.get("description", ""),
                              tuple(entry["permissions"]))
        roles[role.guid] = role
    return roles


def trailing_guid(role_definition_id: str) -> str:
    """Role definitions are compared by the GUID at the end of their id, case-insensitively."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def find(role_definition_id: str) -> RoleDefinition | None:
    return builtin_roles().get(trailing_guid(role_definition_id))
