"""Execute a Plan against ARM, in dependency order, in parallel where ARM allows it.

Every step is idempotent (PUT is create-or-update, DELETE of something absent is done), so
re-running after a crash or a failure converges. A failed step skips only the steps that
require it; independent steps go on. The report says, for every step, what happened.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.errors import ArmError, ReconcilerError
from reconciler.gateway import ArmWriter
from reconciler.model import assignment_name
from reconciler.plan import Action, Change, Plan, ResourceType

DONE, FAILED, SKIPPED = "done", "failed", "skipped"
# An interrupted apply: steps never handed out, and steps still in flight when it stopped at
# once (their outcome is unknown until the next plan reads Azure).
NOT_STARTED, INTERRUPTED = "not-started", "interrupted"
STATUSES = (DONE, FAILED, SKIPPED, NOT_STARTED, INTERRUPTED)
CONCURRENT_FIC_WRITES = "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"


@dataclass(frozen=True)
class StepResult:
    address: str
    action: Action
    status: str  # one of STATUSES
    detail: str = ""
    error_code: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "status": self.status,
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
        return {s: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ok": self.ok, "interrupted": self.interrupted, "counts": self.counts()}
        if self.stopped:
            data["stopped"] = self.stopped
        return {**data, "steps": [r.to_json() for r in self.results]}


class StopRequest:
    """How the outside (the CLI's signal handlers) stops a run: `request()` hands out no new
    step and waits up to `grace_seconds` for those in flight; `now()` stops waiting at once.
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


def _identity_parts(fields: dict[str, Any]) -> tuple[str, str, str]:
    return fields["subscription"], fields["resourceGroup"], fields["name"]


def _fic_identity_parts(change: Change) -> tuple[str, str, str]:
    # address: identity/{sub}/{rg}/{name}/federatedCredential/{fic}
    parts = change.address.split("/")
    return parts[1], parts[2], parts[3]


class _Run:
    def __init__(self, plan: Plan, gateway: ArmWriter, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep
        # Seconds between retries of an assignment whose new principal ARM cannot see yet
        # (about two minutes in all, longer than Entra ID's usual replication delay).
        self.principal_backoff = (2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
        self.fic_backoff = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
        self.jitter = random.random
        self.gateway = gateway
        self.principals: dict[str, str] = {}  # identity address -> principal id
        for c in plan.changes:
            if c.type is ResourceType.IDENTITY and c.after and c.after.get("principalId"):
                self.principals[c.address] = str(c.after["principalId"])
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
            assert change.before is not None
            self.gateway.delete_identity(*_identity_parts(change.before))
            return "deleted"
        assert change.after is not None
        sub, rg, name = _identity_parts(change.after)
        tags = dict(change.after["tags"])
        if change.action in (Action.UPDATE, Action.ADOPT):
            self.gateway.update_identity_tags(sub, rg, name, tags)
            return "adopted (ownership tags written)" if change.action is Action.ADOPT else "tags updated"
        if change.action is Action.REPLACE:
            assert change.before is not None
            self.gateway.delete_identity(*_identity_parts(change.before))
        live = self.gateway.create_identity(sub, rg, name, change.after["location"], tags)
        with self._lock:
            self.principals[change.address] = live.principal_id
        return f"created (principalId {live.principal_id})"

    # -- federated credentials -------------------------------------------------------

    def federated_credential(self, change: Change) -> str:
        sub, rg, identity = _fic_identity_parts(change)
        if change.action is Action.DELETE and change.consequence_of:
            return "deleted with its identity"
        identity_address = change.address.split("/federatedCredential/")[0]
        attempt = 0
        while True:
            try:
                with self.fic_lock(identity_address):
                    if change.action is Action.DELETE:
                        assert change.before is not None
                        self.gateway.delete_federated_credential(sub, rg, identity, change.before["name"])
                        return "deleted"
                    assert change.after is not None
                    self.gateway.put_federated_credential(
                        sub, rg, identity, change.after["name"], change.after["issuer"], change.after["subject"],
                        list(change.after["audiences"]),
                    )
                return "created" if change.action is Action.CREATE else "updated"
            except ArmError as e:
                # Our own writes to one identity are serialised by the lock; a 409 here means
                # another writer (a second apply, a person) overlapped us: wait and try again.
                if e.code != CONCURRENT_FIC_WRITES or attempt >= len(self.fic_backoff):
                    raise
                self.sleep(self.fic_backoff[attempt] * (0.5 + self.jitter()))
                attempt += 1

    # -- role assignments ------------------------------------------------------------

    def role_assignment(self, change: Change) -> str:
        if change.action is Action.DELETE:
            assert change.before is not None
            self.gateway.delete_role_assignment(change.before["id"])
            return "deleted"
        if change.action is Action.REPLACE:
            assert change.before is not None
            # Delete first: the new key may reuse nothing of the old one but its owner's name
            # scheme, and ARM forbids changing role, scope or principal under one name.
            self.gateway.delete_role_assignment(change.before["id"])
        assert change.after is not None and change.owner is not None
        after = change.after
        principal_id = after.get("principalId")
        if not principal_id:
            identity_address = after["principal"]["identity"]
            with self._lock:
                principal_id = self.principals.get(identity_address)
            if not principal_id:
                raise ReconcilerError(f"principal id of {identity_address} is unknown: its identity was not created")
        name = after.get("name") or assignment_name(
            change.owner, after["scope"], after["roleDefinitionId"], principal_id
        )
        created_now = not after.get("principalId")
        attempt = 0
        while True:
            try:
                live = self.gateway.put_role_assignment(
                    scope=after["scope"], name=name, role_definition_guid=after["roleDefinitionId"],
                    principal_id=principal_id, principal_type=after.get("principalType"),
                    description=after.get("description"), condition=after.get("condition"),
                    condition_version=after.get("conditionVersion"),
                )
                break
            except ArmError as e:
                if e.code != "PrincipalNotFound":
                    raise
                if not created_now:
                    # Not created by this run: replication delay cannot explain it.
                    raise ArmError(e.code, e.arm_message, status=e.status, address=change.address,
                                   hint=f"principal {principal_id} does not exist in the directory; "
                                   "check the objectId") from None
                if attempt >= len(self.principal_backoff):
                    raise
                # A principal created moments ago by this run: Entra ID replication is slow.
                self.sleep(self.principal_backoff[attempt])
                attempt += 1
        if live.name.lower() != name.lower():
            return f"already existed as {live.name}; adopted"
        return {Action.CREATE: "created", Action.REPLACE: "replaced",
                Action.ADOPT: "adopted (ownership recorded in its description)"}.get(change.action, "updated")


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

    def push(self, address: str) -> None:
        (self.creates if self._creates_identity(self.steps[address]) else self.other).append(address)

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
) -> ApplyReport:
    """Run every actionable change of `plan`. Never raises for a failed step: the report
    carries each failure with ARM's code and message.

    When `stop` is requested (a signal), no new step starts; the report says which were done,
    failed, in flight and not started. `abort` is asked before each step is handed out; once it
    gives a reason (e.g. ARM is unreachable), no further step starts, running ones finish, and
    every step not started is reported skipped with that reason, so a re-run resumes."""
    reporter = reporter or NullReporter()
    run = _Run(plan, gateway)
    steps = {c.address: c for c in plan.actionable}
    waiting_on, dependents = _step_graph(steps)
    report = ApplyReport()
    finished: set[str] = set()

    def timed(change: Change) -> StepResult:
        return _run_step(run, reporter, change)

    def skip_dependents(address: str, why: str) -> None:
        for dep in sorted(dependents[address]):
            if dep in finished:
                continue
            finished.add(dep)
            result = StepResult(dep, steps[dep].action, SKIPPED, why)
            report.results.append(result)
            reporter.step_finished(result)
            skip_dependents(dep, why)

    queue = _ReadyQueue(steps, parallelism)
    for address in steps:
        if not waiting_on[address]:
            queue.push(address)
    stopped: str | None = None

    def stopping() -> bool:
        nonlocal stopped
        if stopped is None and abort is not None:
            stopped = abort()
        return stopped is not None

    pool = ThreadPoolExecutor(max_workers=max(1, parallelism))
    running: dict[Future[StepResult], str] = {}
    deadline: float | None = None
    try:
        while queue or running:
            if stop is not None and stop.requested.is_set():
                if deadline is None:
                    report.interrupted = True
                    deadline = time.monotonic() + stop.grace_seconds
                    stop.announce(len(running))
                if not running or stop.immediate.is_set() or time.monotonic() >= deadline:
                    break
            else:
                # Hand a worker a step only when one is free, so the choice of what runs next
                # is made late, with everything that has become ready in the meantime.
                while len(running) < parallelism and not stopping() and (next_step := queue.pop()) is not None:
                    running[pool.submit(timed, steps[next_step])] = next_step
            if not running:
                break  # nothing runnable: only possible if the plan's requires form a cycle
            # With a stop possible, wake up now and then to look at it (signal handlers run
            # in this thread, between waits).
            done, _ = wait(list(running), timeout=0.2 if stop is not None else None,
                           return_when=FIRST_COMPLETED)
            for fut in done:
                address = running.pop(fut)
                queue.finished(address)
                result = fut.result()
                finished.add(address)
                report.results.append(result)
                reporter.step_finished(result)
                if result.status != DONE:
                    skip_dependents(address, f"skipped: requires {address}, which failed")
                    continue
                for dep in sorted(dependents[address]):
                    waiting_on[dep].discard(address)
                    if not waiting_on[dep] and dep not in finished:
                        queue.push(dep)
    finally:
        # Steps still in flight here were abandoned by a stop: do not wait for their threads.
        pool.shutdown(wait=not running, cancel_futures=True)
    _account_for_unrun(report, steps, finished, list(running.values()), stopped)
    return report


def _step_graph(steps: dict[str, Change]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """What each step waits on (its requirements within this plan), and what waits on it."""
    waiting_on = {a: {r for r in c.requires if r in steps} for a, c in steps.items()}
    dependents: dict[str, set[str]] = {a: set() for a in steps}
    for a, reqs in waiting_on.items():
        for r in reqs:
            dependents[r].add(a)
    return waiting_on, dependents


def _run_step(run: _Run, reporter: Reporter, change: Change) -> StepResult:
    """One step, timed; every failure becomes a failed result, never an exception."""
    reporter.step_started(change)
    start = time.monotonic()
    try:
        detail = run.execute(change)
        return StepResult(change.address, change.action, DONE, detail, seconds=time.monotonic() - start)
    except ArmError as e:
        return StepResult(change.address, change.action, FAILED, f"{e.code}: {e.arm_message}"
                          + (f" ({e.hint})" if e.hint else ""), e.code, time.monotonic() - start)
    except ReconcilerError as e:
        return StepResult(change.address, change.action, FAILED, str(e), seconds=time.monotonic() - start)
    except Exception as e:  # a bug or an unmapped SDK error: still one failed step in the report
        return StepResult(change.address, change.action, FAILED, f"unexpected {type(e).__name__}: {e}",
                          type(e).__name__, time.monotonic() - start)


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
        else:  # stopped early, or never runnable (a cycle in requires): say so, never hang
            why = f"not started: {stopped}" if stopped else "skipped: its requirements could not be ordered"
            report.results.append(StepResult(address, steps[address].action, SKIPPED, why))
    order = {a: i for i, a in enumerate(steps)}
    report.results.sort(key=lambda r: order[r.address])
    report.stopped = stopped
