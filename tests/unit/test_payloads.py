"""Typed plan payloads and addresses: one serialisation each way, and addresses that parse back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import addresses
from reconciler.addresses import Address
from reconciler.model import IdentityKey
from reconciler.payloads import (
    FederatedCredentialValue,
    IdentityValue,
    RoleAssignmentValue,
    expect,
    from_fields,
    to_fields,
)

SUB = "11111111-1111-1111-1111-111111111111"
KEY = IdentityKey.of(SUB, "RG-Pay", "Payments-API")


def test_values_serialise_in_the_plan_json_order_and_read_back() -> None:
    identity = IdentityValue(SUB, "RG-Pay", "Payments-API", "westeurope", {"a": "1"}, principal_id="p")
    assert list(to_fields(identity)) == ["id", "subscription", "resourceGroup", "name", "location", "tags",
                                         "principalId", "clientId"]
    fic = FederatedCredentialValue("Payments-API", "gh", "https://i", "s", ("api://x",))
    assert to_fields(fic)["audiences"] == ["api://x"]  # a JSON list, as plans always had
    grant = RoleAssignmentValue("/subscriptions/s", "guid", "Reader", {"identity": "identity/s/rg/x"})
    assert list(to_fields(grant)) == ["id", "name", "scope", "roleDefinitionId", "roleName", "principalId",
                                      "principal", "principalType", "description", "condition", "conditionVersion"]
    for value, kind in ((identity, "identity"), (fic, "federatedCredential"), (grant, "roleAssignment")):
        assert from_fields(kind, json.loads(json.dumps(to_fields(value)))) == value


def test_malformed_fields_are_value_errors_that_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="the roleAssignment fields lack 'scope'"):
        from_fields("roleAssignment", {"roleDefinitionId": "g", "roleName": "r", "principal": {}})
    with pytest.raises(ValueError, match="the identity field 'tags' must be an object"):
        from_fields("identity", {"subscription": "s", "resourceGroup": "r", "name": "n", "location": "l",
                                 "tags": ["x"]})
    with pytest.raises(ValueError, match="unknown resource type 'vm'"):
        from_fields("vm", {})
    with pytest.raises(TypeError, match="expected a IdentityValue, found RoleAssignmentValue"):
        expect(RoleAssignmentValue("/s", "g", "r", {}), IdentityValue)


def test_addresses_are_lower_cased_keys_that_parse_back() -> None:
    fic = addresses.federated_credential(KEY, "GitHub-Main")
    assert fic == f"identity/{SUB}/rg-pay/payments-api/federatedCredential/github-main"
    parsed = Address.parse(fic)
    assert (parsed.kind, parsed.resource_group, parsed.identity_name, parsed.credential) == (
        "federatedCredential", "rg-pay", "payments-api", "github-main")
    assert str(parsed.identity) == addresses.identity(KEY)
    grant = addresses.role_assignment(f"/subscriptions/{SUB}/", "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                                      addresses.principal(KEY, None))
    assert Address.parse(grant).principal == f"identity:{SUB}/rg-pay/payments-api"
    for text in (fic, grant, addresses.identity(KEY)):
        assert str(Address.parse(text)) == text
    for bad in ("identity/x", "identity/a/b/c/federatedCredential", "roleAssignment[a|b]", "vm/a/b/c"):
        with pytest.raises(ValueError, match="not a plan address"):
            Address.parse(bad)


@given(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True), st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True))
def test_any_credential_address_round_trips(name: str, credential: str) -> None:
    text = addresses.federated_credential(IdentityKey.of(SUB, "rg", name), credential)
    assert str(Address.parse(text)) == text
