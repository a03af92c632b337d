"""Building a directory through the sandbox's Graph API: users, groups, applications and their service
principals, memberships; and the objects it creates are the ones ARM's role assignments see."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from reconciler.sandbox import SandboxServer

from .conftest import READER, RG, SUB, Clients, clients
from .graphapi import DOMAIN, add_member, create_app_and_sp, create_group, create_user, g, ok


def _user_body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {"accountEnabled": True, "displayName": "Dora", "mailNickname": "dora",
                               "userPrincipalName": f"dora@{DOMAIN}", "passwordProfile": {"password": "p4ss!Word"}}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_create_user_answers_201_and_refuses_what_graph_refuses(srv: SandboxServer) -> None:
    r = g(srv, "POST", "/users", _user_body())
    assert r.status == 201 and r.body["@odata.context"] == f"{srv.url}/v1.0/$metadata#users/$entity"
    assert r.body["userPrincipalName"] == f"dora@{DOMAIN}"
    dup = g(srv, "POST", "/users", _user_body(userPrincipalName=f"DORA@{DOMAIN}", mailNickname="dora2"))
    assert dup.status == 400 and dup.body["error"]["code"] == "Request_BadRequest"
    assert dup.body["error"]["message"] == ("Another object with the same value for property userPrincipalName "
                                            "already exists.")
    assert dup.body["error"]["details"] == [{"target": "userPrincipalName", "code": "ObjectConflict"}]
    for body, message in [
        (_user_body(mailNickname=None), "Property mailNickname value is required but is empty or missing."),
        (_user_body(passwordProfile=None), "A password must be specified to create a new user."),
        (_user_body(mailNickname="has space"), "Invalid value specified for property 'mailNickname' of resource "
                                               "'User'."),
        (_user_body(userPrincipalName="x@contoso.com"), None),
        (_user_body(userPrincipalName="no-at-sign"), None),
    ]:
        r = g(srv, "POST", "/users", body)
        assert (r.status, r.body["error"]["code"]) == (400, "Request_BadRequest"), body
        assert message is None or r.body["error"]["message"] == message
    bad_json = g(srv, "POST", "/users", "not an object")
    assert bad_json.status == 400


def test_groups_members_and_their_errors(srv: SandboxServer) -> None:
    bob = create_user(srv, "bob")
    group = create_group(srv, "sg-readers")
    assert group["securityEnabled"] is True and group["groupTypes"] == [] and group["mailNickname"] == "sg-readers"
    r = g(srv, "POST", "/groups", {"displayName": "x", "mailEnabled": False, "mailNickname": "a.b",
                                   "securityEnabled": True})
    assert r.body["error"]["message"] == "Invalid value specified for property 'mailNickname' of resource 'Group'."
    assert g(srv, "POST", "/groups", {"displayName": "x", "mailNickname": "x"}).status == 400
    assert add_member(srv, group["id"], bob["id"]).status == 204
    again = add_member(srv, group["id"], bob["id"])
    assert (again.status, again.body["error"]["message"]) == (
        400, "One or more added object references already exist for the following modified properties: 'members'.")
    assert add_member(srv, group["id"], "99999999-9999-9999-9999-999999999999").status == 404
    assert add_member(srv, "99999999-9999-9999-9999-999999999999", bob["id"]).status == 404
    bound = ok(g(srv, "POST", "/groups", {
        "displayName": "sg-bound", "mailEnabled": False, "mailNickname": "bound", "securityEnabled": True,
        "members@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{bob['id']}"]}), 201)
    assert [m["id"] for m in ok(g(srv, "GET", f"/groups/{bound['id']}/members"))["value"]] == [bob["id"]]


def test_applications_and_service_principals(srv: SandboxServer) -> None:
    app = ok(g(srv, "POST", "/applications", {"displayName": "orders", "identifierUris": ["api://orders"]}), 201)
    assert app["@odata.context"] == f"{srv.url}/v1.0/$metadata#applications/$entity"
    assert app["appId"] != app["id"] and app["identifierUris"] == ["api://orders"]
    assert ok(g(srv, "GET", f"/applications/{app['id']}"))["appId"] == app["appId"]
    dup_uri = g(srv, "POST", "/applications", {"displayName": "x", "identifierUris": ["API://orders"]})
    assert dup_uri.status == 400
    sp = ok(g(srv, "POST", "/servicePrincipals", {"appId": app["appId"]}), 201)
    assert (sp["appId"], sp["displayName"], sp["appDisplayName"], sp["servicePrincipalType"]) == (
        app["appId"], "orders", "orders", "Application")
    assert sp["servicePrincipalNames"] == [app["appId"], "api://orders"]
    assert ok(g(srv, "GET", f"/servicePrincipals(appId='{app['appId']}')"))["id"] == sp["id"]
    again = g(srv, "POST", "/servicePrincipals", {"appId": app["appId"]})
    assert (again.status, again.body["error"]["code"]) == (409, "Request_MultipleObjectsWithSameKeyValue")
    orphan = g(srv, "POST", "/servicePrincipals", {"appId": "99999999-9999-9999-9999-999999999999"})
    assert (orphan.status, orphan.body["error"]["code"]) == (400, "Request_BadRequest")


def test_graph_objects_are_the_principals_arm_assigns_roles_to(srv: SandboxServer, c: Clients) -> None:
    """A group and member built through Graph: ARM accepts the group as a principal and the member
    inherits the group's role, so the two APIs share one directory."""
    bob = create_user(srv, "bob")
    group = create_group(srv, "sg-identity-admins")
    ok(add_member(srv, group["id"], bob["id"]), 204)
    scope = f"/subscriptions/{SUB}/resourceGroups/{RG}"
    bob_arm = clients(srv, token=srv.token_for(bob["id"]), retry_total=0)
    with pytest.raises(HttpResponseError) as denied:
        list(bob_arm.msi.user_assigned_identities.list_by_resource_group(RG))
    assert denied.value.status_code == 403
    created = c.auth.role_assignments.create(scope, "c0000000-0000-4000-8000-0000000000a1", {
        "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
        "principal_id": group["id"]})
    assert created.principal_type == "Group"
    assert list(bob_arm.msi.user_assigned_identities.list_by_resource_group(RG)) == []
    _, sp = create_app_and_sp(srv, "app-with-role")
    assigned = c.auth.role_assignments.create(scope, "c0000000-0000-4000-8000-0000000000a2", {
        "role_definition_id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}",
        "principal_id": sp["id"]})
    assert assigned.principal_type == "ServicePrincipal"
