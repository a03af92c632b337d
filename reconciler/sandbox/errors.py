"""The one exception type that crosses the sandbox's HTTP boundary.

    ArmError(status, code, message, headers)   serialised by app.py as ARM's envelope
                                               {"error": {"code": ..., "message": ...}}

Handlers and domain code raise ArmError; app.py is the only place that turns it into bytes, so
every error the sandbox emits has the same shape as Azure Resource Manager's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


class ArmError(Exception):
    """An ARM error response: HTTP status, ARM error code and ARM's message text."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}}).encode()


def not_found_resource(resource_type: str, name: str, resource_group: str) -> ArmError:
    # ARM's generic wording for a missing tracked resource (captured from azure-cli outputs).
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(resource_group: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{resource_group}' could not be found.")


def subscription_not_found(subscription_id: str) -> ArmError:
    return ArmError(404, "SubscriptionNotFound", f"The subscription '{subscription_id}' could not be found.")


def invalid_request_content(message: str) -> ArmError:
    # UNVERIFIED: ARM answers malformed bodies with 400 InvalidRequestContent; wording varies by RP.
    return ArmError(400, "InvalidRequestContent", message)
