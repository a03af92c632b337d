"""Progress reporters: the bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler.applier import StepResult
from reconciler.model import DesiredIdentity, DesiredState, LiveState
from reconciler.plan import Action, Plan
from reconciler.planner import make_plan
from reconciler.progress import BarReporter, LineReporter

SUB = "11111111-1111-1111-1111-111111111111"


def plan_of(n: int) -> Plan:
    ids = tuple(DesiredIdentity("o", SUB, "rg", f"app-{i}", "westeurope", {}) for i in range(n))
    return make_plan(DesiredState(identities=ids, owners=frozenset({"o"})), LiveState())


def test_bar_counts_steps_and_shows_throttling_waits() -> None:
    plan = plan_of(3)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with BarReporter(plan, console, throttle_wait=lambda: 2.5) as bar:
        first, *rest = plan.actionable
        bar.step_finished(StepResult(first.address, Action.CREATE, "failed", "AuthorizationFailed: no"))
        for change in rest:
            bar.step_finished(StepResult(change.address, Action.CREATE, "done"))
    text = out.getvalue()
    assert "3/3" in text
    assert "throttled 2.5s" in text
    assert "failed: identity rg/app-0: AuthorizationFailed: no" in text


def test_lines_name_resources_by_title() -> None:
    plan = plan_of(1)
    out = io.StringIO()
    LineReporter(plan, Console(file=out, width=200)).step_finished(
        StepResult(plan.actionable[0].address, Action.CREATE, "done", "created"))
    assert "identity rg/app-0: created" in out.getvalue()
