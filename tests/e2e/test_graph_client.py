"""The core's Graph client (reconciler/azure/graph.py) against the sandbox's Graph API, over HTTPS
with azure-core's pipeline: name lookups, batched getByIds, the 403 hint, Retry-After and the
client-side budget, and the token scope per cloud."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from reconciler.azure.budget import BucketLimit, BudgetConfig, RateBudget
from reconciler.azure.graph import (
    GraphDirectory,
    GraphError,
    GraphPermissionError,
    GraphTarget,
    graph_cost,
    graph_scope,
    odata_string,
)
from reconciler.sandbox import SandboxConfig, SandboxServer
from tests.sandbox.graphapi import add_member, create_app_and_sp, create_group, create_user, graph_token

DOMAIN = "sandbox.onmicrosoft.com"


class RecordingCredential:
    """Hands out one token and remembers the scopes it was asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def srv() -> Iterator[SandboxServer]:
    with SandboxServer(config=SandboxConfig(replication_delay_seconds=0.0)).start() as server:
        yield server


def directory(srv: SandboxServer, token: str | None = None, **kw: Any) -> GraphDirectory:
    cred = RecordingCredential(token or graph_token(srv))
    return GraphTarget(cred, endpoint=srv.url, ca_cert=srv.ca_cert_path, scope=graph_scope("AzureCloud"),
                       **kw).directory()


def test_finds_users_groups_and_service_principals_by_name(srv: SandboxServer) -> None:
    bob = create_user(srv, "bob", "Bob")
    twins = [create_group(srv, "sg-payments", "p1"), create_group(srv, "sg-payments", "p2")]
    quoted = create_group(srv, "O'Brien's team", "obrien")
    app, sp = create_app_and_sp(srv, "billing-api")
    d = directory(srv)
    [user] = d.find_users(f"bob@{DOMAIN}")
    assert (user.object_id, user.type, user.display_name, user.user_principal_name) == (
        bob["id"], "User", "Bob", f"bob@{DOMAIN}")
    assert d.find_users(f"nobody@{DOMAIN}") == []
    assert [g.object_id for g in d.find_groups("sg-payments")] == [t["id"] for t in twins]  # ambiguous: both
    assert [g.object_id for g in d.find_groups("O'Brien's team")] == [quoted["id"]]
    for key in (app["appId"], "billing-api"):
        [found] = d.find_service_principals(key)
        assert (found.object_id, found.type, found.app_id) == (sp["id"], "ServicePrincipal", app["appId"])
    assert d.find_service_principals(str(uuid.uuid4())) == []
    assert user.describe() == f"User 'Bob' <bob@{DOMAIN}> ({bob['id']})"


def test_get_by_ids_is_one_call_per_thousand_ids(srv: SandboxServer) -> None:
    bob = create_user(srv, "bob")
    group = create_group(srv, "sg-one")
    _, sp = create_app_and_sp(srv, "api-one")
    ok = add_member(srv, group["id"], bob["id"])
    assert ok.status == 204
    unknown = [str(uuid.uuid4()) for _ in range(1497)]
    ids = [*unknown[:700], bob["id"].upper(), group["id"], *unknown[700:], sp["id"], bob["id"]]
    before = srv.request_counts().get("graph.directoryObjects.getByIds", 0)
    found = directory(srv).get_by_ids(ids)
    assert srv.request_counts()["graph.directoryObjects.getByIds"] - before == 2  # 1500 distinct ids
    assert {k: (v.type, v.display_name) for k, v in found.items()} == {
        bob["id"]: ("User", "bob"), group["id"]: ("Group", "sg-one"), sp["id"]: ("ServicePrincipal", "api-one")}
    assert directory(srv).get_by_ids([]) == {}


def test_a_credential_that_may_not_read_the_directory_gets_the_permission_to_ask_for(srv: SandboxServer) -> None:
    outsider = "55555555-5555-5555-5555-555555555555"
    srv.add_principal(outsider, "ServicePrincipal", "pipeline")
    d = directory(srv, graph_token(srv, outsider))
    with pytest.raises(GraphPermissionError) as denied:
        d.find_groups("sg-payments")
    assert (denied.value.status, denied.value.code, denied.value.permission) == (
        403, "Authorization_RequestDenied", "GroupMember.Read.All")
    assert "GroupMember.Read.All" in str(denied.value) and "sg-payments" in str(denied.value)
    with pytest.raises(GraphPermissionError) as denied:
        d.get_by_ids([outsider])
    assert denied.value.permission == "Directory.Read.All"
    with pytest.raises(GraphError) as wrong_audience:
        directory(srv, srv.admin_token()).find_users(f"x@{DOMAIN}")  # an ARM token
    assert (wrong_audience.value.status, wrong_audience.value.code) == (401, "InvalidAuthenticationToken")
    assert srv.admin_token() not in str(wrong_audience.value)


def test_a_429_is_retried_after_retry_after(srv: SandboxServer) -> None:
    create_group(srv, "sg-a")
    srv.configure(graph_units_capacity=2, graph_units_window_seconds=20)
    slept: list[float] = []

    def sleeper(seconds: float) -> None:
        # Instead of sleeping out the server's window, record the wait and lift the limit.
        slept.append(seconds)
        srv.configure(throttling=False)

    d = directory(srv, budget=None, sleeper=sleeper)  # no client budget: meet the server's 429
    assert [g.display_name for g in d.find_groups("sg-a")] == ["sg-a"]  # 1 unit ($select)
    assert [g.display_name for g in d.find_groups("sg-a")] == ["sg-a"]  # 2nd unit
    assert [g.display_name for g in d.find_groups("sg-a")] == ["sg-a"]  # 429, wait, retry
    assert srv.request_counts()["graph.throttled"] == 1
    assert len(slept) == 1 and slept[0] >= 10  # Retry-After: one unit refills in 10 s (2 per 20 s)


def test_the_client_budget_waits_instead_of_collecting_429s(srv: SandboxServer) -> None:
    create_group(srv, "sg-b")
    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    budget = RateBudget(BudgetConfig(reads=BucketLimit(3, 1.0)), clock=lambda: now[0], sleeper=advance)
    d = directory(srv, budget=budget)
    for _ in range(3):
        d.find_groups("sg-b")  # 1 unit each
    d.get_by_ids([str(uuid.uuid4())])  # 3 units: waits for the bucket to refill
    assert budget.stats().waits >= 1 and now[0] >= 3.0
    assert srv.request_counts().get("graph.throttled", 0) == 0


def test_tokens_are_asked_for_the_graph_resource_of_the_cloud(srv: SandboxServer) -> None:
    assert graph_scope("AzureCloud") == "https://graph.microsoft.com/.default"
    assert graph_scope("AzureUSGovernment") == "https://graph.microsoft.us/.default"
    assert graph_scope("AzureChinaCloud") == "https://microsoftgraph.chinacloudapi.cn/.default"
    cred = RecordingCredential(graph_token(srv))
    GraphTarget(cred, endpoint=srv.url, ca_cert=srv.ca_cert_path, scope=graph_scope("AzureUSGovernment"))\
        .directory().find_users(f"x@{DOMAIN}")
    assert cred.scopes == [("https://graph.microsoft.us/.default",)]
    default = RecordingCredential("unused")
    assert GraphTarget(default).scope is None  # the endpoint's own resource: graph.microsoft.com/.default


def test_request_costs_and_odata_literals() -> None:
    root = "https://graph.microsoft.com/v1.0"
    assert graph_cost("GET", f"{root}/users?$filter=x") == ("reads", 2)
    assert graph_cost("GET", f"{root}/users?%24filter=x&%24select=id") == ("reads", 1)
    assert graph_cost("GET", f"{root}/groups?$filter=x&$select=id,displayName") == ("reads", 1)
    assert graph_cost("GET", f"{root}/groups/1/members") == ("reads", 3)
    assert graph_cost("GET", f"{root}/users/1/transitiveMemberOf?$top=5") == ("reads", 1)
    assert graph_cost("POST", f"{root}/directoryObjects/getByIds") == ("reads", 3)
    assert graph_cost("POST", f"{root}/groups") == ("writes", 1)
    assert odata_string("O'Brien") == "'O''Brien'"
