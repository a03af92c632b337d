"""Azure's public regions, from the sandbox's own copy of the list (locations.json beside this file;
the sandbox imports nothing from the reconciler core, so it does not share the core's copy).

ARM refuses a resource in a region it does not know, and lists regions per subscription with
`GET /subscriptions/{id}/locations` (Subscriptions_ListLocations). Both read this table.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from .errors import ArmError

IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"


@functools.cache
def regions() -> tuple[dict[str, str], ...]:
    raw = json.loads(resources.files("reconciler.sandbox").joinpath("locations.json").read_text("utf-8"))
    return tuple(raw)


@functools.cache
def _by_key() -> dict[str, str]:
    """Lower-case name or space-free display name -> canonical short name."""
    out = {}
    for region in regions():
        out[region["name"]] = region["name"]
        out[region["displayName"].replace(" ", "").lower()] = region["name"]
    return out


def canonical(location: str) -> str | None:
    """The short name of a known region ("West Europe" and "westeurope" are one), else None."""
    return _by_key().get(location.replace(" ", "").lower())


def _available() -> str:
    return ",".join(r["displayName"] for r in regions())


def not_available_for_type(location: str, resource_type: str) -> ArmError:
    # Code and wording from Azure/azure-rest-api-specs PR #8520 (a real identity PUT).
    return ArmError(400, "LocationNotAvailableForResourceType",
                    f"The provided location '{location}' is not available for resource type '{resource_type}'. "
                    f"List of available regions for the resource type is '{_available()}'.")


def not_available_for_resource_group(location: str) -> ArmError:
    # UNVERIFIED: code and wording of ARM's answer for a resource group in an unknown region.
    return ArmError(400, "LocationNotAvailableForResourceGroup",
                    f"The provided location '{location}' is not available for resource group. List of available "
                    f"regions is '{','.join(r['name'] for r in regions())}'.")


def render(subscription_id: str) -> list[dict[str, Any]]:
    """Subscriptions_ListLocations items (shape of the 2022-12-01 Location model and real `az account
    list-locations` output)."""
    out = []
    for r in regions():
        out.append({
            "id": f"/subscriptions/{subscription_id}/locations/{r['name']}",
            "name": r["name"],
            "type": "Region",
            "displayName": r["displayName"],
            "regionalDisplayName": r["regionalDisplayName"],
            "metadata": {"regionType": "Physical", "regionCategory": "Recommended",
                         "geography": r["geography"], "geographyGroup": r["geographyGroup"]},
        })
    return out
