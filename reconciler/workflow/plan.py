"""`plan`: what apply would create, change or delete, with preflight, optionally saved."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ReconcilerError
from reconciler.plan import Plan
from reconciler.planner import PlanOptions
from reconciler.roles import GUID_RE
from reconciler.safety import DEFAULT_MAX_DELETES, mass_delete_problems
from reconciler.savedplan import dumps_saved, plan_key, recorded_paths, recorded_target, with_fingerprints
from reconciler.target import TargetOptions
from reconciler.workflow.files import check_output, write_output
from reconciler.workflow.interaction import Interaction
from reconciler.workflow.session import SessionOpener, open_session, plan_and_live, print_calls, with_preflight


@dataclass(frozen=True)
class PlanRequest:
    paths: list[str]
    target: TargetOptions
    options: PlanOptions
    subscriptions: list[str] | None = None
    out: Path | None = None  # save the plan (with fingerprints) here for `apply PLANFILE`
    apply_as: str | None = None  # preflight for this principal instead of the caller
    preflight: bool = True
    verbose: bool = False  # ARM call counts


def saved_hint(out: Path, target: TargetOptions, mass_delete: bool, signed: bool) -> str:
    """The complete command that applies a saved plan: it records its target and options."""
    command = f"reconciler apply {shlex.quote(str(out))}" + (" --allow-mass-delete" if mass_delete else "")
    needs = [f"{name} set" for name, on in (
        ("RECONCILER_PLAN_KEY", signed), ("RECONCILER_ACCESS_TOKEN", bool(target.arm_endpoint))) if on]
    return (f"Saved the plan ({'signed, ' if signed else ''}target: {target.describe()}) to {out}; "
            f"apply it from this directory{' with ' + ' and '.join(needs) if needs else ''} with: {command}")


def run_plan(
    request: PlanRequest, io: Interaction, show: Callable[[Plan], None], opener: SessionOpener = open_session
) -> Plan:
    """Make the plan, `show` it, save it when asked; raise when preflight predicts refusals."""
    out = request.out
    if out:
        check_output(out, "--out")
    # A saved plan records its paths relative to the working directory: check before any I/O.
    paths = recorded_paths(request.paths) if out else [str(p) for p in request.paths]
    key = plan_key() if out else None
    if request.apply_as is not None and not GUID_RE.match(request.apply_as):
        raise ReconcilerError(f"--apply-as {request.apply_as}: not an object id (a GUID)")
    with opener(request.paths, request.target, io, request.subscriptions) as session:
        the_plan, live = plan_and_live(session, request.options)
        if request.preflight:
            the_plan = with_preflight(session.gateway, live, the_plan, request.apply_as)
        the_plan = with_fingerprints(the_plan, session.desired, {
            "paths": paths, "prune_unmanaged": request.options.prune_unmanaged,
            "prune_orphans": request.options.prune_orphans, "target": request.target.describe(),
            "subscriptions": request.subscriptions or [], "target_options": recorded_target(request.target),
        })
        show(the_plan)
        mass_deletes = mass_delete_problems(the_plan, DEFAULT_MAX_DELETES)
        for problem in mass_deletes:
            io.note(f"Warning: apply will refuse this plan without --allow-mass-delete: {problem}", style="yellow")
        if out:
            write_output(out, dumps_saved(the_plan, key), "--out")
            io.note(saved_hint(out, request.target, bool(mass_deletes), key is not None))
        if request.verbose:
            print_calls(session.gateway, "plan", io)
    failures = len(the_plan.preflight["failures"]) if the_plan.preflight else 0
    if failures:
        raise ReconcilerError(f"preflight: {failures} step(s) of this plan will fail for principal "
                              f"{the_plan.preflight['principal'] if the_plan.preflight else ''} (listed above); "
                              "grant what they need first, or pass --no-preflight")
    return the_plan
