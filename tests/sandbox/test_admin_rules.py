"""The last RBAC admin assignment of a subscription, and role assignments left at a deleted group."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer

from .conftest import GROUP, OWNER, READER, RG, SUB, USER, Clients, clients, raw

SUB_SCOPE = f"/subscriptions/{SUB}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RG}"
UAA = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"


def grant(c: Clients, scope: str, role: str, name: str, principal: str = USER) -> None:
    c.auth.role_assignments.create(scope, name, {
        "role_definition_id": f"{SUB_SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}",
        "principal_id": principal})


def admin_owner_id(c: Clients, srv: SandboxServer) -> str:
    (owner,) = [a for a in c.auth.role_assignments.list_for_subscription(filter="atScope()")
                if a.principal_id == srv.admin_object_id and a.role_definition_id.endswith(OWNER)]
    assert owner.id is not None
    owner_id: str = owner.id  # the multi-API AuthorizationManagementClient is untyped
    return owner_id


def test_the_last_owner_of_a_subscription_cannot_be_deleted(srv: SandboxServer, c: Clients) -> None:
    owner = admin_owner_id(c, srv)
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.delete_by_id(owner)
    assert err.value.error is not None
    assert (err.value.status_code, err.value.error.code) == (412, "CannotDeleteLastRbacAdminAssignment")
    assert err.value.error.message == "Cannot delete the last RBAC admin assignment"
    # Owner at a resource group is not subscription-level: deleting it is fine.
    grant(c, RG_SCOPE, OWNER, "f0000000-0000-4000-8000-000000000001")
    c.auth.role_assignments.delete(RG_SCOPE, "f0000000-0000-4000-8000-000000000001")
    # With another RBAC admin at the subscription (User Access Administrator of a group the admin is in),
    # the admin's Owner may go; then the group's is the last one.
    srv.add_group_member(GROUP, srv.admin_object_id)
    grant(c, SUB_SCOPE, UAA, "f0000000-0000-4000-8000-000000000002", principal=GROUP)
    assert c.auth.role_assignments.delete_by_id(owner) is not None
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.delete(SUB_SCOPE, "f0000000-0000-4000-8000-000000000002")
    assert err.value.error is not None
    assert err.value.error.code == "CannotDeleteLastRbacAdminAssignment"


def test_role_assignments_at_a_deleted_group_stay_as_orphans(srv: SandboxServer, c: Clients) -> None:
    c.res.resource_groups.create_or_update("rg-gone", {"location": "westus"})
    scope = f"{SUB_SCOPE}/resourceGroups/rg-gone"
    grant(c, scope, READER, "f0000000-0000-4000-8000-000000000003")
    assert raw(srv, "DELETE", f"{SUB_SCOPE}/resourcegroups/rg-gone?api-version=2021-04-01").status == 202
    # The subscription list still shows the orphan; the group's own scope answers ResourceGroupNotFound.
    assert [a.scope for a in c.auth.role_assignments.list_for_subscription(filter=f"principalId eq '{USER}'")] \
        == [scope]
    with pytest.raises(HttpResponseError) as err:
        c.auth.role_assignments.delete(scope, "f0000000-0000-4000-8000-000000000003")
    assert err.value.error is not None
    assert (err.value.status_code, err.value.error.code) == (404, "ResourceGroupNotFound")
    # A group re-created under the same name finds the assignment again, and it grants again.
    c.res.resource_groups.create_or_update("rg-gone", {"location": "westus"})
    user = clients(srv, token=srv.token_for(USER), retry_total=0)
    assert user.res.resource_groups.get("rg-gone").name == "rg-gone"
    c.auth.role_assignments.delete(scope, "f0000000-0000-4000-8000-000000000003")
