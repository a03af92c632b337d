"""Role definitions: the built-in ones (928 roles copied from Azure, loaded once from package data)
and the shape of custom roles, which the Microsoft.Authorization provider stores per tenant."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from . import scopes

ROLE_DEFINITIONS_SEGMENT = "/providers/Microsoft.Authorization/roleDefinitions/"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    role_name: str
    description: str
    permissions: tuple[dict[str, Any], ...]
    role_type: str = "BuiltInRole"
    assignable_scopes: tuple[str, ...] = ("/",)
    audit: tuple[tuple[str, Any], ...] = ()  # createdOn/updatedOn/createdBy/updatedBy of custom roles

    @property
    def is_custom(self) -> bool:
        return self.role_type == "CustomRole"

    def to_arm(self, scope_prefix: str) -> dict[str, Any]:
        """ARM's JSON; `scope_prefix` is "" (tenant form) or "/subscriptions/{sub}"."""
        return {
            "properties": {
                "roleName": self.role_name,
                "type": self.role_type,
                "description": self.description,
                "assignableScopes": list(self.assignable_scopes),
                "permissions": [dict(p) for p in self.permissions],
                **dict(self.audit),
            },
            "id": f"{scope_prefix}{ROLE_DEFINITIONS_SEGMENT}{self.guid}",
            "type": "Microsoft.Authorization/roleDefinitions",
            "name": self.guid,
        }

    def assignable_at(self, scope: str) -> bool:
        """Whether an assignment of this role may be made at `scope` (at or below an assignable scope)."""
        return any(scopes.is_at_or_above(a, scope) for a in self.assignable_scopes)


def custom_role_from_doc(doc: dict[str, Any]) -> RoleDefinition:
    """A stored custom role (the ARM properties object plus `name`) as a RoleDefinition."""
    props = doc["properties"]
    return RoleDefinition(
        doc["name"].lower(), props["roleName"], props.get("description") or "",
        tuple(props["permissions"]), "CustomRole", tuple(props["assignableScopes"]),
        tuple((k, props.get(k)) for k in ("createdOn", "updatedOn", "createdBy", "updatedBy")))


# ARM shows createdOn/updatedOn on built-in roles (and null createdBy/updatedBy). The role table has no
# dates, so every built-in carries Reader's real ones (ARM-FACTS section 4); the dates are a stand-in.
_BUILTIN_AUDIT = (("createdOn", "2015-02-02T21:55:09.8806423Z"), ("updatedOn", "2021-11-11T20:13:47.8628684Z"),
                  ("createdBy", None), ("updatedBy", None))


@functools.cache
def builtin_roles() -> dict[str, RoleDefinition]:
    """Built-in roles keyed by lower-case GUID."""
    raw = json.loads(resources.files("reconciler.data").joinpath("builtin_roles.json").read_text("utf-8"))
    roles = {}
    for entry in raw:
        role = RoleDefinition(entry["id"].lower(), entry["roleName"], entry.get("description", ""),
                              tuple(entry["permissions"]), audit=_BUILTIN_AUDIT)
        roles[role.guid] = role
    return roles


def trailing_guid(role_definition_id: str) -> str:
    """Role definitions are compared by the GUID at the end of their id, case-insensitively."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def find(role_definition_id: str) -> RoleDefinition | None:
    """A built-in role by id or GUID (custom roles live in the store: see Backend.role_definition)."""
    return builtin_roles().get(trailing_guid(role_definition_id))
