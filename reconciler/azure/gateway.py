"""AzureGateway: the ArmGateway of the core, implemented with the official Azure SDKs.

SDK models become `model.Live*` values here and nowhere else; SDK exceptions become
`errors.ArmError` (terminal for 4xx, retryable otherwise) with ARM's own code and message.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import requests
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity, IdentityUpdate
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from reconciler.azure.client import ArmTarget, http_session
from reconciler.azure.graph import GraphDirectory, GraphError, GraphTarget
from reconciler.azure.read_schedule import read_state
from reconciler.azure.retry import ArmUnreachableError, DeadlineExceededError, unbuildable_request
from reconciler.errors import ArmError, ReconcilerError, RetryableArmError, TerminalArmError
from reconciler.model import (
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    Modified,
    ReadScope,
    norm_scope,
    role_guid,
    scope_subscription,
)
from reconciler.preflight.evaluate import EVERYONE, DenyAssignment, PermissionBlock, RoleDefinition
from reconciler.resource_id import ResourceId
from reconciler.roles import GUID_RE, Role
from reconciler.textsafe import scrub

T = TypeVar("T")

_HINTS = {
    "AuthorizationFailed": "grant the caller the role this action needs (see docs/permissions.md) and retry",
    "AuthenticationFailed": "sign in (az login), or set the credentials DefaultAzureCredential reads",
    "InvalidAuthenticationToken": "the token is not valid for this endpoint; sign in again",
    "ResourceGroupNotFound": "create the resource group first; reconciler does not manage resource groups",
    "SubscriptionNotFound": "check the subscription id and that the caller can see it",
    "PrincipalNotFound": "check the objectId; a principal created moments ago may need a minute to replicate",
    "RoleDefinitionDoesNotExist": "check the role name or id; custom roles must exist in the subscription",
    "RoleAssignmentUpdateNotPermitted": "a role assignment's principal and scope cannot change; delete it first",
}


CREDENTIAL_HINT = (
    "no credential could sign in. In CI use workload identity federation (GitHub: azure/login with "
    "client-id/tenant-id/subscription-id and `permissions: id-token: write`; or set AZURE_CLIENT_ID, "
    "AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE); on a self-hosted runner with a managed identity set "
    "AZURE_CLIENT_ID to its client id; on a laptop run `az login`. For the sandbox use --sandbox, or "
    "RECONCILER_ACCESS_TOKEN=$(reconciler sandbox token)"
)


def to_arm_error(exc: Exception, address: str | None = None) -> ArmError:
    """Map an SDK exception to our hierarchy, keeping ARM's code and message."""
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # Raised by the credential itself, before any request: its message lists every source
        # DefaultAzureCredential tried and why each was unavailable (never a token).
        return TerminalArmError("CredentialUnavailable", str(exc).strip(), address=address,
                                hint=CREDENTIAL_HINT)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        code = exc.error.code if exc.error and exc.error.code else (exc.reason or str(status))
        message = exc.error.message if exc.error and exc.error.message else str(exc.message)
        cls = TerminalArmError if 400 <= status < 500 and status not in (408, 429) else RetryableArmError
        return cls(code, message, status=status, address=address, hint=_HINTS.get(code))
    if isinstance(exc, ArmUnreachableError):
        return RetryableArmError("ArmUnreachable", str(exc), address=address,
                                 hint="not sent: the run stopped calling ARM; run again once it is reachable")
    if isinstance(exc, DeadlineExceededError):
        return RetryableArmError("ClientThrottled", str(exc), address=address,
                                 hint="ARM's rate limits need more time than the retry limit allows; retry later")
    if unbuildable_request(exc):
        # requests refused to build the request (e.g. a line break in a header value): ARM was
        # never contacted, and the message quotes the header, which may be the bearer token.
        return TerminalArmError("InvalidRequestHeader", scrub(str(exc).splitlines()[0]), address=address,
                                hint="a request header holds a character HTTP forbids; check the token "
                                "(RECONCILER_ACCESS_TOKEN) for line breaks or spaces")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetryableArmError("ConnectionError", str(exc).splitlines()[0], address=address,
                                 hint="ARM could not be reached; check the endpoint and network, then retry")
    raise exc


def _call(fn: Callable[[], T], address: str | None = None) -> T:
    try:
        return fn()
    except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
        raise to_arm_error(e, address) from None


def _split_identity_id(resource_id: str) -> tuple[str, str]:
    rid = ResourceId.parse(resource_id)
    if rid.subscription is None or rid.resource_group is None:
        raise ValueError(f"{resource_id} is not inside a resource group")
    return rid.subscription, rid.resource_group


def _modified(system_data: Any) -> Modified | None:
    if system_data is None:
        return None
    at = system_data.last_modified_at or system_data.created_at
    return Modified(
        by=_shared(system_data.last_modified_by or system_data.created_by),
        at=at.isoformat() if at is not None else None,
        by_type=_shared(system_data.last_modified_by_type or system_data.created_by_type),
    )


# The values that repeat across an estate's live records (subscriptions, groups, regions, the
# tenant, scopes, role GUIDs, principals and their types) are interned as they are converted: the SDK
# deserialises a fresh copy of each per record, and at 10,000 identities and 50,000 grants the
# copies were a large part of a plan's memory (docs/BENCHMARKS.md, plan memory).
def _shared(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def _live_identity(item: Any) -> LiveIdentity:
    sub, rg = _split_identity_id(item.id)
    return LiveIdentity(
        id=item.id, subscription=_shared(sub), resource_group=_shared(rg), name=item.name,
        location=_shared(item.location), tags={_shared(k): _shared(v) for k, v in (item.tags or {}).items()},
        principal_id=(item.principal_id or "").lower(),
        client_id=item.client_id or "", tenant_id=_shared(item.tenant_id or ""),
        modified=_modified(getattr(item, "system_data", None)),
    )


def _live_fic(identity: LiveIdentity, item: Any) -> LiveFederatedCredential:
    return LiveFederatedCredential(
        identity=identity.key, id=item.id, name=item.name, issuer=_shared(item.issuer), subject=item.subject,
        audiences=tuple(_shared(a) for a in item.audiences or ()),
        modified=_modified(getattr(item, "system_data", None)),
    )


def _live_assignment(item: Any) -> LiveRoleAssignment:
    return LiveRoleAssignment(
        id=item.id, name=item.name, scope=_shared(item.scope or "/"),
        role_definition_id=_shared(role_guid(item.role_definition_id)),
        principal_id=_shared((item.principal_id or "").lower()), principal_type=_shared(item.principal_type),
        description=item.description, condition=item.condition, condition_version=item.condition_version,
        modified=Modified(by=_shared(item.updated_by), at=item.updated_on.isoformat() if item.updated_on else None)
        if item.updated_by or item.updated_on else None,
    )


def role_definition_id(scope: str, guid: str) -> str:
    """The subscription-qualified role definition id ARM expects for an assignment at `scope`."""
    sub = scope_subscription(scope)
    prefix = f"/subscriptions/{sub}" if sub else ""
    return f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def _blocks(permissions: Any) -> tuple[PermissionBlock, ...]:
    return tuple(PermissionBlock(tuple(p.actions or ()), tuple(p.not_actions or ()),
                                 getattr(p, "condition", None)) for p in permissions or ())


class AzureGateway:
    """The SDK clients it builds (one HTTP session each) live as long as the gateway: use it
    in a `with` block, or close() it. The target's credential belongs to whoever made it."""

    def __init__(self, target: ArmTarget, *, read_parallelism: int = 8, graph: GraphTarget | None = None,
                 graph_unavailable: str = "") -> None:
        self.target = target
        # Microsoft Graph, for preflight's group memberships; None says why in graph_unavailable.
        self.graph = graph
        self.graph_unavailable = graph_unavailable or "no Microsoft Graph endpoint is configured"
        self.read_parallelism = read_parallelism
        self._lock = threading.Lock()
        self._msi: dict[str, ManagedServiceIdentityClient] = {}
        self._auth: dict[str, AuthorizationManagementClient] = {}
        self._res: dict[str, ResourceManagementClient] = {}
        self._subscriptions: SubscriptionClient | None = None
        self._directory: GraphDirectory | None = None
        self._session: requests.Session | None = None  # shared by the clients above, made with the first

    def close(self) -> None:
        """Close every client built so far; a later call builds new ones."""
        with self._lock:
            clients: list[Any] = [*self._msi.values(), *self._auth.values(), *self._res.values()]
            clients += [c for c in (self._subscriptions, self._directory) if c is not None]
            self._msi, self._auth, self._res = {}, {}, {}
            self._subscriptions = self._directory = None
            session, self._session = self._session, None
        for client in clients:
            client.close()
        if session is not None:
            session.close()

    def __enter__(self) -> AzureGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clients (one per subscription; the SDK binds a client to one) ---------------

    def _http(self) -> requests.Session:
        # under self._lock
        if self._session is None:
            self._session = http_session()
        return self._session

    def _client(self, cache: dict[str, T], factory: Callable[[str, requests.Session], T], subscription: str) -> T:
        with self._lock:
            if subscription not in cache:
                cache[subscription] = factory(subscription, self._http())
            return cache[subscription]

    def msi(self, subscription: str) -> ManagedServiceIdentityClient:
        return self._client(self._msi, self.target.msi, subscription)

    def auth(self, subscription: str) -> AuthorizationManagementClient:
        return self._client(self._auth, self.target.authorization, subscription)

    def resources(self, subscription: str) -> ResourceManagementClient:
        return self._client(self._res, self.target.resources, subscription)

    def subscription_client(self) -> SubscriptionClient:
        with self._lock:
            if self._subscriptions is None:
                self._subscriptions = self.target.subscriptions(self._http())
            return self._subscriptions

    def call_counts(self) -> dict[str, int]:
        return self.target.counter.snapshot()

    def graph_call_counts(self) -> dict[str, int]:
        return self.graph.counter.snapshot() if self.graph is not None else {}

    def throttle_wait_seconds(self) -> float:
        return self.target.stats().throttle_wait_seconds

    def stats_summary(self) -> str:
        return self.target.stats().summary()

    def unreachable(self) -> str | None:
        return self.target.reachability.down

    # -- reads -------------------------------------------------------------------------

    def read_live(self, scope: ReadScope) -> LiveState:
        """Three paged lists and the regions of each subscription, then one FIC list per
        identity the scope wants, scheduled by read_schedule (subscriptions take turns)."""
        return read_state(self, scope.subscriptions, scope.wants_credentials, self.read_parallelism)

    def read_estate(
        self, subscriptions: Iterable[str], owner: str, resource_groups: Iterable[str] = ()
    ) -> LiveState:
        """For `export`: the same reads as `read_live`, with the federated credentials of every
        identity that no other owner holds (unmanaged ones and `owner`'s), in `resource_groups`
        when any are given."""
        groups = {g.lower() for g in resource_groups}
        return read_state(self, subscriptions, lambda i: (i.owner is None or i.owner == owner)
                          and (not groups or i.resource_group.lower() in groups), self.read_parallelism)

    # -- the listings read_state schedules (read_schedule.Listings) -------------------------

    def list_identities(self, subscription: str) -> list[LiveIdentity]:
        api = self.msi(subscription).user_assigned_identities
        return _call(lambda: [_live_identity(i) for i in api.list_by_subscription()], f"subscription {subscription}")

    def list_role_assignments(self, subscription: str) -> list[LiveRoleAssignment]:
        api = self.auth(subscription).role_assignments
        return _call(lambda: [_live_assignment(a) for a in api.list_for_subscription()],
                     f"subscription {subscription}")

    def list_resource_groups(self, subscription: str) -> set[tuple[str, str]]:
        api = self.resources(subscription).resource_groups
        return _call(lambda: {(subscription, (rg.name or "").lower()) for rg in api.list()},
                     f"subscription {subscription}")

    def list_locations(self, subscription: str) -> frozenset[str]:
        api = self.subscription_client().subscriptions
        return _call(lambda: frozenset((loc.name or "").lower() for loc in api.list_locations(subscription)),
                     f"subscription {subscription}")

    def list_federated_credentials(self, identity: LiveIdentity) -> tuple[LiveFederatedCredential, ...]:
        items = _call(lambda: list(self.msi(identity.subscription).federated_identity_credentials.list(
            identity.resource_group, identity.name)), identity.id)
        return tuple(_live_fic(identity, f) for f in items)

    def lookup_role(self, subscription: str, name_or_guid: str) -> Role | None:
        scope = f"/subscriptions/{subscription}"
        auth = self.auth(subscription)
        if GUID_RE.match(name_or_guid):
            try:
                found = auth.role_definitions.get(scope, name_or_guid)
            except HttpResponseError as e:
                if e.status_code == 404:
                    return None
                raise to_arm_error(e, scope) from None
            return Role(guid=found.name.lower(), name=found.role_name)
        escaped = name_or_guid.replace("'", "''")
        items = _call(lambda: list(auth.role_definitions.list(scope, filter=f"roleName eq '{escaped}'")), scope)
        return Role(guid=items[0].name.lower(), name=items[0].role_name) if items else None

    # -- preflight reads (reconciler/preflight) ----------------------------------------------

    def caller_object_id(self) -> str:
        """From the `oid` claim of the ARM token (read, never printed or logged)."""
        import base64
        import json

        scopes = self.target.credential_scopes or (f"{self.target.endpoint.rstrip('/')}/.default",)
        try:
            token = self.target.credential.get_token(*scopes).token
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            oid = claims["oid"]
        except ClientAuthenticationError as e:
            raise to_arm_error(e) from None
        except (IndexError, ValueError, KeyError, TypeError):
            raise ReconcilerError("the access token carries no object id (oid claim); pass --apply-as OBJECT_ID "
                                  "or --no-preflight") from None
        return str(oid).lower()

    def custom_role_definitions(self, subscriptions: Iterable[str]) -> dict[str, RoleDefinition]:
        found: dict[str, RoleDefinition] = {}
        for sub in sorted({s.lower() for s in subscriptions}):
            scope = f"/subscriptions/{sub}"
            api = self.auth(sub).role_definitions
            items = _call(lambda: list(api.list(scope, filter="type eq 'CustomRole'")), scope)  # noqa: B023
            for rd in items:
                guid = str(rd.name).lower()
                found[guid] = RoleDefinition(guid, rd.role_name or guid, _blocks(rd.permissions))
        return found

    def deny_assignments(self, subscriptions: Iterable[str]) -> list[DenyAssignment]:
        found: dict[str, DenyAssignment] = {}
        for sub in sorted({s.lower() for s in subscriptions}):
            api = self.auth(sub).deny_assignments
            for da in _call(lambda: list(api.list()), f"subscription {sub}"):  # noqa: B023
                principals = frozenset(str(p.id).lower() for p in da.principals or () if p.id)
                found[str(da.id).lower()] = DenyAssignment(
                    scope=da.scope or "/", principals=principals or frozenset({EVERYONE}),
                    excluded=frozenset(str(p.id).lower() for p in da.exclude_principals or () if p.id),
                    permissions=_blocks(da.permissions), applies_to_children=not da.do_not_apply_to_child_scopes,
                    name=da.deny_assignment_name or da.name or "",
                )
        return list(found.values())

    def directory(self) -> GraphDirectory:
        """The run's one Microsoft Graph client (names and preflight's group memberships share
        its session); built on first use, closed with the gateway."""
        if self.graph is None:
            raise ReconcilerError(self.graph_unavailable)
        with self._lock:
            if self._directory is None:
                self._directory = self.graph.directory()
            return self._directory

    def group_memberships(self, object_id: str, principal_type: str | None) -> frozenset[str]:
        directory = self.directory()
        try:
            return directory.group_ids(object_id, principal_type)
        except GraphError as e:
            raise ReconcilerError(f"{e.code}: {e.hint}") from None

    # -- identities --------------------------------------------------------------------

    def create_identity(
        self, subscription: str, resource_group: str, name: str, location: str, tags: dict[str, str]
    ) -> LiveIdentity:
        ops = self.msi(subscription).user_assigned_identities
        body = Identity(location=location, tags=tags)
        return _live_identity(_call(lambda: ops.create_or_update(resource_group, name, body), name))

    def update_identity_tags(
        self, subscription: str, resource_group: str, name: str, tags: dict[str, str]
    ) -> LiveIdentity:
        ops = self.msi(subscription).user_assigned_identities
        # PATCH replaces the whole tag set, which is what we manage.
        return _live_identity(_call(lambda: ops.update(resource_group, name, IdentityUpdate(tags=tags)), name))

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None:
        ops = self.msi(subscription).user_assigned_identities
        _call(lambda: ops.delete(resource_group, name), name)  # 204 when already gone

    # -- federated credentials ------------------------------------------------------------

    def put_federated_credential(
        self, subscription: str, resource_group: str, identity: str, name: str,
        issuer: str, subject: str, audiences: list[str],
    ) -> None:
        ops = self.msi(subscription).federated_identity_credentials
        body = FederatedIdentityCredential(issuer=issuer, subject=subject, audiences=audiences)
        _call(lambda: ops.create_or_update(resource_group, identity, name, body), f"{identity}/{name}")

    def delete_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str) -> None:
        ops = self.msi(subscription).federated_identity_credentials
        _call(lambda: ops.delete(resource_group, identity, name), f"{identity}/{name}")

    # -- role assignments --------------------------------------------------------------

    def _scope_subscription(self, scope: str) -> str:
        sub = scope_subscription(scope)
        if sub is None:
            raise TerminalArmError("UnsupportedScope", f"scope {scope} is not inside a subscription")
        return sub

    def put_role_assignment(
        self, *, scope: str, name: str, role_definition_guid: str, principal_id: str,
        principal_type: str | None, description: str | None, condition: str | None,
        condition_version: str | None,
    ) -> LiveRoleAssignment:
        auth = self.auth(self._scope_subscription(scope))
        params = RoleAssignmentCreateParameters(
            role_definition_id=role_definition_id(scope, role_definition_guid),
            principal_id=principal_id,
            # Always explicit: the SDK would default to "User", and for a managed identity
            # "ServicePrincipal" lets ARM skip the directory lookup that fails during replication.
            principal_type=principal_type or "ServicePrincipal",
            description=description, condition=condition,
            condition_version=condition_version or ("2.0" if condition else None),
        )
        try:
            return _live_assignment(auth.role_assignments.create(scope, name, params))
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as e:
            err = to_arm_error(e, f"{scope} ({name})")
            if err.code != "RoleAssignmentExists":
                raise err from None
        # Someone (a concurrent apply, a person) holds the same key under another name: adopt it.
        key = (norm_scope(scope), role_definition_guid.lower(), principal_id.lower())
        existing = _call(lambda: [
            _live_assignment(a)
            for a in auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal_id}'")
        ], scope)
        for ra in existing:
            if ra.key == key:
                return ra
        raise TerminalArmError("RoleAssignmentExists",
                               "ARM reports the assignment exists but no assignment with this key is visible",
                               address=scope)

    def delete_role_assignment(self, assignment_id: str) -> None:
        sub = self._scope_subscription(assignment_id)
        _call(lambda: self.auth(sub).role_assignments.delete_by_id(assignment_id), assignment_id)
