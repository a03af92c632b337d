"""Execute a Plan against ARM, in dependency order, in parallel where ARM allows it.

Every step is idempotent (PUT is create-or-update, DELETE of something absent is done), so
re-running after a crash or a failure converges. A failed step skips only the steps that
require it; independent steps go on. The report says, for every step, what happened.

The walk is a scheduler: a step whose requirements are done is queued (`_ReadyQueue` orders
them), handed to a free worker, and its dependents queued when it is done. A step that ARM
answers "not yet" goes back with a not-before time (apply_retry) instead of sleeping in its
worker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from reconciler.addresses import Address
from reconciler.apply_retry import CONCURRENT_FIC_WRITES as CONCURRENT_FIC_WRITES  # re-exported
from reconciler.apply_retry import (
    PRINCIPAL_NOT_FOUND,
    Clock,
    DelayedSteps,
    MonotonicClock,
    RetryLater,
    retrying,
)
from reconciler.apply_retry import RetryPolicy as RetryPolicy  # re-exported: apply_plan takes one
from reconciler.errors import ArmError, PlanError, ReconcilerError
from reconciler.gateway import ArmWriter
from reconciler.model import assignment_name
from reconciler.payloads import FederatedCredentialValue, IdentityValue, RoleAssignmentValue, expect
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.textsafe import one_line


class StepStatus(StrEnum):
    """What became of one step (the report's `status`)."""

    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    # An interrupted apply: steps never handed out, and steps still in flight when it stopped at
    # once (their outcome is unknown until the next plan reads Azure).
    NOT_STARTED = "not-started"
    INTERRUPTED = "interrupted"


DONE, FAILED, SKIPPED = StepStatus.DONE, StepStatus.FAILED, StepStatus.SKIPPED
NOT_STARTED, INTERRUPTED = StepStatus.NOT_STARTED, StepStatus.INTERRUPTED
STATUSES = tuple(StepStatus)


@dataclass(frozen=True)
class StepResult:
    address: str
    action: Action
    status: StepStatus
    detail: str = ""
    error_code: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "status": str(self.status),
            "detail": self.detail,
            "error_code": self.error_code,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ApplyReport:
    results: list[StepResult] = field(default_factory=list)
    interrupted: bool = False  # a stop was requested (a signal) before every step ran
    stopped: str | None = None  # why the run stopped handing out steps early, if it did

    @property
    def ok(self) -> bool:
        return all(r.status == DONE for r in self.results)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "interrupted": self.interrupted, "counts": self.counts()}
        if self.stopped:
            data["stopped"] = self.stopped
        return {**data, "steps": [r.to_json() for r in self.results]}


class StopRequest:
    """How the outside (the CLI's signal handlers) stops a run: `request()` hands out no new
    step and waits up to `grace_seconds` for those in flight (a step waiting to retry fails at
    once); `now()` stops waiting at once.
    `announce(n)` is called once, from the applier's thread, with the number in flight."""

    def __init__(self, grace_seconds: float = 60.0, announce: Callable[[int], None] | None = None) -> None:
        self.grace_seconds = grace_seconds
        self.announce = announce or (lambda in_flight: None)
        self.requested = threading.Event()
        self.immediate = threading.Event()

    def request(self) -> None:
        self.requested.set()

    def now(self) -> None:
        self.requested.set()
        self.immediate.set()


class Reporter(Protocol):
    """Progress seam (Terraform's Hook): the applier never prints."""

    def step_started(self, change: Change) -> None: ...

    def step_finished(self, result: StepResult) -> None: ...


class NullReporter:
    def step_started(self, change: Change) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        pass


def _fic_identity_parts(change: Change, identities: dict[str, tuple[str, str, str]]) -> tuple[str, str, str]:
    """Subscription, resource group and name of a credential's identity, as declared (its
    identity's change holds them; every plan has one for each credential's identity): the
    address holds them lower-cased, a key, and ARM is sent the names people wrote."""
    parent = Address.parse(change.address).identity
    return identities.get(str(parent)) or (parent.subscription, parent.resource_group, parent.identity_name)


class _Run:
    def __init__(self, plan: Plan, gateway: ArmWriter, retry: RetryPolicy) -> None:
        self.retry = retry
        self.gateway = gateway
        self.principals: dict[str, str] = {}  # identity address -> principal id
        # identity address -> (subscription, resource group, name) as declared (or as live, when deleted)
        self.identities: dict[str, tuple[str, str, str]] = {}
        for c in plan.changes:
            if c.type is not ResourceType.IDENTITY:
                continue
            value = expect(c.after if c.after is not None else c.before, IdentityValue)
            self.identities[c.address] = value.parts()
            if c.after is not None and value.principal_id:
                self.principals[c.address] = value.principal_id
        self._lock = threading.Lock()
        # ARM rejects concurrent FIC writes under one identity: one lock per identity.
        self._fic_locks: dict[str, threading.Lock] = {}

    def fic_lock(self, identity_address: str) -> threading.Lock:
        with self._lock:
            return self._fic_locks.setdefault(identity_address, threading.Lock())

    def execute(self, change: Change) -> str:
        handler = _HANDLERS[change.type]
        return handler(self, change)

    # -- identities ----------------------------------------------------------------

    def identity(self, change: Change) -> str:
        if change.action is Action.DELETE:
            self.gateway.delete_identity(*expect(change.before, IdentityValue).parts())
            return "deleted"
        after = expect(change.after, IdentityValue)
        sub, rg, name = after.parts()
        tags = dict(after.tags)
        if change.action in (Action.UPDATE, Action.ADOPT):
            self.gateway.update_identity_tags(sub, rg, name, tags)
            return "adopted (ownership tags written)" if change.action is Action.ADOPT else "tags updated"
        if change.action is Action.REPLACE:
            self.gateway.delete_identity(*expect(change.before, IdentityValue).parts())
        live = self.gateway.create_identity(sub, rg, name, after.location, tags)
        with self._lock:
            self.principals[change.address] = live.principal_id
        return f"created (principalId {live.principal_id})"

    # -- federated credentials -------------------------------------------------------

    def federated_credential(self, change: Change) -> str:
        sub, rg, identity = _fic_identity_parts(change, self.identities)
        if change.action is Action.DELETE and change.consequence_of:
            return "deleted with its identity"
        identity_address = str(Address.parse(change.address).identity)

        def write() -> str:
            with self.fic_lock(identity_address):
                if change.action is Action.DELETE:
                    before = expect(change.before, FederatedCredentialValue)
                    self.gateway.delete_federated_credential(sub, rg, identity, before.name)
                    return "deleted"
                after = expect(change.after, FederatedCredentialValue)
                self.gateway.put_federated_credential(
                    sub, rg, identity, after.name, after.issuer, after.subject, list(after.audiences),
                )
            return "created" if change.action is Action.CREATE else "updated"

        def delay(retry: int, e: ArmError) -> float | None:
            # Our own writes to one identity are serialised by the lock; a 409 here means
            # another writer (a second apply, a person) overlapped us: wait and try again.
            return self.retry.fic_delay(retry) if e.code == CONCURRENT_FIC_WRITES else None

        return retrying(write, delay)

    # -- role assignments ------------------------------------------------------------

    def role_assignment(self, change: Change) -> str:
        if change.action is Action.DELETE:
            self.gateway.delete_role_assignment(expect(change.before, RoleAssignmentValue).id or "")
            return "deleted"
        if change.action is Action.REPLACE:
            # Delete first: the new key may reuse nothing of the old one but its owner's name
            # scheme, and ARM forbids changing role, scope or principal under one name.
            self.gateway.delete_role_assignment(expect(change.before, RoleAssignmentValue).id or "")
        after = expect(change.after, RoleAssignmentValue)
        assert change.owner is not None
        principal_id = after.principal_id
        if not principal_id:
            identity_address = after.principal["identity"]
            with self._lock:
                principal_id = self.principals.get(identity_address)
            if not principal_id:
                raise ReconcilerError(f"principal id of {identity_address} is unknown: its identity was not created")
        name = after.name or assignment_name(change.owner, after.scope, after.role_definition_id, principal_id)
        created_now = not after.principal_id

        def put() -> str:
            try:
                live = self.gateway.put_role_assignment(
                    scope=after.scope, name=name, role_definition_guid=after.role_definition_id,
                    principal_id=principal_id, principal_type=after.principal_type,
                    description=after.description, condition=after.condition,
                    condition_version=after.condition_version,
                )
            except ArmError as e:
                if e.code == PRINCIPAL_NOT_FOUND and not created_now:
                    # Not created by this run: replication delay cannot explain it.
                    raise ArmError(e.code, e.arm_message, status=e.status, address=change.address,
                                   hint=f"principal {principal_id} does not exist in the directory; "
                                   "check the objectId") from None
                raise
            if live.name.lower() != name.lower():
                return f"already existed as {live.name}; adopted"
            return {Action.CREATE: "created", Action.REPLACE: "replaced",
                    Action.ADOPT: "adopted (ownership recorded in its description)"}.get(change.action, "updated")

        def delay(retry: int, e: ArmError) -> float | None:
            # A principal created moments ago by this run: Entra ID replication is slow.
            return self.retry.principal_delay(retry) if created_now and e.code == PRINCIPAL_NOT_FOUND else None

        return retrying(put, delay)


_HANDLERS: dict[ResourceType, Callable[[_Run, Change], str]] = {
    ResourceType.IDENTITY: _Run.identity,
    ResourceType.FEDERATED_CREDENTIAL: _Run.federated_credential,
    ResourceType.ROLE_ASSIGNMENT: _Run.role_assignment,
}


class _ReadyQueue:
    """Steps whose requirements are done, in the order worth running them.

    ARM lets a subscription create only 80 identities per 20 s while it allows 10 writes a
    second of any kind. Steps that follow an identity (its credentials and grants) go first,
    and only a quarter of the workers may create identities at once, so workers waiting on
    the creation window never idle the rest of the write budget.

    The FIC API accepts one write per identity every 4 s (the client budget paces it), so only
    one FIC step per identity is handed out at a time: the others would only sleep on that
    pacing, holding workers that other identities' steps could use."""

    def __init__(self, steps: dict[str, Change], parallelism: int) -> None:
        self.steps = steps
        self.other: deque[str] = deque()
        self.creates: deque[str] = deque()
        self.creating: set[str] = set()
        self.create_limit = max(1, parallelism // 4)
        self.fic_writing: set[str] = set()  # identity addresses with a FIC step in flight

    @staticmethod
    def _creates_identity(change: Change) -> bool:
        return change.type is ResourceType.IDENTITY and change.action in (Action.CREATE, Action.REPLACE)

    def __bool__(self) -> bool:
        return bool(self.other or self.creates)

    def push(self, address: str, *, first: bool = False) -> None:
        """Queue a ready step; `first` puts it ahead of its kind (a retry whose wait is over)."""
        line = self.creates if self._creates_identity(self.steps[address]) else self.other
        (line.appendleft if first else line.append)(address)

    def _fic_identity(self, address: str) -> str | None:
        change = self.steps[address]
        if change.type is not ResourceType.FEDERATED_CREDENTIAL or change.consequence_of:
            return None
        return address.split("/federatedCredential/")[0]

    def pop(self) -> str | None:
        for index, address in enumerate(self.other):
            identity = self._fic_identity(address)
            if identity is None or identity not in self.fic_writing:
                del self.other[index]
                if identity is not None:
                    self.fic_writing.add(identity)
                return address
        if self.creates and len(self.creating) < self.create_limit:
            address = self.creates.popleft()
            self.creating.add(address)
            return address
        return None

    def finished(self, address: str) -> None:
        self.creating.discard(address)
        identity = self._fic_identity(address)
        if identity is not None:
            self.fic_writing.discard(identity)


def apply_plan(
    plan: Plan, gateway: ArmWriter, *, parallelism: int = 8, reporter: Reporter | None = None,
    stop: StopRequest | None = None,
    abort: Callable[[], str | None] | None = None,
    retry: RetryPolicy | None = None,
    clock: Clock | None = None,
) -> ApplyReport:
    """Run every actionable change of `plan`. Never raises for a failed step: the report
    carries each failure with ARM's code and message. Raises PlanError, before any step, when
    the plan's requirements form a cycle or name a change the plan does not hold.

    When `stop` is requested (a signal), no new step starts; the report says which were done,
    failed, in flight and not started. `abort` is asked before each step is handed out; once it
    gives a reason (e.g. ARM is unreachable), no further step starts, running ones finish, and
    every step not started is reported skipped with that reason, so a re-run resumes.

    A step that ARM answers "not yet" (see apply_retry) waits for its retry off the workers,
    per `retry` (RetryPolicy() by default); a stop or an abort ends such waits, and the step
    fails with the answer it last had. `clock` is for tests."""
    check_step_graph(plan)
    steps = {c.address: c for c in plan.actionable}
    run = _Run(plan, gateway, retry or RetryPolicy())
    walk = _Walk(run, steps, parallelism, reporter or NullReporter(), clock or MonotonicClock())
    pool = ThreadPoolExecutor(max_workers=max(1, parallelism))
    try:
        walk.walk(pool, stop, abort)
    finally:
        # Steps still in flight here were abandoned by a stop: do not wait for their threads.
        pool.shutdown(wait=not walk.running, cancel_futures=True)
    _account_for_unrun(walk.report, steps, walk.finished, list(walk.running.values()), walk.stopped)
    return walk.report


@dataclass(frozen=True)
class _Outcome:
    """What a worker hands back: the step's result, or a request to run it again later."""

    result: StepResult | None = None
    later: RetryLater | None = None


class _Walk:
    """One apply's scheduling state: the step graph, the steps ready, in flight, and waiting
    for a retry's not-before time. Only the applier's thread touches it; workers run steps."""

    def __init__(self, run: _Run, steps: dict[str, Change], parallelism: int, reporter: Reporter,
                 clock: Clock) -> None:
        self.run, self.steps, self.parallelism = run, steps, parallelism
        self.reporter, self.clock = reporter, clock
        self.waiting_on, self.dependents = _step_graph(steps)
        self.queue = _ReadyQueue(steps, parallelism)
        for address in steps:
            if not self.waiting_on[address]:
                self.queue.push(address)
        self.delayed = DelayedSteps()
        self.retries: dict[str, RetryLater] = {}  # steps between attempts: how to resume them
        self.started: dict[str, float] = {}  # when each step's first attempt began
        self.running: dict[Future[_Outcome], str] = {}
        self.finished: set[str] = set()
        self.report = ApplyReport()
        self.stopped: str | None = None
        self.wake = threading.Event()  # set by a worker when it finishes
        self.deadline: float | None = None  # when a requested stop stops waiting for steps in flight

    def walk(self, pool: ThreadPoolExecutor, stop: StopRequest | None,
             abort: Callable[[], str | None] | None) -> None:
        while self.queue or self.running or self.delayed:
            if stop is not None and stop.requested.is_set():
                if self._stopped_now(stop):
                    break
            else:
                self._hand_out(pool, abort)
            if not self.running and not self.delayed:
                break  # nothing left that can run (check_step_graph refuses cycles)
            # With a stop possible, wake up now and then to look at it (signal handlers run
            # in this thread, between waits).
            self._idle(0.2 if stop is not None else None)
            self._collect()

    def _stopped_now(self, stop: StopRequest) -> bool:
        """A stop was requested: end retry waits (a step may have asked for one since the last
        look), and say whether to stop now rather than wait for steps in flight."""
        if self.deadline is None:
            self.report.interrupted = True
            self.deadline = self.clock.now() + stop.grace_seconds
            stop.announce(len(self.running))
        self._end_waits("apply was interrupted")
        return not self.running or stop.immediate.is_set() or self.clock.now() >= self.deadline

    def _hand_out(self, pool: ThreadPoolExecutor, abort: Callable[[], str | None] | None) -> None:
        """Hand a worker a step only when one is free, so the choice of what runs next is made
        late, with everything that has become ready in the meantime."""
        for due in self.delayed.pop_due(self.clock.now()):
            self.queue.push(due, first=True)
        while len(self.running) < self.parallelism and not self._aborted(abort):
            address = self.queue.pop()
            if address is None:
                return
            self._submit(pool, address)
        if self.stopped is not None:
            self._end_waits(self.stopped)

    def _aborted(self, abort: Callable[[], str | None] | None) -> bool:
        if self.stopped is None and abort is not None:
            self.stopped = abort()
        return self.stopped is not None

    def _submit(self, pool: ThreadPoolExecutor, address: str) -> None:
        later = self.retries.pop(address, None)
        if later is None:
            self.started[address] = self.clock.now()
            attempt = _first_attempt(self.run, self.reporter, self.steps[address])
        else:
            attempt = later.resume
        future = pool.submit(_attempt, self.steps[address], attempt, self.started[address], self.clock)
        future.add_done_callback(lambda _: self.wake.set())
        self.running[future] = address

    def _idle(self, poll: float | None) -> None:
        """Wait for a worker to finish, the next retry to fall due, or `poll` seconds."""
        timeout = poll
        due = self.delayed.next_due()
        if due is not None:
            until = max(0.0, due - self.clock.now())
            timeout = until if timeout is None else min(timeout, until)
        self.clock.wait(self.wake, timeout)
        self.wake.clear()  # before looking at the futures, so no finish is missed

    def _collect(self) -> None:
        for future in [f for f in self.running if f.done()]:
            address = self.running.pop(future)
            self.queue.finished(address)
            outcome = future.result()
            if outcome.later is not None:
                self.retries[address] = outcome.later
                self.delayed.add(address, self.clock.now() + outcome.later.delay)
            elif outcome.result is not None:
                self._finish(outcome.result)

    def _finish(self, result: StepResult) -> None:
        address = result.address
        self.finished.add(address)
        self.report.results.append(result)
        self.reporter.step_finished(result)
        if result.status != DONE:
            self._skip_dependents(address, f"skipped: requires {address}, which failed")
            return
        for dep in sorted(self.dependents[address]):
            self.waiting_on[dep].discard(address)
            if not self.waiting_on[dep] and dep not in self.finished:
                self.queue.push(dep)

    def _skip_dependents(self, address: str, why: str) -> None:
        for dep in sorted(self.dependents[address]):
            if dep in self.finished:
                continue
            self.finished.add(dep)
            result = StepResult(dep, self.steps[dep].action, SKIPPED, why)
            self.report.results.append(result)
            self.reporter.step_finished(result)
            self._skip_dependents(dep, why)

    def _end_waits(self, why: str) -> None:
        """Steps waiting for a retry fail with the answer they last had: no retry will come."""
        self.delayed.clear()
        now = self.clock.now()
        for address, later in sorted(self.retries.items()):
            change = self.steps[address]
            failed = _failed(change, later.error, now - self.started[address])
            self._finish(StepResult(address, change.action, FAILED, f"{failed.detail} (not retried: {why})",
                                    failed.error_code, failed.seconds))
        self.retries.clear()


def _first_attempt(run: _Run, reporter: Reporter, change: Change) -> Callable[[], str]:
    def attempt() -> str:
        reporter.step_started(change)
        return run.execute(change)

    return attempt


def _attempt(change: Change, attempt: Callable[[], str], started: float, clock: Clock) -> _Outcome:
    """One attempt at a step, in a worker; every failure becomes a failed result, never an
    exception. `started` is when its first attempt began: a step's seconds include its waits."""
    try:
        detail = attempt()
        return _Outcome(StepResult(change.address, change.action, DONE, detail, seconds=clock.now() - started))
    except RetryLater as later:
        return _Outcome(later=later)
    except ReconcilerError as e:
        return _Outcome(_failed(change, e, clock.now() - started))
    except Exception as e:  # a bug or an unmapped SDK error: still one failed step in the report
        return _Outcome(StepResult(change.address, change.action, FAILED, f"unexpected {type(e).__name__}: {e}",
                                   type(e).__name__, clock.now() - started))


def _failed(change: Change, e: ReconcilerError, seconds: float) -> StepResult:
    if isinstance(e, ArmError):
        return StepResult(change.address, change.action, FAILED, f"{e.code}: {e.arm_message}"
                          + (f" ({e.hint})" if e.hint else ""), e.code, seconds)
    return StepResult(change.address, change.action, FAILED, str(e), seconds=seconds)


def check_step_graph(plan: Plan) -> None:
    """Refuse, before anything is applied, requirements that name no change of the plan and
    requirements that form a cycle: a plan made by `plan` has neither, a hand-edited one may."""
    required = {r for c in plan.actionable for r in c.requires}
    known = {a for c in plan.changes if (a := c.address) in required} if required else set()
    unknown = [(c.address, r) for c in plan.actionable for r in c.requires if r not in known]
    if unknown:
        listed = "; ".join(f"{one_line(a)} requires {one_line(r)}" for a, r in unknown[:5])
        more = f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise PlanError(f"the plan's steps require changes it does not hold: {listed}{more}. "
                        "Make the plan again with `reconciler plan`; nothing was applied.")
    cycle = _find_cycle(_step_graph({c.address: c for c in plan.actionable})[0])
    if cycle:
        raise PlanError(f"the plan's steps require each other in a cycle: {' -> '.join(map(one_line, cycle))}. "
                        "Make the plan again with `reconciler plan`; nothing was applied.")


def _find_cycle(waiting_on: dict[str, set[str]]) -> list[str]:
    """One cycle of requirements, as a path that ends where it starts, or [] when there is none.
    Kahn's walk removes every step whose requirements can be met; what remains is on a cycle
    or behind one, and following requirements within it from any step must come round."""
    pending = {a: len(reqs) for a, reqs in waiting_on.items()}
    dependents: dict[str, list[str]] = {a: [] for a in waiting_on}
    for a, reqs in waiting_on.items():
        for r in reqs:
            dependents[r].append(a)
    ready = deque(a for a, n in pending.items() if n == 0)
    while ready:
        for dep in dependents[ready.popleft()]:
            pending[dep] -= 1
            if pending[dep] == 0:
                ready.append(dep)
    left = {a for a, n in pending.items() if n > 0}
    if not left:
        return []
    path: list[str] = []
    at = min(left)
    while at not in path:
        path.append(at)
        at = min(r for r in waiting_on[at] if r in left)
    return [*path[path.index(at):], at]


def _step_graph(steps: dict[str, Change]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """What each step waits on (its requirements within this plan), and what waits on it."""
    waiting_on = {a: {r for r in c.requires if r in steps} for a, c in steps.items()}
    dependents: dict[str, set[str]] = {a: set() for a in steps}
    for a, reqs in waiting_on.items():
        for r in reqs:
            dependents[r].add(a)
    return waiting_on, dependents


def _account_for_unrun(report: ApplyReport, steps: dict[str, Change], finished: set[str], in_flight: list[str],
                       stopped: str | None) -> None:
    """Give every step without a result one (in flight when stopped, not started, or never
    runnable), order the results as the plan is, and record why the run stopped early."""
    for address in in_flight:
        finished.add(address)
        report.results.append(StepResult(
            address, steps[address].action, INTERRUPTED,
            "in flight when apply stopped: its outcome is unknown; apply again to finish"))
    for address in steps:
        if address in finished:
            continue
        finished.add(address)
        if report.interrupted:
            report.results.append(StepResult(address, steps[address].action, NOT_STARTED,
                                             "not started: apply was interrupted"))
        else:  # stopped early, or never runnable (check_step_graph refuses cycles): say so, never hang
            why = f"not started: {stopped}" if stopped else "skipped: its requirements could not be ordered"
            report.results.append(StepResult(address, steps[address].action, SKIPPED, why))
    order = {a: i for i, a in enumerate(steps)}
    report.results.sort(key=lambda r: order[r.address])
    report.stopped = stopped
