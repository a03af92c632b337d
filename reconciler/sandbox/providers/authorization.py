"""Microsoft.Authorization: role definitions (built-in and custom), role assignments, permissions.

Role assignment rules reproduced from ARM (see shared/ARM-FACTS.md section 3): the name must be a
GUID and is unique across the tenant; (scope, role GUID, principal) is unique across names (409
RoleAssignmentExists); a name cannot move to another scope or principal (400
RoleAssignmentUpdateNotPermitted); the principal must exist in the directory, and a freshly created
identity's service principal only counts once replicated unless principalType is sent. A condition
must parse (conditions.py); writes and deletes are authorised with the ABAC attributes of the
assignment being created (@Request) or deleted (@Resource), so a conditioned Role Based Access
Control Administrator can only hand out and remove the roles its condition lists.

Custom roles: PUT answers 201 (create and update), names are unique per tenant, assignable scopes are
subscriptions, resource groups or management groups, and a role still referenced by an assignment
cannot be deleted.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from .. import conditions, rbac, roles, scopes
from ..backend import ROLE_ASSIGNMENT, ROLE_DEFINITION, timestamp
from ..calls import Call, Reply
from ..directory import PRINCIPAL_TYPES, is_guid
from ..errors import ArmError, invalid_request_content
from ..paging import page
from ..store import Doc, Store

RA_SEGMENT = "/providers/Microsoft.Authorization/roleAssignments/"
_RA_READ = "Microsoft.Authorization/roleAssignments/read"
_RA_WRITE = "Microsoft.Authorization/roleAssignments/write"
_RA_DELETE = "Microsoft.Authorization/roleAssignments/delete"


# --- role definitions ----------------------------------------------------------------------------
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


# --- permissions ---------------------------------------------------------------------------------
def list_permissions(call: Call) -> Reply:
    scope = _list_scope(call)
    call.backend.require_scope(scope)
    blocks = rbac.effective_permissions(call.backend.role_assignments(),
                                        call.backend.principal_ids(call.caller.object_id), scope,
                                        call.backend.role_definition)
    value = [{k: list(b.get(k, [])) for k in ("actions", "notActions", "dataActions", "notDataActions")}
             for b in blocks]
    return Reply(200, page(call, value))


def list_deny_assignments(call: Call) -> Reply:
    """Always empty: deny assignments are created only by Azure itself (managed applications,
    deployment stacks, Blueprints), none of which the sandbox models; the API cannot create one."""
    scope = _list_scope(call)
    call.backend.require_scope(scope)
    call.authorize("Microsoft.Authorization/denyAssignments/read", scope)
    return Reply(200, page(call, []))


# --- role assignments ----------------------------------------------------------------------------
def _render(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def _stored(call: Call, scope: str, name: str) -> Doc | None:
    doc = call.backend.store.get(ROLE_ASSIGNMENT, name)
    if doc is None or scopes.key(doc["properties"]["scope"]) != scopes.key(scope):
        return None
    return doc


def _not_found(name: str) -> ArmError:
    # UNVERIFIED wording.
    return ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")


def get_role_assignment(call: Call) -> Reply:
    scope, name = call.params["scope"], call.params["roleAssignmentName"]
    call.backend.require_scope(scope)
    call.authorize(_RA_READ, scope)
    doc = _stored(call, scope, name)
    if doc is None:
        raise _not_found(name)
    return Reply(200, _render(doc))


def delete_role_assignment(call: Call) -> Reply:
    scope, name = call.params["scope"], call.params["roleAssignmentName"]
    call.backend.require_scope(scope)
    with call.backend.store.transaction():
        doc = _stored(call, scope, name)
        # ABAC: @Resource[...] is the assignment being deleted. For a missing one there is no resource,
        # so a condition on it is false and a conditioned caller gets 403, not 204 (UNVERIFIED).
        resource = {} if doc is None else conditions.role_assignment_attributes(
            doc["properties"]["roleDefinitionId"], doc["properties"]["principalId"],
            doc["properties"].get("principalType"))
        call.authorize(_RA_DELETE, scope, {"resource": resource})
        if doc is None:
            return Reply(204)
        _refuse_last_rbac_admin(call, doc)
        call.backend.store.delete(ROLE_ASSIGNMENT, name)
    # The deleted assignment, with updatedOn = the deletion time (azure-cli recording).
    gone = _render(doc)
    gone["properties"] = dict(gone["properties"], updatedOn=timestamp(call.backend.clock()))
    return Reply(200, gone)


def _is_rbac_admin(doc: Doc) -> bool:
    return roles.trailing_guid(doc["properties"]["roleDefinitionId"]) in (roles.OWNER, roles.USER_ACCESS_ADMINISTRATOR)


def _refuse_last_rbac_admin(call: Call, doc: Doc) -> None:
    """The last Owner (or User Access Administrator) assignment at a subscription cannot be deleted.

    Rule and message from learn.microsoft.com role-based-access-control/troubleshooting ("Cannot delete
    the last RBAC admin assignment"); its exemption for Global and classic administrators has no
    counterpart here. Status 412 and the code from hashicorp/terraform-provider-azurerm#26122.
    """
    parsed = scopes.parse(doc["properties"]["scope"])
    if not _is_rbac_admin(doc) or parsed.subscription_id is None or parsed.resource_group is not None \
            or scopes.key(doc["properties"]["scope"]) != scopes.key(scopes.subscription_scope(parsed.subscription_id)):
        return
    key = scopes.key(doc["properties"]["scope"])
    if not any(_is_rbac_admin(a) and scopes.key(a["properties"]["scope"]) == key and a["name"] != doc["name"]
               for a in call.backend.role_assignments()):
        raise ArmError(412, "CannotDeleteLastRbacAdminAssignment", "Cannot delete the last RBAC admin assignment")


def _principal_id(props: dict[str, Any]) -> str:
    value = props.get("principalId")
    if value is None or value == "":
        raise ArmError(400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.")
    if not is_guid(value):
        raise ArmError(400, "InvalidPrincipalId",
                       f"The Principal ID '{value}' is not valid. Principal ID must be a GUID.")
    return str(value).lower()


def _request_attributes(call: Call, props: object) -> dict[str, str]:
    """@Request[Microsoft.Authorization/roleAssignments:...] of a PUT, for ABAC conditions.

    PrincipalType is the one sent, else the directory's (as ARM fills it in; UNVERIFIED for conditions).
    """
    if not isinstance(props, dict):
        return {}
    role, principal, principal_type = (props.get(k) for k in ("roleDefinitionId", "principalId", "principalType"))
    if principal_type is None and isinstance(principal, str) and is_guid(principal):
        found = call.backend.directory.get(principal)
        principal_type = found.principal_type if found else None
    return conditions.role_assignment_attributes(
        role if isinstance(role, str) else None, principal.lower() if isinstance(principal, str) else None,
        principal_type if isinstance(principal_type, str) else None)


def _condition(props: dict[str, Any]) -> tuple[str | None, str | None]:
    """Validate an ABAC condition: it must parse, and conditionVersion (when sent) must be 2.0."""
    condition, version = props.get("condition"), props.get("conditionVersion")
    if condition is None or condition == "":
        return None if condition is None else condition, version
    # Message from learn.microsoft.com conditions-troubleshoot (also what a conditionVersion of 1.0
    # gets, MicrosoftDocs/azure-docs#119449); the code is UNVERIFIED. The sandbox appends the reason.
    message = "The given role assignment condition is invalid."
    if not isinstance(condition, str) or (version is not None and version != "2.0"):
        raise ArmError(400, "InvalidCondition", message)
    try:
        conditions.parse(condition)
    except conditions.ConditionError as exc:
        raise ArmError(400, "InvalidCondition", f"{message} ({exc})") from exc
    return condition, version


def _check_principal(call: Call, principal_id: str, principal_type: str | None) -> str:
    """The principalType to store, after ARM's directory checks.

    Service team, quoted in terraform-provider-azurerm PR #4168 (and Azure/bicep#11025): with
    `ServicePrincipal` ARM does not look the principal up, so an unknown one is accepted (it later
    shows as "Unknown"); with another type it checks the directory: absent is PrincipalNotFound, of
    another type UnmatchedPrincipalType. Without principalType the principal must be visible (i.e.
    replicated), and its type is filled in from the directory.
    """
    backend = call.backend
    principal = backend.directory.get(principal_id)
    visible = principal is not None and principal.visible(backend.clock(), backend.config.replication_delay_seconds)
    if principal_type == "ServicePrincipal" and backend.config.service_principal_type_skips_lookup:
        return principal_type
    if principal is None or not visible:
        raise backend.directory.principal_not_found(principal_id)
    if principal_type is not None and principal.principal_type != principal_type:
        raise _unmatched_principal_type(principal_id, principal.principal_type, principal_type)
    return principal_type or principal.principal_type


def _unmatched_principal_type(principal_id: str, actual: str, sent: str) -> ArmError:
    # ARM's own wording, typo and stray space included (Azure/modern-web-app-pattern-dotnet#129).
    return ArmError(400, "UnmatchedPrincipalType",
                    f"The PrincipalId '{principal_id}' has type '{actual}' , which is different "
                    f"from specified PrinciaplType '{sent}'.")


def put_role_assignment(call: Call) -> Reply:
    scope, name = scopes.normalize(call.params["scope"]), call.params["roleAssignmentName"]
    backend = call.backend
    if not is_guid(name):
        raise ArmError(400, "InvalidRoleAssignmentId",
                       f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")
    backend.require_scope(scope)
    props = call.body.get("properties") if isinstance(call.body, dict) else None
    # ARM's 403 for a role assignment write names the full assignment id (troubleshooting.md).
    call.authorize(_RA_WRITE, scope, {"request": _request_attributes(call, props)},
                   shown_scope=f"{scope.rstrip('/')}{RA_SEGMENT}{name}")
    if not isinstance(props, dict):
        raise invalid_request_content("The request content must have a 'properties' object.")
    principal_id = _principal_id(props)
    role_definition_id = props.get("roleDefinitionId")
    if not isinstance(role_definition_id, str) or not role_definition_id:
        # UNVERIFIED wording.
        raise ArmError(400, "InvalidRoleDefinitionId", "A valid role definition ID must be provided.")
    role_guid = roles.trailing_guid(role_definition_id)
    role = backend.role_definition(role_definition_id)
    if role is None or not role.assignable_at(scope):
        # Code from ARM; status 400 on PUT is UNVERIFIED (GET answers 404). A custom role outside its
        # assignableScopes gets the same answer (UNVERIFIED).
        raise ArmError(400, "RoleDefinitionDoesNotExist",
                       f"The specified role definition with ID '{role_guid}' does not exist.")
    condition, condition_version = _condition(props)
    principal_type = props.get("principalType")
    if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
        # UNVERIFIED code and wording.
        raise ArmError(400, "InvalidPrincipalType",
                       f"The principal type '{principal_type}' is not valid. Valid values are "
                       f"{', '.join(PRINCIPAL_TYPES)}.")
    principal = _check_principal(call, principal_id, principal_type)
    now = timestamp(backend.clock())
    with backend.store.transaction():
        existing = backend.store.get(ROLE_ASSIGNMENT, name)
        if existing is not None:
            old = existing["properties"]
            if (scopes.key(old["scope"]) != scopes.key(scope) or old["principalId"].lower() != principal_id
                    or roles.trailing_guid(old["roleDefinitionId"]) != role_guid):
                raise ArmError(400, "RoleAssignmentUpdateNotPermitted",
                               "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.")
            doc = dict(existing)
            doc["properties"] = dict(old, description=props.get("description"), condition=condition,
                                     conditionVersion=condition_version, updatedOn=now,
                                     updatedBy=call.caller.object_id)
            backend.store.put(ROLE_ASSIGNMENT, name, scope, doc)
            # A re-PUT under the same name answers 201 with a fresh createdOn and createdBy null; later
            # GETs show the original ones (azure-cli recording test_role_assignment_create_update).
            return Reply(201, _put_response(doc, now))
        for other in backend.role_assignments():
            p = other["properties"]
            if (scopes.key(p["scope"]) == scopes.key(scope) and p["principalId"].lower() == principal_id
                    and roles.trailing_guid(p["roleDefinitionId"]) == role_guid):
                raise ArmError(409, "RoleAssignmentExists",
                               "The role assignment already exists. The ID of the existing role assignment is "
                               f"{other['name'].replace('-', '')}.")
        doc = {
            "properties": {
                "roleDefinitionId": scopes.normalize(role_definition_id),
                "principalId": principal_id,
                "principalType": principal,
                "scope": scope,
                "condition": condition,
                "conditionVersion": condition_version,
                "createdOn": now,
                "updatedOn": now,
                "createdBy": call.caller.object_id,
                "updatedBy": call.caller.object_id,
                "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
                "description": props.get("description"),
            },
            "id": f"{scope.rstrip('/')}{RA_SEGMENT}{name}",
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
        }
        backend.store.put(ROLE_ASSIGNMENT, name, scope, doc)
    return Reply(201, _put_response(doc, now))


def _put_response(doc: Doc, now: str) -> Doc:
    """ARM's PUT answer: createdBy is null there (it is filled on later GETs), createdOn is the time of
    this PUT (azure-cli recordings)."""
    out = _render(doc)
    out["properties"] = dict(out["properties"], createdOn=now, createdBy=None)
    return out


_GUIDISH = r"'([^']*)'"
# The only four $filter forms ARM accepts on role assignment lists (steampipe-plugin-azure source comment;
# Azure/azure-rest-api-specs#28255; Azure/azure-powershell PR #20433).
_FILTERS = (
    (re.compile(r"^atscope\(\)$", re.IGNORECASE), True, None),
    (re.compile(rf"^assignedto\({_GUIDISH}\)$", re.IGNORECASE), False, "assignedTo"),
    (re.compile(rf"^atscope\(\)\s+and\s+assignedto\({_GUIDISH}\)$", re.IGNORECASE), True, "assignedTo"),
    (re.compile(rf"^principalid\s+eq\s+{_GUIDISH}$", re.IGNORECASE), False, "principalId"),
)


def _parse_filter(call: Call, text: str) -> tuple[bool, frozenset[str] | None]:
    """(at-or-above only, principal ids to keep) from ARM's roleAssignments $filter grammar.

    `principalId eq '{id}'` keeps that principal's own assignments; `assignedTo('{id}')` also keeps
    those of every group the principal is transitively a member of. Anything else is UnsupportedQuery.
    """
    stripped = text.strip()
    if not stripped:
        return False, None
    for pattern, at_scope, kind in _FILTERS:
        m = pattern.match(stripped)
        if m is None:
            continue
        if kind is None:
            return at_scope, None
        if kind == "principalId":
            return at_scope, frozenset({m.group(1).lower()})
        return at_scope, call.backend.principal_ids(m.group(1))
    raise ArmError(400, "UnsupportedQuery",
                   f"The filter '{text}' is not supported. Supported filters are either 'atScope()' or "
                   "'principalId eq '{value}' or assignedTo('{value}')'.")


def list_role_assignments(call: Call) -> Reply:
    scope = _list_scope(call)
    call.backend.require_scope(scope)
    # ARM's 403 for a list names '{scope}/providers/Microsoft.Authorization' (provider captures).
    call.authorize(_RA_READ, scope, shown_scope=f"{scope.rstrip('/')}/providers/Microsoft.Authorization")
    at_scope, principals = _parse_filter(call, call.query.get("$filter", ""))
    found = [doc for doc in assignments_around(call.backend.store, scope, at_scope)
             if principals is None or doc["properties"]["principalId"].lower() in principals]
    body = page(call, found)
    body["value"] = [_render(doc) for doc in body["value"]]  # only the page asked for
    return Reply(200, body)


_Positioned = list[tuple[int, Doc]]


def _by_scope(docs: list[Doc]) -> tuple[dict[str, _Positioned], list[str]]:
    """Assignments by scope key, each with its place in the store's order, and the sorted keys."""
    grouped: dict[str, _Positioned] = {}
    for position, doc in enumerate(docs):
        grouped.setdefault(scopes.key(doc["properties"]["scope"]), []).append((position, doc))
    return grouped, sorted(grouped)


def assignments_around(store: Store, scope: str, at_scope: bool) -> list[Doc]:
    """Assignments at or above `scope` and, unless `at_scope`, below it, in the store's order, from
    an index by scope: walking all 50,000 assignments of an estate for every page of a list made
    the sandbox, not ARM's limits, the bottleneck of a plan at scale (docs/BENCHMARKS.md)."""
    grouped, keys = store.derived(ROLE_ASSIGNMENT, _by_scope)
    target = scopes.key(scope)
    parts = [p for p in target.split("/") if p]
    hits: dict[int, Doc] = {}
    for ancestor in {"/", *("/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1))}:
        hits.update(grouped.get(ancestor, ()))
    if not at_scope:
        prefix = target if target == "/" else target + "/"
        for k in keys[bisect.bisect_left(keys, prefix):]:
            if not k.startswith(prefix):
                break
            hits.update(grouped[k])
    return [hits[position] for position in sorted(hits)]


def _list_scope(call: Call) -> str:
    """The scope a list route names: its {scope} parameter, or the one its fixed template spells."""
    p = call.params
    if "scope" in p:
        return scopes.normalize(p["scope"])
    scope = f"/subscriptions/{p['subscriptionId']}"
    if "resourceGroupName" in p:
        scope += f"/resourceGroups/{p['resourceGroupName']}"
    if "resourcePath" in p:
        scope += f"/providers/{p['resourcePath']}"
    return scope
