"""The explicit route table: (method, path template) -> operationId, api-versions and handler.

Templates match case-insensitively against the decoded path. `{name}` is one segment, `{name*}` is
one or more segments, and a leading `{scope*}` is zero or more segments (ARM's `/{scope}` parameter,
which may be the root). The first matching route wins, so specific templates come before generic
ones. A path no route matches is answered loudly instead of pretending to succeed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from . import discovery
from .calls import Call, Reply
from .errors import ArmError
from .providers import authorization as authz
from .providers import msi, resources, role_assignments, role_definitions

# api-versions accepted per provider resource type. The newest of each is what the pinned SDKs send.
RESOURCES_VERSIONS = ("2025-04-01", "2025-03-01", "2025-01-01", "2024-11-01", "2024-07-01", "2024-03-01",
                      "2023-07-01", "2022-09-01", "2021-04-01", "2021-01-01", "2020-10-01", "2020-06-01",
                      "2019-10-01")
SUBSCRIPTIONS_VERSIONS = ("2022-12-01", "2021-01-01", "2020-01-01", "2019-11-01", "2016-06-01")
MSI_VERSIONS = ("2025-05-31-preview", "2025-01-31-preview", "2024-11-30", "2023-07-31-preview", "2023-01-31",
                "2022-01-31-preview", "2021-09-30-preview", "2018-11-30", "2015-08-31-preview")
# Federated identity credentials first appeared in 2022-01-31-preview.
FIC_VERSIONS = MSI_VERSIONS[: MSI_VERSIONS.index("2022-01-31-preview") + 1]
ROLE_ASSIGNMENT_VERSIONS = ("2022-04-01", "2020-10-01-preview", "2020-08-01-preview", "2020-04-01-preview",
                            "2020-03-01-preview", "2018-09-01-preview", "2018-01-01-preview",
                            "2017-10-01-preview", "2015-07-01")
ROLE_DEFINITION_VERSIONS = ("2022-05-01-preview", "2022-04-01", "2018-01-01-preview", "2015-07-01")
PERMISSION_VERSIONS = ("2022-04-01", "2018-01-01-preview", "2015-07-01")
DENY_ASSIGNMENT_VERSIONS = ("2022-04-01", "2018-07-01-preview", "2015-07-01")

Handler = Callable[[Call], Reply]
KINDS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "POST": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation_id: str
    api_versions: tuple[str, ...]
    handler: Handler
    pattern: re.Pattern[str]

    @property
    def kind(self) -> str:
        return KINDS[self.method]


def _compile(template: str) -> re.Pattern[str]:
    out = []
    rest = template
    if rest.startswith("{scope*}"):
        out.append("(?P<scope>(?:/[^?]+?)?)")
        rest = rest[len("{scope*}"):]
    for piece in re.split(r"(\{[A-Za-z]+\*?\})", rest):
        if piece.startswith("{") and piece.endswith("*}"):
            out.append(f"(?P<{piece[1:-2]}>[^?]+?)")
        elif piece.startswith("{"):
            out.append(f"(?P<{piece[1:-1]}>[^/?]+)")
        else:
            out.append(re.escape(piece))
    return re.compile("".join(out) + "/?", re.IGNORECASE)


_MSI_RG = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}/providers/Microsoft.ManagedIdentity"
_UAMI = _MSI_RG + "/userAssignedIdentities/{resourceName}"
_FICS = _UAMI + "/federatedIdentityCredentials"
_RG = "/subscriptions/{subscriptionId}/resourcegroups/{resourceGroupName}"
_AUTHZ = "/providers/Microsoft.Authorization"

_TABLE: list[tuple[str, str, str, tuple[str, ...], Handler]] = [
    # Microsoft.Resources
    ("GET", "/subscriptions", "Subscriptions_List", SUBSCRIPTIONS_VERSIONS, resources.list_subscriptions),
    ("GET", "/subscriptions/{subscriptionId}", "Subscriptions_Get", SUBSCRIPTIONS_VERSIONS,
     resources.get_subscription),
    ("GET", "/tenants", "Tenants_List", SUBSCRIPTIONS_VERSIONS, discovery.list_tenants),
    ("GET", "/subscriptions/{subscriptionId}/locations", "Subscriptions_ListLocations", SUBSCRIPTIONS_VERSIONS,
     resources.list_locations),
    ("GET", "/subscriptions/{subscriptionId}/resourcegroups", "ResourceGroups_List", RESOURCES_VERSIONS,
     resources.list_resource_groups),
    ("GET", _RG, "ResourceGroups_Get", RESOURCES_VERSIONS, resources.get_resource_group),
    ("HEAD", _RG, "ResourceGroups_CheckExistence", RESOURCES_VERSIONS, resources.check_resource_group),
    ("PUT", _RG, "ResourceGroups_CreateOrUpdate", RESOURCES_VERSIONS, resources.put_resource_group),
    ("PATCH", _RG, "ResourceGroups_Update", RESOURCES_VERSIONS, resources.patch_resource_group),
    ("DELETE", _RG, "ResourceGroups_Delete", RESOURCES_VERSIONS, resources.delete_resource_group),
    ("GET", "/subscriptions/{subscriptionId}/operationresults/{operationId}", "ResourceGroups_DeleteStatus",
     RESOURCES_VERSIONS, resources.get_operation_result),
    # Microsoft.ManagedIdentity
    ("GET", "/providers/Microsoft.ManagedIdentity/operations", "Operations_List", MSI_VERSIONS,
     msi.list_operations),
    ("GET", "/subscriptions/{subscriptionId}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
     "UserAssignedIdentities_ListBySubscription", MSI_VERSIONS, msi.list_by_subscription),
    ("GET", _MSI_RG + "/userAssignedIdentities", "UserAssignedIdentities_ListByResourceGroup", MSI_VERSIONS,
     msi.list_by_resource_group),
    ("GET", _UAMI, "UserAssignedIdentities_Get", MSI_VERSIONS, msi.get_identity),
    ("PUT", _UAMI, "UserAssignedIdentities_CreateOrUpdate", MSI_VERSIONS, msi.put_identity),
    ("PATCH", _UAMI, "UserAssignedIdentities_Update", MSI_VERSIONS, msi.patch_identity),
    ("DELETE", _UAMI, "UserAssignedIdentities_Delete", MSI_VERSIONS, msi.delete_identity),
    ("GET", _FICS, "FederatedIdentityCredentials_List", FIC_VERSIONS, msi.list_fics),
    ("GET", _FICS + "/{federatedIdentityCredentialResourceName}", "FederatedIdentityCredentials_Get",
     FIC_VERSIONS, msi.get_fic),
    ("PUT", _FICS + "/{federatedIdentityCredentialResourceName}", "FederatedIdentityCredentials_CreateOrUpdate",
     FIC_VERSIONS, msi.put_fic),
    ("DELETE", _FICS + "/{federatedIdentityCredentialResourceName}", "FederatedIdentityCredentials_Delete",
     FIC_VERSIONS, msi.delete_fic),
    # Microsoft.Authorization
    ("GET", "/subscriptions/{subscriptionId}" + _AUTHZ + "/roleAssignments", "RoleAssignments_ListForSubscription",
     ROLE_ASSIGNMENT_VERSIONS, role_assignments.list_role_assignments),
    ("GET", _RG + _AUTHZ + "/roleAssignments", "RoleAssignments_ListForResourceGroup", ROLE_ASSIGNMENT_VERSIONS,
     role_assignments.list_role_assignments),
    ("GET", _RG + "/providers/{resourcePath*}" + _AUTHZ + "/roleAssignments", "RoleAssignments_ListForResource",
     ROLE_ASSIGNMENT_VERSIONS, role_assignments.list_role_assignments),
    ("GET", "{scope*}" + _AUTHZ + "/roleAssignments", "RoleAssignments_ListForScope", ROLE_ASSIGNMENT_VERSIONS,
     role_assignments.list_role_assignments),
    ("GET", "{scope*}" + _AUTHZ + "/roleAssignments/{roleAssignmentName}", "RoleAssignments_Get",
     ROLE_ASSIGNMENT_VERSIONS, role_assignments.get_role_assignment),
    ("PUT", "{scope*}" + _AUTHZ + "/roleAssignments/{roleAssignmentName}", "RoleAssignments_Create",
     ROLE_ASSIGNMENT_VERSIONS, role_assignments.put_role_assignment),
    ("DELETE", "{scope*}" + _AUTHZ + "/roleAssignments/{roleAssignmentName}", "RoleAssignments_Delete",
     ROLE_ASSIGNMENT_VERSIONS, role_assignments.delete_role_assignment),
    ("GET", "{scope*}" + _AUTHZ + "/roleDefinitions", "RoleDefinitions_List", ROLE_DEFINITION_VERSIONS,
     role_definitions.list_role_definitions),
    ("GET", "{scope*}" + _AUTHZ + "/roleDefinitions/{roleDefinitionId}", "RoleDefinitions_Get",
     ROLE_DEFINITION_VERSIONS, role_definitions.get_role_definition),
    ("PUT", "{scope*}" + _AUTHZ + "/roleDefinitions/{roleDefinitionId}", "RoleDefinitions_CreateOrUpdate",
     ROLE_DEFINITION_VERSIONS, role_definitions.put_role_definition),
    ("DELETE", "{scope*}" + _AUTHZ + "/roleDefinitions/{roleDefinitionId}", "RoleDefinitions_Delete",
     ROLE_DEFINITION_VERSIONS, role_definitions.delete_role_definition),
    ("GET", "{scope*}" + _AUTHZ + "/denyAssignments", "DenyAssignments_ListForScope", DENY_ASSIGNMENT_VERSIONS,
     authz.list_deny_assignments),
    ("GET", _RG + _AUTHZ + "/permissions", "Permissions_ListForResourceGroup", PERMISSION_VERSIONS,
     authz.list_permissions),
    ("GET", _RG + "/providers/{resourcePath*}" + _AUTHZ + "/permissions", "Permissions_ListForResource",
     PERMISSION_VERSIONS, authz.list_permissions),
]

ROUTES: tuple[Route, ...] = tuple(Route(m, t, op, v, h, _compile(t)) for m, t, op, v, h in _TABLE)

# operationIds served under another route's wire path (identical URL shape); the spec names both.
ALIASES = {
    "RoleAssignments_GetById": "RoleAssignments_Get",
    "RoleAssignments_CreateById": "RoleAssignments_Create",
    "RoleAssignments_DeleteById": "RoleAssignments_Delete",
    "RoleDefinitions_GetById": "RoleDefinitions_Get",
}


def match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = []
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
        allowed.append(route.method)
    if allowed:
        raise ArmError(405, "MethodNotAllowed",
                       f"The sandbox does not implement {method} on '{path}'; it implements "
                       f"{', '.join(sorted(set(allowed)))} there.")
    raise ArmError(400, "NotImplementedInSandbox",
                   f"The sandbox does not implement {method} '{path}'. See docs/sandbox.md for the operations "
                   "it emulates.")


def check_api_version(route: Route, api_version: str | None) -> str:
    if api_version is None or api_version == "":
        raise ArmError(400, "MissingApiVersionParameter",
                       "The api-version query parameter (?api-version=) is required for all requests.")
    if api_version.lower() not in route.api_versions:
        raise ArmError(400, "InvalidApiVersionParameter",
                       f"The api-version '{api_version}' is invalid. The supported versions are "
                       f"'{','.join(route.api_versions)}'.")
    return api_version.lower()
