"""Step lines name steps as the plan does, never by internal address (pure, no I/O)."""

from __future__ import annotations

import io

from rich.console import Console

from reconciler.applier import FAILED, SKIPPED, StepResult
from reconciler.plan import Action, Change, Plan, ResourceType
from reconciler.progress import LineReporter

IDENTITY = "identity/sub/rg-a/app"
FIC = "identity/sub/rg-a/app/federatedCredential/gh"


def plan() -> Plan:
    return Plan(changes=(
        Change(IDENTITY, ResourceType.IDENTITY, Action.CREATE, source="m/a.yaml:4:7",
               after={"resourceGroup": "rg-a", "name": "app"}),
        Change(FIC, ResourceType.FEDERATED_CREDENTIAL, Action.CREATE, requires=(IDENTITY,), source="m/a.yaml:6:11",
               after={"identity": "app", "name": "gh"}),
    ))


def test_failed_and_skipped_steps_are_named_by_title_with_the_failure_located() -> None:
    out = io.StringIO()
    reporter = LineReporter(plan(), Console(file=out, width=300, color_system=None))
    reporter.step_finished(StepResult(IDENTITY, Action.CREATE, FAILED, "AuthorizationFailed: no",
                                      "AuthorizationFailed"))
    reporter.step_finished(StepResult(FIC, Action.CREATE, SKIPPED, f"skipped: requires {IDENTITY}, which failed"))
    text = out.getvalue()
    assert "m/a.yaml:4:7: failed to create identity rg-a/app: AuthorizationFailed: no" in text
    assert "skipped: requires identity rg-a/app, which failed" in text
    assert IDENTITY not in text
