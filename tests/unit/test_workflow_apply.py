"""The apply workflow's decisions without the command line: an in-memory session (no typer,
no sandbox, no ARM) and a recording interaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import pytest

from reconciler.applier import NullReporter, Reporter
from reconciler.errors import Diagnostic, ReconcilerError, StalePlanError
from reconciler.model import (
    DesiredIdentity,
    DesiredState,
    IdentityKey,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    ReadScope,
    ownership_tags,
)
from reconciler.plan import Plan
from reconciler.planner import PlanOptions
from reconciler.principals import Unavailable
from reconciler.roles import Role, RoleCatalog
from reconciler.target import TargetOptions
from reconciler.workflow.apply import ApplyRequest, run_apply
from reconciler.workflow.plan import PlanRequest, run_plan
from reconciler.workflow.session import Session

SUB = "11111111-1111-1111-1111-111111111111"


class Estate:
    """An in-memory ARM holding identities; every write is logged."""

    def __init__(self, *names: str, owner: str = "o") -> None:
        self.identities: dict[IdentityKey, LiveIdentity] = {}
        self.writes: list[str] = []
        for name in names:
            self._put(name, dict(ownership_tags(owner)))

    def _put(self, name: str, tags: dict[str, str]) -> LiveIdentity:
        identity = LiveIdentity(
            id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/"
               f"userAssignedIdentities/{name}", subscription=SUB, resource_group="rg", name=name,
            location="westeurope", tags=tags, principal_id=f"pid-{name}", client_id=f"cid-{name}", tenant_id="t")
        self.identities[identity.key] = identity
        return identity

    def read_live(self, scope: ReadScope) -> LiveState:
        return LiveState(identities=dict(self.identities), federated_credentials={k: () for k in self.identities},
                         subscriptions=frozenset(scope.subscriptions), resource_groups=frozenset({(SUB, "rg")}))

    def lookup_role(self, subscription: str, name_or_guid: str) -> Role | None:
        return None

    def create_identity(self, subscription: str, resource_group: str, name: str, location: str,
                        tags: dict[str, str]) -> LiveIdentity:
        self.writes.append(f"create {name}")
        return self._put(name, tags)

    def update_identity_tags(self, subscription: str, resource_group: str, name: str,
                             tags: dict[str, str]) -> LiveIdentity:
        self.writes.append(f"tag {name}")
        return self._put(name, tags)

    def delete_identity(self, subscription: str, resource_group: str, name: str) -> None:
        self.writes.append(f"delete {name}")
        self.identities.pop(IdentityKey.of(subscription, resource_group, name), None)

    def put_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str,
                                 issuer: str, subject: str, audiences: list[str]) -> None:
        raise AssertionError("no federated credential is declared")

    def delete_federated_credential(self, subscription: str, resource_group: str, identity: str, name: str) -> None:
        raise AssertionError("no federated credential exists")

    def put_role_assignment(self, *, scope: str, name: str, role_definition_guid: str, principal_id: str,
                            principal_type: str | None, description: str | None, condition: str | None,
                            condition_version: str | None) -> LiveRoleAssignment:
        raise AssertionError("no role assignment is declared")

    def delete_role_assignment(self, assignment_id: str) -> None:
        raise AssertionError("no role assignment exists")

    def graph_call_counts(self) -> dict[str, int]:
        return {}

    def call_counts(self) -> dict[str, int]:
        return {}

    def throttle_wait_seconds(self) -> float:
        return 0.0

    def stats_summary(self) -> str:
        return ""

    def unreachable(self) -> str | None:
        return None


class Recorder:
    """The person at the terminal: records what was shown, answers the prompt with `answer`."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked = 0
        self.output: list[str] = []
        self.notes: list[str] = []

    @property
    def color(self) -> bool:
        return False

    def out(self, text: str) -> None:
        self.output.append(text)

    def note(self, text: str, style: str | None = None) -> None:
        self.notes.append(text)

    def diagnostics(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.notes.extend(str(d) for d in diagnostics)

    def confirm(self) -> None:
        self.asked += 1
        if not self.answer:
            raise ReconcilerError("apply cancelled")

    def progress(self, plan: Plan, throttle_wait: Callable[[], float]) -> AbstractContextManager[Reporter]:
        return nullcontext(NullReporter())


def declaring(*names: str) -> DesiredState:
    return DesiredState(identities=tuple(DesiredIdentity("o", SUB, "rg", n, "westeurope", {}) for n in names),
                        owners=frozenset({"o"}))


def opener_for(desired: DesiredState, estate: Estate) -> Callable[..., AbstractContextManager[Session]]:
    @contextmanager
    def open_session(paths: Sequence[str], target: TargetOptions, io: object,
                     subscriptions: Sequence[str] | None = None) -> Iterator[Session]:
        yield Session(desired, estate, RoleCatalog(), Unavailable("in-memory test", "none"))

    return open_session


def request(**changes: Any) -> ApplyRequest:
    return dataclasses.replace(ApplyRequest(paths=["manifests"], target=TargetOptions()), **changes)


def test_the_mass_delete_guard_refuses_before_the_person_is_asked_and_writes_nothing() -> None:
    estate = Estate("keep", "old-1", "old-2", "old-3")
    io = Recorder()
    with pytest.raises(ReconcilerError, match=r"refusing to apply: the plan destroys 3 resources, more than "
                                              r"--max-deletes 2\..*--allow-mass-delete"):
        run_apply(request(max_deletes=2), io, opener_for(declaring("keep"), estate))
    assert io.asked == 0 and estate.writes == []
    assert "old-1" in "".join(io.output)  # the plan was shown, so the refusal can be judged


def test_allow_mass_delete_applies_after_confirmation_and_verifies() -> None:
    estate = Estate("keep", "old-1", "old-2", "old-3")
    io = Recorder()
    outcome = run_apply(request(max_deletes=2, allow_mass_delete=True), io, opener_for(declaring("keep"), estate))
    assert io.asked == 1
    assert sorted(estate.writes) == ["delete old-1", "delete old-2", "delete old-3"]
    assert outcome.report is not None and outcome.report.ok
    assert io.output[-1] == "Verified: a fresh plan shows no changes.\n"


def test_deleting_every_identity_of_an_owner_is_refused_even_under_max_deletes() -> None:
    estate = Estate("a", "b")
    desired = DesiredState(owners=frozenset({"o"}), owner_groups=frozenset({("o", SUB, "rg")}))  # an emptied folder
    with pytest.raises(ReconcilerError, match=r"deletes every identity owned by 'o' \(2\)"):
        run_apply(request(auto_approve=True), Recorder(), opener_for(desired, estate))
    assert estate.writes == []


def test_no_is_an_answer_nothing_is_written() -> None:
    estate = Estate()
    with pytest.raises(ReconcilerError, match="apply cancelled"):
        run_apply(request(), Recorder(answer=False), opener_for(declaring("new"), estate))
    assert estate.writes == []


def save_plan(tmp_path: Path, desired: DesiredState, estate: Estate) -> Path:
    out = tmp_path / "plan.json"
    run_plan(PlanRequest(paths=["manifests"], target=TargetOptions(), options=PlanOptions(), out=out,
                         preflight=False), Recorder(), lambda plan: None, opener_for(desired, estate))
    return out


def saved_plan_of_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Estate, DesiredState, Path]:
    """An empty estate, manifests declaring identity "new", and the plan saved for them (unsigned)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RECONCILER_PLAN_KEY", raising=False)
    (tmp_path / "manifests").mkdir()
    estate = Estate()
    desired = declaring("new")
    return estate, desired, save_plan(tmp_path, desired, estate)


def test_a_saved_plan_that_is_no_longer_current_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    estate, desired, saved = saved_plan_of_new(tmp_path, monkeypatch)
    estate._put("new", {"made": "out of band"})  # the identity appears before the plan is applied
    report = tmp_path / "report.json"
    io = Recorder()
    with pytest.raises(StalePlanError):
        run_apply(request(paths=[str(saved)], report_file=report), io, opener_for(desired, estate))
    assert estate.writes == [] and not report.exists() and io.asked == 0


def test_a_current_saved_plan_is_applied_without_asking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    estate, desired, saved = saved_plan_of_new(tmp_path, monkeypatch)
    io = Recorder()
    outcome = run_apply(request(paths=[str(saved)]), io, opener_for(desired, estate))
    assert estate.writes == ["create new"] and io.asked == 0
    assert outcome.report is not None and outcome.report.ok
    assert any("The saved plan is current" in n for n in io.notes)


def test_the_embedded_sandbox_is_not_started_for_manifests_that_do_not_load(tmp_path: Path) -> None:
    from reconciler.errors import ManifestError
    from reconciler.workflow.session import open_session

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: reconciler/v1\nkind: [\n", encoding="utf-8")
    db = tmp_path / "state" / "sandbox.db"
    with pytest.raises(ManifestError), open_session([str(bad)], TargetOptions(sandbox_db=str(db)), Recorder()):
        pass
    assert not db.parent.exists()  # loaded first: nothing started, no state file made
