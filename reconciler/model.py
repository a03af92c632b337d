"""What the manifests want (desired) and what ARM has (live), as plain frozen values.

Nothing here does I/O. ARM compares ids, names and GUIDs case-insensitively, so every value
that takes part in matching has a normalised form (`key`); the original spelling is kept
for display and for the requests we send.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from reconciler.errors import SourceLocation
from reconciler.resource_id import IDENTITY_TYPE, ResourceId, scope_key

# Tags that prove ownership of an identity. Role assignments cannot carry tags, so their
# ownership is proven by their deterministic name instead (see `assignment_name`).
MANAGED_BY_TAG = "managed-by"
MANAGED_BY_VALUE = "reconciler"
OWNER_TAG = "reconciler-owner"
# Set on identities declared with `protect: true`, so that a plan that would delete one even
# after its manifest entry is gone can see that it was protected.
PROTECTED_TAG = "reconciler-protected"
# Which repository (manifest source) created an identity, so that an owner whose manifests
# were all deleted is told apart from another repository's owner (see `sourceid`).
SOURCE_TAG = "reconciler-source"
RESERVED_TAGS = frozenset({MANAGED_BY_TAG, OWNER_TAG, PROTECTED_TAG, SOURCE_TAG})

DEFAULT_AUDIENCES: tuple[str, ...] = ("api://AzureADTokenExchange",)
MAX_FICS_PER_IDENTITY = 20
# Identity names longer than this cannot be assigned to VMs / scale sets.
VM_SAFE_NAME_LENGTH = 24

# Namespace of every role assignment name reconciler derives; never change it, or every
# existing assignment would look foreign.
ASSIGNMENT_NAMESPACE = uuid.UUID("5b1f3b5e-2f7c-4f3e-9a51-6d1c0a6e7d42")

# A grant that already existed under another name when it was adopted (or taken over from
# another owner) records its owner at the end of its description, after the user's own text:
# the deterministic name cannot be given to an existing assignment without re-creating it.
OWNER_MARKER_RE = re.compile(r"\s*\[reconciler:owner=([a-z0-9][a-z0-9._-]{0,62})\]\s*$")

IDENTITY_PROVIDER = IDENTITY_TYPE
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


def norm_scope(scope: str) -> str:
    """Case-insensitive comparison form of an ARM id or scope: lower case, one leading
    slash, no trailing or doubled slashes. `/` stays `/`."""
    return scope_key(scope)


def norm_location(location: str) -> str:
    """ARM treats "West Europe" and "westeurope" as the same region."""
    return location.replace(" ", "").lower()


def role_guid(role_definition_id: str) -> str:
    """The GUID of a role definition, from a bare GUID, the tenant form
    `/providers/Microsoft.Authorization/roleDefinitions/{guid}` or a subscription-qualified id."""
    return role_definition_id.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def scope_subscription(scope: str) -> str | None:
    """The subscription id (lower case) a scope lies in, or None (tenant root, management groups)."""
    rid = ResourceId.try_parse(scope)
    return rid.subscription.lower() if rid is not None and rid.subscription is not None else None


def scope_resource_group(scope: str) -> tuple[str, str] | None:
    """(subscription, resource group), lower case, of a scope at or below a resource group, else None."""
    parts = norm_scope(scope).split("/")
    if len(parts) > 4 and parts[1] == "subscriptions" and parts[3] == "resourcegroups":
        return parts[2], parts[4]
    return None


def identity_id(subscription: str, resource_group: str, name: str) -> str:
    return str(ResourceId.identity(subscription, resource_group, name))


def tag_value(tags: Mapping[str, str], name: str) -> str | None:
    """The value of tag `name`, its name matched case-insensitively as ARM matches tag names.

    The one reader of reserved tags: `Reconciler-Protected` is the same tag as
    `reconciler-protected` to ARM, so it must be to every check that reads one."""
    wanted = name.lower()
    return next((value for key, value in tags.items() if key.lower() == wanted), None)


def is_protected(tags: Mapping[str, str]) -> bool:
    """Protection errs on the safe side: any spelling of `true` protects."""
    return (tag_value(tags, PROTECTED_TAG) or "").strip().lower() == "true"


def ownership_tags(owner: str) -> dict[str, str]:
    return {MANAGED_BY_TAG: MANAGED_BY_VALUE, OWNER_TAG: owner}


def assignment_name(owner: str, scope: str, role_definition: str, principal_id: str) -> str:
    """Deterministic role assignment name (a GUID) for an owner and a natural key.

    Re-running never creates a duplicate, and a live assignment whose name equals this value
    for its own key provably belongs to `owner` (nobody else derives names this way)."""
    key = "\n".join((owner, norm_scope(scope), role_guid(role_definition), principal_id.lower()))
    return str(uuid.uuid5(ASSIGNMENT_NAMESPACE, key))


def split_owner_marker(description: str | None) -> tuple[str | None, str | None]:
    """(the user's description, the owner its marker names) of a live grant's description."""
    if description is None:
        return None, None
    match = OWNER_MARKER_RE.search(description)
    if match is None:
        return description, None
    user = description[: match.start()]
    return (user or None), match.group(1)


def with_owner_marker(description: str | None, owner: str) -> str:
    """The description to write on an adopted grant: the user's text, then our marker."""
    user = split_owner_marker(description)[0]
    marker = f"[reconciler:owner={owner}]"
    return f"{user} {marker}" if user else marker


@dataclass(frozen=True, slots=True, order=True)
class IdentityKey:
    """Natural key of a user-assigned identity: ARM treats all three case-insensitively."""

    subscription: str
    resource_group: str
    name: str

    @staticmethod
    def of(subscription: str, resource_group: str, name: str) -> IdentityKey:
        # Interned: every `.key` makes a new key, and at estate scale tens of thousands of them
        # (grants' principals, credentials, dictionaries by identity) are held at once.
        return IdentityKey(sys.intern(subscription.lower()), sys.intern(resource_group.lower()),
                           sys.intern(name.lower()))


# ----------------------------------------------------------------------------- desired


@dataclass(frozen=True, slots=True)
class DesiredIdentity:
    owner: str
    subscription: str
    resource_group: str
    name: str
    location: str
    # User tags only (defaults merged with the identity's own); ownership tags are added by
    # the planner, never written by users (the loader rejects the reserved keys).
    tags: Mapping[str, str]
    protect: bool = False
    source: SourceLocation | None = None
    # metadata.takeOverFrom: owners whose identities and grants this set may take over.
    take_over_from: frozenset[str] = frozenset()

    @property
    def key(self) -> IdentityKey:
        return IdentityKey.of(self.subscription, self.resource_group, self.name)

    @property
    def resource_id(self) -> str:
        return identity_id(self.subscription, self.resource_group, self.name)

    def desired_tags(self) -> dict[str, str]:
        tags = {**self.tags, **ownership_tags(self.owner)}
        if self.protect:
            tags[PROTECTED_TAG] = "true"
        return tags


@dataclass(frozen=True, slots=True)
class DesiredFederatedCredential:
    owner: str
    identity: IdentityKey
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    source: SourceLocation | None = None


# Principals written by name in manifests, resolved through Microsoft Graph at plan time:
# manifest key -> the principal type ARM records for it.
NAMED_PRINCIPAL_KINDS = {"group": "Group", "user": "User", "servicePrincipal": "ServicePrincipal"}


@dataclass(frozen=True, slots=True)
class PrincipalRef:
    """Who a role assignment is granted to: one of our identities, or any directory object.

    A directory object may be written by name (`name` = ("group", "sg-admins")); its object id is
    None until plan resolves the name through Graph (reconciler/principals.py), which keeps the
    name beside the id so a saved plan can pin what the name meant."""

    identity: IdentityKey | None = None
    object_id: str | None = None
    principal_type: str = "ServicePrincipal"
    name: tuple[str, str] | None = None  # (kind in NAMED_PRINCIPAL_KINDS, name as written)

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.object_id is None and self.name is None):
            raise ValueError("PrincipalRef needs exactly one of identity or object_id/name")

    @property
    def resolved(self) -> bool:
        return self.identity is not None or self.object_id is not None

    def label(self) -> str:
        """How the manifest names it: `group 'sg-admins'`, or the object id."""
        if self.name is not None:
            return f"{self.name[0]} '{self.name[1]}'"
        return str(self.object_id)


@dataclass(frozen=True, slots=True)
class DesiredRoleAssignment:
    owner: str
    scope: str  # ARM scope as written (identity references already resolved to ids)
    role_definition_id: str  # lower-case GUID
    role_name: str  # for display: the built-in/custom role name
    principal: PrincipalRef
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    source: SourceLocation | None = None
    # `acknowledgePrivileged: true`: an intended grant of a role that can grant any access.
    privileged_acknowledged: bool = False
    take_over_from: frozenset[str] = frozenset()  # see DesiredIdentity


@dataclass(frozen=True)
class DesiredState:
    identities: tuple[DesiredIdentity, ...] = ()
    federated_credentials: tuple[DesiredFederatedCredential, ...] = ()
    role_assignments: tuple[DesiredRoleAssignment, ...] = ()
    # Every owner that appears in the manifests: only resources of these owners are deleted.
    owners: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()
    # `spec.subscription` of every IdentitySet (lower case), even one that declares nothing.
    declared_subscriptions: frozenset[str] = frozenset()
    # This repository's source id, recorded on identities as SOURCE_TAG (None: not recorded).
    source_id: str | None = None
    # Subscriptions the manifests name that `restricted` left out: their identities were not
    # read, so a principal that is no identity read may still be one of them.
    excluded_subscriptions: frozenset[str] = frozenset()
    # (owner, subscription, resource group), lower case, that a manifest of the owner names
    # as `spec.defaults.resourceGroup` (identities' own groups are in `identities`): where
    # identities found by the owner's tags may be deleted.
    owner_groups: frozenset[tuple[str, str, str]] = frozenset()

    def restricted(self, subscriptions: frozenset[str]) -> tuple[DesiredState, int]:
        """Only what lives in `subscriptions` (lower case), for splitting a large estate
        across CI jobs. Grants that span a selected and an unselected subscription are left
        out (their count is returned): they are planned by a run that selects both."""
        ids = tuple(i for i in self.identities if i.subscription.lower() in subscriptions)
        kept = {i.key for i in ids}
        fics = tuple(f for f in self.federated_credentials if f.identity in kept)
        ras, skipped = [], 0
        for ra in self.role_assignments:
            scope_sub = scope_subscription(ra.scope)
            ident = ra.principal.identity
            if scope_sub in subscriptions and (ident is None or ident in kept):
                ras.append(ra)
            elif scope_sub in subscriptions or (ident is not None and ident in kept):
                skipped += 1
        excluded = (self.subscriptions | self.declared_subscriptions) - subscriptions
        return DesiredState(ids, fics, tuple(ras), self.owners, self.files,
                            self.declared_subscriptions & subscriptions, self.source_id,
                            excluded, self.owner_groups), skipped

    @property
    def subscriptions(self) -> frozenset[str]:
        """Subscriptions whose live state the plan needs (identities' and scopes')."""
        subs = {i.subscription.lower() for i in self.identities} | self.declared_subscriptions
        subs |= {s for s in (scope_subscription(ra.scope) for ra in self.role_assignments) if s}
        return frozenset(subs)

    def groups_of(self, owner: str) -> frozenset[tuple[str, str]]:
        """(subscription, resource group), lower case, that the owner's manifests name."""
        named = {(s, rg) for o, s, rg in self.owner_groups if o == owner}
        named |= {(i.subscription.lower(), i.resource_group.lower()) for i in self.identities if i.owner == owner}
        return frozenset(named)

    @property
    def resource_groups(self) -> frozenset[tuple[str, str, str]]:
        """(subscription, resource group, location) of every identity's resource group."""
        return frozenset((i.subscription, i.resource_group, i.location) for i in self.identities)

    @property
    def external_principals(self) -> frozenset[tuple[str, str]]:
        """(objectId, principalType) of every non-identity principal referenced."""
        return frozenset(
            (ra.principal.object_id, ra.principal.principal_type)
            for ra in self.role_assignments
            if ra.principal.object_id is not None
        )

    def read_scope(self) -> ReadScope:
        """What of the live estate a plan of this state needs read."""
        return ReadScope(self.subscriptions, self.owners, frozenset(i.key for i in self.identities))


@dataclass(frozen=True)
class ReadScope:
    """What `read_live` reads: every resource group, identity and role assignment of
    `subscriptions` (lower case), and the federated credentials of the identities that are
    `declared` or tagged with one of `owners` (the only ones a plan may change)."""

    subscriptions: frozenset[str]
    owners: frozenset[str] = frozenset()
    declared: frozenset[IdentityKey] = frozenset()

    def wants_credentials(self, identity: LiveIdentity) -> bool:
        return identity.key in self.declared or identity.owner in self.owners


# ----------------------------------------------------------------------------- live


@dataclass(frozen=True, slots=True, eq=False)  # equal as a mapping: to the dict a plan file holds, too
class Modified(Mapping[str, str | None]):
    """Who last changed a live resource and when, as ARM reports it (systemData on identities
    and credentials, updatedBy/updatedOn on role assignments). Display only.

    Also the read-only mapping a plan's `Change.modified` shows (`by`, `at`, `byType`): a plan
    points at the live record's value instead of holding a dict per change, which at 50,000
    grants was ~9 MB of a plan's memory (docs/BENCHMARKS.md, plan memory)."""

    by: str | None
    at: str | None
    by_type: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"by": self.by, "at": self.at, "byType": self.by_type}

    def __getitem__(self, key: str) -> str | None:
        if key == "by":
            return self.by
        if key == "at":
            return self.at
        if key == "byType":
            return self.by_type
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("by", "at", "byType"))

    def __len__(self) -> int:
        return 3

    def __hash__(self) -> int:
        return hash((self.by, self.at, self.by_type))


@dataclass(frozen=True, slots=True)
class LiveIdentity:
    id: str
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: Mapping[str, str]
    principal_id: str
    client_id: str
    tenant_id: str
    modified: Modified | None = None

    @property
    def key(self) -> IdentityKey:
        return IdentityKey.of(self.subscription, self.resource_group, self.name)

    @property
    def owner(self) -> str | None:
        """The owner recorded in the tags, or None when reconciler does not manage it."""
        if tag_value(self.tags, MANAGED_BY_TAG) != MANAGED_BY_VALUE:
            return None
        return tag_value(self.tags, OWNER_TAG)


@dataclass(frozen=True, slots=True)
class LiveFederatedCredential:
    identity: IdentityKey
    id: str
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    modified: Modified | None = None


_ASSIGNMENT_SEGMENT = "/providers/Microsoft.Authorization/roleAssignments/"
_LIVE_ASSIGNMENT_FIELDS = ("id", "name", "scope", "role_definition_id", "principal_id", "principal_type",
                           "description", "condition", "condition_version", "modified")


class LiveRoleAssignment:
    """A role assignment as ARM has it. Immutable; compares by its fields.

    ARM's id is `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: the record
    keeps it only when it is anything else (other casing, say) and builds it when read. At
    50,000 grants the ids, one string per grant, were 10 MB of a plan's peak memory
    (docs/BENCHMARKS.md, figure 4)."""

    __slots__ = (
        "_other_id",
        "condition",
        "condition_version",
        "description",
        "modified",
        "name",
        "principal_id",
        "principal_type",
        "role_definition_id",
        "scope",
    )
    _other_id: str | None
    name: str
    scope: str
    role_definition_id: str  # lower-case GUID
    principal_id: str  # lower-case
    principal_type: str | None
    description: str | None
    condition: str | None
    condition_version: str | None
    modified: Modified | None

    def __init__(self, id: str, name: str, scope: str, role_definition_id: str, principal_id: str,
                 principal_type: str | None, description: str | None = None, condition: str | None = None,
                 condition_version: str | None = None, modified: Modified | None = None) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "name", name)
        setattr_(self, "scope", scope)
        setattr_(self, "_other_id", None if id == self._derived_id() else id)
        for attr, value in (("role_definition_id", role_definition_id), ("principal_id", principal_id),
                            ("principal_type", principal_type), ("description", description),
                            ("condition", condition), ("condition_version", condition_version),
                            ("modified", modified)):
            setattr_(self, attr, value)

    def _derived_id(self) -> str:
        return f"{self.scope.rstrip('/')}{_ASSIGNMENT_SEGMENT}{self.name}"

    @property
    def id(self) -> str:
        return self._other_id if self._other_id is not None else self._derived_id()

    @property
    def key(self) -> tuple[str, str, str]:
        return (norm_scope(self.scope), self.role_definition_id, self.principal_id)

    def replace(self, **changes: object) -> LiveRoleAssignment:
        """A copy with some fields changed (what dataclasses.replace does for the other records)."""
        values: dict[str, object] = {name: getattr(self, name) for name in _LIVE_ASSIGNMENT_FIELDS}
        values.update(changes)
        return LiveRoleAssignment(**values)  # type: ignore[arg-type]

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _LIVE_ASSIGNMENT_FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a LiveRoleAssignment is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a LiveRoleAssignment is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LiveRoleAssignment):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "LiveRoleAssignment(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in _LIVE_ASSIGNMENT_FIELDS) + ")"


@dataclass(frozen=True)
class LiveState:
    """What ARM has, for the subscriptions that were read.

    `federated_credentials` has an entry for every identity whose credentials were listed;
    an identity missing from it was not read (not "has none")."""

    identities: Mapping[IdentityKey, LiveIdentity] = field(default_factory=dict)
    federated_credentials: Mapping[IdentityKey, tuple[LiveFederatedCredential, ...]] = field(
        default_factory=dict
    )
    role_assignments: tuple[LiveRoleAssignment, ...] = ()
    subscriptions: frozenset[str] = frozenset()
    resource_groups: frozenset[tuple[str, str]] = frozenset()  # (sub, rg), lower case
    # Region names (lower case) each subscription offers (GET /subscriptions/{id}/locations); a
    # subscription missing here was not asked.
    locations: Mapping[str, frozenset[str]] = field(default_factory=dict)
