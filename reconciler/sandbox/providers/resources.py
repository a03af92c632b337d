"""Microsoft.Resources: subscriptions (read-only, created by seeding) and resource groups."""

from __future__ import annotations

import re
import uuid
from typing import Any

from .. import locations, scopes
from ..backend import IDENTITY, RESOURCE_GROUP, SUBSCRIPTION, rg_key
from ..calls import Call, Reply
from ..errors import ArmError, invalid_request_content
from ..paging import page
from ..store import Doc
from .msi import delete_identity_state

_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")


def _has_access(call: Call, subscription_id: str) -> bool:
    """ARM shows a subscription to callers holding any role assignment in it or above it."""
    sub_scope = scopes.subscription_scope(subscription_id)
    principals = call.backend.principal_ids(call.caller.object_id)
    return any(
        scopes.is_at_or_above(a["properties"]["scope"], sub_scope)
        or scopes.is_at_or_above(sub_scope, a["properties"]["scope"])
        for a in call.backend.role_assignments()
        if a["properties"]["principalId"].lower() in principals
    )


def _render_subscription(doc: Doc) -> Doc:
    # Subscriptions seeded before managedByTenants was served lack it; ARM always has the list.
    return {**doc, "managedByTenants": doc.get("managedByTenants", [])}


def list_subscriptions(call: Call) -> Reply:
    subs = [_render_subscription(s) for s in call.backend.store.all(SUBSCRIPTION)
            if _has_access(call, s["subscriptionId"])]
    return Reply(200, page(call, subs))


def list_locations(call: Call) -> Reply:
    """Subscriptions_ListLocations: every region, for any caller who can see the subscription."""
    sub = call.params["subscriptionId"]
    call.backend.require_subscription(sub)
    if not _has_access(call, sub):
        call.authorize("Microsoft.Resources/subscriptions/read", scopes.subscription_scope(sub))
    # Not pageable in the spec (x-ms-pageable nextLinkName null): one answer with every region.
    return Reply(200, {"value": locations.render(sub)})


def get_subscription(call: Call) -> Reply:
    sub = call.params["subscriptionId"]
    doc = call.backend.require_subscription(sub)
    if not _has_access(call, sub):
        call.authorize("Microsoft.Resources/subscriptions/read", scopes.subscription_scope(sub))
    return Reply(200, _render_subscription(doc))


def list_resource_groups(call: Call) -> Reply:
    sub = call.params["subscriptionId"]
    call.backend.require_subscription(sub)
    if call.query.get("$filter"):
        raise ArmError(400, "InvalidFilter", "The sandbox does not implement $filter on resource group lists.")
    groups = call.backend.store.children(RESOURCE_GROUP, scopes.subscription_scope(sub))
    action = "Microsoft.Resources/subscriptions/resourceGroups/read"
    if not call.can(action, scopes.subscription_scope(sub)):
        # Without subscription-wide read, ARM returns only the groups the caller can read.
        groups = [g for g in groups if call.can(action, g["id"])]
        if not groups:
            call.authorize(action, scopes.subscription_scope(sub))
    return Reply(200, page(call, groups))


def _rg_scope(call: Call) -> tuple[str, str, str]:
    sub, name = call.params["subscriptionId"], call.params["resourceGroupName"]
    call.backend.require_subscription(sub)
    return sub, name, scopes.resource_group_scope(sub, name)


def get_resource_group(call: Call) -> Reply:
    sub, name, scope = _rg_scope(call)
    call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", scope)
    return Reply(200, call.backend.require_resource_group(sub, name))


def check_resource_group(call: Call) -> Reply:
    sub, name, scope = _rg_scope(call)
    call.authorize("Microsoft.Resources/subscriptions/resourceGroups/read", scope)
    exists = call.backend.store.get(RESOURCE_GROUP, rg_key(sub, name)) is not None
    return Reply(204 if exists else 404)


def put_resource_group(call: Call) -> Reply:
    sub, name, scope = _rg_scope(call)
    call.authorize("Microsoft.Resources/subscriptions/resourceGroups/write", scope)
    if not _RG_NAME.match(name) or name.endswith("."):
        # UNVERIFIED code; the rule itself is common-types ResourceGroupNameParameter + "no trailing period".
        raise ArmError(400, "InvalidResourceGroupName",
                       f"The resource group name '{name}' is invalid. It can be 1-90 characters: letters, digits, "
                       "'-', '.', '_', '(' and ')', and cannot end with a period.")
    body = call.body if isinstance(call.body, dict) else {}
    location = body.get("location")
    if not isinstance(location, str) or not location:
        raise ArmError(400, "LocationRequired", "The location property is required for this definition.")
    known = locations.canonical(location)
    if known is None:
        raise locations.not_available_for_resource_group(location)
    location = known
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise invalid_request_content("The 'tags' property must be an object.")
    with call.backend.store.transaction():
        existing = call.backend.store.get(RESOURCE_GROUP, rg_key(sub, name))
        if existing is not None and existing["location"] != location:
            raise ArmError(409, "InvalidResourceGroupLocation",
                           f"Invalid resource group location '{location}'. The Resource group already exists in "
                           f"location '{existing['location']}'.")
        doc, created = call.backend.put_resource_group(sub, name, location, tags)
    return Reply(201 if created else 200, doc)


def patch_resource_group(call: Call) -> Reply:
    sub, name, scope = _rg_scope(call)
    call.authorize("Microsoft.Resources/subscriptions/resourceGroups/write", scope)
    body = call.body if isinstance(call.body, dict) else {}
    with call.backend.store.transaction():
        existing = call.backend.require_resource_group(sub, name)
        tags: Any = body.get("tags", existing.get("tags"))
        doc, _ = call.backend.put_resource_group(sub, existing["name"], existing["location"], tags)
    return Reply(200, doc)


def delete_resource_group(call: Call) -> Reply:
    sub, name, scope = _rg_scope(call)
    call.authorize("Microsoft.Resources/subscriptions/resourceGroups/delete", scope)
    store = call.backend.store
    with store.transaction():
        call.backend.require_resource_group(sub, name)
        for identity in store.children(IDENTITY, rg_key(sub, name)):
            delete_identity_state(call.backend, identity)
        store.delete(RESOURCE_GROUP, rg_key(sub, name))
    # Deletion is asynchronous in ARM: 202 + Location to poll. The sandbox finishes at once, so the
    # first poll answers 200. Role assignments at the group's scope stay behind (UNVERIFIED).
    location = (f"{call.base_url}/subscriptions/{sub}/operationresults/{uuid.uuid4()}"
                f"?api-version={call.api_version}")
    return Reply(202, None, {"Location": location,
                             "Retry-After": str(call.backend.config.lro_retry_after_seconds)})


def get_operation_result(call: Call) -> Reply:
    call.backend.require_subscription(call.params["subscriptionId"])
    return Reply(200)
