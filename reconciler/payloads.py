"""Typed values of the managed fields of each kind of resource: what a Change's `before` and
`after` hold, built by the planner and read by the applier, checked by mypy in between.

One pair of functions turns them into the plan JSON's objects and back (`to_fields`,
`from_fields`); the JSON keeps its names and key order, so plans read the same as before.
Values are frozen and slotted: a plan at estate scale holds tens of thousands of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class IdentityValue:
    """A user-assigned identity; names as declared (after) or as ARM has them (before)."""

    subscription: str
    resource_group: str
    name: str
    location: str
    tags: Mapping[str, str]
    id: str | None = None
    principal_id: str | None = None
    client_id: str | None = None

    def parts(self) -> tuple[str, str, str]:
        return self.subscription, self.resource_group, self.name


@dataclass(frozen=True, slots=True)
class FederatedCredentialValue:
    identity: str  # the identity's name
    name: str
    issuer: str
    subject: str
    audiences: tuple[str, ...]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class RoleAssignmentValue:
    scope: str
    role_definition_id: str  # the role's GUID
    role_name: str
    # {"identity": address} or {"objectId": id}, plus the directory's display keys when known
    principal: Mapping[str, str]
    principal_id: str | None = None
    principal_type: str | None = None
    description: str | None = None
    condition: str | None = None
    condition_version: str | None = None
    name: str | None = None
    id: str | None = None


Payload = IdentityValue | FederatedCredentialValue | RoleAssignmentValue

# JSON name -> attribute, in the JSON's key order (which plan files and golden files fix).
_IDENTITY_KEYS = {"id": "id", "subscription": "subscription", "resourceGroup": "resource_group", "name": "name",
                  "location": "location", "tags": "tags", "principalId": "principal_id", "clientId": "client_id"}
_FIC_KEYS = {"id": "id", "identity": "identity", "name": "name", "issuer": "issuer", "subject": "subject",
             "audiences": "audiences"}
_RA_KEYS = {"id": "id", "name": "name", "scope": "scope", "roleDefinitionId": "role_definition_id",
            "roleName": "role_name", "principalId": "principal_id", "principal": "principal",
            "principalType": "principal_type", "description": "description", "condition": "condition",
            "conditionVersion": "condition_version"}
_KEYS: dict[type[Any], dict[str, str]] = {
    IdentityValue: _IDENTITY_KEYS, FederatedCredentialValue: _FIC_KEYS, RoleAssignmentValue: _RA_KEYS}
_BY_KIND: dict[str, type[Payload]] = {
    "identity": IdentityValue, "federatedCredential": FederatedCredentialValue, "roleAssignment": RoleAssignmentValue}


def to_fields(value: Payload) -> dict[str, Any]:
    """The plan JSON's object for a value (a fresh dict: callers may change it)."""
    out = {key: getattr(value, attr) for key, attr in _KEYS[type(value)].items()}
    if "tags" in out:
        out["tags"] = dict(out["tags"])
    if "principal" in out:
        out["principal"] = dict(out["principal"])
    if "audiences" in out:
        out["audiences"] = list(out["audiences"])
    return out


def from_fields(kind: str, data: Mapping[str, Any]) -> Payload:
    """The value of a plan JSON object of resource type `kind`. Raises ValueError naming what
    is missing or malformed (a hand-edited plan file), never KeyError."""
    cls = _BY_KIND.get(kind)
    if cls is None:
        raise ValueError(f"unknown resource type {kind!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"the {kind} fields must be an object")
    keys = _KEYS[cls]
    required = {f.name for f in fields(cls) if f.default is MISSING}
    values: dict[str, Any] = {}
    for key, attr in keys.items():
        if key in data:
            values[attr] = data[key]
        elif attr in required:
            raise ValueError(f"the {kind} fields lack {key!r}")
    if "audiences" in values:
        values["audiences"] = tuple(values["audiences"])
    for attr in ("tags", "principal"):
        if attr in values and not isinstance(values[attr], Mapping):
            raise ValueError(f"the {kind} field {attr!r} must be an object")
    return cls(**values)


P = TypeVar("P", IdentityValue, FederatedCredentialValue, RoleAssignmentValue)


def expect(value: Payload | None, cls: type[P]) -> P:
    """`value` as a `cls`: a change of one type holds values of that type (the planner builds
    them so and `from_fields` reads them so); anything else is a bug, said as one."""
    if not isinstance(value, cls):
        raise TypeError(f"expected a {cls.__name__}, found {type(value).__name__}")
    return value
