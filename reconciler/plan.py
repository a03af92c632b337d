"""The plan: inert, versioned data that every renderer reads and `apply` executes.

A Change's `before` and `after` hold only managed fields, as typed values (reconciler/payloads.py;
the JSON plan has them as objects):

    action    before              after
    create    None                desired fields (unknown ones listed in `unknown`)
    update    live fields         desired fields
    replace   live fields         desired fields (the live object is deleted, then created)
    delete    live fields         None
    adopt     live fields         desired fields, with our ownership recorded
    no-op     live fields         the same fields

`reason` explains the action to people and `reason_code` says the same for machines (one of
ReasonCode, like Terraform's ActionReason); neither steers apply. `requires` lists addresses
that must be applied first. `consequence_of` marks a change that happens only because of
another (e.g. assignments re-created with a replaced identity).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from typing import Any

from reconciler.payloads import Payload, from_fields, to_fields

FORMAT_VERSION = "1.3"  # 1.2: the action "adopt" (and summary.adopt); 1.3: reason_code
UNKNOWN = "(known after apply)"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NOOP = "no-op"
    # Take ownership of something that already exists, as declared: write our ownership tags
    # on an identity, or our ownership marker into a grant's description. Nothing is created,
    # deleted or re-created; a take-over (metadata.takeOverFrom) is an adopt from another owner.
    ADOPT = "adopt"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.REPLACE: "-/+",
    Action.DELETE: "-",
    Action.NOOP: " ",
    Action.ADOPT: "&",
}


class ResourceType(StrEnum):
    IDENTITY = "identity"
    FEDERATED_CREDENTIAL = "federatedCredential"
    ROLE_ASSIGNMENT = "roleAssignment"


class ReasonCode(StrEnum):
    """Why a change is planned, for machines: the prose `reason` says the same for people.
    Documented, one by one, in schemas/plan.schema.json; plans before format 1.3 have none."""

    IN_SYNC = "in_sync"  # live matches the manifests
    NOT_IN_AZURE = "not_in_azure"  # declared, absent
    FIELDS_DIFFER = "fields_differ"  # a managed field that can change in place differs
    IMMUTABLE_FIELD_CHANGED = "immutable_field_changed"  # an identity's location; a grant's scope, role or principal
    IDENTITY_REPLACED = "identity_replaced"  # follows from its identity being replaced
    IDENTITY_DELETED = "identity_deleted"  # follows from its identity being deleted
    NOT_DECLARED = "not_declared"  # ours (or under a managed identity), declared nowhere
    ADOPT_EXISTING = "adopt_existing"  # declared, exists, owned by nobody: ownership gets recorded
    OWNER_TRANSFER = "owner_transfer"  # declared, owned by an owner this set takes over from
    TAGGED_NOT_CREATED = "tagged_not_created"  # carries an owner's tags but reconciler never created it
    OTHER_OWNER = "other_owner"  # another owner's, listed as context (--include-foreign)
    ORPHANED = "orphaned"  # our grant whose principal no longer exists
    GRANTED_OUTSIDE_MANIFESTS = "granted_outside_manifests"  # granted by hand to one of our identities


class DriftClass(StrEnum):
    """Why live differs from desired (None on a change means in sync)."""

    MISSING = "missing"  # declared but absent
    CHANGED = "changed"  # present, a managed field differs
    UNMANAGED = "unmanaged"  # live, ours to see, declared nowhere
    ORPHANED = "orphaned"  # role assignment whose principal no longer exists
    FOREIGN = "foreign"  # belongs to another owner; context only


@dataclass(frozen=True, slots=True)  # tens of thousands per plan at scale
class Change:
    address: str
    type: ResourceType
    action: Action
    reason: str = ""
    owner: str | None = None
    reason_code: ReasonCode | None = None  # None only in plans read from format 1.2 or older
    before: Payload | None = None
    after: Payload | None = None
    unknown: tuple[str, ...] = ()  # fields of `after` known only after apply
    requires: tuple[str, ...] = ()
    consequence_of: str | None = None
    drift: DriftClass | None = None
    source: str | None = None  # file:line:col of the declaration
    modified: Mapping[str, str | None] | None = None  # who changed the live resource last, and when

    def __post_init__(self) -> None:
        # An in-sync resource's after is usually its before, field for field: keep one value for
        # both. At 10,000 identities and 50,000 grants in sync, the copies were a large part of
        # a plan's memory (docs/BENCHMARKS.md, figure 4). Plans are never changed once made.
        if self.action is Action.NOOP and self.after is not self.before and self.after == self.before:
            object.__setattr__(self, "after", self.before)

    def __eq__(self, other: object) -> bool:
        # By fields, whatever the class: an in-sync change kept as a compact record
        # (reconciler/in_sync.py) equals the same change read back from a JSON plan.
        if not isinstance(other, Change):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _CHANGE_FIELDS)

    def changed_fields(self) -> list[str]:
        """Managed fields (JSON names) whose value differs between before and after."""
        before, after = self.before_fields(), self.after_fields()
        if before is None or after is None:
            return []
        keys = sorted(set(before) | set(after))
        return [k for k in keys if before.get(k) != after.get(k) and k not in _DISPLAY_ONLY]

    # Mapping views by JSON name, for renderers that show fields generically.
    def before_fields(self) -> dict[str, Any] | None:
        return to_fields(self.before) if self.before is not None else None

    def after_fields(self) -> dict[str, Any] | None:
        return to_fields(self.after) if self.after is not None else None

    def fields(self) -> dict[str, Any]:
        """What the resource is: its after, else its before (as JSON names)."""
        value = self.after if self.after is not None else self.before
        return to_fields(value) if value is not None else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "type": self.type.value,
            "action": self.action.value,
            "reason": self.reason,
            "reason_code": self.reason_code.value if self.reason_code else None,
            "owner": self.owner,
            "drift": self.drift.value if self.drift else None,
            "before": self.before_fields(),
            "after": self.after_fields(),
            "unknown": list(self.unknown),
            "requires": list(self.requires),
            "consequence_of": self.consequence_of,
            "source": self.source,
            "modified": dict(self.modified) if self.modified is not None else None,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Change:
        """Raises ValueError when before or after lacks a field its type has."""
        before, after = data.get("before"), data.get("after")
        return Change(
            address=data["address"],
            type=ResourceType(data["type"]),
            action=Action(data["action"]),
            reason=data.get("reason", ""),
            reason_code=ReasonCode(data["reason_code"]) if data.get("reason_code") else None,
            owner=data.get("owner"),
            drift=DriftClass(data["drift"]) if data.get("drift") else None,
            before=from_fields(data["type"], before) if before is not None else None,
            after=from_fields(data["type"], after) if after is not None else None,
            unknown=tuple(data.get("unknown", ())),
            requires=tuple(data.get("requires", ())),
            consequence_of=data.get("consequence_of"),
            source=data.get("source"),
            modified=data.get("modified"),
        )


_CHANGE_FIELDS = tuple(f.name for f in dataclass_fields(Change))

# Fields carried for display or for apply that are not compared (ids assigned by ARM).
_DISPLAY_ONLY = frozenset({"id", "name", "principalId", "clientId", "tenantId", "roleName", "principal"})


@dataclass(frozen=True)
class AbandonedOwner:
    """An owner whose identities this repository created (their source tag says so) but that
    no manifest declares any more: nothing is planned for them, and the plan says so."""

    owner: str
    source: str
    identities: tuple[str, ...]  # "resourceGroup/name"
    role_assignments: int  # granted to those identities, or named with the owner's scheme
    subscriptions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "source": self.source, "identities": list(self.identities),
                "role_assignments": self.role_assignments, "subscriptions": list(self.subscriptions),
                "how_to_delete": self.how_to_delete()}

    @staticmethod
    def from_json(data: dict[str, Any]) -> AbandonedOwner:
        return AbandonedOwner(data["owner"], data["source"], tuple(data["identities"]),
                              int(data["role_assignments"]), tuple(data["subscriptions"]))

    def how_to_delete(self) -> str:
        # Deletions by owner tag happen only in resource groups the owner's manifests name
        # (docs/security.md), so the empty set must name each group.
        groups = sorted({i.split("/", 1)[0] for i in self.identities})
        return (f"add an IdentitySet with `metadata.owner: {self.owner}`, `identities: []` and "
                f"`defaults.resourceGroup` naming its resource group (one set per subscription and group: "
                f"{', '.join(groups)}) and apply it with --allow-mass-delete; to keep them, restore the "
                "owner's manifest")

    def sentence(self) -> str:
        n, g = len(self.identities), self.role_assignments
        return (f"owner '{self.owner}' has {n} {'identity' if n == 1 else 'identities'} and {g} role "
                f"{'assignment' if g == 1 else 'assignments'} in Azure created from this repository "
                f"(tag reconciler-source={self.source}) but no manifest any more")


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    warnings: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    # Owners this repository created identities for and whose manifests are all gone.
    abandoned: tuple[AbandonedOwner, ...] = ()
    format_version: str = FORMAT_VERSION
    # Saved plans: sha256 of the manifests ("manifests") and of the live state of every
    # resource a change touches ("live:<address>"); apply refuses when either moved.
    fingerprints: dict[str, str] = field(default_factory=dict)
    # What the plan was made from, so `apply plan.json` can re-check it: manifest paths and
    # the options that change what is planned (prune flags).
    inputs: dict[str, Any] = field(default_factory=dict)
    # Which steps the applying principal is predicted to be refused (reconciler/preflight), as
    # its JSON: {"principal", "failures": [...], "unknown": [...]}; None when not evaluated. Not
    # a change: saved plans are not compared on it.
    preflight: dict[str, Any] | None = None

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        return bool(self.actionable)

    def summary(self) -> dict[str, int]:
        counts = Counter(c.action.value for c in self.changes)
        # "adopt" only when there are adoptions: plans of an estate already under management
        # keep the shape they had before adoption existed.
        return {a.value: counts.get(a.value, 0) for a in Action if a is not Action.ADOPT or counts.get(a.value)}

    def by_address(self) -> dict[str, Change]:
        return {c.address: c for c in self.changes}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "owners": list(self.owners),
            "abandoned_owners": [a.to_json() for a in self.abandoned],
            "summary": self.summary(),
            "warnings": list(self.warnings),
            "inputs": dict(self.inputs),
            "fingerprints": dict(self.fingerprints),
        }
        if self.preflight is not None:
            out["preflight"] = self.preflight
        out["changes"] = [c.to_json() for c in self.changes]
        return out

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @staticmethod
    def from_json(data: dict[str, Any]) -> Plan:
        return Plan(
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            warnings=tuple(data.get("warnings", ())),
            owners=tuple(data.get("owners", ())),
            abandoned=tuple(AbandonedOwner.from_json(a) for a in data.get("abandoned_owners", ())),
            format_version=data["format_version"],
            fingerprints=dict(data.get("fingerprints", {})),
            inputs=dict(data.get("inputs", {})),
            preflight=data.get("preflight"),
        )
