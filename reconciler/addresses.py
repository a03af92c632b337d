"""Stable, human-readable addresses of the things a plan changes.

An address is the same whether it was computed from a manifest or from live state, so it
is built only from natural keys in lower case (ARM compares them case-insensitively). It is a
key, not a name: what ARM is sent are the names in the change's payload, as declared.

    identity/{subscription}/{resourceGroup}/{name}
    identity/{subscription}/{resourceGroup}/{name}/federatedCredential/{credential}
    roleAssignment[{scope}|{role GUID}|{principal}]   principal: identity:{sub}/{rg}/{name} or an object id
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model import IdentityKey, norm_scope, role_guid

_FIC = "federatedCredential"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address; `str()` gives back its text. Fields a kind does not have are ""."""

    kind: str  # a ResourceType value: identity, federatedCredential or roleAssignment
    subscription: str = ""
    resource_group: str = ""
    identity_name: str = ""
    credential: str = ""
    scope: str = ""
    role: str = ""
    principal: str = ""

    @staticmethod
    def parse(text: str) -> Address:
        """Raises ValueError for text that is no address."""
        if text.startswith("roleAssignment[") and text.endswith("]"):
            parts = text[len("roleAssignment["):-1].split("|", 2)
            if len(parts) == 3:
                return Address("roleAssignment", scope=parts[0], role=parts[1], principal=parts[2])
        parts = text.split("/")
        if parts[0] == "identity" and len(parts) == 4 and all(parts[1:]):
            return Address("identity", parts[1], parts[2], parts[3])
        if parts[0] == "identity" and len(parts) == 6 and parts[4] == _FIC and all(parts[1:]):
            return Address(_FIC, parts[1], parts[2], parts[3], parts[5])
        raise ValueError(f"not a plan address: {text!r}")

    def __str__(self) -> str:
        if self.kind == "roleAssignment":
            return f"roleAssignment[{self.scope}|{self.role}|{self.principal}]"
        text = f"identity/{self.subscription}/{self.resource_group}/{self.identity_name}"
        return f"{text}/{_FIC}/{self.credential}" if self.kind == _FIC else text

    @property
    def identity(self) -> Address:
        """The address of the identity an identity or credential address belongs to."""
        if self.kind == "roleAssignment":
            raise ValueError(f"a role assignment belongs to no identity: {self}")
        return Address("identity", self.subscription, self.resource_group, self.identity_name)


def identity(key: IdentityKey) -> str:
    return str(Address("identity", key.subscription, key.resource_group, key.name))


def federated_credential(key: IdentityKey, name: str) -> str:
    return str(Address(_FIC, key.subscription, key.resource_group, key.name, name.lower()))


def principal(identity_key: IdentityKey | None, object_id: str | None) -> str:
    if identity_key is not None:
        return f"identity:{identity_key.subscription}/{identity_key.resource_group}/{identity_key.name}"
    assert object_id is not None
    return object_id.lower()


def role_assignment(scope: str, role_definition: str, principal_address: str) -> str:
    return str(Address("roleAssignment", scope=norm_scope(scope), role=role_guid(role_definition),
                       principal=principal_address))
