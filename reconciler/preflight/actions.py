"""The ARM control-plane actions each change of a plan performs, and how role definitions' action
patterns match them.

A pattern is matched case-insensitively; `*` stands for any text (slashes included), and a whole
segment `/*/` may also stand for no segment at all (`userAssignedIdentities/*/read` covers
`userAssignedIdentities/read`, which is how Managed Identity Operator reads the identity itself).
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
from dataclasses import dataclass, field, replace

from reconciler.addresses import Address
from reconciler.payloads import FederatedCredentialValue, IdentityValue, Payload, RoleAssignmentValue, expect
from reconciler.plan import Action, Change, ResourceType

IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC = f"{IDENTITY}/federatedIdentityCredentials"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
IDENTITY_WRITE, IDENTITY_DELETE = f"{IDENTITY}/write", f"{IDENTITY}/delete"
FIC_WRITE, FIC_DELETE = f"{FIC}/write", f"{FIC}/delete"
RA_WRITE, RA_DELETE = f"{ROLE_ASSIGNMENTS}/write", f"{ROLE_ASSIGNMENTS}/delete"
# What apply reads, per subscription, before writing (its own plan) and after (verification).
READS = (
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    f"{IDENTITY}/read",
    f"{ROLE_ASSIGNMENTS}/read",
    f"{FIC}/read",
)
# The value a new identity's principal id will have: a fresh GUID, equal to no GUID known today.
FRESH = "(a new principal id)"


@functools.lru_cache(maxsize=8192)
def _variants(pattern: str) -> tuple[str, ...]:
    """The pattern with each `/*/` either kept or collapsed to `/`, as fnmatch patterns."""
    escaped = pattern.lower().replace("[", "[[]").replace("?", "[?]")
    pieces = escaped.split("/*/")
    out = []
    for joins in itertools.product(("/*/", "/"), repeat=len(pieces) - 1):
        text = pieces[0]
        for join, piece in zip(joins, pieces[1:], strict=True):
            text += join + piece
        out.append(text)
    return tuple(out)


def matches(pattern: str, action: str) -> bool:
    wanted = action.lower()
    return any(fnmatch.fnmatchcase(wanted, v) for v in _variants(pattern))


@dataclass(frozen=True)
class Check:
    """One authorization ARM makes for a step: `action` at `scope`, with the ABAC attributes of
    the request (`request`) or of the existing resource (`resource`), by lower-case name."""

    address: str
    action: str
    scope: str
    request: dict[str, str] = field(default_factory=dict)
    resource: dict[str, str] = field(default_factory=dict)


def identity_id(subscription: str, resource_group: str, name: str) -> str:
    return (f"/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/"
            f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")


def _identity_scope(value: Payload | None) -> str:
    return identity_id(*expect(value, IdentityValue).parts())


def _fic_scope(change: Change) -> str:
    address = Address.parse(change.address)
    value = change.after if change.after is not None else change.before
    fic = expect(value, FederatedCredentialValue).name if value is not None else address.credential
    return (f"{identity_id(address.subscription, address.resource_group, address.identity_name)}"
            f"/federatedIdentityCredentials/{fic}")


def assignment_attributes(value: RoleAssignmentValue, principal_unknown: bool) -> dict[str, str]:
    """The Microsoft.Authorization/roleAssignments attributes ABAC conditions read."""
    out = {f"{ROLE_ASSIGNMENTS}:RoleDefinitionId".lower(): value.role_definition_id.rsplit("/", 1)[-1]}
    principal = value.principal_id
    if principal:
        out[f"{ROLE_ASSIGNMENTS}:PrincipalId".lower()] = str(principal)
    elif principal_unknown:
        out[f"{ROLE_ASSIGNMENTS}:PrincipalId".lower()] = FRESH
    principal_type = value.principal_type
    if principal_type:
        out[f"{ROLE_ASSIGNMENTS}:PrincipalType".lower()] = str(principal_type)
    return out


def checks(change: Change) -> list[Check]:
    """The authorizations apply needs for `change`, in the order it makes the calls."""
    a, before, after = change.action, change.before, change.after
    if a is Action.NOOP:
        return []
    if change.type is ResourceType.IDENTITY:
        out = []
        if a in (Action.DELETE, Action.REPLACE) and before is not None:
            out.append(Check(change.address, IDENTITY_DELETE, _identity_scope(before)))
        if a is not Action.DELETE and after is not None:
            out.append(Check(change.address, IDENTITY_WRITE, _identity_scope(after)))
        return out
    if change.type is ResourceType.FEDERATED_CREDENTIAL:
        if a is Action.DELETE:
            # Deleted with its identity: apply makes no call of its own.
            return [] if change.consequence_of else [Check(change.address, FIC_DELETE, _fic_scope(change))]
        return [Check(change.address, FIC_WRITE, _fic_scope(change))]
    out = []
    if a in (Action.DELETE, Action.REPLACE) and before is not None:
        old = expect(before, RoleAssignmentValue)
        out.append(Check(change.address, RA_DELETE, old.scope,
                         resource=assignment_attributes(old, principal_unknown=False)))
    if a is not Action.DELETE and after is not None:
        new = expect(after, RoleAssignmentValue)
        # The gateway always sends a principal type; ServicePrincipal when the plan has none.
        request = replace(new, principal_type=new.principal_type or "ServicePrincipal")
        out.append(Check(change.address, RA_WRITE, new.scope,
                         request=assignment_attributes(request, "principalId" in change.unknown)))
    return out
