"""Microsoft.Authorization role definitions: built-in and custom.

Custom roles: PUT answers 201 (create and update), names are unique per tenant, assignable scopes are
subscriptions, resource groups or management groups, and a role still referenced by an assignment
cannot be deleted.
"""

from __future__ import annotations

import re
from typing import Any

from .. import roles, scopes
from ..backend import ROLE_DEFINITION, timestamp
from ..calls import Call, Reply
from ..directory import is_guid
from ..errors import ArmError, invalid_request_content
from ..paging import page

_RD_WRITE = "Microsoft.Authorization/roleDefinitions/write"
_RD_DELETE = "Microsoft.Authorization/roleDefinitions/delete"


def _definition_prefix(scope: str) -> str:
    sub = scopes.parse(scope).subscription_id
    return f"/subscriptions/{sub}" if sub else ""


def _role_definition_not_found(role_id: str) -> ArmError:
    return ArmError(404, "RoleDefinitionDoesNotExist",
                    f"The specified role definition with ID '{role_id}' does not exist.")


def _visible_at(role: roles.RoleDefinition, scope: str) -> bool:
    """Built-ins are visible everywhere; a custom role where it is assignable (at or below one of its
    assignable scopes). The tenant form (`/providers/...`, scope "/") finds any role by GUID (UNVERIFIED)."""
    return not role.is_custom or scopes.key(scope) == "/" or role.assignable_at(scope)


_RD_READ = "Microsoft.Authorization/roleDefinitions/read"


def get_role_definition(call: Call) -> Reply:
    # Built-in roles are readable by any signed-in caller (UNVERIFIED, matches practice); custom roles
    # need roleDefinitions/read at the scope (learn.microsoft.com custom-roles).
    scope = call.params["scope"]
    call.backend.require_scope(scope)
    role = call.backend.role_definition(call.params["roleDefinitionId"])
    if role is None or role.guid != call.params["roleDefinitionId"].lower() or not _visible_at(role, scope):
        raise _role_definition_not_found(call.params["roleDefinitionId"])
    if role.is_custom and not (scopes.key(scope) == "/" and any(call.can(_RD_READ, s) for s in role.assignable_scopes)):
        # The tenant form (scope "/") is read with the right at one of the role's assignable scopes
        # (UNVERIFIED: nobody holds roles at "/" in the sandbox).
        call.authorize(_RD_READ, scope)
    return Reply(200, role.to_arm(_definition_prefix(scope)))


_ROLE_FILTER = re.compile(r"^\s*(roleName|type)\s+eq\s+'(.*)'\s*$", re.IGNORECASE)


def list_role_definitions(call: Call) -> Reply:
    scope = call.params["scope"]
    call.backend.require_scope(scope)
    # Custom roles are listed only to callers with roleDefinitions/read at the scope (custom-roles.md).
    custom = [r for r in call.backend.custom_roles() if r.assignable_at(scope)] if call.can(_RD_READ, scope) else []
    found = list(roles.builtin_roles().values()) + custom
    text = call.query.get("$filter", "")
    if text:
        match = _ROLE_FILTER.match(text)
        if match is None:
            # UNVERIFIED code: atScopeAndBelow() and other filters are not implemented by the sandbox.
            raise ArmError(400, "UnsupportedFilter", f"The sandbox does not support the $filter '{text}'.")
        field, value = match.group(1).lower(), match.group(2).replace("''", "'").lower()
        if field == "rolename":
            found = [r for r in found if r.role_name.lower() == value]
        else:
            found = [r for r in found if r.role_type.lower() == value]
    prefix = _definition_prefix(scope)
    return Reply(200, page(call, [r.to_arm(prefix) for r in found]))


def _invalid_role_definition(message: str) -> ArmError:
    # UNVERIFIED code: ARM's exact code for a malformed custom role body was not found.
    return ArmError(400, "InvalidRoleDefinition", message)


def _string_list(value: object, field: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _invalid_role_definition(f"The role definition property '{field}' must be a list of strings.")
    return list(value)


def _custom_permissions(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise _invalid_role_definition("The role definition must have at least one permission.")
    out = []
    for block in value:
        if not isinstance(block, dict):
            raise _invalid_role_definition("Each role definition permission must be an object.")
        out.append({k: _string_list(block.get(k), k)
                    for k in ("actions", "notActions", "dataActions", "notDataActions")})
    if not any(b["actions"] or b["dataActions"] for b in out):
        raise _invalid_role_definition("The role definition must grant at least one action or data action.")
    return out


def _assignable_scopes(call: Call, value: object) -> list[str]:
    listed = _string_list(value, "assignableScopes")
    if not listed:
        raise _invalid_role_definition("The role definition must have at least one assignable scope.")
    out: list[str] = []
    for raw_scope in listed:
        scope = scopes.normalize(raw_scope)
        parsed = scopes.parse(scope)
        # Custom roles may be assignable at subscriptions, resource groups and management groups, not at
        # the root "/" nor at single resources (learn.microsoft.com role-definitions#assignablescopes).
        management_group = scope.lower().startswith("/providers/microsoft.management/managementgroups/")
        if not management_group and (parsed.subscription_id is None or parsed.resource_path
                                     or scope.count("/") not in (2, 4)):
            # UNVERIFIED code and wording.
            raise ArmError(400, "InvalidAssignableScope",
                           f"The assignable scope '{raw_scope}' is not valid. Custom roles can be assignable at "
                           "management groups, subscriptions and resource groups.")
        call.backend.require_scope(scope)
        if scopes.key(scope) not in {scopes.key(s) for s in out}:
            out.append(scope)
    return out


def _authorize_linked_scopes(call: Call, action: str, scope: str, linked: list[str]) -> None:
    """A custom role is written (or deleted) at every scope it is assignable at, or was.

    Wording from learn.microsoft.com role-based-access-control/troubleshooting; the code
    LinkedAuthorizationFailed is UNVERIFIED for role definitions.
    """
    missing = []
    for linked_scope in linked:
        if not call.can(action, linked_scope) and linked_scope not in missing:
            missing.append(linked_scope)
    if missing:
        caller = call.caller
        client = call.backend.client_name(caller)
        raise ArmError(403, "LinkedAuthorizationFailed",
                       f"The client '{client}' with object id '{caller.object_id}' has permission to "
                       f"perform action '{action}' on scope '{scope}'; however, it does not have permission to "
                       f"perform action '{action}' on the linked scope(s)'{','.join(missing)}' or the linked "
                       "scope(s)are invalid")


def put_role_definition(call: Call) -> Reply:
    scope, guid = scopes.normalize(call.params["scope"]), call.params["roleDefinitionId"].lower()
    backend = call.backend
    if not is_guid(guid):
        # UNVERIFIED code and wording.
        raise ArmError(400, "InvalidRoleDefinitionId",
                       f"The role definition ID '{call.params['roleDefinitionId']}' is not valid. "
                       "The role definition ID must be a GUID.")
    backend.require_scope(scope)
    call.authorize(_RD_WRITE, scope)
    if guid in roles.builtin_roles():
        # UNVERIFIED code and wording: built-in roles cannot be changed.
        raise ArmError(400, "RoleDefinitionUpdateNotPermitted", "Built-in role definitions cannot be updated.")
    props = call.body.get("properties") if isinstance(call.body, dict) else None
    if not isinstance(props, dict):
        raise invalid_request_content("The request content must have a 'properties' object.")
    name = props.get("roleName")
    if not isinstance(name, str) or not name.strip():
        raise _invalid_role_definition("The role definition must have a roleName.")
    permissions = _custom_permissions(props.get("permissions"))
    assignable = _assignable_scopes(call, props.get("assignableScopes"))
    now = timestamp(backend.clock())
    with backend.store.transaction():
        existing = backend.store.get(ROLE_DEFINITION, guid)
        old_scopes = existing["properties"]["assignableScopes"] if existing else []
        _authorize_linked_scopes(call, _RD_WRITE, scope, [*assignable, *old_scopes])
        taken = [r for r in [*roles.builtin_roles().values(), *backend.custom_roles()]
                 if r.role_name.lower() == name.strip().lower() and r.guid != guid]
        if taken:
            # Code and wording from real ARM deployments (Azure/ARO-RP#1346); status 409 ("Conflict") per
            # the same log. Names are unique per tenant, built-ins included (UNVERIFIED for built-ins).
            raise ArmError(409, "RoleDefinitionWithSameNameExists",
                           "A role definition cannot be updated with a name that already exists.")
        for removed in old_scopes:
            if any(scopes.key(removed) == scopes.key(s) for s in assignable):
                continue
            if any(roles.trailing_guid(a["properties"]["roleDefinitionId"]) == guid
                   and scopes.is_at_or_above(removed, a["properties"]["scope"]) for a in backend.role_assignments()):
                # Code and wording from a real deployment error (Azure/bicep#17145); status UNVERIFIED.
                raise ArmError(400, "RoleScopeBeingRemovedContainsAssignments",
                               f"Role assignments found under scope '{removed}' which is being removed. Removing "
                               "this scope from the role will orphan these assignments. Delete these assignments "
                               "before removing the scope.")
        old = existing["properties"] if existing else {}
        doc = {
            "properties": {
                "roleName": name.strip(),
                "type": "CustomRole",
                "description": props.get("description") if isinstance(props.get("description"), str) else None,
                "assignableScopes": assignable,
                "permissions": permissions,
                "createdOn": old.get("createdOn", now),
                "updatedOn": now,
                "createdBy": old.get("createdBy", call.caller.object_id),
                "updatedBy": call.caller.object_id,
            },
            "name": guid,
        }
        backend.store.put(ROLE_DEFINITION, guid, "", doc)
    # The spec documents 201 only, for updates too (the SDK accepts nothing else).
    return Reply(201, roles.custom_role_from_doc(doc).to_arm(_definition_prefix(scope)))


def delete_role_definition(call: Call) -> Reply:
    scope, guid = scopes.normalize(call.params["scope"]), call.params["roleDefinitionId"].lower()
    backend = call.backend
    backend.require_scope(scope)
    call.authorize(_RD_DELETE, scope)
    if guid in roles.builtin_roles():
        raise ArmError(400, "RoleDefinitionUpdateNotPermitted", "Built-in role definitions cannot be deleted.")
    with backend.store.transaction():
        doc = backend.store.get(ROLE_DEFINITION, guid)
        if doc is None:
            return Reply(204)
        role = roles.custom_role_from_doc(doc)
        _authorize_linked_scopes(call, _RD_DELETE, scope, list(role.assignable_scopes))
        if any(roles.trailing_guid(a["properties"]["roleDefinitionId"]) == guid for a in backend.role_assignments()):
            # Code and wording from learn.microsoft.com role-based-access-control/troubleshooting ("There are
            # existing role assignments referencing role (code: RoleDefinitionHasAssignments)"); 409 UNVERIFIED.
            raise ArmError(409, "RoleDefinitionHasAssignments", "There are existing role assignments referencing role.")
        backend.store.delete(ROLE_DEFINITION, guid)
    return Reply(200, role.to_arm(_definition_prefix(scope)))
