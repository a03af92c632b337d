"""`apply`: make Azure match the manifests (or a saved plan), then verify a fresh plan is empty.

Its decisions, in order: a saved plan is resolved to the paths, options and target it records
and must still be current; nothing happens without changes; the mass-delete guard refuses
before the person is asked; only then are steps run, the report written and the result
verified by a fresh plan."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from reconciler.applier import FAILED, INTERRUPTED, NOT_STARTED, SKIPPED, ApplyReport, StopRequest, apply_plan
from reconciler.errors import Interrupted, ReconcilerError
from reconciler.gateway import ArmGateway
from reconciler.plan import Plan
from reconciler.planner import PlanOptions
from reconciler.render.text import render_text
from reconciler.safety import DEFAULT_MAX_DELETES, mass_delete_problems
from reconciler.savedplan import check_fresh, plan_key, read_plan, saved_paths, saved_target
from reconciler.target import TargetOptions
from reconciler.textsafe import one_line, safe_message
from reconciler.workflow.files import DEFAULT_REPORT, check_output, write_report
from reconciler.workflow.interaction import Interaction
from reconciler.workflow.session import Session, SessionOpener, make_fresh_plan, open_session, print_calls

# How long the first Ctrl-C / SIGTERM waits for steps in flight (their ARM calls retry
# transient faults for up to 120 s, so this is a bound, not an expectation).
INTERRUPT_GRACE_SECONDS = 60.0
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass(frozen=True)
class ApplyRequest:
    paths: list[str]  # manifests, or one saved plan file
    target: TargetOptions
    options: PlanOptions = field(default_factory=PlanOptions)
    subscriptions: list[str] | None = None
    auto_approve: bool = False
    parallelism: int = 8
    max_deletes: int = DEFAULT_MAX_DELETES
    allow_mass_delete: bool = False
    report_file: Path | None = None
    verbose: bool = False  # ARM call counts
    # The target options the command line set: they override a saved plan's, which fill the rest.
    explicit_target: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ApplyOutcome:
    plan: Plan  # the fresh plan that ran (or found nothing to do)
    report: ApplyReport | None  # None: there was nothing to apply


def is_plan_file(paths: Sequence[str]) -> bool:
    """One file that is a saved plan, told apart from a manifest by its content: a plan is a
    JSON object with `format_version`. A manifest may be JSON too (YAML reads it), whatever its
    name; a `.json` file that is not JSON at all is taken for a broken plan and said so."""
    if len(paths) != 1 or not Path(paths[0]).is_file():
        return False
    try:
        data = json.loads(Path(paths[0]).read_bytes())
    except (OSError, ValueError, RecursionError):
        return paths[0].endswith(".json")
    return isinstance(data, dict) and "format_version" in data


def from_saved(request: ApplyRequest, saved: Plan) -> ApplyRequest:
    """The request a saved plan stands for: its paths, prune options, subscriptions and target
    (options given on the command line win, `--shards` always does)."""
    target = saved_target(saved, request.target, request.explicit_target)
    return dataclasses.replace(
        request, paths=saved_paths(saved),
        options=PlanOptions(prune_unmanaged=bool(saved.inputs.get("prune_unmanaged", False)),
                            prune_orphans=bool(saved.inputs.get("prune_orphans", False))),
        subscriptions=list(saved.inputs.get("subscriptions") or []) or None,
        target=dataclasses.replace(target, shards=request.target.shards),
    )


def check_mass_delete(the_plan: Plan, request: ApplyRequest) -> None:
    problems = mass_delete_problems(the_plan, request.max_deletes)
    if problems and not request.allow_mass_delete:
        raise ReconcilerError(
            "refusing to apply: " + "; ".join(problems)
            + ". Check the manifests (an emptied folder or a renamed owner looks like this); "
            "if the deletions are intended, pass --allow-mass-delete"
        )


def run_apply(request: ApplyRequest, io: Interaction, opener: SessionOpener = open_session) -> ApplyOutcome:
    """Plan, check, confirm, apply and verify. Given a saved plan, apply to the target it
    records, and only if a fresh plan makes exactly its changes (the fresh plan is what runs)."""
    if request.report_file:
        check_output(request.report_file, "--report")
    saved = read_plan(Path(request.paths[0]), key=plan_key()) if is_plan_file(request.paths) else None
    if saved is not None:
        request = from_saved(request, saved)
    with opener(request.paths, request.target, io, request.subscriptions) as session:
        the_plan = make_fresh_plan(session, request.options)  # a saved plan is a commitment: the fresh plan runs
        if saved is not None:
            check_fresh(saved, session.desired, the_plan)
            io.note(f"The saved plan is current: applying its {len(the_plan.actionable)} change(s) to "
                    f"{request.target.describe()}.")
        else:
            io.out(render_text(the_plan, color=io.color))
        if not the_plan.has_changes:
            if saved is not None:
                io.out("No changes. Azure matches the manifests.\n")
            return ApplyOutcome(the_plan, None)
        check_mass_delete(the_plan, request)
        if saved is None and not request.auto_approve:
            io.confirm()
        report = run_steps(the_plan, session.gateway, request.parallelism, request.report_file, io)
        io.out(f"Apply complete: {report.counts()['done']} step(s) done.\n")
        verify(session, request, report, io)
    return ApplyOutcome(the_plan, report)


def verify(session: Session, request: ApplyRequest, report: ApplyReport, io: Interaction) -> None:
    """A fresh plan after apply must be empty; the report records whether it was."""
    after = make_fresh_plan(session, request.options)
    if request.verbose:
        print_calls(session.gateway, "plan + apply + verify", io)
    if after.has_changes:
        path = request.report_file or DEFAULT_REPORT
        write_report(report, path, verified=False)
        io.out(render_text(after))
        raise ReconcilerError("Azure does not match the manifests after apply (see the plan above); "
                              f"report written to {path}")
    if request.report_file:
        write_report(report, request.report_file, verified=True)
    io.out("Verified: a fresh plan shows no changes.\n")


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[list[int]]:
    """First SIGINT/SIGTERM: stop handing out steps; second: stop at once. Yields the
    signals received. Handlers stay until the report is written, so it always is."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        (stop.request if len(received) == 1 else stop.now)()

    previous = {s: signal.signal(s, handler) for s in _SIGNAL_EXIT}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _exit_code(received: list[int]) -> int:
    return _SIGNAL_EXIT.get(signal.Signals(received[0]), 130) if received else 130


def run_steps(
    the_plan: Plan, gateway: ArmGateway, parallelism: int, report_file: Path | None, io: Interaction
) -> ApplyReport:
    """Apply the plan's steps with progress, write the report, and raise unless all were done."""

    def announce(in_flight: int) -> None:
        io.note(f"Interrupted: waiting for {in_flight} in-flight step(s) (at most "
                f"{INTERRUPT_GRACE_SECONDS:.0f} s; interrupt again to stop at once)…", style="yellow")

    stop = StopRequest(INTERRUPT_GRACE_SECONDS, announce)
    with stop_on_signals(stop) as received:
        with io.progress(the_plan, gateway.throttle_wait_seconds) as reporter:
            report = apply_plan(the_plan, gateway, parallelism=parallelism, reporter=reporter, stop=stop,
                                abort=gateway.unreachable)
        if report_file:
            write_report(report, report_file)
        if report.ok and received:
            raise Interrupted("apply interrupted after every step was done; the verifying plan was skipped",
                              _exit_code(received), immediate=False)
        if report.ok:
            return report
        path = report_file or DEFAULT_REPORT
        write_report(report, path)
    _raise_incomplete(report, path, received, io)


def _raise_incomplete(report: ApplyReport, path: Path, received: list[int], io: Interaction) -> NoReturn:
    c = report.counts()
    summary = f"{c['done']} done, {c[FAILED]} failed, {c[SKIPPED]} skipped"
    if report.interrupted:
        summary += f", {c[INTERRUPTED]} in flight (outcome unknown), {c[NOT_STARTED]} not started"
        raise Interrupted(
            f"apply interrupted: {summary}; report written to {path}. "
            "Run apply again to finish: done steps are not repeated.",
            _exit_code(received), immediate=c[INTERRUPTED] > 0,
        )
    if report.stopped:
        not_started = sum(1 for r in report.results if r.detail.startswith("not started:"))
        io.note(safe_message(f"Stopped handing out steps ({not_started} not started): {one_line(report.stopped)}"),
                style="red")
    raise ReconcilerError(
        f"apply incomplete: {summary}; report written to {path}. "
        "Fix the cause and run apply again: done steps are not repeated."
    )
