"""Who may call the sandbox's Graph API: Graph's audience, directory roles, throttling, and the
`sandbox token --resource` command."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from reconciler.sandbox import SandboxServer, tokens
from reconciler.sandbox.cli import sandbox_app
from reconciler.sandbox.graph import GRAPH_AUDIENCE

from .conftest import RG, SUB, Clients, raw
from .graphapi import DOMAIN, create_app_and_sp, create_group, g, graph_token, ok

DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
DIRECTORY_WRITERS = "9360feb5-f418-4baa-8175-e2a00bac4301"


def test_graph_wants_a_graph_token_and_arm_an_arm_token(srv: SandboxServer) -> None:
    arm_token = srv.admin_token()
    r = g(srv, "GET", "/users", token=arm_token)
    assert r.status == 401
    assert r.body["error"]["code"] == "InvalidAuthenticationToken"
    assert r.body["error"]["message"] == "Access token validation failure. Invalid audience."
    assert "request-id" in r.body["error"]["innerError"]
    # ...and ARM refuses a Graph token with its own envelope.
    r = raw(srv, "GET", f"/subscriptions/{SUB}?api-version=2022-12-01", token=graph_token(srv))
    assert (r.status, r.body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert "wrong audience" in r.body["error"]["message"]
    assert g(srv, "GET", "/users", token=tokens.issue(srv.admin_object_id, srv.tenant_id,
                                                      audience=GRAPH_AUDIENCE + "/")).status == 200
    expired = tokens.issue(srv.admin_object_id, srv.tenant_id, audience=GRAPH_AUDIENCE, lifetime=60,
                           now=time.time() - 3600)
    for token, message in [(expired, "Lifetime validation failed, the token is expired."),
                           ("not-a-jwt", "CompactToken parsing failed with error code: 80049217")]:
        r = g(srv, "GET", "/users", token=token)
        assert (r.status, r.body["error"]["message"]) == (401, message)
    r = raw(srv, "GET", "/v1.0/users", token=None)
    assert (r.status, r.body["error"]["message"]) == (401, "Access token is empty.")


def test_service_principals_need_a_directory_role_users_read_by_default(srv: SandboxServer, c: Clients) -> None:
    srv.configure(replication_delay_seconds=0)
    identity = c.msi.user_assigned_identities.create_or_update(RG, "id-reader", {"location": "westus"})
    mi = graph_token(srv, identity.principal_id)
    denied = g(srv, "GET", "/groups?$filter=displayName eq 'team'", token=mi)
    assert (denied.status, denied.body["error"]["code"], denied.body["error"]["message"]) == (
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    assert g(srv, "POST", "/directoryObjects/getByIds", {"ids": [identity.principal_id]}, token=mi).status == 403
    # Only a privileged role administrator (the admin) may grant directory roles.
    grant = {"principalId": identity.principal_id, "roleDefinitionId": DIRECTORY_READERS, "directoryScopeId": "/"}
    assert g(srv, "POST", "/roleManagement/directory/roleAssignments", grant, token=mi).status == 403
    assignment = ok(g(srv, "POST", "/roleManagement/directory/roleAssignments", grant), 201)
    assert assignment["principalId"] == identity.principal_id
    assert g(srv, "POST", "/roleManagement/directory/roleAssignments", grant).status == 400  # already held
    assert ok(g(srv, "GET", "/groups?$filter=displayName eq 'team'", token=mi))["value"][0]["displayName"] == "team"
    # Directory Readers reads but does not write.
    assert g(srv, "POST", "/groups", {"displayName": "x", "mailEnabled": False, "mailNickname": "x",
                                      "securityEnabled": True}, token=mi).status == 403
    listed = ok(g(srv, "GET", f"/roleManagement/directory/roleAssignments?$filter=principalId eq "
                              f"'{identity.principal_id}'"))
    assert [a["id"] for a in listed["value"]] == [assignment["id"]]
    assert g(srv, "DELETE", f"/roleManagement/directory/roleAssignments/{assignment['id']}").status == 204
    assert g(srv, "GET", "/groups", token=mi).status == 403
    # A member user reads the directory with no role (Entra's default user permissions) but cannot create.
    bob = ok(g(srv, "POST", "/users", {"accountEnabled": True, "displayName": "bob", "mailNickname": "bob",
                                       "userPrincipalName": f"bob@{DOMAIN}", "passwordProfile": {"password": "x"}}),
             201)
    as_bob = graph_token(srv, bob["id"])
    assert g(srv, "GET", "/servicePrincipals", token=as_bob).status == 200
    assert g(srv, "POST", "/applications", {"displayName": "x"}, token=as_bob).status == 403
    ok(g(srv, "POST", "/roleManagement/directory/roleAssignments",
         {"principalId": bob["id"], "roleDefinitionId": DIRECTORY_WRITERS, "directoryScopeId": "/"}), 201)
    assert g(srv, "POST", "/groups", {"displayName": "by-bob", "mailEnabled": False, "mailNickname": "bybob",
                                      "securityEnabled": True}, token=as_bob).status == 201
    unknown_role = dict(grant, roleDefinitionId="99999999-9999-9999-9999-999999999999")
    assert g(srv, "POST", "/roleManagement/directory/roleAssignments", unknown_role).status == 404
    # Deleting the identity deletes its service principal, and its directory roles with it.
    ok(g(srv, "POST", "/roleManagement/directory/roleAssignments", grant), 201)
    assert g(srv, "GET", "/groups", token=mi).status == 200
    c.msi.user_assigned_identities.delete(RG, "id-reader")
    assert g(srv, "GET", "/groups", token=mi).status == 403
    remaining = ok(g(srv, "GET", "/roleManagement/directory/roleAssignments"))["value"]
    assert [(a["principalId"], a["roleDefinitionId"]) for a in remaining] == [(bob["id"], DIRECTORY_WRITERS)]


def test_graph_throttles_by_resource_units_with_retry_after(srv: SandboxServer) -> None:
    srv.configure(graph_units_capacity=5, graph_units_window_seconds=3600)
    first = g(srv, "GET", "/users")  # GET users costs 2 units
    assert first.status == 200 and first.headers["x-ms-resource-unit"] == "2"
    assert g(srv, "GET", "/users?$select=id").headers["x-ms-resource-unit"] == "1"  # $select takes one off
    assert g(srv, "GET", "/users").status == 200  # 5 units spent
    throttled = g(srv, "GET", "/groups")
    assert throttled.status == 429
    assert throttled.body["error"]["code"] == "TooManyRequests"
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert srv.request_counts()["graph.throttled"] == 1
    # Another principal has its own budget (it gets past the budget to the role check); ARM's buckets
    # are untouched.
    other = "55555555-5555-5555-5555-555555555555"
    srv.add_principal(other, "ServicePrincipal", "other-app")
    assert g(srv, "GET", "/groups", token=graph_token(srv, other)).status == 403
    assert raw(srv, "GET", f"/subscriptions/{SUB}?api-version=2022-12-01").status == 200
    srv.reset()  # a reset empties the Graph budget too, like ARM's buckets
    assert g(srv, "GET", "/groups").status == 200


def test_token_command_prints_a_graph_token_for_resource(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with SandboxServer(db_path=db).start() as srv:
        runner = CliRunner()
        for resource in ("https://graph.microsoft.com", "https://graph.microsoft.com/",
                         "https://graph.microsoft.com/.default"):
            result = runner.invoke(sandbox_app, ["token", "--db", db, "--resource", resource])
            assert result.exit_code == 0, result.output
            assert g(srv, "GET", "/users", token=result.output.strip()).status == 200
            assert raw(srv, "GET", "/subscriptions?api-version=2022-12-01", token=result.output.strip()).status == 401
        arm = runner.invoke(sandbox_app, ["token", "--db", db]).output.strip()
        assert g(srv, "GET", "/users", token=arm).status == 401
        assert raw(srv, "GET", "/subscriptions?api-version=2022-12-01", token=arm).status == 200


def test_groups_created_through_graph_survive_in_the_database(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with SandboxServer(db_path=db).start() as srv:
        group = create_group(srv, "persisted")
        create_app_and_sp(srv, "persisted-app")
    with SandboxServer(db_path=db).start() as srv:
        assert ok(g(srv, "GET", f"/groups/{group['id']}"))["displayName"] == "persisted"
        assert [o["displayName"] for o in ok(g(srv, "GET", "/servicePrincipals"))["value"]] == ["persisted-app"]
