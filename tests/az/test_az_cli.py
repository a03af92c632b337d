"""The documented az commands for groups, identities, federated credentials, role assignments and
role definitions, against the sandbox; each HTTP status is the one real ARM answers
(../shared/ARM-FACTS.md §1-§7: PUT 201 new / 200 existing, PATCH 200, DELETE 200 / 204 when
absent, GET 404 for what does not exist)."""

from __future__ import annotations

import pytest

from .conftest import SUB, Az

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def test_login_with_the_identity_endpoint_lists_the_sandbox(az: Az) -> None:
    account = az("account", "show")
    assert account.rc == 0
    assert account.out["id"] == SUB and account.out["user"]["type"] == "servicePrincipal"
    tenants = az("rest", "--method", "get", "--url", "/tenants?api-version=2022-12-01")
    assert tenants.rc == 0 and [t["tenantId"] for t in tenants.out["value"]] == [az.tenant_id]
    assert tenants.statuses("GET", "/tenants") == [200]


def test_group_create_and_show(az: Az) -> None:
    created = az("group", "create", "-n", "rg-az-group", "-l", "westus")
    assert created.rc == 0 and created.out["name"] == "rg-az-group"
    assert created.statuses("PUT") == [201]
    again = az("group", "create", "-n", "rg-az-group", "-l", "westus", "--tags", "a=b")
    assert again.statuses("PUT") == [200] and again.out["tags"] == {"a": "b"}
    shown = az("group", "show", "-n", "rg-az-group")
    assert shown.rc == 0 and shown.out["location"] == "westus" and shown.statuses("GET") == [200]


def test_missing_group_is_404_resource_group_not_found(az: Az) -> None:
    missing = az("group", "show", "-n", "rg-az-nowhere")
    assert missing.rc == 3  # az's exit code for "not found"
    assert missing.statuses("GET") == [404] and az.error_code(missing) == "ResourceGroupNotFound"


def test_identity_lifecycle(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-id", "-l", "westus").rc == 0
    created = az("identity", "create", "-g", "rg-az-id", "-n", "app-one")
    assert created.rc == 0, created.err[-2000:]
    assert created.statuses("PUT") == [201]
    assert created.out["clientId"] and created.out["principalId"] and created.out["tenantId"] == az.tenant_id
    shown = az("identity", "show", "-g", "rg-az-id", "-n", "app-one")
    assert shown.out["principalId"] == created.out["principalId"] and shown.statuses("GET") == [200]
    assert az("identity", "create", "-g", "rg-az-id", "-n", "app-two").rc == 0
    listed = az("identity", "list", "-g", "rg-az-id")
    assert sorted(i["name"] for i in listed.out) == ["app-one", "app-two"]
    everywhere = az("identity", "list")
    assert {"app-one", "app-two"} <= {i["name"] for i in everywhere.out}
    updated = az("identity", "update", "-g", "rg-az-id", "-n", "app-one", "--tags", "team=payments")
    assert updated.rc == 0, updated.err[-2000:]
    assert updated.out["tags"] == {"team": "payments"}
    assert updated.statuses("PATCH") + updated.statuses("PUT") in ([200], [200, 200])
    deleted = az("identity", "delete", "-g", "rg-az-id", "-n", "app-one")
    assert deleted.rc == 0 and deleted.statuses("DELETE") == [200]
    gone = az("identity", "show", "-g", "rg-az-id", "-n", "app-one")
    assert gone.rc == 3 and gone.statuses("GET") == [404] and az.error_code(gone) == "ResourceNotFound"
    again = az("identity", "delete", "-g", "rg-az-id", "-n", "app-one")
    assert again.rc == 0 and again.statuses("DELETE") == [204]


def test_bad_identity_names_are_refused(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-bad", "-l", "westus").rc == 0
    for name in ("bad name!", "ab", "_starts-with-underscore"):
        bad = az("identity", "create", "-g", "rg-az-bad", "-n", name)
        assert bad.rc != 0, name
        assert bad.statuses("PUT") == [400] and az.error_code(bad) == "InvalidResourceName", name


def test_identity_in_a_missing_group_is_404(az: Az) -> None:
    missing = az("identity", "create", "-g", "rg-az-nowhere", "-n", "orphan")
    # az reads the group first (for its location): GET 404; with -l it goes straight to the PUT: 404
    assert missing.rc != 0 and "--location" in missing.err
    assert missing.statuses("GET", "/resourcegroups/rg-az-nowhere") == [404] and missing.statuses("PUT") == []
    located = az("identity", "create", "-g", "rg-az-nowhere", "-n", "orphan", "-l", "westus")
    assert located.rc != 0 and located.statuses("PUT") == [404] and az.error_code(located) == "ResourceGroupNotFound"


def test_federated_credential_lifecycle(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-fic", "-l", "westus").rc == 0
    assert az("identity", "create", "-g", "rg-az-fic", "-n", "deployer").rc == 0
    fic = ["identity", "federated-credential"]
    where = ["-g", "rg-az-fic", "--identity-name", "deployer"]
    issuer = "https://token.actions.githubusercontent.com"
    created = az(*fic, "create", *where, "-n", "github-main", "--issuer", issuer,
                 "--subject", "repo:contoso/app:ref:refs/heads/main", "--audiences", "api://AzureADTokenExchange")
    assert created.rc == 0, created.err[-2000:]
    assert created.statuses("PUT") == [201] and created.out["audiences"] == ["api://AzureADTokenExchange"]
    listed = az(*fic, "list", *where)
    assert [f["name"] for f in listed.out] == ["github-main"] and listed.statuses("GET") == [200]
    shown = az(*fic, "show", *where, "-n", "github-main")
    assert shown.out["subject"] == "repo:contoso/app:ref:refs/heads/main"
    updated = az(*fic, "update", *where, "-n", "github-main", "--issuer", issuer,
                 "--subject", "repo:contoso/app:environment:prod")
    assert updated.rc == 0, updated.err[-2000:]
    assert updated.out["subject"] == "repo:contoso/app:environment:prod" and 200 in updated.statuses("PUT")
    deleted = az(*fic, "delete", *where, "-n", "github-main", "--yes")
    assert deleted.rc == 0 and deleted.statuses("DELETE") == [200]
    gone = az(*fic, "show", *where, "-n", "github-main")
    assert gone.rc == 3 and gone.statuses("GET") == [404]
    no_identity = az(*fic, "list", "-g", "rg-az-fic", "--identity-name", "nobody")
    assert no_identity.rc == 3 and no_identity.statuses("GET") == [404]


def test_role_assignment_create_list_delete_by_object_id(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-ra", "-l", "westus").rc == 0
    identity = az("identity", "create", "-g", "rg-az-ra", "-n", "reader").out
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-az-ra"
    created = az("role", "assignment", "create", "--assignee-object-id", identity["principalId"],
                 "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope", scope)
    assert created.rc == 0, created.err[-2000:]
    assert created.statuses("PUT", "/roleAssignments/") == [201]
    assert created.out["principalId"] == identity["principalId"]
    assert created.out["roleDefinitionId"].endswith(READER) and created.out["scope"] == scope
    listed = az("role", "assignment", "list", "--scope", scope)
    assert [(a["principalId"], a["roleDefinitionName"]) for a in listed.out] == [(identity["principalId"], "Reader")]
    mine = az("role", "assignment", "list", "--assignee", identity["principalId"], "--all")
    assert [a["id"] for a in mine.out] == [created.out["id"]]
    deleted = az("role", "assignment", "delete", "--ids", created.out["id"])
    assert deleted.rc == 0 and deleted.statuses("DELETE") == [200]
    assert az("role", "assignment", "list", "--scope", scope).out == []


def test_unknown_role_and_unknown_scope_are_refused(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-ra2", "-l", "westus").rc == 0
    principal = az("identity", "create", "-g", "rg-az-ra2", "-n", "nobody-grants").out["principalId"]
    unknown_role = az("role", "assignment", "create", "--assignee-object-id", principal,
                      "--assignee-principal-type", "ServicePrincipal", "--role", "Not A Role",
                      "--scope", f"/subscriptions/{SUB}/resourceGroups/rg-az-ra2")
    assert unknown_role.rc != 0 and "Not A Role" in unknown_role.err
    assert unknown_role.statuses("PUT") == []  # az looked the name up (GET 200, empty) and stopped
    missing_rg = az("role", "assignment", "create", "--assignee-object-id", principal,
                    "--assignee-principal-type", "ServicePrincipal", "--role", "Reader",
                    "--scope", f"/subscriptions/{SUB}/resourceGroups/rg-az-nowhere")
    # az resolves the role name at the scope first: ARM answers 404 ResourceGroupNotFound there.
    assert missing_rg.rc != 0 and az.error_code(missing_rg) == "ResourceGroupNotFound"
    assert missing_rg.statuses("GET", "/roleDefinitions") == [404] and missing_rg.statuses("PUT") == []
    by_id = az("role", "assignment", "create", "--assignee-object-id", principal,
               "--assignee-principal-type", "ServicePrincipal", "--role", READER,
               "--scope", f"/subscriptions/{SUB}/resourceGroups/rg-az-nowhere")
    assert by_id.rc != 0 and az.error_code(by_id) == "ResourceGroupNotFound"


def test_role_definition_list(az: Az) -> None:
    reader = az("role", "definition", "list", "--name", "Reader")
    assert reader.rc == 0 and [d["roleName"] for d in reader.out] == ["Reader"]
    assert reader.out[0]["name"] == READER and reader.statuses("GET") == [200]
    builtins = az("role", "definition", "list", "--query", "length(@)")
    assert builtins.out > 100


def test_an_identity_logs_in_by_client_id_and_gets_only_what_it_was_granted(
        az: Az, tmp_path_factory: pytest.TempPathFactory) -> None:
    for rg in ("rg-az-login", "rg-az-granted"):
        assert az("group", "create", "-n", rg, "-l", "westus").rc == 0
    identity = az("identity", "create", "-g", "rg-az-login", "-n", "robot").out
    grant = ["role", "assignment", "create", "--assignee-object-id", identity["principalId"],
             "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope"]
    assert az(*grant, f"/subscriptions/{SUB}/resourceGroups/rg-az-granted").rc == 0
    own = str(tmp_path_factory.mktemp("robot-az"))
    assert az("cloud", "register", "--name", "ReconcilerSandbox", "--endpoint-resource-manager", az.url + "/",
              config_dir=own).rc == 0
    assert az("cloud", "set", "--name", "ReconcilerSandbox", config_dir=own).rc == 0
    login = az("login", "--identity", "--client-id", identity["clientId"], config_dir=own)
    assert login.rc == 0, login.err[-2000:]
    assert [a["id"] for a in login.out] == [SUB]
    assert login.out[0]["user"]["assignedIdentityInfo"] == f"MSIClient-{identity['clientId']}"
    granted = az("identity", "list", "-g", "rg-az-granted", config_dir=own)
    assert granted.rc == 0 and granted.out == [] and granted.statuses("GET") == [200]
    denied = az("identity", "list", "-g", "rg-az-login", config_dir=own)
    assert denied.rc != 0 and denied.statuses("GET") == [403] and az.error_code(denied) == "AuthorizationFailed"
    # ARM names an app-only caller by object id twice (public captures, ARM-FACTS / docs/sandbox.md), and
    # a list by its container plus the provider namespace
    assert (f"The client '{identity['principalId']}' with object id '{identity['principalId']}' does not have "
            "authorization to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/read' over scope "
            f"'/subscriptions/{SUB}/resourceGroups/rg-az-login/providers/Microsoft.ManagedIdentity'") in denied.err
    assert az(*grant, f"/subscriptions/{SUB}/resourceGroups/rg-az-login").rc == 0
    allowed = az("identity", "list", "-g", "rg-az-login", config_dir=own)
    assert allowed.rc == 0 and [i["name"] for i in allowed.out] == ["robot"]


# --- Microsoft Graph: az ad and role assignments by name (issue 17 item 6) ------------------------
# Users and groups are made with `az ad user/group create` (the CLI's own POSTs to the sandbox's Graph).
# Graph statuses as real Graph answers them (../shared/GRAPH-FACTS.md): POST 201, GET 200, a missing
# object 404 Request_ResourceNotFound (az exit code 3), $filter and getByIds 200, members/$ref 204.
DOMAIN = "sandbox.onmicrosoft.com"


def _user(az: Az, nickname: str) -> dict[str, str]:
    made = az("ad", "user", "create", "--display-name", nickname.title(), "--user-principal-name",
              f"{nickname}@{DOMAIN}", "--password", "xWwvJ]6NMw+bWH-d")
    assert made.rc == 0, made.err[-2000:]
    assert made.statuses("POST", "/v1.0/users") == [201]
    user: dict[str, str] = made.out
    return user


def test_ad_user_group_and_sp_show(az: Az) -> None:
    user = _user(az, "ada")
    by_upn = az("ad", "user", "show", "--id", f"ada@{DOMAIN}")
    assert by_upn.rc == 0 and by_upn.out["id"] == user["id"] and by_upn.statuses("GET") == [200]
    by_id = az("ad", "user", "show", "--id", user["id"])
    assert by_id.rc == 0 and by_id.out["userPrincipalName"] == f"ada@{DOMAIN}"
    nobody = az("ad", "user", "show", "--id", f"nobody@{DOMAIN}")
    assert nobody.rc == 3 and nobody.statuses("GET") == [404] and "does not exist" in nobody.err

    group = az("ad", "group", "create", "--display-name", "Platform Team", "--mail-nickname", "platform")
    assert group.rc == 0, group.err[-2000:]
    assert group.statuses("POST", "/v1.0/groups") == [201]  # after az's own name check: GET 200, empty
    by_name = az("ad", "group", "show", "--group", "Platform Team")
    assert by_name.rc == 0 and by_name.out["id"] == group.out["id"]
    assert by_name.statuses("GET", "/v1.0/groups") == [200, 200]  # $filter by displayName, then the group
    assert az("ad", "group", "show", "--group", group.out["id"]).out["displayName"] == "Platform Team"
    added = az("ad", "group", "member", "add", "--group", "Platform Team", "--member-id", user["id"])
    assert added.rc == 0 and added.statuses("POST", "/members/$ref") == [204]
    members = az("ad", "group", "member", "list", "--group", group.out["id"])
    assert [m["id"] for m in members.out] == [user["id"]]
    no_group = az("ad", "group", "show", "--group", "No Such Team")
    assert no_group.rc != 0 and "No group matches" in no_group.err

    assert az("group", "create", "-n", "rg-az-sp", "-l", "westus").rc == 0
    identity = az("identity", "create", "-g", "rg-az-sp", "-n", "svc").out
    by_app_id = az("ad", "sp", "show", "--id", identity["clientId"])
    assert by_app_id.rc == 0, by_app_id.err[-2000:]
    assert by_app_id.out["id"] == identity["principalId"] and by_app_id.out["appId"] == identity["clientId"]
    assert by_app_id.out["servicePrincipalType"] == "ManagedIdentity"
    by_object_id = az("ad", "sp", "show", "--id", identity["principalId"])
    assert by_object_id.rc == 0 and by_object_id.out["appId"] == identity["clientId"]
    # az first looks the value up as a service principal name (200, empty), then as an object id (200)
    assert by_object_id.statuses("GET", "/v1.0/servicePrincipals") == [200, 200]
    missing = az("ad", "sp", "show", "--id", "11111111-1111-1111-1111-111111111111")
    assert missing.rc == 3 and missing.statuses("GET", "/v1.0/servicePrincipals") == [200, 404]


def test_role_assignments_by_upn_and_app_id_with_principal_names(az: Az) -> None:
    assert az("group", "create", "-n", "rg-az-names", "-l", "westus").rc == 0
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-az-names"
    user = _user(az, "grace")
    identity = az("identity", "create", "-g", "rg-az-names", "-n", "worker").out
    group = az("ad", "group", "create", "--display-name", "Auditors", "--mail-nickname", "auditors").out
    by_upn = az("role", "assignment", "create", "--assignee", f"grace@{DOMAIN}", "--role", "Reader", "--scope", scope)
    assert by_upn.rc == 0, by_upn.err[-2000:]
    assert by_upn.statuses("GET", "/v1.0/users") == [200] and by_upn.statuses("PUT") == [201]
    assert by_upn.out["principalId"] == user["id"] and by_upn.out["principalType"] == "User"
    by_app_id = az("role", "assignment", "create", "--assignee", identity["clientId"], "--role", "Reader",
                   "--scope", scope)
    assert by_app_id.rc == 0, by_app_id.err[-2000:]
    assert by_app_id.out["principalId"] == identity["principalId"]
    assert by_app_id.out["principalType"] == "ServicePrincipal"
    by_group_id = az("role", "assignment", "create", "--assignee", group["id"], "--role", "Reader", "--scope", scope)
    assert by_group_id.rc == 0 and by_group_id.out["principalType"] == "Group"
    assert by_group_id.statuses("POST", "/v1.0/directoryObjects/getByIds") == [200]

    listed = az("role", "assignment", "list", "--scope", scope)
    assert listed.statuses("POST", "/v1.0/directoryObjects/getByIds") == [200]
    # az names users by UPN, service principals by their first servicePrincipalName (an identity's
    # client id), groups by display name
    assert sorted((a["principalName"], a["principalType"]) for a in listed.out) == sorted([
        (f"grace@{DOMAIN}", "User"), (identity["clientId"], "ServicePrincipal"), ("Auditors", "Group")])
    graces = az("role", "assignment", "list", "--assignee", f"grace@{DOMAIN}", "--scope", scope)
    assert [a["id"] for a in graces.out] == [by_upn.out["id"]]
    workers = az("role", "assignment", "list", "--assignee", identity["clientId"], "--all")
    assert [a["id"] for a in workers.out] == [by_app_id.out["id"]]

    gone = az("role", "assignment", "delete", "--assignee", f"grace@{DOMAIN}", "--role", "Reader", "--scope", scope)
    assert gone.rc == 0 and gone.statuses("DELETE") == [200]
    gone = az("role", "assignment", "delete", "--assignee", identity["clientId"], "--scope", scope)
    assert gone.rc == 0 and gone.statuses("DELETE") == [200]
    assert [a["principalName"] for a in az("role", "assignment", "list", "--scope", scope).out] == ["Auditors"]

    unknown = az("role", "assignment", "create", "--assignee", f"nobody@{DOMAIN}", "--role", "Reader",
                 "--scope", scope)
    assert unknown.rc != 0 and "Cannot find user or service principal" in unknown.err
    assert unknown.statuses("PUT") == []


def test_app_registration_and_its_service_principal(az: Az) -> None:
    app = az("ad", "app", "create", "--display-name", "orders-api")
    assert app.rc == 0, app.err[-2000:]
    # az looks the display name up first (GET 200), then creates the registration
    assert app.statuses("GET", "/v1.0/applications") == [200] and app.statuses("POST", "/v1.0/applications") == [201]
    listed = az("ad", "app", "list", "--display-name", "orders-api")
    assert [a["appId"] for a in listed.out] == [app.out["appId"]]
    sp = az("ad", "sp", "create", "--id", app.out["appId"])
    assert sp.rc == 0, sp.err[-2000:]
    assert sp.statuses("POST", "/v1.0/servicePrincipals") == [201] and sp.out["appId"] == app.out["appId"]
    shown = az("ad", "sp", "show", "--id", app.out["appId"])
    assert shown.rc == 0 and shown.out["id"] == sp.out["id"] and shown.out["servicePrincipalType"] == "Application"
    assert az("group", "create", "-n", "rg-az-app", "-l", "westus").rc == 0
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-az-app"
    granted = az("role", "assignment", "create", "--assignee", app.out["appId"], "--role", "Reader", "--scope", scope)
    assert granted.rc == 0 and granted.out["principalId"] == sp.out["id"]
    assert [a["principalName"] for a in az("role", "assignment", "list", "--scope", scope).out] == [app.out["appId"]]


def test_signed_in_user_is_refused_for_a_managed_identity_login(az: Az) -> None:
    me = az("ad", "signed-in-user", "show")  # az is logged in with an app-only (managed identity) token
    assert me.rc != 0 and me.statuses("GET", "/v1.0/me") == [400]
    assert "/me request is only valid with delegated authentication flow" in me.err
