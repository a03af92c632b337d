"""What the manifests want (desired) and what ARM has (live), as plain frozen values.

Nothing here does I/O. ARM compares ids, names and GUIDs case-insensitively, so every value
that takes part in matching has a normalised form (`key`); the original spelling is kept
for display and for the requests we send.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.errors import SourceLocation

# Tags that prove ownership of an identity. Role assignments cannot carry tags, so their
# ownership is proven by their deterministic name instead (see `assignment_name`).
MANAGED_BY_TAG = "managed-by"
MANAGED_BY_VALUE = "reconciler"
OWNER_TAG = "reconciler-owner"
# Set on identities declared with `protect: true`, so that a plan that would delete one even
# after its manifest entry is gone can see that it was protected.
PROTECTED_TAG = "reconciler-protected"
RESERVED_TAGS = frozenset({MANAGED_BY_TAG, OWNER_TAG, PROTECTED_TAG})

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

IDENTITY_PROVIDER = "Microsoft.ManagedIdentity/userAssignedIdentities"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


def norm_scope(scope: str) -> str:
    """Case-insensitive comparison form of an ARM id or scope: lower case, one leading
    slash, no trailing or doubled slashes. `/` stays `/`."""
    parts = [p for p in scope.strip().split("/") if p]
    return "/" + "/".join(parts).lower()


def role_guid(role_definition_id: str) -> str:
    """The GUID of a role definition, from a bare GUID, the tenant form
    `/providers/Microsoft.Authorization/roleDefinitions/{guid}` or a subscription-qualified id."""
    return role_definition_id.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def scope_subscription(scope: str) -> str | None:
    """The subscription id (lower case) a scope lies in, or None (tenant root, management groups)."""
    parts = norm_scope(scope).split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else None


def identity_id(subscription: str, resource_group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
        f"/providers/{IDENTITY_PROVIDER}/{name}"
    )


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


@dataclass(frozen=True, order=True)
class IdentityKey:
    """Natural key of a user-assigned identity: ARM treats all three case-insensitively."""

    subscription: str
    resource_group: str
    name: str

    @staticmethod
    def of(subscription: str, resource_group: str, name: str) -> IdentityKey:
        return IdentityKey(subscription.lower(), resource_group.lower(), name.lower())


# ----------------------------------------------------------------------------- desired


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class DesiredFederatedCredential:
    owner: str
    identity: IdentityKey
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...] = DEFAULT_AUDIENCES
    source: SourceLocation | None = None


@dataclass(frozen=True)
class PrincipalRef:
    """Who a role assignment is granted to: one of our identities, or any directory object."""

    identity: IdentityKey | None = None
    object_id: str | None = None
    principal_type: str = "ServicePrincipal"

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.object_id is None):
            raise ValueError("PrincipalRef needs exactly one of identity or object_id")


@dataclass(frozen=True)
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
    take_over_from: frozenset[str] = frozenset()  # see DesiredIdentity


@dataclass(frozen=True)
class DesiredState:
    identities: tuple[DesiredIdentity, ...] = ()
    federated_credentials: tuple[DesiredFederatedCredential, ...] = ()
    role_assignments: tuple[DesiredRoleAssignment, ...] = ()
    # Every owner that appears in the manifests: only resources of these owners are deleted.
    owners: frozenset[str] = frozenset()
    files: tuple[str, ...] = ()

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
        return DesiredState(ids, fics, tuple(ras), self.owners, self.files), skipped

    @property
    def subscriptions(self) -> frozenset[str]:
        """Subscriptions whose live state the plan needs (identities' and scopes')."""
        subs = {i.subscription.lower() for i in self.identities}
        subs |= {s for s in (scope_subscription(ra.scope) for ra in self.role_assignments) if s}
        return frozenset(subs)

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


# ----------------------------------------------------------------------------- live


@dataclass(frozen=True)
class Modified:
    """Who last changed a live resource and when, as ARM reports it (systemData on identities
    and credentials, updatedBy/updatedOn on role assignments). Display only."""

    by: str | None
    at: str | None
    by_type: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"by": self.by, "at": self.at, "byType": self.by_type}


@dataclass(frozen=True)
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
        if self.tags.get(MANAGED_BY_TAG) != MANAGED_BY_VALUE:
            return None
        return self.tags.get(OWNER_TAG)


@dataclass(frozen=True)
class LiveFederatedCredential:
    identity: IdentityKey
    id: str
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    modified: Modified | None = None


@dataclass(frozen=True)
class LiveRoleAssignment:
    id: str
    name: str
    scope: str
    role_definition_id: str  # lower-case GUID
    principal_id: str  # lower-case
    principal_type: str | None
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    modified: Modified | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (norm_scope(self.scope), self.role_definition_id, self.principal_id)


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
