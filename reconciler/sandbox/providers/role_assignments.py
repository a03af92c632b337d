"""Microsoft.Authorization role assignments.

Rules reproduced from ARM (see shared/ARM-FACTS.md section 3): the name must be a GUID and is unique
across the tenant; (scope, role GUID, principal) is unique across names (409 RoleAssignmentExists); a
name cannot move to another scope or principal (400 RoleAssignmentUpdateNotPermitted); the principal
must exist in the directory, and a freshly created identity's service principal only counts once
replicated unless principalType is sent. A condition must parse (conditions.py); writes and deletes
are authorised with the ABAC attributes of the assignment being created (@Request) or deleted
(@Resource), so a conditioned Role Based Access Control Administrator can only hand out and remove
the roles its condition lists.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from .. import conditions, roles, scopes
from ..backend import ROLE_ASSIGNMENT, timestamp
from ..calls import Call, Reply
from ..directory import PRINCIPAL_TYPES, is_guid
from ..errors import ArmError, invalid_request_content
from ..paging import page
from ..store import Doc, Store
from .authorization import list_scope

RA_SEGMENT = "/providers/Microsoft.Authorization/roleAssignments/"
_RA_READ = "Microsoft.Authorization/roleAssignments/read"
_RA_WRITE = "Microsoft.Authorization/roleAssignments/write"
_RA_DELETE = "Microsoft.Authorization/roleAssignments/delete"


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
    scope = list_scope(call)
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
