"""The request and reply records passed between app.py, routes.py and the provider handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conditions import Attributes
from .tokens import Caller

if TYPE_CHECKING:
    from .backend import Backend


@dataclass
class Call:
    """One routed ARM request, already authenticated and api-version checked."""

    method: str
    path: str  # as received (still percent-encoded), for nextLinks
    params: dict[str, str]  # named path parameters, decoded
    query: dict[str, str]  # lower-cased names, decoded values
    query_items: list[tuple[str, str]]  # original names and order, decoded values
    body: Any
    api_version: str
    caller: Caller
    backend: Backend
    base_url: str  # scheme://host:port the client used
    operation_id: str

    def authorize(self, action: str, scope: str, attributes: Attributes | None = None,
                  shown_scope: str | None = None) -> None:
        """`shown_scope` is the scope a 403 names when ARM names another one than it checks."""
        self.backend.authorize(self.caller, action, scope, attributes, shown_scope)

    def can(self, action: str, scope: str) -> bool:
        return self.backend.can(self.caller, action, scope)


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
