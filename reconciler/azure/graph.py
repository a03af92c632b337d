"""GraphDirectory: who is behind a name or an object id, asked of Microsoft Graph v1.0.

    find_users(upn)                    GET /users?$filter=userPrincipalName eq '…'
    find_groups(display_name)          GET /groups?$filter=displayName eq '…'      (names are not unique)
    find_service_principals(key)       GET /servicePrincipals?$filter=appId eq '…' (a GUID) or displayName eq '…'
    get_by_ids(ids)                    POST /directoryObjects/getByIds, 1000 ids per call
    group_ids(object_id, type)         GET /{servicePrincipals|users|groups}/{id}/transitiveMemberOf?$select=id

Every finder returns all matches, so the caller can report "nothing" and "more than one" with the
candidates. Unknown ids are simply absent from get_by_ids' answer.

Graph goes through azure-core's pipeline, with the same credential as ARM (a token for the cloud's
Graph resource, `{graph}/.default`), the same ArmRetryPolicy (429 waits Retry-After; 5xx and dropped
connections back off), and its own client-side RateBudget sized like Graph's identity budget (3,500
resource units per 10 s for an app in a small tenant; writes 3,000 per 150 s), charged in resource
units per request as Graph charges them. Why not the msgraph-sdk: see "Why azure-core for Graph" in
README.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlparse

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HTTPPolicy, UserAgentPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from reconciler.azure import transports
from reconciler.azure.budget import READS, TENANT, WRITES, BucketLimit, BudgetConfig, BudgetTimeout, RateBudget
from reconciler.azure.client import CallCounter
from reconciler.azure.retry import MAX_WAIT_KEY, ArmRetryPolicy, Backoff, DeadlineExceededError, parse_retry_after
from reconciler.errors import ReconcilerError
from reconciler.principals import DirectoryPermissionError

# Graph's service root per cloud, keyed like target.CLOUDS (GRAPH-FACTS §13).
GRAPH_ENDPOINTS = {
    "AzureCloud": "https://graph.microsoft.com",
    "AzureUSGovernment": "https://graph.microsoft.us",
    "AzureChinaCloud": "https://microsoftgraph.chinacloudapi.cn",
}
MAX_IDS_PER_CALL = 1000  # getByIds' limit (GRAPH-FACTS §6)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TYPES = {"#microsoft.graph.user": "User", "#microsoft.graph.group": "Group",
          "#microsoft.graph.servicePrincipal": "ServicePrincipal"}
# Least application permissions per lookup (GRAPH-FACTS §14), for the 403 hint.
READ_PERMISSIONS = {
    "users": "User.Read.All",
    "groups": "GroupMember.Read.All",
    "servicePrincipals": "Application.Read.All",
    "directoryObjects": "Directory.Read.All",
}


def graph_scope(cloud: str) -> str:
    """The token scope for Graph in `cloud` (tokens are per cloud, even with a custom endpoint)."""
    return f"{GRAPH_ENDPOINTS[cloud]}/.default"


def graph_budget_config() -> BudgetConfig:
    """Graph's identity-and-access limits for one app in a small tenant (GRAPH-FACTS §15), in
    resource units: reads draw 1-5 units a request, writes 1."""
    return BudgetConfig(reads=BucketLimit(3500, 350.0), writes=BucketLimit(3000, 20.0),
                        deletes=BucketLimit(3000, 20.0))


@dataclass(frozen=True)
class DirectoryObject:
    """One user, group or service principal as Graph names it."""

    object_id: str
    type: str  # "User", "Group", "ServicePrincipal", or Graph's own type name for anything else
    display_name: str | None
    user_principal_name: str | None = None
    app_id: str | None = None

    def describe(self) -> str:
        """`Group 'sg-admins' (1111…)`, with the UPN or appId when there is one."""
        extra = self.user_principal_name or (f"appId {self.app_id}" if self.app_id else None)
        name = f" '{self.display_name}'" if self.display_name is not None else ""
        return f"{self.type}{name}" + (f" <{extra}>" if extra else "") + f" ({self.object_id})"


class GraphError(ReconcilerError):
    """A Graph call failed: its status, Graph's error code and message, and what to do."""

    def __init__(self, status: int | None, code: str, message: str, what: str, hint: str) -> None:
        self.status, self.code, self.graph_message, self.what, self.hint = status, code, message, what, hint
        shown = f"{status} {code}" if status else code
        super().__init__(f"Microsoft Graph: {what} failed: {shown}: {message}\n  hint: {hint}")


class GraphPermissionError(GraphError, DirectoryPermissionError):
    """403: the credential may not read the directory. `permission` is the least Graph application
    permission that would allow this lookup."""

    def __init__(self, status: int, code: str, message: str, what: str, permission: str) -> None:
        self.permission = permission
        super().__init__(status, code, message, what,
                         f"grant the signed-in principal the Graph application permission {permission} (or the "
                         "Directory Readers role); without it principals are shown by object id only")


class GraphCredentialError(GraphError, DirectoryPermissionError):
    """The credential signed in to ARM but got no token for Graph (no consent, a token source that
    serves ARM only): treated like a 403, so plans of object ids still work."""

    def __init__(self, message: str, what: str) -> None:
        self.reason = f"the credential could not get a Microsoft Graph token ({message})"
        super().__init__(None, "CredentialUnavailable", message, what,
                         "sign in with a credential that may get tokens for Microsoft Graph")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def graph_cost(method: str, url: str) -> tuple[str, int]:
    """Graph's bucket (reads or writes) and resource units for a request (GRAPH-FACTS §15)."""
    parsed = urlparse(url)
    path = [s.lower() for s in parsed.path.split("/") if s][1:]  # below /v1.0
    if method.upper() not in ("GET", "HEAD"):
        return (READS, 3) if path[-2:] == ["directoryobjects", "getbyids"] else (WRITES, 1)
    cost = 1
    if path in (["users"], ["applications"]):
        cost = 2
    elif path and path[-1] == "members":
        cost = 3
    elif path and path[-1] == "transitivemembers":
        cost = 5
    elif path[:1] == ["users"] and path[-1:] == ["transitivememberof"]:
        cost = 2
    query = parsed.query.lower()
    if "%24select=" in query or "$select=" in query:
        cost -= 1
    top = re.search(r"(?:%24|\$)top=(\d+)", query)
    if top and int(top.group(1)) < 20:
        cost -= 1
    return READS, max(1, cost)


class GraphBudgetPolicy(HTTPPolicy[Any, Any]):
    """Charges every attempt its resource units from a RateBudget, and pauses it on a 429."""

    def __init__(self, budget: RateBudget) -> None:
        super().__init__()
        self.budget = budget

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        kind, cost = graph_cost(http.method, http.url)
        max_wait = request.context.get(MAX_WAIT_KEY)
        try:
            waited = 0.0
            for _ in range(cost):
                left = None if max_wait is None else max(0.0, max_wait - waited)
                waited += self.budget.acquire(TENANT, kind, max_wait=left)
        except BudgetTimeout as exc:
            raise DeadlineExceededError(f"client-side Graph budget: {exc}") from exc
        response: PipelineResponse[Any, Any] = self.next.send(request)
        if response.http_response.status_code == 429:
            self.budget.throttled(TENANT, kind, parse_retry_after(response.http_response.headers))
        return response


_ID_SEGMENT = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def graph_request_kind(method: str, path: str) -> str:
    """A short name for a Microsoft Graph request, ids left out: `GET servicePrincipals/{id}/transitiveMemberOf`."""
    parts = [p for p in path.split("/") if p]
    for version in ("v1.0", "beta"):  # after the version: a sovereign cloud or a sandbox may serve it under a prefix
        if version in parts:
            parts = parts[parts.index(version) + 1:]
            break
    return f"{method} " + "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in parts)


@dataclass
class GraphTarget:
    """Where Graph is and how to call it; one per run (its budget is shared by every call)."""

    credential: TokenCredential
    endpoint: str = GRAPH_ENDPOINTS["AzureCloud"]
    scope: str | None = None  # None: `{endpoint}/.default`
    ca_cert: str | None = None
    retry_total: int = 10
    retry_timeout: float = 120.0
    retry_backoff: Backoff = field(default_factory=Backoff)
    budget: RateBudget | None = field(default_factory=lambda: RateBudget(graph_budget_config()))
    transport: Any = None
    clock: Callable[[], float] = time.monotonic
    sleeper: Callable[[float], None] = time.sleep
    counter: CallCounter = field(default_factory=lambda: CallCounter(kind_of=graph_request_kind))

    def directory(self) -> GraphDirectory:
        """A new directory client (its own HTTP session), for the caller to close."""
        retry = ArmRetryPolicy(max_retries=self.retry_total, total_seconds=self.retry_timeout,
                               backoff=self.retry_backoff, clock=self.clock, sleeper=self.sleeper)
        policies: list[Any] = [UserAgentPolicy(sdk_moniker="reconciler"), retry]
        if self.budget is not None:
            policies.append(GraphBudgetPolicy(self.budget))
        policies.append(self.counter)  # after the budget: it counts what goes out, retries included
        policies.append(BearerTokenCredentialPolicy(self.credential, self.scope or f"{self.endpoint}/.default"))
        transport = (self.transport or transports.for_endpoint(self.endpoint)
                     or RequestsTransport(connection_verify=self.ca_cert or True))
        client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            base_url=self.endpoint, policies=policies, transport=transport)
        return GraphDirectory(client, self.endpoint.rstrip("/") + "/v1.0")


class GraphDirectory:
    """Lookups in Microsoft Graph over one HTTP session: close it (or use `with`) when done."""

    def __init__(self, client: PipelineClient[HttpRequest, HttpResponse], root: str) -> None:
        self._client = client
        self._root = root

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GraphDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups ---------------------------------------------------------------------------
    def find_users(self, user_principal_name: str) -> list[DirectoryObject]:
        return self._find("users", f"userPrincipalName eq {odata_string(user_principal_name)}",
                          "id,displayName,userPrincipalName", "User", f"user '{user_principal_name}'")

    def find_groups(self, display_name: str) -> list[DirectoryObject]:
        return self._find("groups", f"displayName eq {odata_string(display_name)}", "id,displayName", "Group",
                          f"group '{display_name}'")

    def find_service_principals(self, app_id_or_name: str) -> list[DirectoryObject]:
        """By appId when the key is a GUID (falling back to the display name), else by display name."""
        what = f"service principal '{app_id_or_name}'"
        if _GUID.match(app_id_or_name):
            found = self._find("servicePrincipals", f"appId eq {odata_string(app_id_or_name)}",
                               "id,displayName,appId", "ServicePrincipal", what)
            if found:
                return found
        return self._find("servicePrincipals", f"displayName eq {odata_string(app_id_or_name)}",
                          "id,displayName,appId", "ServicePrincipal", what)

    def get_by_ids(self, object_ids: Iterable[str]) -> dict[str, DirectoryObject]:
        """The users, groups and service principals among `object_ids`, by lower-case id; one call
        per 1000 ids. Ids that name nothing are absent."""
        unique = list(dict.fromkeys(i.lower() for i in object_ids))
        found: dict[str, DirectoryObject] = {}
        for start in range(0, len(unique), MAX_IDS_PER_CALL):
            chunk = unique[start:start + MAX_IDS_PER_CALL]
            body = {"ids": chunk, "types": ["user", "group", "servicePrincipal"]}
            answer = self._call("POST", f"{self._root}/directoryObjects/getByIds", "directoryObjects",
                                f"looking up {len(chunk)} object id(s)", body)
            for item in answer.get("value", []):
                odata_type = str(item.get("@odata.type", ""))
                obj = _object(item, _TYPES.get(odata_type, odata_type.removeprefix("#microsoft.graph.")))
                found[obj.object_id] = obj
        return found

    def group_ids(self, object_id: str, principal_type: str | None) -> frozenset[str]:
        """The groups `object_id` is a direct or nested member of (lower-case ids), for RBAC's
        group grants: one paged call (999 a page). `principal_type` picks the collection; a
        principal of unknown type is taken for a service principal, as apply identities are."""
        collection = {"User": "users", "Group": "groups"}.get(principal_type or "", "servicePrincipals")
        url = f"{self._root}/{collection}/{quote(object_id, safe='')}/transitiveMemberOf?$select=id&$top=999"
        items = self._pages(url, collection, f"listing the group memberships of {object_id}")
        return frozenset(str(item["id"]).lower() for item in items
                         if item.get("@odata.type", "#microsoft.graph.group") == "#microsoft.graph.group")

    # -- plumbing --------------------------------------------------------------------------
    def _find(self, collection: str, odata_filter: str, select: str, kind: str, what: str) -> list[DirectoryObject]:
        url = (f"{self._root}/{collection}?$filter={quote(odata_filter, safe='')}"
               f"&$select={select}")
        return [_object(item, kind) for item in self._pages(url, collection, f"looking up {what}")]

    def _pages(self, url: str, collection: str, what: str) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            page = self._call("GET", next_url, collection, what)
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            next_url = str(link) if link else None

    def _call(self, method: str, url: str, collection: str, what: str, body: Any = None) -> dict[str, Any]:
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        try:
            response = self._client.send_request(request)
        except DeadlineExceededError as exc:
            raise GraphError(None, "ClientBudgetExhausted", str(exc), what,
                             "Graph is throttling this caller; retry later") from exc
        except ClientAuthenticationError as exc:
            if getattr(exc, "status_code", None) is not None:
                raise GraphError(exc.status_code, "AuthenticationFailed", str(exc).splitlines()[0], what,
                                 "the credential's token is not valid for Microsoft Graph; sign in again") from exc
            raise GraphCredentialError(str(exc).strip().splitlines()[0][:300], what) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise GraphError(None, type(exc).__name__, str(exc).splitlines()[0], what,
                             "check the network path to Microsoft Graph and retry") from exc
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            code = str(error.get("code") or response.reason or "Error")
            message = str(error.get("message") or response.text()[:200])
            if response.status_code == 403:
                raise GraphPermissionError(403, code, message, what, READ_PERMISSIONS[collection])
            hints = {401: "the credential's token is not valid for Microsoft Graph; sign in again",
                     429: "Graph kept throttling this caller past the retry budget; retry later"}
            raise GraphError(response.status_code, code, message, what,
                             hints.get(response.status_code, "see the Graph error above"))
        if not isinstance(payload, dict):
            raise GraphError(response.status_code, "InvalidResponse", "the answer is not a JSON object", what,
                             "check --graph-endpoint")
        return payload


def _object(item: dict[str, Any], kind: str) -> DirectoryObject:
    return DirectoryObject(str(item["id"]).lower(), kind, item.get("displayName"),
                           item.get("userPrincipalName"), item.get("appId"))
