"""The sandbox's Graph v1.0 reads: users by id and UPN, filtered and paged collections, getByIds,
transitive memberships, and managed identities showing up as service principals."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from reconciler.sandbox import SandboxServer

from .conftest import GROUP, RG, USER, Clients
from .graphapi import DOMAIN, add_member, create_app_and_sp, create_group, create_user, follow, g, ok


def test_get_user_by_id_and_by_upn(srv: SandboxServer) -> None:
    bob = create_user(srv, "bob", "Bob Builder")
    by_id = ok(g(srv, "GET", f"/users/{bob['id']}"))
    by_upn = ok(g(srv, "GET", f"/users/BOB@{DOMAIN}"))
    by_key = ok(g(srv, "GET", f"/users('bob@{DOMAIN}')"))
    assert by_id == by_upn == by_key
    assert by_id["@odata.context"] == f"{srv.url}/v1.0/$metadata#users/$entity"
    # The default property set, nulls emitted (GRAPH-FACTS §1), nothing else.
    assert set(by_id) - {"@odata.context"} == {
        "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone", "officeLocation",
        "preferredLanguage", "surname", "userPrincipalName", "id"}
    assert (by_id["displayName"], by_id["userPrincipalName"], by_id["mail"]) == ("Bob Builder", f"bob@{DOMAIN}", None)
    selected = ok(g(srv, "GET", f"/users/{bob['id']}?$select=id,accountEnabled,mailNickname"))
    assert selected == {"@odata.context": f"{srv.url}/v1.0/$metadata#users(id,accountEnabled,mailNickname)/$entity",
                        "id": bob["id"], "accountEnabled": True, "mailNickname": "bob"}
    # A user seeded with only a display name still has a UPN, in the sandbox's domain.
    assert ok(g(srv, "GET", f"/users/{USER}"))["userPrincipalName"] == f"alice@{DOMAIN}"


def test_missing_objects_answer_graphs_404_envelope(srv: SandboxServer) -> None:
    missing = "99999999-9999-9999-9999-999999999999"
    r = g(srv, "GET", f"/users/{missing}", headers={"client-request-id": "my-id"})
    assert r.status == 404
    assert r.body["error"]["code"] == "Request_ResourceNotFound"
    assert r.body["error"]["message"] == (f"Resource '{missing}' does not exist or one of its queried "
                                          "reference-property objects are not present.")
    inner = r.body["error"]["innerError"]
    assert inner["request-id"] == r.headers["request-id"] and inner["client-request-id"] == "my-id"
    assert g(srv, "GET", f"/users/nobody@{DOMAIN}").status == 404
    assert g(srv, "GET", f"/groups/{USER}").status == 404  # a user is not a group
    assert g(srv, "GET", "/servicePrincipals(appId='00000000-0000-0000-0000-000000000000')").status == 404
    r = g(srv, "GET", "/notAThing")
    assert (r.status, r.body["error"]["code"]) == (400, "BadRequest")
    assert g(srv, "DELETE", "/users").status == 405


def test_filters_find_users_groups_and_service_principals_by_name(srv: SandboxServer) -> None:
    create_user(srv, "carol", "Carol")
    create_user(srv, "carl", "Carl")
    twins = [create_group(srv, "sg-payments", "pay1"), create_group(srv, "sg-payments", "pay2")]
    create_group(srv, "sg-other")
    app, sp = create_app_and_sp(srv, "billing-api")

    def ids(path: str) -> list[str]:
        return [o["id"] for o in ok(g(srv, "GET", path))["value"]]

    assert ids(f"/users?$filter=userPrincipalName eq 'CAROL@{DOMAIN}'") == [
        ok(g(srv, "GET", f"/users/carol@{DOMAIN}"))["id"]]
    assert len(ids("/users?$filter=startswith(displayName,'car')")) == 2
    assert ids("/users?$filter=userPrincipalName eq 'nobody@x'") == []  # no match is 200 and empty
    assert ids("/groups?$filter=displayName eq 'sg-payments'") == [t["id"] for t in twins]  # names are not unique
    assert ids("/groups?$filter=displayName eq 'sg-payments' and mailNickname eq 'pay2'") == [twins[1]["id"]]
    assert ids(f"/groups?$filter=id in ('{twins[0]['id']}', '{GROUP}')") == [GROUP, twins[0]["id"]]
    assert ids(f"/servicePrincipals?$filter=appId eq '{app['appId']}'") == [sp["id"]]
    assert ids("/servicePrincipals?$filter=displayName eq 'billing-api'") == [sp["id"]]
    assert ids(f"/servicePrincipals?$filter=servicePrincipalNames/any(c:c eq '{app['appId']}')") == [sp["id"]]
    assert ids("/groups?$filter=(displayName eq 'sg-other' or displayName eq 'team')") == [
        GROUP, ok(g(srv, "GET", "/groups?$filter=displayName eq 'sg-other'"))["value"][0]["id"]]
    assert ids("/groups?$filter=displayName eq 'O''Brien'") == []  # doubled quote inside a literal


def test_filters_graph_refuses_without_advanced_query_parameters(srv: SandboxServer) -> None:
    for path, code in [
        ("/users?$filter=endswith(userPrincipalName,'x')", "Request_UnsupportedQuery"),
        ("/users?$filter=displayName ne 'x'", "Request_UnsupportedQuery"),
        ("/users?$filter=displayName eq null", "Request_UnsupportedQuery"),
        ("/servicePrincipals?$filter=startswith(appId,'x')", "Request_UnsupportedQuery"),
        ("/users?$filter=onPremisesSamAccountName eq 'x'", "Request_UnsupportedQuery"),
        ("/users?$search=\"displayName:bob\"", "Request_UnsupportedQuery"),
        ("/users?$filter=displayName eq", "Request_BadRequest"),
        ("/users?$filter=displayName eq 'x' and", "Request_BadRequest"),
        ("/users?$top=1000", "Request_BadRequest"),
        ("/users?$top=0", "Request_BadRequest"),
        ("/users?$select=id,favouriteColour", "Request_BadRequest"),
    ]:
        r = g(srv, "GET", path)
        assert (r.status, r.body["error"]["code"]) == (400, code), (path, r.body)
    r = g(srv, "GET", "/users?$filter=onPremisesSamAccountName eq 'x'")
    assert r.body["error"]["message"] == ("Unsupported or invalid query filter clause specified for property "
                                          "'onPremisesSamAccountName' of resource 'User'.")


def test_top_select_and_next_link_paging(srv: SandboxServer) -> None:
    made = [create_group(srv, f"page-{i}")["id"] for i in range(7)]
    first = ok(g(srv, "GET", "/groups?$filter=startswith(displayName,'page-')&$select=id,displayName&$top=3"))
    assert first["@odata.context"] == f"{srv.url}/v1.0/$metadata#groups(id,displayName)"
    assert [set(o) for o in first["value"]] == [{"id", "displayName"}] * 3
    # The nextLink is absolute and keeps every query option, adding only an opaque $skiptoken.
    query = parse_qs(urlsplit(first["@odata.nextLink"]).query)
    assert query["$filter"] == ["startswith(displayName,'page-')"] and query["$top"] == ["3"]
    assert set(query) == {"$filter", "$select", "$top", "$skiptoken"}
    items, pages = follow(srv, "/groups?$filter=startswith(displayName,'page-')&$select=id,displayName&$top=3")
    assert [o["id"] for o in items] == made and pages == 3
    # Without $top the sandbox's page size applies (Graph's default is 100).
    srv.configure(page_size=4)
    items, pages = follow(srv, "/groups?$filter=startswith(displayName,'page-')")
    assert [o["id"] for o in items] == made and pages == 2
    r = g(srv, "GET", "/groups?$skiptoken=garbage")
    assert (r.status, r.body["error"]["code"]) == (400, "Request_BadRequest")


def test_orderby_display_name_alone_but_not_with_a_filter(srv: SandboxServer) -> None:
    for name in ("b-group", "c-group", "a-group"):
        create_group(srv, name)
    names = [o["displayName"] for o in ok(g(srv, "GET", "/groups?$orderby=displayName desc"))["value"]]
    assert names == sorted(names, key=str.lower, reverse=True)
    r = g(srv, "GET", "/groups?$orderby=displayName&$filter=startswith(displayName,'a')")
    assert (r.status, r.body["error"]["message"]) == (400, "Sorting not supported for current query.")


def test_get_by_ids_resolves_mixed_objects_in_one_call(srv: SandboxServer) -> None:
    bob = create_user(srv, "bob")
    group = create_group(srv, "sg-one")
    app, sp = create_app_and_sp(srv, "api-one")
    unknown = "99999999-9999-9999-9999-999999999999"
    before = srv.request_counts().get("graph.directoryObjects.getByIds", 0)
    body = ok(g(srv, "POST", "/directoryObjects/getByIds", {
        "ids": [sp["id"], unknown, bob["id"], group["id"], USER.upper(), app["id"]]}))
    assert srv.request_counts()["graph.directoryObjects.getByIds"] == before + 1
    assert body["@odata.context"] == f"{srv.url}/v1.0/$metadata#directoryObjects"
    assert [(o["@odata.type"], o["id"]) for o in body["value"]] == [
        ("#microsoft.graph.servicePrincipal", sp["id"]), ("#microsoft.graph.user", bob["id"]),
        ("#microsoft.graph.group", group["id"]), ("#microsoft.graph.user", USER),
        ("#microsoft.graph.application", app["id"])]  # unknown ids are left out
    assert body["value"][0]["appId"] == app["appId"]
    only = ok(g(srv, "POST", "/directoryObjects/getByIds?$select=id,displayName",
                {"ids": [sp["id"], bob["id"], group["id"]], "types": ["User", "group"]}))
    assert only["value"] == [
        {"@odata.type": "#microsoft.graph.user", "id": bob["id"], "displayName": "bob"},
        {"@odata.type": "#microsoft.graph.group", "id": group["id"], "displayName": "sg-one"}]
    for bad, message in [({"ids": ["not-a-guid"]}, "Invalid GUID specified."),
                         ({"ids": [unknown] * 1001}, "Number of included identifiers cannot exceed '1000'."),
                         ({"ids": [bob["id"]], "types": ["planet"]}, None), ({}, None)]:
        r = g(srv, "POST", "/directoryObjects/getByIds", bad)
        assert (r.status, r.body["error"]["code"]) == (400, "Request_BadRequest")
        assert message is None or r.body["error"]["message"] == message


def test_transitive_member_of_follows_nested_groups(srv: SandboxServer) -> None:
    inner, outer, other = create_group(srv, "inner"), create_group(srv, "outer"), create_group(srv, "other")
    _, sp = create_app_and_sp(srv, "nested-app")
    bob = create_user(srv, "bob")
    assert add_member(srv, inner["id"], sp["id"]).status == 204
    ok(add_member(srv, outer["id"], inner["id"]), 204)
    ok(add_member(srv, inner["id"], bob["id"]), 204)
    body = ok(g(srv, "GET", f"/servicePrincipals/{sp['id']}/transitiveMemberOf"))
    assert body["@odata.context"] == f"{srv.url}/v1.0/$metadata#directoryObjects"
    assert [(o["@odata.type"], o["id"]) for o in body["value"]] == [
        ("#microsoft.graph.group", inner["id"]), ("#microsoft.graph.group", outer["id"])]
    by_app_id = ok(g(srv, "GET", f"/servicePrincipals(appId='{sp['appId']}')/transitiveMemberOf?$select=id"))
    assert [o["id"] for o in by_app_id["value"]] == [inner["id"], outer["id"]]
    assert [o["id"] for o in ok(g(srv, "GET", f"/users/bob@{DOMAIN}/transitiveMemberOf"))["value"]] == [
        inner["id"], outer["id"]]
    assert [o["id"] for o in ok(g(srv, "GET", f"/groups/{inner['id']}/transitiveMemberOf"))["value"]] == [
        outer["id"]]
    assert ok(g(srv, "GET", f"/groups/{other['id']}/transitiveMemberOf"))["value"] == []
    assert [o["id"] for o in ok(g(srv, "GET", f"/groups/{inner['id']}/members"))["value"]] == [sp["id"], bob["id"]]
    # Filters on this API are advanced queries only (GRAPH-FACTS §7).
    r = g(srv, "GET", f"/users/{bob['id']}/transitiveMemberOf?$filter=displayName eq 'outer'")
    assert (r.status, r.body["error"]["code"]) == (400, "Request_UnsupportedQuery")


def test_managed_identities_appear_as_service_principals_after_replication(srv: SandboxServer, c: Clients) -> None:
    srv.configure(replication_delay_seconds=3600)
    identity = c.msi.user_assigned_identities.create_or_update(RG, "id-payments", {"location": "westus"})
    query = f"/servicePrincipals?$filter=appId eq '{identity.client_id}'"
    assert ok(g(srv, "GET", query))["value"] == []  # not replicated yet, as in Entra
    assert g(srv, "GET", f"/servicePrincipals/{identity.principal_id}").status == 404
    srv.configure(replication_delay_seconds=0)
    [sp] = ok(g(srv, "GET", query))["value"]
    assert (sp["id"], sp["appId"], sp["displayName"], sp["servicePrincipalType"]) == (
        identity.principal_id, identity.client_id, "id-payments", "ManagedIdentity")
    assert sp["alternativeNames"] == ["isExplicit=True", identity.id]
    c.msi.user_assigned_identities.delete(RG, "id-payments")
    assert ok(g(srv, "GET", query))["value"] == []


def test_applications_are_listed_and_filtered_as_az_ad_app_create_asks(srv: SandboxServer) -> None:
    orders, _ = create_app_and_sp(srv, "orders")
    ok(g(srv, "POST", "/applications", {"displayName": "orders-admin", "identifierUris": ["api://orders-admin"]}), 201)
    listed = ok(g(srv, "GET", "/applications"))
    assert listed["@odata.context"] == f"{srv.url}/v1.0/$metadata#applications"
    assert [a["displayName"] for a in listed["value"]] == ["orders", "orders-admin"]
    # what `az ad app create` and `az ad app list --display-name` send
    starts = ok(g(srv, "GET", "/applications?$filter=startswith(displayName,'orders')"))
    assert len(starts["value"]) == 2
    exact = ok(g(srv, "GET", "/applications?$filter=displayName eq 'orders'"))
    assert [a["id"] for a in exact["value"]] == [orders["id"]]
    by_app_id = ok(g(srv, "GET", f"/applications?$filter=appId eq '{orders['appId']}'"))
    assert [a["id"] for a in by_app_id["value"]] == [orders["id"]]
    by_uri = ok(g(srv, "GET", "/applications?$filter=identifierUris/any(u:u eq 'api://orders-admin')"))
    assert [a["displayName"] for a in by_uri["value"]] == ["orders-admin"]
    refused = g(srv, "GET", "/applications?$filter=description eq 'x'")
    assert refused.status == 400


def test_me_is_refused_for_app_only_tokens(srv: SandboxServer) -> None:
    # Every sandbox token is app-only; Graph's answer to `/me` then (`az ad signed-in-user show`).
    for path in ("/me", "/me/transitiveMemberOf"):
        r = g(srv, "GET", path)
        assert (r.status, r.body["error"]["code"]) == (400, "BadRequest"), path
        assert r.body["error"]["message"] == "/me request is only valid with delegated authentication flow."
