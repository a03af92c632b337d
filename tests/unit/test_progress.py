"""Progress reporters: the bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler.applier import DONE, FAILED, SKIPPED, StepResult
from reconciler.model import DesiredIdentity, DesiredState, LiveState
from reconciler.payloads import FederatedCredentialValue, IdentityValue
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.planner import make_plan
from reconciler.progress import BarReporter, LineReporter

SUB = "11111111-1111-1111-1111-111111111111"
IDENTITY = "identity/sub/rg-a/app"
FIC = "identity/sub/rg-a/app/federatedCredential/gh"


def plan_of(n: int) -> Plan:
    ids = tuple(DesiredIdentity("o", SUB, "rg", f"app-{i}", "westeurope", {}) for i in range(n))
    return make_plan(DesiredState(identities=ids, owners=frozenset({"o"})), LiveState())


def test_bar_counts_steps_and_shows_throttling_waits() -> None:
    plan = plan_of(3)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with BarReporter(plan, console, throttle_wait=lambda: 2.5) as bar:
        first, *rest = plan.actionable
        bar.step_finished(StepResult(first.address, Action.CREATE, FAILED, "AuthorizationFailed: no"))
        for change in rest:
            bar.step_finished(StepResult(change.address, Action.CREATE, DONE))
    text = out.getvalue()
    assert "3/3" in text
    assert "throttled 2.5s" in text
    assert "failed to create identity rg/app-0: AuthorizationFailed: no" in text
    assert "identity rg/app-1:  [0.0s]" in text  # done steps print a line above the bar too


def test_lines_name_resources_by_title() -> None:
    plan = plan_of(1)
    out = io.StringIO()
    LineReporter(plan, Console(file=out, width=200)).step_finished(
        StepResult(plan.actionable[0].address, Action.CREATE, DONE, "created"))
    assert "identity rg/app-0: created" in out.getvalue()


def located_plan() -> Plan:
    return Plan(changes=(
        Change(IDENTITY, ResourceType.IDENTITY, Action.CREATE, source="m/a.yaml:4:7",
               after=IdentityValue("sub", "rg-a", "app", "westeurope", {})),
        Change(FIC, ResourceType.FEDERATED_CREDENTIAL, Action.CREATE, requires=(IDENTITY,), source="m/a.yaml:6:11",
               after=FederatedCredentialValue("app", "gh", "https://issuer", "s", ("x",))),
    ))


def test_failed_and_skipped_steps_are_named_by_title_with_the_failure_located() -> None:
    out = io.StringIO()
    reporter = LineReporter(located_plan(), Console(file=out, width=300, color_system=None))
    reporter.step_finished(StepResult(IDENTITY, Action.CREATE, FAILED, "AuthorizationFailed: no",
                                      "AuthorizationFailed"))
    reporter.step_finished(StepResult(FIC, Action.CREATE, SKIPPED, f"skipped: requires {IDENTITY}, which failed"))
    text = out.getvalue()
    assert "m/a.yaml:4:7: failed to create identity rg-a/app: AuthorizationFailed: no" in text
    assert "skipped: requires identity rg-a/app, which failed" in text
    assert IDENTITY not in text
