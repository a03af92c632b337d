"""Backend: the sandbox's state and the cross-cutting checks every provider shares.

It owns the store, the directory, the live config, the throttler, the fault plan and the request
counters; providers reach them through `Call.backend`. Subscription and resource-group existence and
RBAC are decided here, once, so every provider answers them with the same ARM errors.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import conditions, rbac, roles, scopes
from .config import SandboxConfig
from .directory import Directory
from .errors import ArmError, resource_group_not_found, subscription_not_found
from .faults import Faults
from .graph.budget import UnitBudget
from .graph.objects import user_principal_name
from .store import Doc, Store
from .throttle import Throttler
from .tokens import Caller

SUBSCRIPTION = "subscription"
RESOURCE_GROUP = "resourceGroup"
IDENTITY = "identity"
FIC = "fic"
ROLE_ASSIGNMENT = "roleAssignment"
ROLE_DEFINITION = "roleDefinition"  # custom roles only; built-ins come from package data


class Backend:
    def __init__(self, store: Store, config: SandboxConfig, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config
        self.clock = clock
        self.directory = Directory(store)
        self.throttler = Throttler(time.monotonic)
        self.graph_budget = UnitBudget(time.monotonic)  # Microsoft Graph's resource units (graph/budget.py)
        self.faults = Faults()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._busy_identities: set[str] = set()
        self._busy_lock = threading.Lock()

    # --- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        self.store.clear()
        self.directory.ensure_admin()
        self.throttler.reset()
        self.graph_budget.reset()
        self.faults.reset()
        with self._counts_lock:
            self._counts.clear()

    def count(self, *keys: str) -> None:
        with self._counts_lock:
            self._counts.update(keys)

    def counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    # --- seeding ---------------------------------------------------------------------------------
    def seed_subscription(self, subscription_id: str) -> None:
        with self.store.transaction():
            key = scopes.subscription_scope(subscription_id)
            if self.store.get(SUBSCRIPTION, key) is None:
                self.store.put(SUBSCRIPTION, key, "", {
                    "id": key,
                    "authorizationSource": "RoleBased",
                    "subscriptionId": subscription_id,
                    "tenantId": self.directory.tenant_id,
                    "displayName": f"Sandbox subscription {subscription_id}",
                    "state": "Enabled",
                    "managedByTenants": [],
                    "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                             "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
                })
            # A deterministic name keeps seeding idempotent and lets re-seeding restore a deleted one.
            admin = self.directory.admin_object_id
            name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-owner:{key.lower()}:{admin}"))
            if self.store.get(ROLE_ASSIGNMENT, name) is None and not any(
                a["properties"]["principalId"] == admin and scopes.key(a["properties"]["scope"]) == key.lower()
                and roles.trailing_guid(a["properties"]["roleDefinitionId"]) == roles.OWNER
                for a in self.role_assignments()
            ):
                self.store.put(ROLE_ASSIGNMENT, name, key, {
                    "properties": {
                        "roleDefinitionId": f"{key}{roles.ROLE_DEFINITIONS_SEGMENT}{roles.OWNER}",
                        "principalId": admin,
                        "principalType": "User",
                        "scope": key,
                        "condition": None,
                        "conditionVersion": None,
                        "createdOn": timestamp(self.clock()),
                        "updatedOn": timestamp(self.clock()),
                        "createdBy": None,
                        "updatedBy": None,
                        "delegatedManagedIdentityResourceId": None,
                        "description": None,
                    },
                    "id": f"{key}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    "type": "Microsoft.Authorization/roleAssignments",
                    "name": name,
                })

    def seed_resource_group(self, subscription_id: str, name: str, location: str) -> None:
        self.seed_subscription(subscription_id)
        with self.store.transaction():
            if self.store.get(RESOURCE_GROUP, rg_key(subscription_id, name)) is None:
                self.put_resource_group(subscription_id, name, location, None)

    def put_resource_group(self, subscription_id: str, name: str, location: str, tags: object) -> tuple[Doc, bool]:
        doc: Doc = {
            "id": scopes.resource_group_scope(subscription_id, name),
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "properties": {"provisioningState": "Succeeded"},
        }
        if tags is not None:
            doc["tags"] = tags
        with self.store.transaction():
            existing = self.store.get(RESOURCE_GROUP, rg_key(subscription_id, name))
            if existing is not None:
                # ARM keeps the casing the group was created with.
                doc["id"], doc["name"] = existing["id"], existing["name"]
            created = self.store.put(RESOURCE_GROUP, rg_key(subscription_id, name),
                                     scopes.subscription_scope(subscription_id), doc)
        return doc, created

    # --- existence checks ------------------------------------------------------------------------
    def require_subscription(self, subscription_id: str) -> Doc:
        doc = self.store.get(SUBSCRIPTION, scopes.subscription_scope(subscription_id))
        if doc is None:
            raise subscription_not_found(subscription_id)
        return doc

    def require_resource_group(self, subscription_id: str, name: str) -> Doc:
        doc = self.store.get(RESOURCE_GROUP, rg_key(subscription_id, name))
        if doc is None:
            raise resource_group_not_found(name)
        return doc

    def require_scope(self, scope: str) -> scopes.ParsedScope:
        """Validate the subscription and resource group a scope names (foreign resources are trusted)."""
        parsed = scopes.parse(scope)
        if parsed.subscription_id is not None:
            self.require_subscription(parsed.subscription_id)
            if parsed.resource_group is not None:
                self.require_resource_group(parsed.subscription_id, parsed.resource_group)
        return parsed

    # --- RBAC ------------------------------------------------------------------------------------
    def role_assignments(self) -> list[Doc]:
        return self.store.all(ROLE_ASSIGNMENT)

    def role_definition(self, role_definition_id: str) -> roles.RoleDefinition | None:
        """A built-in or custom role, by id or GUID."""
        guid = roles.trailing_guid(role_definition_id)
        builtin = roles.builtin_roles().get(guid)
        if builtin is not None:
            return builtin
        doc = self.store.get(ROLE_DEFINITION, guid)
        return None if doc is None else roles.custom_role_from_doc(doc)

    def custom_roles(self) -> list[roles.RoleDefinition]:
        return [roles.custom_role_from_doc(d) for d in self.store.all(ROLE_DEFINITION)]

    def principal_ids(self, object_id: str) -> frozenset[str]:
        """The caller and every group it is transitively a member of."""
        return self.directory.principal_ids(object_id)

    def assignments_of(self, principal_ids: frozenset[str]) -> list[Doc]:
        """Role assignments granted to any of these principals, from an index by principal: a
        permission check runs on every request and must not walk every assignment."""
        by_principal = self.store.index(ROLE_ASSIGNMENT, _principal_key)
        return [doc for pid in principal_ids for doc in by_principal.get(pid, ())]

    def can(self, caller: Caller, action: str, scope: str,
            attributes: conditions.Attributes | None = None) -> bool:
        principals = self.principal_ids(caller.object_id)
        return rbac.allowed(self.assignments_of(principals), principals, action, scope,
                            self.role_definition, attributes)

    def client_name(self, caller: Caller) -> str:
        """Who "The client '…'" of a 403 names: a user by UPN (ARM-FACTS section 11), any other caller by
        object id, not appid: public captures for service principals and managed identities show the same
        GUID twice (Azure/azure-sdk-for-net#5026 and #1157, sjkp/letsencrypt-siteextension#279,
        Azure/aad-pod-identity#1392)."""
        principal = self.directory.get(caller.object_id)
        if principal is not None and principal.principal_type == "User":
            return user_principal_name(principal)
        return caller.object_id

    def authorize(self, caller: Caller, action: str, scope: str,
                  attributes: conditions.Attributes | None = None, shown_scope: str | None = None) -> None:
        """403 AuthorizationFailed unless the caller may; `attributes` feed ABAC conditions."""
        if not self.can(caller, action, scope, attributes):
            raise rbac.authorization_failed(self.client_name(caller), caller.object_id, action,
                                            scopes.normalize(shown_scope or scope))

    # --- federated credential write serialisation ------------------------------------------------
    @contextmanager
    def identity_write_slot(self, identity_id: str) -> Iterator[None]:
        """Hold the identity busy for the configured window; a concurrent FIC write gets 409."""
        key = identity_id.lower()
        with self._busy_lock:
            if key in self._busy_identities:
                raise ArmError(
                    409,
                    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                    f"Too many Federated Identity Credentials are written concurrently for the managed identity "
                    f"'{identity_id}'. Concurrent Federated Identity Credentials writes under the same managed "
                    "identity are not supported.",
                )
            self._busy_identities.add(key)
        try:
            yield
            # The write's own duration: a client that waits for each response never overlaps.
            time.sleep(self.config.fic_write_window_seconds)
        finally:
            with self._busy_lock:
                self._busy_identities.discard(key)


def _principal_key(doc: Doc) -> str:
    return str(doc["properties"]["principalId"]).lower()


def rg_key(subscription_id: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourcegroups/{name}".lower()


def timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1e7) % 10**7:07d}Z"


