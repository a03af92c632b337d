"""Directory objects as Graph renders them: users, groups, service principals, applications.

Each object is rendered with every property the sandbox knows (`full`), and a response shows either
the type's default property set (GRAPH-FACTS §1, §3, §10, real recordings) or exactly the `$select`ed
ones. Non-nullable collections are `[]`, unknown scalars `null`, as Graph emits them (§17).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from ..directory import Principal
from .errors import GraphError

if TYPE_CHECKING:
    from ..backend import Backend

DOMAIN = "sandbox.onmicrosoft.com"  # the tenant's one verified domain
APPLICATION = "graphApplication"  # store kind: app registrations (not principals: they hold no roles)

ODATA_TYPES = {"User": "#microsoft.graph.user", "Group": "#microsoft.graph.group",
               "ServicePrincipal": "#microsoft.graph.servicePrincipal", "Application": "#microsoft.graph.application"}
ENTITY_SETS = {"User": "users", "Group": "groups", "ServicePrincipal": "servicePrincipals",
               "Application": "applications"}
TYPE_NAMES = {"User": "user", "Group": "group", "ServicePrincipal": "servicePrincipal", "Application": "application"}

DEFAULTS = {
    "User": ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
             "preferredLanguage", "surname", "userPrincipalName", "id"),
    "Group": ("id", "deletedDateTime", "classification", "createdDateTime", "creationOptions", "description",
              "displayName", "expirationDateTime", "groupTypes", "isAssignableToRole", "mail", "mailEnabled",
              "mailNickname", "membershipRule", "membershipRuleProcessingState", "preferredDataLocation",
              "preferredLanguage", "proxyAddresses", "renewedDateTime", "resourceBehaviorOptions",
              "resourceProvisioningOptions", "securityEnabled", "securityIdentifier", "theme", "visibility",
              "onPremisesProvisioningErrors", "serviceProvisioningErrors"),
    "ServicePrincipal": ("id", "deletedDateTime", "accountEnabled", "alternativeNames", "appDisplayName",
                         "appDescription", "appId", "appOwnerOrganizationId", "appRoleAssignmentRequired",
                         "createdDateTime", "description", "displayName", "homepage", "servicePrincipalNames",
                         "servicePrincipalType", "signInAudience", "tags", "appRoles", "keyCredentials",
                         "passwordCredentials", "replyUrls", "oauth2PermissionScopes"),
    "Application": ("id", "deletedDateTime", "appId", "createdDateTime", "displayName", "description",
                    "identifierUris", "publisherDomain", "signInAudience", "appRoles", "keyCredentials",
                    "passwordCredentials", "requiredResourceAccess", "tags"),
}


def now_iso(backend: Backend) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(backend.clock()))


def default_upn(display_name: str) -> str:
    """A seeded user has only a display name; Entra users always have a UPN, so derive one."""
    local = re.sub(r"[^A-Za-z0-9'._!#^~-]+", ".", display_name).strip(".") or "user"
    return f"{local}@{DOMAIN}"


def user_principal_name(p: Principal) -> str:
    return str(p.attributes.get("userPrincipalName") or default_upn(p.display_name))


def _iso(epoch: float) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else None


def full(p: Principal, backend: Backend) -> dict[str, Any]:
    """Every property of a principal that the sandbox can answer, before projection."""
    a = dict(p.attributes)
    if p.principal_type == "User":
        upn = user_principal_name(p)
        return {"id": p.object_id, "deletedDateTime": None, "accountEnabled": a.get("accountEnabled", True),
                "businessPhones": [], "createdDateTime": a.get("createdDateTime") or _iso(p.created_at),
                "displayName": p.display_name, "givenName": a.get("givenName"), "jobTitle": a.get("jobTitle"),
                "mail": a.get("mail"), "mailNickname": a.get("mailNickname") or upn.split("@")[0],
                "mobilePhone": None, "officeLocation": None, "otherMails": [], "preferredLanguage": None,
                "proxyAddresses": [], "surname": a.get("surname"), "userPrincipalName": upn,
                "userType": "Member"}
    if p.principal_type == "Group":
        return {"id": p.object_id, "deletedDateTime": None, "classification": None,
                "createdDateTime": a.get("createdDateTime") or _iso(p.created_at), "creationOptions": [],
                "description": a.get("description"), "displayName": p.display_name, "expirationDateTime": None,
                "groupTypes": list(a.get("groupTypes", [])), "isAssignableToRole": a.get("isAssignableToRole"),
                "mail": None, "mailEnabled": a.get("mailEnabled", False),
                "mailNickname": a.get("mailNickname") or p.object_id[:8], "membershipRule": None,
                "membershipRuleProcessingState": None, "preferredDataLocation": None, "preferredLanguage": None,
                "proxyAddresses": [], "renewedDateTime": a.get("createdDateTime") or _iso(p.created_at),
                "resourceBehaviorOptions": [], "resourceProvisioningOptions": [],
                "securityEnabled": a.get("securityEnabled", True), "securityIdentifier": None, "theme": None,
                "visibility": None, "onPremisesProvisioningErrors": [], "serviceProvisioningErrors": []}
    if p.principal_type == "ServicePrincipal":
        managed = p.replicates  # only identities' service principals replicate
        alternative: list[str] = []
        if managed:
            # UNVERIFIED shape, as `az ad sp show` prints it for a user-assigned identity.
            ids = _identity_ids(backend).get(p.object_id)
            if ids:
                alternative = ["isExplicit=True", ids]
        app_id = p.app_id or None
        return {"id": p.object_id, "deletedDateTime": None, "accountEnabled": True,
                "alternativeNames": alternative, "appDisplayName": a.get("appDisplayName"),
                "appDescription": None, "appId": app_id,
                "appOwnerOrganizationId": a.get("appOwnerOrganizationId"), "appRoleAssignmentRequired": False,
                "createdDateTime": a.get("createdDateTime") or _iso(p.created_at), "description": None,
                "displayName": p.display_name, "homepage": None,
                "servicePrincipalNames": list(a.get("servicePrincipalNames") or ([app_id] if app_id else [])),
                "servicePrincipalType": "ManagedIdentity" if managed else a.get("servicePrincipalType",
                                                                                "Application"),
                "signInAudience": None if managed else "AzureADMyOrg", "tags": [], "appRoles": [],
                "keyCredentials": [], "passwordCredentials": [], "replyUrls": [], "oauth2PermissionScopes": []}
    # ForeignGroup / Device principals: only the directoryObject basics.
    return {"id": p.object_id, "deletedDateTime": None, "displayName": p.display_name}


def _identity_ids(backend: Backend) -> dict[str, str]:
    from ..backend import IDENTITY  # at call time: backend.py imports this package

    by_principal = backend.store.index(IDENTITY, lambda d: str(d["properties"]["principalId"]).lower())
    return {k: str(v[0]["id"]) for k, v in by_principal.items() if v}


def project(obj: dict[str, Any], kind: str, select: list[str] | None, typed: bool = False) -> dict[str, Any]:
    """The default property set or exactly `select` (unknown names are a 400), plus @odata.type in
    mixed collections."""
    names = DEFAULTS.get(kind, ("id", "deletedDateTime", "displayName")) if select is None else select
    out: dict[str, Any] = {"@odata.type": ODATA_TYPES.get(kind, "#microsoft.graph.directoryObject")} if typed else {}
    for name in names:
        if name not in obj and select is not None and not typed:
            # UNVERIFIED wording (OData's message for an unknown $select property).
            raise GraphError(400, "Request_BadRequest",
                             f"Could not find a property named '{name}' on type "
                             f"'microsoft.graph.{TYPE_NAMES.get(kind, 'directoryObject')}'.")
        if name in obj:
            out[name] = obj[name]
        elif typed:
            out[name] = None
    return out
