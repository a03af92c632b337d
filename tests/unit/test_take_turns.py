"""The read scheduler (reconciler/azure/read_schedule.py) serves subscriptions in turn, runs
tasks added by tasks, raises the first error, and builds the LiveState from the listings."""

from __future__ import annotations

import threading

import pytest

from reconciler.azure.read_schedule import TakeTurns, read_state
from reconciler.errors import LiveReadError, TerminalArmError
from reconciler.model import (
    MANAGED_BY_TAG,
    MANAGED_BY_VALUE,
    OWNER_TAG,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    ReadScope,
)


def test_subscriptions_take_turns_and_tasks_may_add_tasks() -> None:
    order: list[str] = []
    lock = threading.Lock()
    work = TakeTurns(["a", "b"])

    def record(name: str) -> None:
        with lock:
            order.append(name)

    def spawn() -> None:
        record("a0")
        for i in range(1, 4):
            work.add("a", lambda i=i: record(f"a{i}"))  # type: ignore[misc]

    work.add("a", spawn)
    for i in range(3):
        work.add("b", lambda i=i: record(f"b{i}"))  # type: ignore[misc]
    work.run(threads=1)  # one thread: the order is the scheduling order
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2", "a3"]


def test_first_error_is_raised_and_stops_new_work() -> None:
    ran: list[int] = []
    work = TakeTurns(["a"])

    def boom() -> None:
        raise ValueError("boom")

    work.add("a", boom)
    for i in range(5):
        work.add("a", lambda i=i: ran.append(i))  # type: ignore[misc]
    with pytest.raises(ValueError, match="boom"):
        work.run(threads=1)
    assert ran == []


A, B = "aaaaaaaa-0000-0000-0000-000000000000", "bbbbbbbb-0000-0000-0000-000000000000"


def _identity(sub: str, name: str, owner: str | None = None) -> LiveIdentity:
    tags = {MANAGED_BY_TAG: MANAGED_BY_VALUE, OWNER_TAG: owner} if owner else {}
    return LiveIdentity(id=f"/subscriptions/{sub}/resourceGroups/rg/providers/x/{name}", subscription=sub,
                        resource_group="rg", name=name, location="westeurope", tags=tags, principal_id=name,
                        client_id="c", tenant_id="t")


class FakeListings:
    """Two subscriptions; an assignment at the root scope shows up in both, as ARM lists it."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.fic_lists: list[str] = []
        self.lock = threading.Lock()

    def list_identities(self, subscription: str) -> list[LiveIdentity]:
        if subscription == self.fail:
            raise TerminalArmError("AuthorizationFailed", "no", address=f"subscription {subscription}")
        return [_identity(subscription, "declared"), _identity(subscription, "ours", owner="team"),
                _identity(subscription, "theirs", owner="other"), _identity(subscription, "unmanaged")]

    def list_role_assignments(self, subscription: str) -> list[LiveRoleAssignment]:
        root = LiveRoleAssignment(id="/providers/x/roleAssignments/r", name="r", scope="/", role_definition_id="g",
                                  principal_id="p", principal_type=None)
        return [root]

    def list_resource_groups(self, subscription: str) -> set[tuple[str, str]]:
        return {(subscription, "rg")}

    def list_locations(self, subscription: str) -> frozenset[str]:
        return frozenset({"westeurope"})

    def list_federated_credentials(self, identity: LiveIdentity) -> tuple[LiveFederatedCredential, ...]:
        with self.lock:
            self.fic_lists.append(f"{identity.subscription[0]}/{identity.name}")
        return (LiveFederatedCredential(identity=identity.key, id=f"{identity.id}/f", name="f", issuer="i",
                                        subject="s", audiences=()),)


def test_a_read_lists_the_credentials_of_declared_and_owned_identities_only() -> None:
    listings = FakeListings()
    scope = ReadScope(frozenset({A, B}), frozenset({"team"}), frozenset({IdentityKey.of(A, "rg", "declared")}))
    live = read_state(listings, scope.subscriptions, scope.wants_credentials, threads=3)
    assert sorted(listings.fic_lists) == ["a/declared", "a/ours", "b/ours"]
    assert set(live.federated_credentials) == {IdentityKey.of(A, "rg", "declared"), IdentityKey.of(A, "rg", "ours"),
                                               IdentityKey.of(B, "rg", "ours")}
    assert len(live.identities) == 8
    assert len(live.role_assignments) == 1  # listed once per subscription, kept once
    assert live.subscriptions == {A, B} and live.resource_groups == {(A, "rg"), (B, "rg")}
    assert live.locations == {A: frozenset({"westeurope"}), B: frozenset({"westeurope"})}


def test_a_failed_listing_fails_the_read_with_arms_code() -> None:
    with pytest.raises(LiveReadError, match="AuthorizationFailed"):
        read_state(FakeListings(fail=B), [A, B], lambda _: True, threads=2)
