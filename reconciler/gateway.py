"""The seam between the pure core and ARM, as Protocols by what each caller needs:

    LiveReader   read_live, lookup_role                 the planner's caller (plan, drift, outputs)
    ArmWriter    identity, FIC and assignment writes    the applier
    Telemetry    call counts, throttling, reachability  the CLI's summary and apply's fail-fast
    ArmGateway   all three                              whoever opens a target

`reconciler.azure.AzureGateway` implements them with the official SDKs; the core never imports
the SDK.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from reconciler.model import LiveIdentity, LiveRoleAssignment, LiveState, ReadScope
from reconciler.preflight.evaluate import DenyAssignment, RoleDefinition
from reconciler.roles import Role


class LiveReader(Protocol):
    def read_live(self, scope: ReadScope) -> LiveState:
        """List resource groups, identities and role assignments of each of the scope's
        subscriptions, and the federated credentials of every identity the scope wants."""

    def lookup_role(self, subscription: str, name_or_guid: str) -> Role | None:
        """A role definition (custom ones included) by name or GUID, or None."""


class ArmWriter(Protocol):
    def create_identity(
        self, subscription: str, resource_group: str, name: str, location: str, tags: dict[str, str]
    ) -> LiveIdentity: ...

    def update_identity_tags(
        self, subscription: str, resource_group: str, name: str, tags: dict[str, str]
    ) -> LiveIdentity: ...

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None:
        """Absent already counts as done."""

    def put_federated_credential(
        self, subscription: str, resource_group: str, identity: str, name: str,
        issuer: str, subject: str, audiences: list[str],
    ) -> None: ...

    def delete_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str) -> None:
        """Absent already counts as done."""

    def put_role_assignment(
        self, *, scope: str, name: str, role_definition_guid: str, principal_id: str,
        principal_type: str | None, description: str | None, condition: str | None,
        condition_version: str | None,
    ) -> LiveRoleAssignment:
        """Create (or update the description/condition of) an assignment. When ARM answers
        409 RoleAssignmentExists, the existing assignment with the same key is returned."""

    def delete_role_assignment(self, assignment_id: str) -> None:
        """Absent already counts as done."""


class Telemetry(Protocol):
    def call_counts(self) -> dict[str, int]:
        """ARM requests made so far, by kind (e.g. `GET userAssignedIdentities (list)`)."""

    def graph_call_counts(self) -> dict[str, int]:
        """Microsoft Graph requests made so far (names, preflight's memberships), by kind."""

    def throttle_wait_seconds(self) -> float:
        """Seconds spent so far waiting for ARM's rate limits (client budget and 429s)."""

    def stats_summary(self) -> str:
        """One line on throttling waits, 429s and retries so far."""

    def unreachable(self) -> str | None:
        """Why ARM counts as gone for this run (connections failing for a while), else None."""


class ArmGateway(LiveReader, ArmWriter, Telemetry, Protocol):
    """Everything above: what opening a target gives."""


@runtime_checkable
class AuthorizationReader(Protocol):
    """The reads preflight adds to a plan's (see reconciler/preflight): who the caller is, the
    custom role definitions and deny assignments of each subscription, and one principal's
    transitive group memberships. Each raises `ReconcilerError` when it cannot read."""

    def caller_object_id(self) -> str:
        """The object id (`oid` claim) of the principal the gateway signs in as."""

    def custom_role_definitions(self, subscriptions: Iterable[str]) -> dict[str, RoleDefinition]:
        """Custom role definitions visible in the subscriptions, by lower-case GUID."""

    def deny_assignments(self, subscriptions: Iterable[str]) -> list[DenyAssignment]:
        """Deny assignments at or above each subscription, and below it."""

    def group_memberships(self, object_id: str, principal_type: str | None) -> frozenset[str]:
        """The groups the principal is a direct or nested member of (Microsoft Graph, one call)."""
