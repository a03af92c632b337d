"""The Graph v1.0 request pipeline and handlers: authenticate (Graph audience) -> route -> budget ->
authorise (directory roles) -> handler -> Graph's JSON and error envelope.

`GraphApi.handle` is transport-free like `SandboxApp.handle`; app.py hands it every `/v1.0/` request.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..directory import Principal, is_guid
from ..store import Doc
from ..tokens import Caller
from . import auth, objects, query
from .errors import GraphError, bad_request, not_found, unsupported_query

if TYPE_CHECKING:  # backend.py imports graph.budget: no import cycle at run time
    from ..backend import Backend

PREFIX = "/v1.0"
CONTENT_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"


def serves(target: str) -> bool:
    path = urlsplit(target).path.lower()
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass
class GraphResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Req:
    method: str
    params: dict[str, str]
    query: dict[str, str]  # lower-cased names
    query_items: list[tuple[str, str]]
    headers: dict[str, str]
    body: Any
    caller: Caller
    backend: Backend
    root: str  # https://host:port/v1.0
    url: str  # root + the request path, without query

    def context(self, entity_set: str, select: list[str] | None = None, entity: bool = False) -> str:
        shape = f"{entity_set}({','.join(select)})" if select else entity_set
        return f"{self.root}/$metadata#{shape}{'/$entity' if entity else ''}"


Handler = Callable[[Req], tuple[int, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    cost: int  # resource units before query-option modifiers (GRAPH-FACTS §15)
    needs: frozenset[str] | None  # directory roles for a write; None: any directory reader
    handler: Handler


# ------------------------------------------------------------------------------------------------
class GraphApi:
    def __init__(self, backend: Backend, *, key: bytes, allow_unsigned: bool = False, max_body_bytes: int = 0):
        self.backend = backend
        self.key = key  # the sandbox's token-signing key: Graph and ARM accept the same signed tokens
        self.allow_unsigned = allow_unsigned
        self.max_body_bytes = max_body_bytes

    def _caller(self, headers: dict[str, str], base_url: str) -> Caller:
        # The Azure CLI asks for Graph tokens for the metadata's Graph resource id, which is the
        # sandbox's own URL: accept that audience too.
        return auth.authenticate_graph(headers.get("authorization"), self.backend, key=self.key,
                                       allow_unsigned=self.allow_unsigned, extra_audiences=(base_url, base_url + "/"))

    def precheck(self, headers: dict[str, str], base_url: str) -> GraphResponse | None:
        """Refuse from the headers alone (401, 413) before the body is read; None: go on."""
        out = self._out(headers)
        try:
            self._caller(headers, base_url)
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError as exc:
                raise GraphError(400, "Request_BadRequest", "The Content-Length header is not a number.") from exc
            if self.max_body_bytes and length > self.max_body_bytes:
                raise GraphError(413, "Request_EntityTooLarge",
                                 f"The request body of {length} bytes exceeds the maximum of {self.max_body_bytes}.")
        except GraphError as err:
            return self._error(err, out)
        return None

    @staticmethod
    def _out(headers: dict[str, str]) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        client_id = headers.get("client-request-id") or headers.get("x-ms-client-request-id") or request_id
        return {"request-id": request_id, "client-request-id": client_id, "OData-Version": "4.0",
                "Cache-Control": "no-cache"}

    @staticmethod
    def _error(err: GraphError, out: dict[str, str]) -> GraphResponse:
        error: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.details:
            error["details"] = err.details
        error["innerError"] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
                               "request-id": out["request-id"], "client-request-id": out["client-request-id"]}
        out.update(err.headers)
        out["Content-Type"] = CONTENT_TYPE
        return GraphResponse(err.status, out, json.dumps({"error": error}).encode())

    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes,
               base_url: str) -> GraphResponse:
        """`headers` must have lower-case names."""
        out = self._out(headers)
        try:
            status, body = self._dispatch(method, target, headers, raw, base_url, out)
        except GraphError as err:
            return self._error(err, out)
        if body is None:
            return GraphResponse(status, out)
        out["Content-Type"] = CONTENT_TYPE
        return GraphResponse(status, out, json.dumps(body).encode())

    def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes, base_url: str,
                  out: dict[str, str]) -> tuple[int, Any]:
        backend = self.backend
        split = urlsplit(target)
        caller = self._caller(headers, base_url)
        path = unquote(split.path)[len(PREFIX):].strip("/")
        route, params = _match(method, path)
        backend.count("graph", f"graph.{route.name}")
        query_items = parse_qsl(split.query, keep_blank_values=True)
        q = {k.lower(): v for k, v in query_items}
        cost = _cost(route, q)
        out["x-ms-resource-unit"] = str(cost)
        config = backend.config
        if config.throttling:
            capacity = config.graph_units_capacity * config.throttle_scale
            key = f"{backend.directory.tenant_id}/{caller.app_id or caller.object_id}"
            wait = backend.graph_budget.take(key, cost, capacity, config.graph_units_window_seconds)
            if wait:
                backend.count("graph.throttled")
                raise GraphError(
                    429, "TooManyRequests",
                    f"Too many requests from Identifier:{key} under category:identity.tenant_application. "
                    "Please try again later.",
                    {"Retry-After": str(wait), "x-ms-throttle-scope": f"Tenant_Application/ReadWrite/{key}",
                     "x-ms-throttle-information": "ResourceUnitLimitExceeded"})
        auth.require(backend, caller, route.needs)
        root = f"{base_url}{PREFIX}"
        req = Req(method, params, q, query_items, headers, _json(raw), caller, backend, root,
                  f"{root}/{split.path[len(PREFIX):].strip('/')}")
        return route.handler(req)


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        # UNVERIFIED wording for an unparsable body.
        raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and "
                          "payload is of valid JSON format.") from exc


def _cost(route: Route, q: dict[str, str]) -> int:
    cost = route.cost
    if route.method == "GET":
        if "$select" in q:
            cost -= 1
        top = q.get("$top", "")
        if top.isdigit() and int(top) < 20:
            cost -= 1
    return max(1, cost)


# --- directory reads ----------------------------------------------------------------------------
def _visible(req: Req, kind: str | None = None) -> list[Principal]:
    backend = req.backend
    now, delay = backend.clock(), backend.config.replication_delay_seconds
    return [p for p in backend.directory.principals()
            if (kind is None or p.principal_type == kind) and p.visible(now, delay)]


def _by_id(req: Req, object_id: str, kind: str | None = None) -> Principal | None:
    if not is_guid(object_id):
        return None
    found = req.backend.directory.get(object_id)
    backend = req.backend
    if found is None or not found.visible(backend.clock(), backend.config.replication_delay_seconds):
        return None
    return found if kind is None or found.principal_type == kind else None


def _user(req: Req) -> Principal:
    key = req.params.get("key") or ""
    alt = req.params.get("alt")
    if alt:
        m = re.fullmatch(r"\('(.*)'\)", alt)
        if m is None:
            raise bad_request(f"Invalid key '{alt}'.")
        key = m.group(1).replace("''", "'")
    found = _by_id(req, key, "User")
    if found is None and not is_guid(key):
        found = next((p for p in _visible(req, "User")
                      if objects.full(p, req.backend)["userPrincipalName"].lower() == key.lower()), None)
    if found is None:
        raise not_found(key)
    return found


def _service_principal(req: Req) -> Principal:
    key = req.params.get("key") or ""
    alt = req.params.get("alt")
    if alt:
        m = re.fullmatch(r"\(appId='(.*)'\)", alt, re.IGNORECASE)
        if m is None:
            raise bad_request(f"Invalid key '{alt}'.")
        app_id = m.group(1).lower()
        found = next((p for p in _visible(req, "ServicePrincipal") if p.app_id.lower() == app_id), None)
        if found is None:
            raise not_found(f"appId={m.group(1)}")
        return found
    sp = _by_id(req, key, "ServicePrincipal")
    if sp is None:
        raise not_found(key)
    return sp


def _group(req: Req) -> Principal:
    key = req.params.get("key") or ""
    group = _by_id(req, key, "Group")
    if group is None:
        raise not_found(key)
    return group


def _entity(req: Req, kind: str, obj: dict[str, Any]) -> tuple[int, Any]:
    select = query.parse_select(req.query.get("$select"))
    body = {"@odata.context": req.context(objects.ENTITY_SETS[kind], select, entity=True)}
    body.update(objects.project(obj, kind, select))
    return 200, body


def _refuse_advanced(req: Req) -> None:
    if "$search" in req.query:
        raise unsupported_query("Request with $search query parameter only works through MSGraph with a special "
                                "request header: 'ConsistencyLevel: eventual'")
    if req.query.get("$count", "").lower() not in ("", "true", "false"):
        raise bad_request("$count is not currently supported.")


def _listing(req: Req, kind: str, items: list[dict[str, Any]] | None = None) -> tuple[int, Any]:
    _refuse_advanced(req)
    predicate = query.parse_filter(req.query.get("$filter"), kind)
    select = query.parse_select(req.query.get("$select"))
    if items is None:
        items = [objects.full(p, req.backend) for p in _visible(req, kind)]
    if predicate is not None:
        items = [o for o in items if predicate(o)]
    order = req.query.get("$orderby")
    if order:
        if predicate is not None:
            raise unsupported_query("Sorting not supported for current query.")
        prop, _, direction = order.strip().partition(" ")
        sortable = ("displayName", "userPrincipalName") if kind == "User" else ("displayName",)
        if prop not in sortable or direction.lower() not in ("", "asc", "desc"):
            raise unsupported_query("Sorting not supported for current query.")
        items.sort(key=lambda o: str(o.get(prop) or "").lower(), reverse=direction.lower() == "desc")
    chunk, next_link = query.page(items, req.query, req.query_items, req.url, req.backend.config.page_size)
    body: dict[str, Any] = {"@odata.context": req.context(objects.ENTITY_SETS[kind], select)}
    if next_link:
        body["@odata.nextLink"] = next_link
    body["value"] = [objects.project(o, kind, select) for o in chunk]
    return 200, body


def _member_of(req: Req, principal: Principal) -> tuple[int, Any]:
    """transitiveMemberOf: groups only (directory roles and administrative units are not modelled)."""
    for option in ("$filter", "$search", "$orderby"):
        if option in req.query:
            # GRAPH-FACTS §7: on this API these are advanced queries only.
            raise unsupported_query(f"The query option '{option}' on transitiveMemberOf needs the advanced query "
                                    "parameters (ConsistencyLevel: eventual and $count=true), which the sandbox "
                                    "does not implement.")
    select = query.parse_select(req.query.get("$select"))
    directory = req.backend.directory
    groups = [directory.get(g) for g in directory.groups_of(principal.object_id)]
    found = sorted((g for g in groups if g is not None), key=lambda g: g.created_at)
    items = [objects.full(g, req.backend) for g in found]
    chunk, next_link = query.page(items, req.query, req.query_items, req.url, req.backend.config.page_size)
    body: dict[str, Any] = {"@odata.context": req.context("directoryObjects", select)}
    if next_link:
        body["@odata.nextLink"] = next_link
    body["value"] = [objects.project(o, "Group", select, typed=True) for o in chunk]
    return 200, body


def list_users(req: Req) -> tuple[int, Any]:
    return _listing(req, "User")


def list_groups(req: Req) -> tuple[int, Any]:
    return _listing(req, "Group")


def list_service_principals(req: Req) -> tuple[int, Any]:
    return _listing(req, "ServicePrincipal")


def get_user(req: Req) -> tuple[int, Any]:
    return _entity(req, "User", objects.full(_user(req), req.backend))


def get_group(req: Req) -> tuple[int, Any]:
    return _entity(req, "Group", objects.full(_group(req), req.backend))


def get_service_principal(req: Req) -> tuple[int, Any]:
    return _entity(req, "ServicePrincipal", objects.full(_service_principal(req), req.backend))


def list_applications(req: Req) -> tuple[int, Any]:
    """App registrations (`az ad app create` looks its display name up first)."""
    docs = sorted(req.backend.store.all(objects.APPLICATION), key=lambda d: str(d["createdDateTime"]))
    return _listing(req, "Application", docs)


def delegated_only(req: Req) -> tuple[int, Any]:
    """`/me`: every sandbox token is app-only (managed identities, the admin), so Graph's answer to an
    app-only `/me` (wording quoted in Azure/artifact-signing-action#80 for `az ad signed-in-user show`
    under a federated identity; status 400 UNVERIFIED)."""
    raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")


def get_application(req: Req) -> tuple[int, Any]:
    key = req.params.get("key") or ""
    doc = req.backend.store.get(objects.APPLICATION, key) if is_guid(key) else None
    if doc is None:
        raise not_found(key)
    return _entity(req, "Application", doc)


def user_member_of(req: Req) -> tuple[int, Any]:
    return _member_of(req, _user(req))


def group_member_of(req: Req) -> tuple[int, Any]:
    return _member_of(req, _group(req))


def sp_member_of(req: Req) -> tuple[int, Any]:
    return _member_of(req, _service_principal(req))


def group_members(req: Req) -> tuple[int, Any]:
    group = _group(req)
    select = query.parse_select(req.query.get("$select"))
    directory = req.backend.directory
    members = [m for m in (directory.get(i) for i in directory.members(group.object_id)) if m is not None]
    chunk, next_link = query.page(members, req.query, req.query_items, req.url, req.backend.config.page_size)
    body: dict[str, Any] = {"@odata.context": req.context("directoryObjects", select)}
    if next_link:
        body["@odata.nextLink"] = next_link
    body["value"] = [objects.project(objects.full(m, req.backend), m.principal_type, select, typed=True)
                     for m in chunk]
    return 200, body


_TYPES = {"user": "User", "group": "Group", "serviceprincipal": "ServicePrincipal", "application": "Application",
          "directoryobject": "*", "directoryobjectpartnerreference": "", "device": "", "orgcontact": ""}


def get_by_ids(req: Req) -> tuple[int, Any]:
    body = req.body if isinstance(req.body, dict) else {}
    ids, types = body.get("ids"), body.get("types")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request("The request body must contain 'ids', a list of object ids.")  # UNVERIFIED wording
    if len(ids) > 1000:
        raise bad_request("Number of included identifiers cannot exceed '1000'.")
    if any(not is_guid(i) for i in ids):
        raise bad_request("Invalid GUID specified.")
    wanted: set[str] = {"*"}
    if types is not None:
        if not isinstance(types, list) or any(not isinstance(t, str) or t.lower() not in _TYPES for t in types):
            raise bad_request(f"Invalid types specified: {types!r}.")  # UNVERIFIED wording
        wanted = {_TYPES[t.lower()] for t in types}
    select = query.parse_select(req.query.get("$select"))
    value, seen = [], set()
    for object_id in ids:
        oid = object_id.lower()
        if oid in seen:
            continue
        seen.add(oid)
        principal = _by_id(req, oid)
        if principal is not None:
            kind, obj = principal.principal_type, objects.full(principal, req.backend)
        elif (doc := req.backend.store.get(objects.APPLICATION, oid)) is not None:
            kind, obj = "Application", doc
        else:
            continue  # unknown ids are left out (UNVERIFIED, GRAPH-FACTS §6)
        if "*" in wanted or kind in wanted:
            value.append(objects.project(obj, kind, select, typed=True))
    return 200, {"@odata.context": req.context("directoryObjects", select), "value": value}


def get_directory_object(req: Req) -> tuple[int, Any]:
    key = req.params.get("key") or ""
    principal = _by_id(req, key)
    select = query.parse_select(req.query.get("$select"))
    if principal is not None:
        obj = objects.project(objects.full(principal, req.backend), principal.principal_type, select, typed=True)
    elif is_guid(key) and (doc := req.backend.store.get(objects.APPLICATION, key)) is not None:
        obj = objects.project(doc, "Application", select, typed=True)
    else:
        raise not_found(key)
    return 200, {"@odata.context": req.context("directoryObjects", select, entity=True), **obj}


# --- creation ----------------------------------------------------------------------------------
_NICKNAME_BAD = re.compile(r"[@()\\\[\]\";:.<>, \x80-\U0010ffff]")
_UPN_LOCAL = re.compile(r"^[A-Za-z0-9'._!#^~-]+$")


def _body(req: Req) -> dict[str, Any]:
    if not isinstance(req.body, dict):
        raise bad_request("Unable to read JSON request payload. Please ensure Content-Type header is set and "
                          "payload is of valid JSON format.")
    return req.body


def _required(body: dict[str, Any], *names: str) -> None:
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            # GRAPH-FACTS §8 (MSGraph-SDK-Code-Generator issue 244); status and code UNVERIFIED.
            raise bad_request(f"Property {name} value is required but is empty or missing.")


def _invalid_value(prop: str, resource: str) -> GraphError:
    return bad_request(f"Invalid value specified for property '{prop}' of resource '{resource}'.",
                       [{"code": "InvalidValue", "target": prop}])


def _conflict(prop: str) -> GraphError:
    return bad_request(f"Another object with the same value for property {prop} already exists.",
                       [{"target": prop, "code": "ObjectConflict"}])


def _created(req: Req, kind: str, obj: dict[str, Any]) -> tuple[int, Any]:
    body = {"@odata.context": req.context(objects.ENTITY_SETS[kind], entity=True)}
    body.update(objects.project(obj, kind, None))
    return 201, body


def create_user(req: Req) -> tuple[int, Any]:
    body = _body(req)
    _required(body, "accountEnabled", "displayName", "mailNickname", "userPrincipalName")
    profile = body.get("passwordProfile")
    if not isinstance(profile, dict) or not profile.get("password"):
        raise bad_request("A password must be specified to create a new user.")
    upn = str(body["userPrincipalName"])
    local, at, domain = upn.rpartition("@")
    if not at or not _UPN_LOCAL.match(local):
        raise _invalid_value("userPrincipalName", "User")
    if domain.lower() != objects.DOMAIN:
        # UNVERIFIED wording; the sandbox tenant has one verified domain, objects.DOMAIN.
        raise bad_request("The domain portion of the userPrincipalName property is invalid. You must use one of "
                          f"the verified domain names in your organization ({objects.DOMAIN}).")
    nickname = str(body["mailNickname"])
    if len(nickname) > 64 or _NICKNAME_BAD.search(nickname.replace(".", "")):
        raise _invalid_value("mailNickname", "User")
    backend = req.backend
    with backend.store.transaction():
        if any(objects.full(p, backend)["userPrincipalName"].lower() == upn.lower()
               for p in backend.directory.principals() if p.principal_type == "User"):
            raise _conflict("userPrincipalName")
        attributes = {"userPrincipalName": upn, "mailNickname": nickname,
                      "accountEnabled": bool(body["accountEnabled"]), "givenName": body.get("givenName"),
                      "surname": body.get("surname"), "jobTitle": body.get("jobTitle"), "mail": body.get("mail"),
                      "createdDateTime": objects.now_iso(backend)}
        user = backend.directory.add(str(uuid.uuid4()), "User", str(body["displayName"]),
                                     created_at=backend.clock(), attributes=attributes)
    return _created(req, "User", objects.full(user, backend))


def create_group(req: Req) -> tuple[int, Any]:
    body = _body(req)
    _required(body, "displayName", "mailEnabled", "mailNickname", "securityEnabled")
    nickname = str(body["mailNickname"])
    if len(nickname) > 64 or _NICKNAME_BAD.search(nickname):
        raise _invalid_value("mailNickname", "Group")
    if len(str(body["displayName"])) > 256:
        raise _invalid_value("displayName", "Group")
    group_types = body.get("groupTypes") or []
    if not isinstance(group_types, list):
        raise _invalid_value("groupTypes", "Group")
    binds = body.get("members@odata.bind") or []
    if not isinstance(binds, list) or len(binds) > 20:
        raise bad_request("At most 20 members can be bound when a group is created.")  # UNVERIFIED wording
    backend = req.backend
    with backend.store.transaction():
        members = [_referenced(req, str(url)) for url in binds]
        attributes = {"mailNickname": nickname, "mailEnabled": bool(body["mailEnabled"]),
                      "securityEnabled": bool(body["securityEnabled"]), "description": body.get("description"),
                      "groupTypes": group_types, "isAssignableToRole": body.get("isAssignableToRole"),
                      "createdDateTime": objects.now_iso(backend)}
        group = backend.directory.add(str(uuid.uuid4()), "Group", str(body["displayName"]),
                                      created_at=backend.clock(), attributes=attributes)
        for member in members:
            backend.directory.add_member(group.object_id, member.object_id)
    return _created(req, "Group", objects.full(group, backend))


def _referenced(req: Req, url: str) -> Principal:
    """The directory object an `@odata.id` / `@odata.bind` URL names (its last segment is the id)."""
    object_id = url.rstrip("/").rsplit("/", 1)[-1]
    if not is_guid(object_id):
        raise bad_request(f"Invalid object identifier '{object_id}'.")  # UNVERIFIED wording
    found = _by_id(req, object_id)
    if found is None:
        raise not_found(object_id)
    return found


def add_group_member(req: Req) -> tuple[int, Any]:
    group = _group(req)
    body = _body(req)
    ref = body.get("@odata.id")
    if not isinstance(ref, str):
        raise bad_request("The request body must contain '@odata.id'.")  # UNVERIFIED wording
    member = _referenced(req, ref)
    backend = req.backend
    with backend.store.transaction():
        if member.object_id in backend.directory.members(group.object_id):
            raise bad_request("One or more added object references already exist for the following modified "
                              "properties: 'members'.")
        if member.object_id == group.object_id:
            raise bad_request("A group cannot be a member of itself.")  # UNVERIFIED wording
        backend.directory.add_member(group.object_id, member.object_id)
    return 204, None


def create_application(req: Req) -> tuple[int, Any]:
    body = _body(req)
    _required(body, "displayName")
    uris = body.get("identifierUris") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise _invalid_value("identifierUris", "Application")
    backend = req.backend
    with backend.store.transaction():
        taken = {u.lower() for d in backend.store.all(objects.APPLICATION) for u in d["identifierUris"]}
        if any(u.lower() in taken for u in uris):
            raise _conflict("identifierUris")
        object_id = str(uuid.uuid4())
        doc: Doc = {"id": object_id, "deletedDateTime": None, "appId": str(uuid.uuid4()),
                    "createdDateTime": objects.now_iso(backend), "displayName": str(body["displayName"]),
                    "description": body.get("description"), "identifierUris": list(uris),
                    "publisherDomain": objects.DOMAIN, "signInAudience": body.get("signInAudience", "AzureADMyOrg"),
                    "appRoles": [], "keyCredentials": [], "passwordCredentials": [], "requiredResourceAccess": [],
                    "tags": list(body.get("tags") or [])}
        backend.store.put(objects.APPLICATION, object_id, "", doc)
    return _created(req, "Application", doc)


def create_service_principal(req: Req) -> tuple[int, Any]:
    body = _body(req)
    _required(body, "appId")
    app_id = str(body["appId"]).lower()
    backend = req.backend
    with backend.store.transaction():
        app = next((d for d in backend.store.all(objects.APPLICATION) if d["appId"] == app_id), None)
        if app is None:
            # GRAPH-FACTS §10 wording; status UNVERIFIED.
            raise bad_request(f"The appId '{body['appId']}' of the service principal does not reference a valid "
                              "application object.")
        if any(p.app_id.lower() == app_id for p in backend.directory.principals()):
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue",
                             "The service principal cannot be created, updated, or restored because the service "
                             f"principal name {app_id} is already in use.")
        attributes = {"appDisplayName": app["displayName"], "servicePrincipalType": "Application",
                      "servicePrincipalNames": [app_id, *app["identifierUris"]],
                      "appOwnerOrganizationId": backend.directory.tenant_id,
                      "createdDateTime": objects.now_iso(backend)}
        sp = backend.directory.add(str(uuid.uuid4()), "ServicePrincipal", app["displayName"],
                                   created_at=backend.clock(), app_id=app_id, attributes=attributes)
    return _created(req, "ServicePrincipal", objects.full(sp, backend))


# --- directory roles ---------------------------------------------------------------------------
def _role_assignment(req: Req, doc: Doc, entity: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if entity:
        out["@odata.context"] = f"{req.root}/$metadata#roleManagement/directory/roleAssignments/$entity"
    out.update({k: doc[k] for k in ("id", "principalId", "roleDefinitionId", "directoryScopeId")})
    return out


def assign_directory_role(req: Req) -> tuple[int, Any]:
    body = _body(req)
    _required(body, "principalId", "roleDefinitionId", "directoryScopeId")
    role, principal_id = str(body["roleDefinitionId"]).lower(), str(body["principalId"]).lower()
    if role not in auth.ROLE_NAMES:
        raise not_found(role)  # UNVERIFIED: the sandbox knows only the roles in auth.ROLE_NAMES
    if body["directoryScopeId"] != "/":
        raise bad_request("The sandbox models directory roles at the tenant scope '/' only.")
    if _by_id(req, principal_id) is None:
        raise not_found(principal_id)
    backend = req.backend
    with backend.store.transaction():
        if any(d["principalId"] == principal_id and d["roleDefinitionId"] == role
               for d in auth.role_assignments(backend)):
            raise bad_request("A conflicting object with one or more of the specified property values is present "
                              "in the directory.")  # UNVERIFIED wording
        doc = {"id": str(uuid.uuid4()), "principalId": principal_id, "roleDefinitionId": role,
               "directoryScopeId": "/"}
        backend.store.put(auth.ROLE_ASSIGNMENT, doc["id"], "", doc)
    return 201, _role_assignment(req, doc, entity=True)


def list_directory_role_assignments(req: Req) -> tuple[int, Any]:
    flt = req.query.get("$filter")
    docs = auth.role_assignments(req.backend)
    if flt:
        m = re.fullmatch(r"\s*(principalId|roleDefinitionId)\s+eq\s+'([^']*)'\s*", flt)
        if m is None:
            raise unsupported_query(f"Unsupported or invalid query filter clause specified: '{flt}'.")
        docs = [d for d in docs if d[m.group(1)] == m.group(2).lower()]
    return 200, {"@odata.context": f"{req.root}/$metadata#roleManagement/directory/roleAssignments",
                 "value": [_role_assignment(req, d, entity=False) for d in docs]}


def delete_directory_role_assignment(req: Req) -> tuple[int, Any]:
    if not req.backend.store.delete(auth.ROLE_ASSIGNMENT, req.params.get("key") or ""):
        raise not_found(req.params.get("key") or "")
    return 204, None


# --- routing -----------------------------------------------------------------------------------
_KEY = r"(?:/(?P<key>[^/()]+)|(?P<alt>\([^/]+\)))"
_RA = "roleManagement/directory/roleAssignments"
_TABLE: list[tuple[str, str, str, int, frozenset[str] | None, Handler]] = [
    ("GET", "users", "users.list", 2, None, list_users),
    ("POST", "users", "users.create", 1, auth.WRITE_USERS, create_user),
    ("GET", f"users{_KEY}", "users.get", 1, None, get_user),
    ("GET", f"users{_KEY}/transitiveMemberOf", "users.transitiveMemberOf", 2, None, user_member_of),
    ("GET", "groups", "groups.list", 1, None, list_groups),
    ("POST", "groups", "groups.create", 1, auth.WRITE_GROUPS, create_group),
    ("GET", f"groups{_KEY}", "groups.get", 1, None, get_group),
    ("GET", f"groups{_KEY}/members", "groups.members", 3, None, group_members),
    ("POST", f"groups{_KEY}/members/\\$ref", "groups.members.add", 1, auth.WRITE_GROUPS, add_group_member),
    ("GET", f"groups{_KEY}/transitiveMemberOf", "groups.transitiveMemberOf", 1, None, group_member_of),
    ("GET", "servicePrincipals", "servicePrincipals.list", 1, None, list_service_principals),
    ("POST", "servicePrincipals", "servicePrincipals.create", 1, auth.WRITE_APPS, create_service_principal),
    ("GET", f"servicePrincipals{_KEY}", "servicePrincipals.get", 1, None, get_service_principal),
    ("GET", f"servicePrincipals{_KEY}/transitiveMemberOf", "servicePrincipals.transitiveMemberOf", 1, None,
     sp_member_of),
    ("GET", "applications", "applications.list", 2, None, list_applications),
    ("POST", "applications", "applications.create", 1, auth.WRITE_APPS, create_application),
    ("GET", f"applications{_KEY}", "applications.get", 2, None, get_application),
    ("POST", "directoryObjects/getByIds", "directoryObjects.getByIds", 3, None, get_by_ids),
    ("GET", f"directoryObjects{_KEY}", "directoryObjects.get", 1, None, get_directory_object),
    ("GET", _RA, "roleAssignments.list", 1, None, list_directory_role_assignments),
    ("POST", _RA, "roleAssignments.create", 1, auth.WRITE_ROLES, assign_directory_role),
    ("DELETE", f"{_RA}{_KEY}", "roleAssignments.delete", 1, auth.WRITE_ROLES, delete_directory_role_assignment),
] + [(m, "me(?:/.*)?", "me", 1, None, delegated_only) for m in ("GET", "POST", "PATCH", "DELETE")]
ROUTES = tuple(Route(m, re.compile(p, re.IGNORECASE), n, c, r, h) for m, p, n, c, r, h in _TABLE)


def _match(method: str, path: str) -> tuple[Route, dict[str, str]]:
    allowed = False
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
        allowed = True
    if allowed:
        # UNVERIFIED wording.
        raise GraphError(405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target.")
    segment = path.split("/")[-1] if path else "v1.0"
    # UNVERIFIED: Graph's answer to a path it does not serve (the sandbox serves only the slice above).
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
