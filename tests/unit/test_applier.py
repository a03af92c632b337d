"""Applier scheduling rules with an in-memory gateway (no I/O): ordering, skipping,
retries of principals created in this run. The SDK path is covered end to end."""

from __future__ import annotations

import threading

from reconciler import addresses
from reconciler.applier import DONE, FAILED, SKIPPED, apply_plan
from reconciler.errors import TerminalArmError
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
from reconciler.planner import make_plan

SUB = "11111111-1111-1111-1111-111111111111"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


class FakeGateway:
    """An ArmWriter (reconciler/gateway.py): all the applier may call."""

    def __init__(self, fail_identity: str | None = None, principal_not_found: int = 0) -> None:
        self.log: list[str] = []
        self.fail_identity = fail_identity
        self.principal_not_found = principal_not_found
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
            if self.principal_not_found:
                self.principal_not_found -= 1
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


def test_principal_created_in_this_run_is_retried_until_visible() -> None:
    plan = make_plan(desired("a"), LiveState())
    gw = FakeGateway(principal_not_found=2)
    waits: list[float] = []
    from reconciler import applier

    run = applier._Run(plan, gw, sleep=waits.append)
    ra = next(c for c in plan.changes if c.type.value == "roleAssignment")
    run.principals[addresses.identity(IdentityKey.of(SUB, "rg", "a"))] = "pid-a"
    assert run.execute(ra) == "created"
    assert len(waits) == 2 and waits[0] < waits[1]


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
