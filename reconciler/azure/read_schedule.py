"""The order in which a live read is made: which listing runs when, on how many threads.

A read is four paged lists per subscription (identities, role assignments, resource groups,
regions), then one federated-credential list per identity the caller wants. Each subscription
has its own read bucket at ARM, so work is taken from the subscriptions in turn (never one
subscription's thousand FIC lists while nine buckets sit full), and a subscription's FIC lists
start as soon as its identities are known, while its role assignments are still paging in.

What a listing is (SDK calls, paging, error mapping) is the gateway's business: this module
only sees `Listings` and builds the LiveState.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

from reconciler.errors import ArmError, LiveReadError
from reconciler.model import IdentityKey, LiveFederatedCredential, LiveIdentity, LiveRoleAssignment, LiveState


class Listings(Protocol):
    """One ARM list each, all pages; each raises ArmError when it fails."""

    def list_identities(self, subscription: str) -> list[LiveIdentity]: ...

    def list_role_assignments(self, subscription: str) -> list[LiveRoleAssignment]: ...

    def list_resource_groups(self, subscription: str) -> set[tuple[str, str]]:
        """(subscription, resource group), lower case."""

    def list_locations(self, subscription: str) -> frozenset[str]:
        """The regions the subscription offers, lower case."""

    def list_federated_credentials(self, identity: LiveIdentity) -> tuple[LiveFederatedCredential, ...]: ...


class TakeTurns:
    """A work queue per subscription, served in rotation by a fixed number of threads. Tasks
    may add tasks (a subscription's identities bring its FIC lists). The first error stops
    the hand-out of new work and is raised once the running tasks have ended."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.queues: dict[str, deque[Callable[[], None]]] = {k: deque() for k in keys}
        self.turn = 0
        self.cond = threading.Condition()
        self.running = 0
        self.error: BaseException | None = None

    def add(self, key: str, task: Callable[[], None]) -> None:
        with self.cond:
            self.queues[key].append(task)
            self.cond.notify()

    def _next(self) -> Callable[[], None] | None:
        """Called with the lock held: the next task in rotation, or None when idle."""
        keys = list(self.queues)
        for i in range(len(keys)):
            queue = self.queues[keys[(self.turn + i) % len(keys)]]
            if queue:
                self.turn = (self.turn + i + 1) % len(keys)
                return queue.popleft()
        return None

    def _worker(self) -> None:
        while True:
            with self.cond:
                while True:
                    if self.error is not None:
                        return
                    task = self._next()
                    if task is not None:
                        self.running += 1
                        break
                    if self.running == 0:
                        self.cond.notify_all()  # all done: wake the others so they end too
                        return
                    self.cond.wait()
            try:
                task()
            except BaseException as e:  # handed to run(), which raises it in the caller
                with self.cond:
                    self.error = self.error or e
            finally:
                with self.cond:
                    self.running -= 1
                    self.cond.notify_all()

    def run(self, threads: int) -> None:
        workers = [threading.Thread(target=self._worker, daemon=True) for _ in range(max(1, threads))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if self.error is not None:
            raise self.error


class _Found:
    """What the tasks of one read have found so far (they add to it from several threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.identities: dict[IdentityKey, LiveIdentity] = {}
        self.assignments: list[LiveRoleAssignment] = []
        self.groups: set[tuple[str, str]] = set()
        self.regions: dict[str, frozenset[str]] = {}
        self.fics: dict[IdentityKey, tuple[LiveFederatedCredential, ...]] = {}


def read_state(
    listings: Listings, subscriptions: Iterable[str], wants_credentials: Callable[[LiveIdentity], bool],
    threads: int,
) -> LiveState:
    """The live state of `subscriptions`, with the federated credentials of every identity
    `wants_credentials` picks. Raises LiveReadError on the first listing that fails."""
    subs = sorted({s.lower() for s in subscriptions})
    found = _Found()
    work = TakeTurns(subs)

    def identities(sub: str) -> None:
        items = listings.list_identities(sub)
        with found.lock:
            found.identities.update({i.key: i for i in items})
        for item in sorted(items, key=lambda i: i.key):
            if wants_credentials(item):
                work.add(sub, partial(credentials, item))

    def assignments(sub: str) -> None:
        items = listings.list_role_assignments(sub)
        with found.lock:
            found.assignments.extend(items)

    def groups(sub: str) -> None:
        items = listings.list_resource_groups(sub)
        with found.lock:
            found.groups.update(items)

    def locations(sub: str) -> None:
        # The regions this subscription offers: a location typo fails the plan, not the apply.
        items = listings.list_locations(sub)
        with found.lock:
            found.regions[sub] = items

    def credentials(identity: LiveIdentity) -> None:
        items = listings.list_federated_credentials(identity)
        with found.lock:
            found.fics[identity.key] = items

    for sub in subs:
        # identities first: their FIC lists are most of the work and wait on them
        for task in (identities, assignments, groups, locations):
            work.add(sub, partial(task, sub))
    try:
        work.run(threads)
    except ArmError as e:
        raise LiveReadError(f"reading live state failed: {e}") from None
    return LiveState(
        identities=found.identities, federated_credentials=found.fics,
        role_assignments=_once_each(found.assignments),
        subscriptions=frozenset(subs), resource_groups=frozenset(found.groups), locations=found.regions,
    )


def _once_each(assignments: list[LiveRoleAssignment]) -> tuple[LiveRoleAssignment, ...]:
    """The assignments, those at a scope above a subscription (a management group, the root)
    once: every subscription's list has them. Only those are keyed: a key per grant (its id in
    lower case) was 12 MB at 50,000 grants, built just as the plan's peak memory was reached."""
    seen: set[tuple[str, str]] = set()
    out: list[LiveRoleAssignment] = []
    for ra in assignments:
        if ra.scope[:15].lower() != "/subscriptions/":
            key = (ra.scope.lower(), ra.name.lower())
            if key in seen:
                continue
            seen.add(key)
        out.append(ra)
    return tuple(out)
