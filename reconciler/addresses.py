"""Stable, human-readable addresses of the things a plan changes.

An address is the same whether it was computed from a manifest or from live state, so it
is built only from natural keys in lower case (ARM compares them case-insensitively).
"""

from __future__ import annotations

from reconciler.model import IdentityKey, norm_scope, role_guid


def identity(key: IdentityKey) -> str:
    return f"identity/{key.subscription}/{key.resource_group}/{key.name}"


def federated_credential(key: IdentityKey, name: str) -> str:
    return f"{identity(key)}/federatedCredential/{name.lower()}"


def principal(identity_key: IdentityKey | None, object_id: str | None) -> str:
    if identity_key is not None:
        return f"identity:{identity_key.subscription}/{identity_key.resource_group}/{identity_key.name}"
    assert object_id is not None
    return object_id.lower()


def role_assignment(scope: str, role_definition: str, principal_address: str) -> str:
    return f"roleAssignment[{norm_scope(scope)}|{role_guid(role_definition)}|{principal_address}]"
