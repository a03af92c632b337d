"""Applier scheduling rules with an in-memory gateway (no I/O): ordering, skipping,
retries of principals created in this run. The SDK path is covered end to end."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from reconciler import addresses
from reconciler.applier import (
    CONCURRENT_FIC_WRITES,
    DONE,
    FAILED,
    SKIPPED,
    RetryPolicy,
    StopRequest,
    apply_plan,
)
from reconciler.errors import PlanError, TerminalArmError
from reconciler.model import (
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    PrincipalRef,
)
from reconciler.payloads import RoleAssignmentValue
from reconciler.plan import Plan
from reconciler.planner import make_plan
from tests.events import Events

SUB = "11111111-1111-1111-1111-111111111111"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class FakeGateway:
    """An ArmWriter (reconciler/gateway.py): all the applier may call."""

    def __init__(self, fail_identity: str | None = None, principal_not_found: int = 0,
                 late_principal: str | None = None, fic_conflicts: int = 0) -> None:
        self.log: list[str] = []
        self.fail_identity = fail_identity
        self.principal_not_found = principal_not_found  # PrincipalNotFound answers still to give
        self.late_principal = late_principal  # only this principal's grants get them, if set
        self.fic_conflicts = fic_conflicts  # 409 ConcurrentFederatedIdentityCredentials... still to give
        self.on_not_found: list[str] = []  # principals answered PrincipalNotFound, in order
        self.lock = threading.Lock()
        self.fic_writers: dict[str, int] = {}
        self.max_concurrent_fic_writes = 0

    def create_identity(self, subscription: str, resource_group: str, name: str, location: str,
                        tags: dict[str, str]) -> LiveIdentity:
        if name == self.fail_identity:
            raise TerminalArmError("AuthorizationFailed", "no")
        with self.lock:
            self.log.append(f"identity {name}")
        return LiveIdentity(id=f"/x/{name}", subscription=subscription, resource_group=resource_group, name=name,
                            location=location, tags=tags, principal_id=f"pid-{name}", client_id="c", tenant_id="t")

    def update_identity_tags(self, subscription: str, resource_group: str, name: str,
                             tags: dict[str, str]) -> LiveIdentity:
        raise AssertionError("not expected")

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None:
        if name == self.fail_identity:
            raise TerminalArmError("AuthorizationFailed", "no")
        self.log.append(f"delete identity {name}")

    def put_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str,
                                 issuer: str, subject: str, audiences: list[str]) -> None:
        with self.lock:
            if self.fic_conflicts:
                self.fic_conflicts -= 1
                self.log.append(f"fic 409 {identity}/{name}")
                raise TerminalArmError(CONCURRENT_FIC_WRITES, "another write is in progress")
            self.fic_writers[identity] = self.fic_writers.get(identity, 0) + 1
            self.max_concurrent_fic_writes = max(self.max_concurrent_fic_writes, self.fic_writers[identity])
        threading.Event().wait(0.01)  # widen the window in which an overlap would be seen
        with self.lock:
            self.fic_writers[identity] -= 1
            self.log.append(f"fic {identity}/{name}")

    def delete_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str) -> None:
        self.log.append(f"delete fic {name}")

    def put_role_assignment(self, *, scope: str, name: str, role_definition_guid: str, principal_id: str,
                            principal_type: str | None, description: str | None, condition: str | None,
                            condition_version: str | None) -> LiveRoleAssignment:
        with self.lock:
            if self.principal_not_found and self.late_principal in (None, principal_id):
                self.principal_not_found -= 1
                self.log.append(f"ra 404 {principal_id}")
                self.on_not_found.append(principal_id)
                raise TerminalArmError("PrincipalNotFound", f"Principal {principal_id} does not exist")
            self.log.append(f"ra {principal_id}")
        return LiveRoleAssignment(id=f"{scope}/x/{name}", name=name, scope=scope,
                                  role_definition_id=role_definition_guid, principal_id=principal_id,
                                  principal_type=principal_type)

    def delete_role_assignment(self, assignment_id: str) -> None:
        self.log.append(f"delete ra {assignment_id}")


def desired(*names: str, fics: int = 0) -> DesiredState:
    ids = tuple(DesiredIdentity("o", SUB, "rg", n, "westeurope", {}) for n in names)
    ras = tuple(DesiredRoleAssignment("o", f"/subscriptions/{SUB}", READER, "Reader",
                                      PrincipalRef(identity=i.key)) for i in ids)
    creds = tuple(DesiredFederatedCredential("o", i.key, f"fic{k}", "https://issuer", f"s{k}")
                  for i in ids for k in range(fics))
    return DesiredState(identities=ids, role_assignments=ras, federated_credentials=creds, owners=frozenset({"o"}))


def test_failed_identity_skips_only_its_dependents() -> None:
    plan = make_plan(desired("good", "bad"), LiveState())
    gw = FakeGateway(fail_identity="bad")
    report = apply_plan(plan, gw, parallelism=4)
    status = {r.address: r.status for r in report.results}
    bad = addresses.identity(IdentityKey.of(SUB, "rg", "bad"))
    assert status[bad] == FAILED
    skipped = [a for a, s in status.items() if s == SKIPPED]
    assert len(skipped) == 1 and "bad" in skipped[0]
    assert status[addresses.identity(IdentityKey.of(SUB, "rg", "good"))] == DONE
    assert "ra pid-good" in gw.log and not report.ok


def test_assignment_waits_for_its_identity_and_uses_its_new_principal() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw = FakeGateway()
    assert apply_plan(plan, gw).ok
    assert gw.log.index("identity a") < gw.log.index("ra pid-a")


class FakeClock:
    """Time that passes only when the applier idles with a timeout: it jumps to the end of the
    wait at once, so a two-minute backoff takes no real time."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wait(self, wake: threading.Event, timeout: float | None) -> None:
        if timeout is None:
            wake.wait()
        elif not wake.is_set():
            self.t += timeout



def ra_address(plan: Plan, identity: str = "a") -> str:
    """The address of the grant to identity `identity` of `desired(...)`."""
    key = addresses.identity(IdentityKey.of(SUB, "rg", identity))
    return next(c.address for c in plan.changes
                if isinstance(c.after, RoleAssignmentValue) and c.after.principal.get("identity") == key)


def test_principal_created_in_this_run_is_retried_until_visible() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw, clock = FakeGateway(principal_not_found=2), FakeClock()
    report = apply_plan(plan, gw, retry=RetryPolicy(principal_backoff=(2.0, 4.0, 8.0)), clock=clock)
    assert report.ok
    assert gw.log.count("ra 404 pid-a") == 2 and gw.log[-1] == "ra pid-a"
    assert clock.t == 6.0  # retried after 2 s, then after 4 more
    ra = next(r for r in report.results if r.address == ra_address(plan))
    assert ra.seconds == 6.0  # a step's time includes its waits


def test_principal_retries_stop_after_the_policy_s_last_delay() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw, clock = FakeGateway(principal_not_found=10), FakeClock()
    report = apply_plan(plan, gw, retry=RetryPolicy(principal_backoff=(1.0, 1.0)), clock=clock)
    ra = next(r for r in report.results if r.address == ra_address(plan))
    assert (ra.status, ra.error_code) == (FAILED, "PrincipalNotFound")
    assert gw.log.count("ra 404 pid-a") == 3 and clock.t == 2.0  # one try and two retries


def test_default_policy_waits_about_two_minutes_for_a_principal() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw, clock = FakeGateway(principal_not_found=100), FakeClock()
    report = apply_plan(plan, gw, clock=clock)
    assert not report.ok
    assert gw.log.count("ra 404 pid-a") == 7 and clock.t == 119.0


def test_workers_serve_other_steps_while_a_principal_replicates() -> None:
    """One worker: while the grant of `a` waits for its principal, the worker creates the other
    identities instead of sleeping."""
    plan = make_plan(desired("a", "b", "c"), LiveState())
    gw, clock, events = FakeGateway(principal_not_found=2, late_principal="pid-a"), FakeClock(), Events()
    report = apply_plan(plan, gw, parallelism=1, reporter=events, clock=clock,
                        retry=RetryPolicy(principal_backoff=(2.0, 4.0)))
    assert report.ok
    ra = ra_address(plan, "a")
    waited = events.lines[events.lines.index(f"start {ra}"):events.lines.index(f"finish {ra}")]
    assert sum(1 for line in waited if line.startswith("finish ")) >= 2, events.lines
    first_404, done = gw.log.index("ra 404 pid-a"), gw.log.index("ra pid-a")
    assert "identity b" in gw.log[first_404:done], gw.log


def test_fic_409_from_another_writer_is_retried_after_a_jittered_wait() -> None:
    plan = make_plan(desired("a", fics=1), LiveState())
    gw, clock = FakeGateway(fic_conflicts=2), FakeClock()
    policy = RetryPolicy(fic_backoff=(1.0, 2.0), jitter=lambda: 0.25)  # factor 0.75
    report = apply_plan(plan, gw, retry=policy, clock=clock)
    assert report.ok
    assert gw.log.count("fic 409 a/fic0") == 2 and "fic a/fic0" in gw.log
    assert clock.t == 0.75 + 1.5


def test_a_stop_ends_a_retry_wait_at_once() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw, clock = FakeGateway(principal_not_found=1), FakeClock()
    stop = StopRequest(grace_seconds=60.0)
    gw.on_not_found = _Calls(stop.request)  # the signal arrives while the grant waits
    report = apply_plan(plan, gw, stop=stop, clock=clock)
    ra = next(r for r in report.results if r.address == ra_address(plan))
    assert report.interrupted and ra.status == FAILED and ra.error_code == "PrincipalNotFound"
    assert ra.detail.endswith("(not retried: apply was interrupted)")
    # A worker sleeping out the 2 s backoff would have retried within the 60 s grace, and won.
    assert gw.log.count("ra 404 pid-a") == 1 and "ra pid-a" not in gw.log


def test_an_unreachable_arm_ends_a_retry_wait_at_once() -> None:
    plan = make_plan(desired("a", "b"), LiveState())
    gw, clock = FakeGateway(principal_not_found=1, late_principal="pid-a"), FakeClock()
    reason = "ARM unreachable"
    report = apply_plan(plan, gw, parallelism=1, clock=clock,
                        abort=lambda: reason if gw.on_not_found else None)
    status = {r.address: r for r in report.results}
    ra = status[ra_address(plan)]
    assert ra.status == FAILED and ra.detail.endswith(f"(not retried: {reason})")
    assert report.stopped == reason and clock.t < 2.0
    assert [r.detail for r in report.results if r.status == SKIPPED] == [f"not started: {reason}"] * 2


class _Calls(list[str]):
    """A list that calls `hook` on every append."""

    def __init__(self, hook: object) -> None:
        super().__init__()
        self.hook = hook

    def append(self, item: str) -> None:
        super().append(item)
        assert callable(self.hook)
        self.hook()


def test_fic_writes_to_one_identity_never_overlap() -> None:
    plan = make_plan(desired("a", "b", fics=5), LiveState())
    gw = FakeGateway()
    assert apply_plan(plan, gw, parallelism=8).ok
    assert gw.max_concurrent_fic_writes == 1
    assert sum(1 for line in gw.log if line.startswith("fic ")) == 10


def test_credential_failure_lists_sources_and_says_what_to_set() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    from reconciler.azure.gateway import to_arm_error

    exc = ClientAuthenticationError(
        "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
        "Attempted credentials:\n\tEnvironmentCredential: unavailable.\n\tAzureCliCredential: Azure CLI not found"
    )
    err = to_arm_error(exc)
    text = str(err)
    assert err.code == "CredentialUnavailable"
    assert "EnvironmentCredential" in text and "AzureCliCredential" in text
    assert "AZURE_FEDERATED_TOKEN_FILE" in text and "az login" in text


def test_credentials_of_an_identity_whose_delete_failed_are_not_reported_deleted() -> None:
    from reconciler.model import LiveFederatedCredential, ownership_tags

    gone = LiveIdentity(id="/x/gone", subscription=SUB, resource_group="rg", name="gone", location="westeurope",
                        tags=ownership_tags("o"), principal_id="p", client_id="c", tenant_id="t")
    fic = LiveFederatedCredential(gone.key, "/x/gone/fic", "fic", "https://issuer", "s", ("a",))
    live = LiveState(identities={gone.key: gone}, federated_credentials={gone.key: (fic,)})
    plan = make_plan(DesiredState(owners=frozenset({"o"}), owner_groups=frozenset({("o", SUB, "rg")})), live)
    report = apply_plan(plan, FakeGateway(fail_identity="gone"))
    status = {r.address.rsplit("/", 1)[-1]: r.status for r in report.results}
    assert status == {"gone": FAILED, "fic": SKIPPED}


def test_identity_creations_are_capped_and_their_dependents_go_first() -> None:
    from reconciler.applier import _ReadyQueue

    plan = make_plan(desired(*(f"i{n}" for n in range(8)), fics=1), LiveState())
    steps = {c.address: c for c in plan.actionable}
    queue = _ReadyQueue(steps, parallelism=8)
    identities = [a for a, c in steps.items() if c.type.value == "identity"]
    for address in identities:
        queue.push(address)
    first, second = queue.pop(), queue.pop()
    assert first in identities and second in identities
    assert queue.pop() is None  # two creations in flight of 8 workers: the rest wait
    fic = next(a for a, c in steps.items() if c.type.value == "federatedCredential")
    queue.push(fic)
    assert queue.pop() == fic  # a ready dependent runs before the next creation
    assert first is not None
    queue.finished(first)
    assert queue.pop() in identities


def test_one_fic_step_per_identity_is_in_flight_so_workers_do_not_sleep_on_its_pacing() -> None:
    """One FIC write per identity every 4 s (the budget paces it): the queue hands out a second FIC
    step of an identity only when its first has finished, and other steps meanwhile."""
    from reconciler.applier import _ReadyQueue

    plan = make_plan(desired("a", "b", fics=3), LiveState())
    steps = {c.address: c for c in plan.actionable}
    queue = _ReadyQueue(steps, parallelism=8)
    fics = [a for a, c in steps.items() if c.type.value == "federatedCredential"]
    grants = [a for a, c in steps.items() if c.type.value == "roleAssignment"]
    for address in fics + grants:
        queue.push(address)
    handed = [queue.pop() for _ in range(4)]
    assert queue.pop() is None  # 3 FICs of each identity wait for their identity's first
    assert sorted(a.split("/federatedCredential/")[0] for a in handed if a in fics) == sorted(
        {a.split("/federatedCredential/")[0] for a in fics})
    assert set(grants) <= set(handed)
    first_fic = next(a for a in handed if a in fics)
    queue.finished(first_fic)
    again = queue.pop()
    assert again in fics and again.split("/federatedCredential/")[0] == first_fic.split("/federatedCredential/")[0]


def with_requires(plan: Plan, address: str, *requires: str) -> Plan:
    """The plan with `address` requiring `requires` too, as a hand-edited saved plan might."""
    return replace(plan, changes=tuple(replace(c, requires=(*c.requires, *requires)) if c.address == address else c
                                       for c in plan.changes))


def test_a_cycle_in_the_plan_s_requirements_is_refused_before_any_step() -> None:
    plan = make_plan(desired("a", "b", fics=1), LiveState())
    ident = addresses.identity(IdentityKey.of(SUB, "rg", "a"))
    fic = next(c.address for c in plan.changes if c.type.value == "federatedCredential" and c.address.startswith(ident))
    gw = FakeGateway()
    with pytest.raises(PlanError) as err:
        apply_plan(with_requires(plan, ident, fic), gw)
    assert f"cycle: {ident} -> {fic} -> {ident}" in str(err.value) or f"cycle: {fic} -> {ident} -> {fic}" in str(
        err.value)
    assert "nothing was applied" in str(err.value) and gw.log == []


def test_a_requirement_that_names_no_change_of_the_plan_is_refused() -> None:
    plan = make_plan(desired("a"), LiveState())
    ghost = addresses.identity(IdentityKey.of(SUB, "rg", "ghost"))
    gw = FakeGateway()
    with pytest.raises(PlanError) as err:
        apply_plan(with_requires(plan, ra_address(plan), ghost), gw)
    assert f"{ra_address(plan)} requires {ghost}" in str(err.value) and gw.log == []


def test_a_requirement_on_an_in_sync_change_is_met() -> None:
    """Requirements may name a no-op change (nothing to wait for): not an error."""
    ident = DesiredIdentity("o", SUB, "rg", "a", "westeurope", {})
    from reconciler.model import ownership_tags

    live_a = LiveIdentity(id="/x/a", subscription=SUB, resource_group="rg", name="a", location="westeurope",
                          tags=ownership_tags("o"), principal_id="pid-a", client_id="c", tenant_id="t")
    plan = make_plan(replace(desired("b"), identities=(ident, *desired("b").identities)),
                     LiveState(identities={live_a.key: live_a}))
    noop = next(c for c in plan.changes if c.address == addresses.identity(ident.key))
    assert noop.action.value == "no-op"
    assert apply_plan(with_requires(plan, ra_address(plan, "b"), noop.address), FakeGateway()).ok


def test_statuses_keep_their_json_values() -> None:
    plan = make_plan(desired("good", "bad"), LiveState())
    data = json.loads(json.dumps(apply_plan(plan, FakeGateway(fail_identity="bad")).to_json()))
    assert data["counts"] == {"done": 2, "failed": 1, "skipped": 1, "not-started": 0, "interrupted": 0}
    assert sorted({s["status"] for s in data["steps"]}) == ["done", "failed", "skipped"]
