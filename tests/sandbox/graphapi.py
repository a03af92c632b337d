"""Helpers for the Graph tests: Graph tokens and requests over real HTTPS, and directory builders that
go through the Graph API itself (as a user of the sandbox would)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from reconciler.sandbox import SandboxServer, tokens
from reconciler.sandbox.graph import GRAPH_AUDIENCE

from .conftest import Raw, raw

DOMAIN = "sandbox.onmicrosoft.com"


def graph_token(srv: SandboxServer, object_id: str | None = None) -> str:
    oid = object_id or srv.admin_object_id
    principal = srv.backend.directory.get(oid)
    return tokens.issue(oid.lower(), srv.tenant_id, principal.app_id if principal else "", audience=GRAPH_AUDIENCE)


def g(srv: SandboxServer, method: str, path: str, body: Any = None, token: str | None = None,
      headers: dict[str, str] | None = None) -> Raw:
    """One Graph request; `path` is below /v1.0 (its query may hold spaces and quotes: they are encoded)."""
    path, _, query = path.partition("?")
    target = "/v1.0" + path + (("?" + quote(query, safe="=&$,")) if query else "")
    return raw(srv, method, target, body, token=token or graph_token(srv), headers=headers)


def ok(r: Raw, status: int = 200) -> Any:
    assert r.status == status, (r.status, r.body)
    return r.body


def follow(srv: SandboxServer, path: str, token: str | None = None) -> tuple[list[Any], int]:
    """Every item of a collection, following @odata.nextLink; also the number of pages."""
    first = ok(g(srv, "GET", path, token=token))
    items, pages, body = list(first["value"]), 1, first
    while "@odata.nextLink" in body:
        link = body["@odata.nextLink"]
        assert link.startswith(srv.url + "/v1.0/"), link
        body = ok(raw(srv, "GET", link[len(srv.url):], token=token or graph_token(srv)))
        items += body["value"]
        pages += 1
    return items, pages


def create_user(srv: SandboxServer, nickname: str, display_name: str | None = None) -> dict[str, Any]:
    user: dict[str, Any] = ok(g(srv, "POST", "/users", {
        "accountEnabled": True, "displayName": display_name or nickname, "mailNickname": nickname,
        "userPrincipalName": f"{nickname}@{DOMAIN}",
        "passwordProfile": {"password": "xWwvJ]6NMw+bWH-d", "forceChangePasswordNextSignIn": True}}), 201)
    return user


def create_group(srv: SandboxServer, name: str, nickname: str | None = None) -> dict[str, Any]:
    group: dict[str, Any] = ok(g(srv, "POST", "/groups", {"displayName": name, "mailEnabled": False,
                                                         "mailNickname": nickname or name, "securityEnabled": True}),
                               201)
    return group


def create_app_and_sp(srv: SandboxServer, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    app = ok(g(srv, "POST", "/applications", {"displayName": name}), 201)
    sp = ok(g(srv, "POST", "/servicePrincipals", {"appId": app["appId"]}), 201)
    return app, sp


def add_member(srv: SandboxServer, group_id: str, member_id: str) -> Raw:
    return g(srv, "POST", f"/groups/{group_id}/members/$ref",
             {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member_id}"})
