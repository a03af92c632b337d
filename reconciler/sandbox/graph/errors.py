"""GraphError: the one exception a Graph handler raises; api.py renders Graph's envelope from it.

    {"error": {"code": ..., "message": ..., "innerError": {"date", "request-id", "client-request-id"}}}

(shared/GRAPH-FACTS.md §12). ARM's envelope has no innerError and different codes, so the two never mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        self.details = details


def bad_request(message: str, details: list[dict[str, Any]] | None = None) -> GraphError:
    return GraphError(400, "Request_BadRequest", message, details=details)


def not_found(key: str) -> GraphError:
    # Wording from microsoft-graph-docs-contrib issue 6431 (GRAPH-FACTS §12).
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{key}' does not exist or one of its queried reference-property objects are "
                      "not present.")


def unsupported_query(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def denied() -> GraphError:
    # Real 403 body quoted in Azure/azure-cli issue 27870 (GRAPH-FACTS §12).
    return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
