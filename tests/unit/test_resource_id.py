"""ResourceId: any keyword casing in, one canonical form out, clear errors (no I/O)."""

from __future__ import annotations

import pytest

from reconciler.resource_id import IDENTITY_TYPE, ResourceId, ResourceIdError, scope_key

SUB = "11111111-1111-1111-1111-111111111111"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/rg-pay/providers/Microsoft.ManagedIdentity/userAssignedIdentities/api"


@pytest.mark.parametrize("text", [
    IDENTITY,
    IDENTITY.upper().replace(SUB.upper(), SUB).replace("RG-PAY", "rg-pay").replace("/API", "/api"),
    IDENTITY.lower(),
    IDENTITY + "/",
    f"  {IDENTITY}  ",
])
def test_any_keyword_casing_parses_to_one_canonical_form(text: str) -> None:
    rid = ResourceId.parse(text)
    assert rid.subscription == SUB
    assert rid.resource_group is not None and rid.resource_group.lower() == "rg-pay"
    assert rid.provider is not None and rid.provider.lower() == "microsoft.managedidentity"
    assert rid.is_type(IDENTITY_TYPE)
    assert rid.name is not None and rid.name.lower() == "api"
    assert rid.level == "resource"
    assert rid == ResourceId.parse(IDENTITY) and hash(rid) == hash(ResourceId.parse(IDENTITY))
    assert str(rid).lower() == IDENTITY.lower() == rid.key == scope_key(text)
    assert "/subscriptions/" in str(rid) and "/resourceGroups/" in str(rid) and "/providers/" in str(rid)


def test_activity_log_casing_keeps_names_as_written() -> None:
    rid = ResourceId.parse(f"/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/RG-Data")
    assert str(rid) == f"/subscriptions/{SUB}/resourceGroups/RG-Data"
    assert rid.level == "resourceGroup"


def test_levels_and_parents() -> None:
    child = ResourceId.parse(f"{IDENTITY}/federatedIdentityCredentials/gh")
    assert child.type == f"{IDENTITY_TYPE}/federatedIdentityCredentials"
    assert child.parent == ResourceId.parse(IDENTITY)
    assert ResourceId.parse(IDENTITY).parent == ResourceId.parse(f"/subscriptions/{SUB}/resourceGroups/rg-pay")
    assert ResourceId.parse(f"/subscriptions/{SUB}/resourceGroups/rg-pay").parent == ResourceId.parse(
        f"/subscriptions/{SUB}")
    assert ResourceId.parse(f"/subscriptions/{SUB}").level == "subscription"
    assert ResourceId.parse(f"/subscriptions/{SUB}").parent == ResourceId.parse("/")
    assert ResourceId.parse("/").level == "tenant" and ResourceId.parse("/").parent is None
    mg = ResourceId.parse("/providers/Microsoft.Management/managementGroups/root-mg")
    assert mg.level == "managementGroup" and mg.name == "root-mg"
    role = ResourceId.parse(f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/abc")
    assert role.level == "resource" and role.resource_group is None and role.name == "abc"
    extension = ResourceId.parse(f"{IDENTITY}/providers/Microsoft.Authorization/roleAssignments/x")
    assert extension.type == "Microsoft.Authorization/roleAssignments"
    assert extension.parent == ResourceId.parse(IDENTITY)


def test_identity_constructor_matches_parse() -> None:
    assert str(ResourceId.identity(SUB, "rg-pay", "api")) == IDENTITY


@pytest.mark.parametrize(("text", "says"), [
    ("subscriptions/x", "must start with '/'"),
    (f"/subscriptions/{SUB}//resourceGroups/rg", "empty segment"),
    (f"/subscriptions/{SUB}/resourceGroup/rg", "'resourceGroup' where 'resourceGroups' or 'providers'"),
    (f"/subscriptions/{SUB}/resourceGroups", "must be followed by a name"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
     "'userAssignedIdentities' has no name"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers", "must be followed by a namespace"),
])
def test_errors_name_the_whole_id_and_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ResourceIdError) as caught:
        ResourceId.parse(text)
    assert text.strip() in str(caught.value) and says in str(caught.value)
    assert "trailing slash" in caught.value.hint
    assert ResourceId.try_parse(text) is None


@pytest.mark.parametrize(("path", "collection"), [
    (f"/subscriptions/{SUB}/resourcegroups", "resourceGroups"),
    (f"/subscriptions/{SUB}/locations", "locations"),
    (f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
     "userAssignedIdentities"),
    (f"{IDENTITY}/federatedIdentityCredentials", "federatedIdentityCredentials"),
    ("/providers/Microsoft.Authorization/roleDefinitions", "roleDefinitions"),
    (IDENTITY, None),
])
def test_request_paths_name_an_id_and_maybe_a_collection(path: str, collection: str | None) -> None:
    parsed = ResourceId.of_request_path(path)
    assert parsed is not None and parsed[1] == collection
