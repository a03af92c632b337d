"""Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials.

Creating an identity also creates its service principal in the sandbox directory (subject to the
replication delay). Deleting an identity deletes its FICs and service principal but, as in Azure,
leaves role assignments naming that principal behind as orphans.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from ..backend import FIC, IDENTITY, rg_key, timestamp
from ..calls import Call, Reply
from ..errors import ArmError, invalid_request_content, not_found_resource
from ..locations import IDENTITY_TYPE, canonical, not_available_for_type
from ..paging import page
from ..store import Doc

if TYPE_CHECKING:
    from ..backend import Backend

NS_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC_TYPE = f"{NS_TYPE}/federatedIdentityCredentials"
MAX_FICS_PER_IDENTITY = 20  # Azure/azure-workload-identity#575
_IDENTITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,127}$")
_FIC_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$")
_ISOLATION_SCOPES = ("None", "Regional")


def identity_id(sub: str, rg: str, name: str) -> str:
    # ARM writes identity ids with lower-case "resourcegroups" whatever the request said.
    return f"/subscriptions/{sub}/resourcegroups/{rg}/providers/{NS_TYPE}/{name}"


def _has_isolation_scope(api_version: str) -> bool:
    return api_version[:10] >= "2024-11-30"


def system_data(call: Call, previous: Doc | None) -> Doc:
    """ARM's systemData (common-types v4): who created and last modified a resource, and when.
    Users are named by their display name here (ARM uses the UPN), applications and managed
    identities by their client id, as ARM does."""
    principal = call.backend.directory.get(call.caller.object_id)
    if principal is not None and principal.replicates:
        by, by_type = principal.app_id or principal.object_id, "ManagedIdentity"
    elif principal is not None and principal.principal_type == "User":
        by, by_type = principal.display_name, "User"
    else:
        by, by_type = call.caller.app_id or call.caller.object_id, "Application"
    now = timestamp(call.backend.clock())
    created = previous or {"createdBy": by, "createdByType": by_type, "createdAt": now}
    return {"createdBy": created["createdBy"], "createdByType": created["createdByType"],
            "createdAt": created["createdAt"], "lastModifiedBy": by, "lastModifiedByType": by_type,
            "lastModifiedAt": now}


def render_identity(doc: Doc, api_version: str) -> Doc:
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    props = dict(out["properties"])
    if not _has_isolation_scope(api_version):
        props.pop("isolationScope", None)
    out["properties"] = props
    return out


def _identity_parts(call: Call) -> tuple[str, str, str, str]:
    sub, rg, name = call.params["subscriptionId"], call.params["resourceGroupName"], call.params["resourceName"]
    call.backend.require_subscription(sub)
    return sub, rg, name, identity_id(sub, rg, name)


def _require_identity(call: Call, sub: str, rg: str, name: str) -> Doc:
    call.backend.require_resource_group(sub, rg)
    doc = call.backend.store.get(IDENTITY, identity_id(sub, rg, name))
    if doc is None:
        raise not_found_resource(NS_TYPE, name, rg)
    return doc


def normalize_location(location: str, resource_type: str = IDENTITY_TYPE) -> str:
    """The region's short name; an unknown region is refused as ARM does.

    UNVERIFIED: ARM returns the canonical short name ("East US" -> "eastus") for most RPs."""
    found = canonical(location)
    if found is None:
        raise not_available_for_type(location, resource_type)
    return found


def list_operations(call: Call) -> Reply:
    ops = [
        ("read", "Get User Assigned Identity", "Gets an existing user assigned identity"),
        ("write", "Create/Update User Assigned Identity",
         "Creates a new user assigned identity or updates the tags associated with an existing user assigned "
         "identity"),
        ("delete", "Delete User Assigned Identity", "Deletes an existing user assigned identity"),
    ]
    value = [{"name": f"{NS_TYPE}/{verb}",
              "display": {"provider": "Managed Service Identity", "resource": "User Assigned Identities",
                          "operation": op, "description": desc}} for verb, op, desc in ops]
    return Reply(200, page(call, value))


def _visible(call: Call, docs: list[Doc], container_scope: str) -> list[Doc]:
    action = f"{NS_TYPE}/read"
    if call.can(action, container_scope):
        return docs
    # Without read at the container ARM lists only the identities the caller may read, or refuses.
    docs = [d for d in docs if call.can(action, d["id"])]
    if not docs:
        # A list names its container plus the provider namespace as the scope (the role-assignment list
        # does so, ARM-FACTS section 11; a resource-group VM list in Azure/azure-sdk-for-net#1157 too).
        call.authorize(action, container_scope, shown_scope=f"{container_scope}/providers/Microsoft.ManagedIdentity")
    return docs


def list_by_subscription(call: Call) -> Reply:
    sub = call.params["subscriptionId"]
    call.backend.require_subscription(sub)
    docs = _visible(call, call.backend.store.under(IDENTITY, f"/subscriptions/{sub}"), f"/subscriptions/{sub}")
    return Reply(200, page(call, [render_identity(d, call.api_version) for d in docs]))


def list_by_resource_group(call: Call) -> Reply:
    sub, rg = call.params["subscriptionId"], call.params["resourceGroupName"]
    call.backend.require_subscription(sub)
    scope = f"/subscriptions/{sub}/resourceGroups/{rg}"
    docs = _visible(call, call.backend.store.children(IDENTITY, rg_key(sub, rg)), scope)
    call.backend.require_resource_group(sub, rg)
    return Reply(200, page(call, [render_identity(d, call.api_version) for d in docs]))


def get_identity(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    call.authorize(f"{NS_TYPE}/read", rid)
    return Reply(200, render_identity(_require_identity(call, sub, rg, name), call.api_version))


def _tags(body: dict[str, Any]) -> dict[str, str]:
    tags = body.get("tags")
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise invalid_request_content("The 'tags' property must be an object of string values.")
    return tags


def _isolation_scope(body: dict[str, Any], current: str) -> str:
    props = body.get("properties")
    if props is None:
        return current
    if not isinstance(props, dict):
        raise invalid_request_content("The 'properties' property must be an object.")
    value = props.get("isolationScope", current)
    if value not in _ISOLATION_SCOPES:
        # UNVERIFIED code and wording.
        raise ArmError(400, "InvalidIsolationScope",
                       f"The isolation scope '{value}' is not valid. Valid values are 'None' and 'Regional'.")
    return str(value)


def put_identity(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    call.authorize(f"{NS_TYPE}/write", rid)
    backend = call.backend
    backend.require_resource_group(sub, rg)
    if not _IDENTITY_NAME.match(name):
        # UNVERIFIED code; the rule is from resource-name-rules.md.
        raise ArmError(400, "InvalidResourceName",
                       f"Resource name {name} is invalid. The name can be 3-128 characters long, must begin with a "
                       "letter or number, and may contain only letters, numbers, hyphens and underscores.")
    body = call.body if isinstance(call.body, dict) else None
    if body is None:
        raise invalid_request_content("The request content was invalid and could not be deserialized.")
    location = body.get("location")
    if not isinstance(location, str) or not location:
        # UNVERIFIED: ARM's template wording for a tracked resource without location.
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    location = normalize_location(location)
    tags = _tags(body)
    with backend.store.transaction():
        existing = backend.store.get(IDENTITY, rid)
        if existing is not None:
            if existing["location"] != location:
                # Wording confirmed (MicrosoftDocs/azure-docs#70422); 409 is most likely (the resource
                # group analogue is 409), still UNVERIFIED.
                raise ArmError(409, "InvalidResourceLocation",
                               f"The resource '{existing['name']}' already exists in location "
                               f"'{existing['location']}' in resource group '{rg}'. A resource with the same name "
                               f"cannot be created in location '{location}'. Please select a new resource name.")
            doc = dict(existing)
            doc["tags"] = tags
            doc["properties"] = dict(existing["properties"],
                                     isolationScope=_isolation_scope(body, existing["properties"]["isolationScope"]))
            doc["systemData"] = system_data(call, existing.get("systemData"))
            backend.store.put(IDENTITY, rid, rg_key(sub, rg), doc)
            return Reply(200, render_identity(doc, call.api_version))
        try:
            backend.throttler.take_identity_create(backend.config, sub, location)
        except ArmError:
            backend.count("throttled")  # counted like every other 429
            raise
        principal_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
        rg_doc = backend.require_resource_group(sub, rg)
        rid = identity_id(sub, rg_doc["name"], name)
        doc = {
            "id": rid,
            "name": name,
            "type": NS_TYPE,
            "location": location,
            "tags": tags,
            "properties": {
                "tenantId": backend.directory.tenant_id,
                "principalId": principal_id,
                "clientId": client_id,
                "isolationScope": _isolation_scope(body, "None"),
            },
            "systemData": system_data(call, None),
        }
        backend.store.put(IDENTITY, rid, rg_key(sub, rg), doc)
        backend.directory.add(principal_id, "ServicePrincipal", name, created_at=backend.clock(),
                              replicates=True, app_id=client_id)
    return Reply(201, render_identity(doc, call.api_version), {"Location": rid})


def patch_identity(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    call.authorize(f"{NS_TYPE}/write", rid)
    body = call.body if isinstance(call.body, dict) else {}
    with call.backend.store.transaction():
        doc = dict(_require_identity(call, sub, rg, name))
        if "tags" in body:
            doc["tags"] = _tags(body)
        doc["properties"] = dict(doc["properties"],
                                 isolationScope=_isolation_scope(body, doc["properties"]["isolationScope"]))
        doc["systemData"] = system_data(call, doc.get("systemData"))
        call.backend.store.put(IDENTITY, rid, rg_key(sub, rg), doc)
    return Reply(200, render_identity(doc, call.api_version))


def delete_identity_state(backend: Backend, doc: Doc) -> None:
    for fic in backend.store.children(FIC, doc["id"]):
        backend.store.delete(FIC, fic["id"])
    backend.store.delete(IDENTITY, doc["id"])
    backend.directory.remove(doc["properties"]["principalId"])


def delete_identity(call: Call) -> Reply:
    sub, rg, _name, rid = _identity_parts(call)
    call.authorize(f"{NS_TYPE}/delete", rid)
    with call.backend.store.transaction():
        call.backend.require_resource_group(sub, rg)
        doc = call.backend.store.get(IDENTITY, rid)
        if doc is None:
            return Reply(204)
        delete_identity_state(call.backend, doc)
    return Reply(200)


# --- federated identity credentials --------------------------------------------------------------
def _fic_throttle(call: Call, sub: str, rid: str, operation: str) -> None:
    backend = call.backend
    if not (backend.config.throttling and backend.config.fic_throttling):
        return
    try:
        backend.throttler.take_fic(backend.config, backend.directory.tenant_id, sub, rid, operation)
    except ArmError:
        backend.count("throttled")
        raise


def _render_fic(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def list_fics(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    _fic_throttle(call, sub, rid, "list")
    call.authorize(f"{FIC_TYPE}/read", rid)
    identity = _require_identity(call, sub, rg, name)
    docs = call.backend.store.children(FIC, identity["id"])
    return Reply(200, page(call, [_render_fic(d) for d in docs]))


def get_fic(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    _fic_throttle(call, sub, rid, "read")
    fic_name = call.params["federatedIdentityCredentialResourceName"]
    call.authorize(f"{FIC_TYPE}/read", f"{rid}/federatedIdentityCredentials/{fic_name}")
    identity = _require_identity(call, sub, rg, name)
    doc = call.backend.store.get(FIC, f"{identity['id']}/federatedIdentityCredentials/{fic_name}")
    if doc is None:
        raise not_found_resource(FIC_TYPE, f"{name}/{fic_name}", rg)
    return Reply(200, _render_fic(doc))


FIC_FIELD_MAX = 600  # issuer, subject, audience, description (Microsoft's FIC considerations page)


def _fic_bad_request(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def _fic_text(field: str, value: str) -> str:
    """The FIC page's field rules: at most 600 characters, no surrounding whitespace, no wildcards.
    The rules are sourced; the wording of these three messages is the sandbox's (UNVERIFIED)."""
    if len(value) > FIC_FIELD_MAX:
        raise _fic_bad_request(f"Federated Identity Credential '{field}' is longer than {FIC_FIELD_MAX} characters.")
    if value != value.strip():
        raise _fic_bad_request(f"Federated Identity Credential '{field}' must not start or end with whitespace.")
    if "*" in value:
        raise _fic_bad_request(f"Federated Identity Credential '{field}' must not contain wildcard characters.")
    return value


def _fic_properties(body: Any) -> dict[str, Any]:
    """Validation and texts from Microsoft's workload identity federation "Errors" table (code BadRequest)."""
    props = body.get("properties") if isinstance(body, dict) else None
    if props is None or props == {}:
        raise _fic_bad_request("Federated Identity Credential from HTTP body has empty properties")
    if not isinstance(props, dict):
        raise invalid_request_content("The 'properties' property must be an object.")
    issuer, subject, audiences = props.get("issuer"), props.get("subject"), props.get("audiences")
    if (not isinstance(issuer, str) or not issuer or not isinstance(subject, str) or not subject
            or not isinstance(audiences, list) or not audiences):
        raise _fic_bad_request("The request format was unexpected. Federated Identity Credential must specify "
                               "'issuer', 'subject' and 'audience'.")
    if len(audiences) != 1 or not isinstance(audiences[0], str) or not audiences[0]:
        raise _fic_bad_request("Federated identity credentials must have exactly one audience.")
    # No evidence that ARM requires an https issuer, so the sandbox does not either.
    out: dict[str, Any] = {"issuer": _fic_text("issuer", issuer), "subject": _fic_text("subject", subject),
                           "audiences": [_fic_text("audience", audiences[0])]}
    description = props.get("description")
    if isinstance(description, str):
        _fic_text("description", description)
    return out


def put_fic(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    _fic_throttle(call, sub, rid, "write")
    fic_name = call.params["federatedIdentityCredentialResourceName"]
    call.authorize(f"{FIC_TYPE}/write", f"{rid}/federatedIdentityCredentials/{fic_name}")
    identity = _require_identity(call, sub, rg, name)
    if not _FIC_NAME.match(fic_name):
        # Code and wording from Microsoft's FIC "Errors" table.
        raise _fic_bad_request(f"Federated Identity Credential name '{fic_name}' is invalid.")
    props = _fic_properties(call.body)
    fid = f"{identity['id']}/federatedIdentityCredentials/{fic_name}"
    store = call.backend.store
    with call.backend.identity_write_slot(identity["id"]), store.transaction():
        siblings = store.children(FIC, identity["id"])
        existing = next((f for f in siblings if f["id"].lower() == fid.lower()), None)
        for other in siblings:
            same_pair = (other["properties"]["issuer"] == props["issuer"]
                         and other["properties"]["subject"] == props["subject"])
            if other is not existing and same_pair:
                # Wording from Azure/bicep-types-az#2054; status and code UNVERIFIED.
                raise ArmError(400, "BadRequest",
                               "Issuer and subject combination already exists for this Managed Identity.")
        if existing is None and len(siblings) >= MAX_FICS_PER_IDENTITY:
            # UNVERIFIED wording; the limit of 20 is documented.
            raise ArmError(400, "BadRequest",
                           f"The managed identity '{identity['id']}' already has the maximum of "
                           f"{MAX_FICS_PER_IDENTITY} Federated Identity Credentials.")
        doc = {"id": existing["id"] if existing else fid, "name": existing["name"] if existing else fic_name,
               "type": FIC_TYPE, "properties": props,
               "systemData": system_data(call, existing.get("systemData") if existing else None)}
        store.put(FIC, fid, identity["id"], doc)
    return Reply(200 if existing else 201, _render_fic(doc))


def delete_fic(call: Call) -> Reply:
    sub, rg, name, rid = _identity_parts(call)
    _fic_throttle(call, sub, rid, "delete")
    fic_name = call.params["federatedIdentityCredentialResourceName"]
    call.authorize(f"{FIC_TYPE}/delete", f"{rid}/federatedIdentityCredentials/{fic_name}")
    identity = _require_identity(call, sub, rg, name)
    with call.backend.identity_write_slot(identity["id"]):
        deleted = call.backend.store.delete(FIC, f"{identity['id']}/federatedIdentityCredentials/{fic_name}")
    return Reply(200 if deleted else 204)
