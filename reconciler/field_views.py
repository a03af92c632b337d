"""The typed values (reconciler/payloads.py) a plan shows for desired and live records.

One function per view, shared by the planner, which builds every change's `before` and
`after` with them, and by the compact in-sync changes (reconciler/in_sync.py), which build
the same values again when they are read: both must give the same fields, field for field.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler import addresses
from reconciler.model import (
    SOURCE_TAG,
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    IdentityKey,
    LiveIdentity,
    LiveRoleAssignment,
    split_owner_marker,
    with_owner_marker,
)
from reconciler.payloads import IdentityValue, RoleAssignmentValue


def source_text(d: DesiredIdentity | DesiredFederatedCredential | DesiredRoleAssignment | None) -> str | None:
    """Where a desired record was declared, as `file:line:col`."""
    return str(d.source) if d is not None and d.source else None


def identity_fields(
    *, subscription: str, resource_group: str, name: str, location: str, tags: dict[str, str],
    principal_id: str | None = None, client_id: str | None = None, resource_id: str | None = None,
) -> IdentityValue:
    return IdentityValue(
        id=resource_id, subscription=subscription, resource_group=resource_group, name=name, location=location,
        tags=dict(sorted(tags.items())), principal_id=principal_id, client_id=client_id,
    )


def live_identity_fields(li: LiveIdentity) -> IdentityValue:
    return identity_fields(
        subscription=li.subscription, resource_group=li.resource_group, name=li.name,
        location=li.location, tags=dict(li.tags), principal_id=li.principal_id,
        client_id=li.client_id, resource_id=li.id,
    )


def desired_tags(want: DesiredIdentity, source_id: str | None) -> dict[str, str]:
    """The tags an identity is written with: its own, its owner's, and this repository's source."""
    tags = want.desired_tags()
    if source_id:
        tags[SOURCE_TAG] = source_id
    return tags


def desired_identity_fields(want: DesiredIdentity, tags: dict[str, str]) -> IdentityValue:
    """`tags`: desired_tags(want, source_id)."""
    return identity_fields(
        subscription=want.subscription, resource_group=want.resource_group, name=want.name,
        location=want.location, tags=tags, resource_id=want.resource_id,
    )


def existing_identity_fields(want: DesiredIdentity, source_id: str | None, have: LiveIdentity) -> IdentityValue:
    """The after of a declared identity that exists: desired fields, ARM's ids."""
    return replace(desired_identity_fields(want, desired_tags(want, source_id)), principal_id=have.principal_id,
                   client_id=have.client_id, id=have.id)


def principal_view(identity: IdentityKey | None, object_id: str | None) -> dict[str, str]:
    """A grant's principal as a plan shows it: `{"identity": address}` or `{"objectId": id}`."""
    if identity is not None:
        return {"identity": addresses.identity(identity)}
    return {"objectId": object_id or ""}


def ra_fields(
    *, scope: str, role_definition_id: str, role_name: str, principal_id: str | None,
    principal: dict[str, str], principal_type: str | None, description: str | None,
    condition: str | None, condition_version: str | None, name: str | None, ra_id: str | None = None,
) -> RoleAssignmentValue:
    return RoleAssignmentValue(
        id=ra_id, name=name, scope=scope, role_definition_id=role_definition_id, role_name=role_name,
        principal_id=principal_id, principal=principal, principal_type=principal_type, description=description,
        condition=condition, condition_version=condition_version,
    )


def live_ra_fields(ra: LiveRoleAssignment, role_name: str, principal: dict[str, str]) -> RoleAssignmentValue:
    return ra_fields(
        scope=ra.scope, role_definition_id=ra.role_definition_id, role_name=role_name,
        principal_id=ra.principal_id, principal=principal, principal_type=ra.principal_type,
        description=ra.description, condition=ra.condition, condition_version=ra.condition_version,
        name=ra.name, ra_id=ra.id,
    )


def desired_ra_fields(want: DesiredRoleAssignment, principal_id: str | None,
                      principal: dict[str, str]) -> RoleAssignmentValue:
    return ra_fields(
        scope=want.scope, role_definition_id=want.role_definition_id, role_name=want.role_name,
        principal_id=principal_id, principal=principal, principal_type=want.principal.principal_type,
        description=want.description, condition=want.condition, condition_version=want.condition_version,
        name=None,
    )


def matched_ra_fields(want: DesiredRoleAssignment, have: LiveRoleAssignment,
                      principal: dict[str, str]) -> RoleAssignmentValue:
    """The after of a declared grant that exists as `have`: desired fields under the live name
    (the assignment may have been made by hand under a random name, and ARM refuses a second
    one with the same key: 409 RoleAssignmentExists), with the owner marker kept if it has one."""
    after = replace(desired_ra_fields(want, have.principal_id, principal), name=have.name, id=have.id,
                    principal_type=have.principal_type or want.principal.principal_type)
    if split_owner_marker(have.description)[1] is not None:
        # Adopted earlier: the marker stays, after whatever the manifest now says.
        after = replace(after, description=with_owner_marker(want.description, want.owner))
    return after
