"""Role names ↔ role definition GUIDs.

The built-in table ships inside the package (`reconciler/data/builtin_roles.json`, a copy of
every built-in role definition), so `validate` resolves built-in names offline. Custom roles
exist only in a tenant: online commands chain the built-in table with a lookup against ARM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from reconciler.resource_id import ROLE_DEFINITION_TYPE, ResourceId

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def role_definition_guid(text: str) -> str | None:
    """The lower-case GUID of a role definition id, tenant-level
    (`/providers/Microsoft.Authorization/roleDefinitions/{guid}`) or subscription-qualified,
    in any casing; None for anything else."""
    rid = ResourceId.try_parse(text) if text.strip().startswith("/") else None
    if rid is None or not rid.is_type(ROLE_DEFINITION_TYPE) or rid.resource_group is not None \
            or len(rid.providers) != 1 or rid.name is None or not GUID_RE.match(rid.name):
        return None
    return rid.name.lower()

# Roles that let the holder grant any access: adding such a grant, at any scope, is worth a
# warning (unless the manifest acknowledges it with `acknowledgePrivileged: true`).
PRIVILEGED_ROLE_GUIDS = frozenset(
    {
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",  # User Access Administrator
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",  # Role Based Access Control Administrator
    }
)


_LEVEL_WORDS = {
    "tenant": "tenant root scope", "managementGroup": "management group scope",
    "subscription": "subscription scope", "resourceGroup": "resource group scope", "resource": "resource scope",
}


def privileged_grant_warning(role_guid: str, role_name: str, scope: str) -> str | None:
    """The warning a grant of a role that can grant any access deserves, or None."""
    if role_guid.lower() not in PRIVILEGED_ROLE_GUIDS:
        return None
    rid = ResourceId.try_parse(scope)
    where = _LEVEL_WORDS[rid.level] if rid is not None else "scope"
    return f"'{role_name}' at {where} {scope} lets its holder grant any access"


@dataclass(frozen=True)
class Role:
    guid: str  # lower case
    name: str


@lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, Role], dict[str, Role]]:
    raw = json.loads(resources.files("reconciler.data").joinpath("builtin_roles.json").read_text("utf-8"))
    by_name: dict[str, Role] = {}
    by_guid: dict[str, Role] = {}
    for item in raw:
        role = Role(guid=item["id"].lower(), name=item["roleName"])
        by_name[role.name.lower()] = role
        by_guid[role.guid] = role
    return by_name, by_guid


def builtin_role_names() -> list[str]:
    return sorted(r.name for r in _builtin()[0].values())


# A live lookup: (subscription, role name or GUID) -> Role or None.
LiveRoleLookup = Callable[[str, str], "Role | None"]


class RoleCatalog:
    """Resolves what a manifest writes in `role:` to a Role.

    Accepts a role name (case-insensitive, as ARM matches `roleName eq`), a bare GUID, or a
    role definition id in tenant or subscription form."""

    def __init__(self, live_lookup: LiveRoleLookup | None = None) -> None:
        self._live = live_lookup
        self._cache: dict[tuple[str, str], Role | None] = {}

    @property
    def online(self) -> bool:
        return self._live is not None

    def resolve(self, text: str, subscription: str) -> Role | None:
        by_name, by_guid = _builtin()
        value = text.strip()
        guid = role_definition_guid(value) or (value.lower() if GUID_RE.match(value) else None)
        if guid is not None and guid in by_guid:
            return by_guid[guid]
        if guid is None and value.lower() in by_name:
            return by_name[value.lower()]
        if self._live is None:
            return None
        cache_key = (subscription.lower(), (guid or value).lower())
        if cache_key not in self._cache:
            self._cache[cache_key] = self._live(subscription, guid or value)
        return self._cache[cache_key]

    def name_of(self, guid: str) -> str:
        role = _builtin()[1].get(guid.lower())
        if role is not None:
            return role.name
        for cached in self._cache.values():
            if cached is not None and cached.guid == guid.lower():
                return cached.name
        return guid

    @staticmethod
    def suggestions(text: str, limit: int = 3) -> list[str]:
        """Closest built-in names, for the hint of an unknown-role error."""
        import difflib

        names = builtin_role_names()
        return difflib.get_close_matches(text, names, n=limit, cutoff=0.6)
