"""The sandbox's stand-in for Entra ID: the tenant, its admin, the principals it knows, group members.

Microsoft.Authorization validates a role assignment's principalId against the directory. A managed
identity's service principal is written here when the identity is created, but (as in Azure) it only
becomes visible to that lookup after the configured replication delay.

Groups have members (users, service principals, other groups). Membership is transitive: a principal
holds every role assigned to any group it is a member of, directly or through nested groups, and
`assignedTo('{objectId}')` lists those assignments too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ArmError
from .store import Doc, Store

PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KIND = "principal"
_MEMBER = "groupMember"
ADMIN_DISPLAY_NAME = "sandbox-admin"


def is_guid(value: object) -> bool:
    return isinstance(value, str) and bool(_GUID.match(value))


@dataclass(frozen=True)
class Principal:
    object_id: str
    principal_type: str
    display_name: str
    created_at: float
    replicates: bool  # True for identities' service principals: subject to the replication delay
    app_id: str
    # Microsoft Graph properties beyond the above (userPrincipalName, mailNickname, ...), set when the
    # principal is created through the Graph API; seeded principals have none.
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def visible(self, now: float, replication_delay: float) -> bool:
        return not self.replicates or now >= self.created_at + replication_delay


class Directory:
    def __init__(self, store: Store):
        self._store = store
        with store.transaction():
            if store.meta("tenant_id") is None:
                store.set_meta("tenant_id", str(uuid.uuid4()))
            if store.meta("admin_object_id") is None:
                store.set_meta("admin_object_id", str(uuid.uuid4()))
        self.tenant_id = str(store.meta("tenant_id"))
        self.admin_object_id = str(store.meta("admin_object_id"))
        self.ensure_admin()

    def ensure_admin(self) -> None:
        """The admin survives reset(): its tokens must keep working."""
        if self.get(self.admin_object_id) is None:
            self.add(self.admin_object_id, "User", ADMIN_DISPLAY_NAME)

    def add(self, object_id: str, principal_type: str, display_name: str, *, created_at: float = 0.0,
            replicates: bool = False, app_id: str = "", attributes: Mapping[str, Any] | None = None) -> Principal:
        if not is_guid(object_id):
            raise ValueError(f"principal object id {object_id!r} is not a GUID")
        if principal_type not in PRINCIPAL_TYPES:
            raise ValueError(f"principal type {principal_type!r} is not one of {', '.join(PRINCIPAL_TYPES)}")
        principal = Principal(object_id.lower(), principal_type, display_name, created_at, replicates, app_id,
                              dict(attributes or {}))
        self._store.put(_KIND, principal.object_id, "", _to_doc(principal))
        return principal

    def remove(self, object_id: str) -> None:
        """Delete a principal and its memberships (as a member, and as a group)."""
        oid = object_id.lower()
        with self._store.transaction():
            self._store.delete(_KIND, oid)
            for edge in self._store.all(_MEMBER):
                if oid in (edge["groupId"], edge["memberId"]):
                    self._store.delete(_MEMBER, _member_key(edge["groupId"], edge["memberId"]))

    # --- group membership ------------------------------------------------------------------------
    def add_member(self, group_id: str, member_id: str) -> None:
        """Make `member_id` (user, service principal or group) a direct member of group `group_id`."""
        group, member = self.get(group_id), self.get(member_id)
        if group is None or member is None:
            missing = group_id if group is None else member_id
            raise LookupError(f"principal {missing!r} is not in the sandbox directory")
        if group.principal_type != "Group":
            raise ValueError(f"principal {group_id!r} is a {group.principal_type}, not a Group")
        if group.object_id == member.object_id:
            raise ValueError("a group cannot be a member of itself")
        self._store.put(_MEMBER, _member_key(group.object_id, member.object_id), group.object_id,
                        {"groupId": group.object_id, "memberId": member.object_id})

    def remove_member(self, group_id: str, member_id: str) -> bool:
        return self._store.delete(_MEMBER, _member_key(group_id.lower(), member_id.lower()))

    def members(self, group_id: str) -> list[str]:
        """Direct members of a group."""
        return [e["memberId"] for e in self._store.children(_MEMBER, group_id.lower())]

    def groups_of(self, object_id: str) -> set[str]:
        """Every group `object_id` is a member of, directly or transitively (cycles are harmless)."""
        parents: dict[str, list[str]] = {}
        for edge in self._store.all(_MEMBER):
            parents.setdefault(edge["memberId"], []).append(edge["groupId"])
        found: set[str] = set()
        todo = [object_id.lower()]
        while todo:
            for group in parents.get(todo.pop(), ()):
                if group not in found:
                    found.add(group)
                    todo.append(group)
        found.discard(object_id.lower())
        return found

    def principal_ids(self, object_id: str) -> frozenset[str]:
        """The object id itself plus all its groups: whose role assignments apply to it."""
        return frozenset({object_id.lower(), *self.groups_of(object_id)})

    def get(self, object_id: str) -> Principal | None:
        doc = self._store.get(_KIND, object_id)
        return None if doc is None else _from_doc(doc)

    def principals(self) -> list[Principal]:
        """Every principal, in creation order."""
        return [_from_doc(d) for d in self._store.all(_KIND)]

    def find(self, name_or_id: str) -> Principal:
        """By object id, else by display name (case-insensitive); for the `token` command."""
        if is_guid(name_or_id) and (found := self.get(name_or_id)) is not None:
            return found
        matches = [p for p in map(_from_doc, self._store.all(_KIND)) if p.display_name.lower() == name_or_id.lower()]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} principals are named or identified by {name_or_id!r}")
        return matches[0]

    def principal_not_found(self, principal_id: str) -> ArmError:
        # Wording from learn.microsoft.com role-based-access-control/troubleshooting (two spaces included).
        return ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal_id} does not exist in the directory {self.tenant_id}. "
            "Check that you have the correct principal ID. If you are creating this principal and then "
            "immediately assigning a role, this error might be related to a replication delay. In this case, "
            "set the role assignment principalType property to a value, such as ServicePrincipal, User, or "
            "Group.  See https://aka.ms/docs-principaltype",
        )


def _member_key(group_id: str, member_id: str) -> str:
    return f"{group_id}/{member_id}"


def _to_doc(p: Principal) -> Doc:
    return {"objectId": p.object_id, "principalType": p.principal_type, "displayName": p.display_name,
            "createdAt": p.created_at, "replicates": p.replicates, "appId": p.app_id,
            "attributes": dict(p.attributes)}


def _from_doc(d: Doc) -> Principal:
    return Principal(d["objectId"], d["principalType"], d["displayName"], float(d["createdAt"]),
                     bool(d["replicates"]), str(d.get("appId", "")), dict(d.get("attributes") or {}))
