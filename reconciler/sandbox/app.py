"""The HTTP layer: parse -> authenticate -> size and media-type checks -> route -> faults ->
throttle -> latency -> api-version -> handler -> JSON, plus the control API under /_sandbox/, the
anonymous cloud metadata document and the managed-identity token endpoints.

`SandboxApp.handle` is transport-free (bytes in, `Response` out) so server.py stays a thin socket
shim; server.py calls `precheck` first so that an unauthenticated or oversized request is refused
before its body is read. ArmError is turned into ARM's envelope here and nowhere else; any other
exception is a sandbox bug: it answers 500 in ARM's envelope and the traceback goes to the server
log (never to the client, which must not learn local paths).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import discovery, graph, identity_endpoint, routes, scopes, tokens
from .backend import Backend
from .calls import Call, Reply
from .errors import ArmError, invalid_request_content
from .faults import server_error
from .throttle import throttled

CONTROL_PREFIX = "/_sandbox/"
# UNVERIFIED limits: ARM's exact request-size limit and nesting limit are not documented for these
# RPs; 4 MiB is far above any identity, FIC or role-assignment body, and 64 levels above any schema.
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64
_log = logging.getLogger(__name__)


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # close the connection without answering (injected fault)


class SandboxApp:
    def __init__(self, backend: Backend, default_base_url: str = "", *, allow_unsigned_tokens: bool = False):
        self.backend = backend
        self.default_base_url = default_base_url
        self.allow_unsigned_tokens = allow_unsigned_tokens
        self.token_key = tokens.signing_key(backend.store)
        self.identity_secret = identity_endpoint.secret(backend.store)
        self.graph = graph.GraphApi(backend, key=self.token_key, allow_unsigned=allow_unsigned_tokens,
                                    max_body_bytes=MAX_BODY_BYTES)

    def _base_url(self, headers: dict[str, str]) -> str:
        return f"https://{headers['host']}" if headers.get("host") else self.default_base_url

    def precheck(self, method: str, target: str, headers: dict[str, str]) -> Response | None:
        """What can be refused from the headers alone (401, 411, 413, 415), before the body is read.

        None means: read the body and call `handle`."""
        if graph.serves(target):  # Microsoft Graph on the same server: its own auth and envelope
            answer = self.graph.precheck(headers, self._base_url(headers))
            return None if answer is None else Response(answer.status, answer.headers, answer.body)
        extra = self._ids(headers)
        try:
            self._admit(method, target, headers, None)
        except ArmError as err:
            return self._respond(method, Reply(err.status, json.loads(err.body()), err.headers), extra)
        return None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """`headers` must have lower-case names."""
        if graph.serves(target):
            answer = self.graph.handle(method, target, headers, body, self._base_url(headers))
            return Response(answer.status, answer.headers, b"" if method == "HEAD" else answer.body)
        extra = self._ids(headers)
        try:
            caller = self._admit(method, target, headers, body)
            reply = self._dispatch(method, target, headers, body, extra, caller)
        except ArmError as err:
            reply = Reply(err.status, json.loads(err.body()), err.headers)
        except _Drop:
            return Response(0, drop=True)
        except Exception:  # a sandbox bug: the details go to the server log, never to the client
            _log.exception("sandbox bug while serving %s %s (x-ms-request-id %s)", method,
                           urlsplit(target).path, extra["x-ms-request-id"])
            reply = Reply(500, {"error": {
                "code": "InternalServerError",
                "message": "The sandbox hit an internal error while processing the request "
                           f"(x-ms-request-id {extra['x-ms-request-id']}); the details are in its server log."}})
        return self._respond(method, reply, extra)

    @staticmethod
    def _ids(headers: dict[str, str]) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        extra = {
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": headers.get("x-ms-correlation-request-id") or request_id,
        }
        if "x-ms-client-request-id" in headers:
            extra["x-ms-client-request-id"] = headers["x-ms-client-request-id"]
        return extra

    def _admit(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> tokens.Caller | None:
        """Authenticate, then check the body's declared (or actual) size and media type.

        Returns the caller, or None for the requests that carry no bearer token (the anonymous
        metadata document; the token endpoints, which check their own secret header)."""
        path = unquote(urlsplit(target).path) or "/"
        caller = None
        if discovery.is_metadata(path):
            pass
        elif identity_endpoint.is_token_path(path):
            identity_endpoint.check_secret(headers, self.identity_secret)
        else:
            caller = tokens.authenticate(headers.get("authorization"), self.backend.directory.tenant_id,
                                         key=self.token_key, allow_unsigned=self.allow_unsigned_tokens)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ArmError(411, "LengthRequired", "The sandbox needs a Content-Length header; it does not "
                           "accept chunked request bodies.")
        try:
            length = int(headers.get("content-length") or 0) if body is None else len(body)
        except ValueError as exc:
            raise ArmError(400, "InvalidContentLength", "The Content-Length header is not a number.") from exc
        if length < 0:
            raise ArmError(400, "InvalidContentLength", "The Content-Length header is negative.")
        if length > MAX_BODY_BYTES:
            raise ArmError(413, "RequestEntityTooLarge",
                           f"The request content size {length} bytes exceeds the maximum of {MAX_BODY_BYTES} "
                           "bytes the sandbox accepts.")
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if length and media_type and media_type != "application/json" and not media_type.endswith("+json"):
            raise ArmError(415, "UnsupportedMediaType", f"The content media type '{media_type}' is not "
                           "supported. Only 'application/json' is supported.")
        return caller

    @staticmethod
    def _respond(method: str, reply: Reply, extra: dict[str, str]) -> Response:
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
                  extra: dict[str, str], caller: tokens.Caller | None) -> Reply:
        split = urlsplit(target)
        path = unquote(split.path) or "/"
        query_items = parse_qsl(split.query, keep_blank_values=True)
        query = {k.lower(): v for k, v in query_items}
        backend = self.backend
        base_url = f"https://{headers['host']}" if headers.get("host") else self.default_base_url
        if discovery.is_metadata(path):
            return discovery.metadata_endpoints(method, query.get("api-version"), base_url)
        if caller is None:  # _admit checked the token endpoint's secret header
            return identity_endpoint.token(self.backend, method, path, query, headers, self.token_key, base_url)
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
            reply = self._control_action(method, action, query, body)
        except (TypeError, ValueError, LookupError) as exc:  # KeyError is a LookupError
            raise ArmError(400, "InvalidSandboxControlRequest", str(exc)) from exc
        if reply is not None:
            return reply
        raise ArmError(400, "NotImplementedInSandbox", f"Unknown control operation {method} '{path}'.")

    def _control_action(self, method: str, action: str, query: dict[str, str], body: dict[str, Any]) -> Reply | None:
        """The reply to one control operation; None when there is no such operation."""
        backend = self.backend
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
            token = tokens.issue(principal.object_id, backend.directory.tenant_id, principal.app_id,
                                 key=self.token_key)
            return Reply(200, {"objectId": principal.object_id, "accessToken": token})
        return None


class _Drop(Exception):
    """Raised to close the connection without a response."""


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request_content(f"The request content was invalid and could not be deserialized: {exc}.") from exc
    except RecursionError as exc:
        raise _too_deep() from exc
    if _depth(value) > MAX_JSON_DEPTH:
        raise _too_deep()
    return value


def _too_deep() -> ArmError:
    return invalid_request_content(f"The request content was invalid and could not be deserialized: it nests "
                                   f"deeper than {MAX_JSON_DEPTH} levels.")


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON, without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                todo.extend((child, level + 1) for child in item)
    return deepest


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
