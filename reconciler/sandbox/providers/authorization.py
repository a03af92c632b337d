"""Microsoft.Authorization: role definitions (built-in, read-only), role assignments, permissions.

Role assignment rules reproduced from ARM (see shared/ARM-FACTS.md section 3): the name must be a
GUID and is unique across the tenant; (scope, role GUID, principal) is unique across names (409
RoleAssignmentExists); a name cannot move to another scope or principal (400
RoleAssignmentUpdateNotPermitted); the principal must exist in the directory, and a freshly created
identity's service principal only counts once replicated unless principalType is sent.
"""

from __future__ import annotations

import re
from typing import Any

from .. import rbac, roles, scopes
from ..backend import ROLE_ASSIGNMENT, timestamp
from ..calls import Call, Reply
from ..directory import PRINCIPAL_TYPES, is_guid
from ..errors import ArmError, invalid_request_content
from ..paging import page
from ..store import Doc

RA_SEGMENT = "/providers/Microsoft.Authorization/roleAssignments/"
_RA_READ = "Microsoft.Authorization/roleAssignments/read"
_RA_WRITE = "Microsoft.Authorization/roleAssignments/write"
_RA_DELETE = "Microsoft.Authorization/roleAssignments/delete"


# --- role definitions ----------------------------------------------------------------------------
def _definition_prefix(scope: str) -> str:
    sub = scopes.parse(scope).subscription_id
    return f"/subscriptions/{sub}" if sub else ""


def _role_definition_not_found(role_id: str) -> ArmError:
    return ArmError(404, "RoleDefinitionDoesNotExist",
                    f"The specified role definition with ID '{role_id}' does not exist.")


def get_role_definition(call: Call) -> Reply:
    # Reading role definitions needs no role: any signed-in caller may (UNVERIFIED, matches practice).
    scope = call.params["scope"]
    call.backend.require_scope(scope)
    role = roles.builtin_roles().get(call.params["roleDefinitionId"].lower())
    if role is None:
        raise _role_definition_not_found(call.params["roleDefinitionId"])
    return Reply(200, role.to_arm(_definition_prefix(scope)))


_ROLE_FILTER = re.compile(r"^\s*(roleName|type)\s+eq\s+'(.*)'\s*$", re.IGNORECASE)


def list_role_definitions(call: Call) -> Reply:
    scope = call.params["scope"]
    call.backend.require_scope(scope)
    found = list(roles.builtin_roles().values())
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


# --- permissions ---------------------------------------------------------------------------------
def list_permissions(call: Call) -> Reply:
    scope = _list_scope(call)
    call.backend.require_scope(scope)
    blocks = rbac.effective_permissions(call.backend.role_assignments(), call.caller.object_id, scope)
    value = [{k: list(b.get(k, [])) for k in ("actions", "notActions", "dataActions", "notDataActions")}
             for b in blocks]
    return Reply(200, page(call, value))


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
    call.authorize(_RA_DELETE, scope)
    with call.backend.store.transaction():
        doc = _stored(call, scope, name)
        if doc is None:
            return Reply(204)
        call.backend.store.delete(ROLE_ASSIGNMENT, name)
    return Reply(200, _render(doc))


def _principal_id(props: dict[str, Any]) -> str:
    value = props.get("principalId")
    if value is None or value == "":
        raise ArmError(400, "InvalidPrincipalId", "A valid principal ID must be provided for role assignment.")
    if not is_guid(value):
        raise ArmError(400, "InvalidPrincipalId",
                       f"The Principal ID '{value}' is not valid. Principal ID must be a GUID.")
    return str(value).lower()


def put_role_assignment(call: Call) -> Reply:
    scope, name = scopes.normalize(call.params["scope"]), call.params["roleAssignmentName"]
    backend = call.backend
    if not is_guid(name):
        raise ArmError(400, "InvalidRoleAssignmentId",
                       f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")
    backend.require_scope(scope)
    call.authorize(_RA_WRITE, scope)
    props = call.body.get("properties") if isinstance(call.body, dict) else None
    if not isinstance(props, dict):
        raise invalid_request_content("The request content must have a 'properties' object.")
    principal_id = _principal_id(props)
    role_definition_id = props.get("roleDefinitionId")
    if not isinstance(role_definition_id, str) or not role_definition_id:
        # UNVERIFIED wording.
        raise ArmError(400, "InvalidRoleDefinitionId", "A valid role definition ID must be provided.")
    role_guid = roles.trailing_guid(role_definition_id)
    if roles.find(role_definition_id) is None:
        # Code from ARM; status 400 on PUT is UNVERIFIED (GET answers 404).
        raise ArmError(400, "RoleDefinitionDoesNotExist",
                       f"The specified role definition with ID '{role_guid}' does not exist.")
    principal_type = props.get("principalType")
    if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
        # UNVERIFIED code and wording.
        raise ArmError(400, "InvalidPrincipalType",
                       f"The principal type '{principal_type}' is not valid. Valid values are "
                       f"{', '.join(PRINCIPAL_TYPES)}.")
    principal = backend.directory.get(principal_id)
    # With principalType sent, ARM skips waiting for directory replication; the principal must still
    # exist somewhere in the directory (UNVERIFIED: stricter than "trust the caller").
    replicated = principal is not None and principal.visible(backend.clock(), backend.config.replication_delay_seconds)
    if principal is None or (principal_type is None and not replicated):
        raise backend.directory.principal_not_found(principal_id)
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
            doc["properties"] = dict(old, description=props.get("description"), condition=props.get("condition"),
                                     conditionVersion=props.get("conditionVersion"), updatedOn=now,
                                     updatedBy=call.caller.object_id)
            backend.store.put(ROLE_ASSIGNMENT, name, scope, doc)
            # UNVERIFIED: the status of a re-PUT under the same name (the SDK accepts 200 and 201).
            return Reply(200, _render(doc))
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
                "principalType": principal_type or principal.principal_type,
                "scope": scope,
                "condition": props.get("condition"),
                "conditionVersion": props.get("conditionVersion"),
                "createdOn": now,
                "updatedOn": now,
                "createdBy": None,
                "updatedBy": call.caller.object_id,
                "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
                "description": props.get("description"),
            },
            "id": f"{scope.rstrip('/')}{RA_SEGMENT}{name}",
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
        }
        backend.store.put(ROLE_ASSIGNMENT, name, scope, doc)
    return Reply(201, _render(doc))


_AT_SCOPE = re.compile(r"^atscope\(\)$", re.IGNORECASE)
_PRINCIPAL = re.compile(r"^principalid\s+eq\s+'([^']*)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedto\('([^']*)'\)$", re.IGNORECASE)


def _parse_filter(text: str) -> tuple[bool, str | None]:
    """(at-or-above only, principal id) from ARM's roleAssignments $filter grammar."""
    at_scope, principal = False, None
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        clause = clause.strip()
        if _AT_SCOPE.match(clause):
            at_scope = True
        elif (m := _PRINCIPAL.match(clause) or _ASSIGNED_TO.match(clause)) is not None:
            # assignedTo() also follows group memberships; the sandbox directory has none.
            principal = m.group(1).lower()
        else:
            # UNVERIFIED code and wording.
            raise ArmError(400, "InvalidFilter", f"The filter '{text}' is not supported.")
    return at_scope, principal


def list_role_assignments(call: Call) -> Reply:
    scope = _list_scope(call)
    call.backend.require_scope(scope)
    call.authorize(_RA_READ, scope)
    at_scope, principal = _parse_filter(call.query.get("$filter", ""))
    found = []
    for doc in call.backend.role_assignments():
        p = doc["properties"]
        above = scopes.is_at_or_above(p["scope"], scope)
        below = scopes.is_at_or_above(scope, p["scope"])
        if not (above or (below and not at_scope)):
            continue
        if principal is not None and p["principalId"].lower() != principal:
            continue
        found.append(_render(doc))
    return Reply(200, page(call, found))


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
