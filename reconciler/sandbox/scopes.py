"""ARM scope strings: normalising, parsing and the at/above/below relations RBAC needs.

ARM compares scopes case-insensitively and segment by segment, so "/subscriptions/a/resourceGroups/rg"
is above "/subscriptions/a/resourcegroups/RG/providers/X/y/z" but not above ".../rg2".
"""

from __future__ import annotations

from dataclasses import dataclass


def normalize(scope: str) -> str:
    """Leading slash, no trailing slash, no empty segments; "/" stays "/". Case is preserved."""
    parts = [p for p in scope.split("/") if p]
    return "/" + "/".join(parts)


def key(scope: str) -> str:
    """Case-folded form used for comparisons and store keys."""
    return normalize(scope).lower()


def is_at_or_above(outer: str, inner: str) -> bool:
    a, b = key(outer), key(inner)
    return a == "/" or a == b or b.startswith(a + "/")


@dataclass(frozen=True)
class ParsedScope:
    """The parts of a scope the sandbox validates: subscription, resource group, resource path."""

    scope: str
    subscription_id: str | None
    resource_group: str | None
    resource_path: tuple[str, ...]  # segments after ".../providers/"; empty unless a resource

    @property
    def is_resource_group(self) -> bool:
        return self.resource_group is not None and not self.resource_path


def parse(scope: str) -> ParsedScope:
    parts = [p for p in scope.split("/") if p]
    sub = rg = None
    rest: list[str] = []
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        sub = parts[1]
        if len(parts) >= 4 and parts[2].lower() == "resourcegroups":
            rg = parts[3]
            if len(parts) > 5 and parts[4].lower() == "providers":
                rest = parts[5:]
    return ParsedScope(normalize(scope), sub, rg, tuple(rest))


def subscription_scope(subscription_id: str) -> str:
    return f"/subscriptions/{subscription_id}"


def resource_group_scope(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
