"""The HTTP layer: parse -> authenticate -> route -> faults -> throttle -> latency -> api-version ->
handler -> JSON, plus the control API under /_sandbox/.

`SandboxApp.handle` is transport-free (bytes in, `Response` out) so server.py stays a thin socket
shim. ArmError is turned into ARM's envelope here and nowhere else; any other exception is a sandbox
bug and answers 500 with the exception named, loudly.
"""

from __future__ import annotations

import json
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import graph, routes, scopes, tokens
from .backend import Backend
from .calls import Call, Reply
from .errors import ArmError, invalid_request_content
from .faults import server_error
from .throttle import throttled

CONTROL_PREFIX = "/_sandbox/"


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without answering (injected fault)


class SandboxApp:
    def __init__(self, backend: Backend, default_base_url: str = ""):
        self.backend = backend
        self.default_base_url = default_base_url
        self.graph = graph.GraphApi(backend)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """`headers` must have lower-case names."""
        if graph.serves(target):  # Microsoft Graph on the same server: its own auth and envelope
            base_url = f"https://{headers['host']}" if headers.get("host") else self.default_base_url
            answer = self.graph.handle(method, target, headers, body, base_url)
            return Response(answer.status, answer.headers, b"" if method == "HEAD" else answer.body)
        request_id = str(uuid.uuid4())
        extra = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": headers.get("x-ms-correlation-request-id") or request_id,
        }
        if "x-ms-client-request-id" in headers:
            extra["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        try:
            reply = self._dispatch(method, target, headers, body, extra)
        except ArmError as err:
            reply = Reply(err.status, json.loads(err.body()), err.headers)
        except _Drop:
            return Response(0, drop=True)
        except Exception as exc:  # a sandbox bug: say so instead of hiding it
            reply = Reply(500, {"error": {"code": "SandboxInternalError",
                                          "message": f"{type(exc).__name__}: {exc}",
                                          "details": [{"code": "Traceback", "message": traceback.format_exc()}]}})
        out_headers = {**extra, **reply.headers}
        payload = b""
        if reply.body is not None:
            payload = json.dumps(reply.body).encode()
            out_headers["Content-Type"] = "application/json; charset=utf-8"
        if method == "HEAD":
            payload = b""
        return Response(reply.status, out_headers, payload)

    # ------------------------------------------------------------------------------------------------
    def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes,
                  extra: dict[str, str]) -> Reply:
        split = urlsplit(target)
        path = unquote(split.path) or "/"
        query_items = parse_qsl(split.query, keep_blank_values=True)
        query = {k.lower(): v for k, v in query_items}
        backend = self.backend
        caller = tokens.authenticate(headers.get("authorization"), backend.directory.tenant_id)
        base_url = f"https://{headers['host']}" if headers.get("host") else self.default_base_url
        if path.lower().startswith(CONTROL_PREFIX):
            return self._control(method, path, query, raw, caller)
        route, params = routes.match(method, path)
        backend.count(route.operation_id, route.kind)
        config = backend.config
        fault = backend.faults.draw(config, route.operation_id)
        if fault is not None:
            backend.count("faults")
            if fault == "drop":
                raise _Drop()
            if fault == "slow":
                time.sleep(config.slow_seconds)
            else:
                raise server_error(fault, config.fault_retry_after_seconds)
        sub = scopes.parse(path).subscription_id
        scope_key = f"subscription '{sub}'" if sub else "tenant"
        if config.throttling:
            remaining, wait = backend.throttler.take(config, sub or "", caller.object_id, route.kind)
            extra[f"x-ms-ratelimit-remaining-{'subscription' if sub else 'tenant'}-{route.kind}s"] = str(remaining)
            if wait:
                backend.count("throttled")
                raise throttled(route.kind, scope_key, wait)
        latency = getattr(config, f"latency_{route.kind}_ms")
        if latency > 0:
            time.sleep(latency / 1000.0)
        api_version = routes.check_api_version(route, query.get("api-version"))
        call = Call(method, split.path, params, query, query_items, _json_body(raw), api_version, caller,
                    backend, base_url, route.operation_id)
        return route.handler(call)

    def _control(self, method: str, path: str, query: dict[str, str], raw: bytes, caller: tokens.Caller) -> Reply:
        """Reset, configure, fault scripts, counters and seeding; admin only."""
        backend = self.backend
        if caller.object_id != backend.directory.admin_object_id:
            raise ArmError(403, "AuthorizationFailed", "Only the sandbox admin may use the /_sandbox/ control API.")
        action = path[len(CONTROL_PREFIX):].strip("/").lower()
        body = _json_body(raw) or {}
        if not isinstance(body, dict):
            raise invalid_request_content("The control API takes a JSON object.")
        try:
            if (method, action) == ("POST", "reset"):
                backend.reset()
                return Reply(200, {"reset": True})
            if (method, action) == ("GET", "config"):
                return Reply(200, backend.config.to_dict())
            if (method, action) in (("PATCH", "config"), ("POST", "config")):
                backend.config = backend.config.replace(**body)
                return Reply(200, backend.config.to_dict())
            if (method, action) == ("GET", "requests"):
                return Reply(200, backend.counts())
            if (method, action) == ("POST", "faults"):
                backend.faults.inject(str(body.get("kind", "")), str(body.get("operation", "*")),
                                      int(body.get("count", 1)))
                return Reply(200, {"injected": body})
            if (method, action) == ("POST", "seed"):
                seed(backend, body.get("subscriptions", ()),
                     [tuple(x) for x in body.get("resourceGroups", ())],
                     [tuple(x) for x in body.get("principals", ())],
                     [tuple(x) for x in body.get("groupMembers", ())])
                return Reply(200, {"seeded": True})
            if (method, action) in (("POST", "groupmembers"), ("DELETE", "groupmembers")):
                group_id, member_id = str(body["groupId"]), str(body["memberId"])
                if method == "POST":
                    backend.directory.add_member(group_id, member_id)
                    return Reply(200, {"groupId": group_id.lower(), "memberId": member_id.lower()})
                return Reply(200, {"removed": backend.directory.remove_member(group_id, member_id)})
            if (method, action) == ("GET", "token"):
                principal = backend.directory.find(query.get("principal", backend.directory.admin_object_id))
                token = tokens.issue(principal.object_id, backend.directory.tenant_id, principal.app_id)
                return Reply(200, {"objectId": principal.object_id, "accessToken": token})
        except (TypeError, ValueError, LookupError) as exc:  # KeyError is a LookupError
            raise ArmError(400, "InvalidSandboxControlRequest", str(exc)) from exc
        raise ArmError(400, "NotImplementedInSandbox", f"Unknown control operation {method} '{path}'.")


class _Drop(Exception):
    """Raised to close the connection without a response."""


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request_content(f"The request content was invalid and could not be deserialized: {exc}.") from exc


def seed(backend: Backend, subscriptions: Any, resource_groups: Any, principals: Any,
         group_members: Any = ()) -> None:
    """Idempotently create subscriptions (admin = Owner), resource groups, principals, group members."""
    for sub in subscriptions:
        backend.seed_subscription(str(sub))
    for sub, rg, location in resource_groups:
        backend.seed_resource_group(str(sub), str(rg), str(location))
    for object_id, principal_type, display_name in principals:
        existing = backend.directory.get(str(object_id))
        if existing is None or (existing.principal_type, existing.display_name) != (principal_type, display_name):
            backend.directory.add(str(object_id), str(principal_type), str(display_name))
    for group_id, member_id in group_members:
        backend.directory.add_member(str(group_id), str(member_id))
