"""A run's session: the manifests loaded and the target opened, and the plan made from both."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from reconciler.errors import ReconcilerError
from reconciler.gateway import ArmGateway, AuthorizationReader
from reconciler.manifest.loader import load_manifests
from reconciler.model import DesiredState, LiveState
from reconciler.plan import Plan
from reconciler.planner import PlanOptions, make_plan
from reconciler.principals import Directory, Unavailable, annotate, resolve
from reconciler.roles import RoleCatalog
from reconciler.sourceid import source_id
from reconciler.target import TargetOptions, open_sandbox, open_target
from reconciler.workflow.interaction import Interaction


@dataclass(frozen=True)
class Session:
    desired: DesiredState
    gateway: ArmGateway
    catalog: RoleCatalog
    directory: Directory | Unavailable


class SessionOpener(Protocol):
    """How a workflow opens its session: `open_session`, or a test's in-memory one."""

    def __call__(
        self, paths: Sequence[str], target: TargetOptions, io: Interaction, subscriptions: Sequence[str] | None = None
    ) -> AbstractContextManager[Session]: ...


def check_selected_subscriptions(selected: Sequence[str], desired: DesiredState) -> None:
    """A --subscription no manifest declares would plan nothing and say "No changes": a typo
    in a CI matrix would hide drift for ever, so it is an error."""
    declared = desired.declared_subscriptions | desired.subscriptions
    unknown = [s for s in selected if s.strip().lower() not in declared]
    if unknown:
        raise ReconcilerError(
            f"--subscription {', '.join(unknown)}: no manifest declares "
            f"{'this subscription' if len(unknown) == 1 else 'these subscriptions'}; the manifests declare "
            + (", ".join(sorted(declared)) or "none")
            + ". Check the value (a typo in a CI matrix looks like this)"
        )


def load_desired(
    paths: Sequence[str], catalog: RoleCatalog, io: Interaction, subscriptions: Sequence[str] | None = None
) -> DesiredState:
    """The manifests at `paths`, restricted to `subscriptions` when given."""
    desired, warnings = load_manifests(list(paths), catalog)
    io.diagnostics(warnings)
    desired = dataclasses.replace(desired, source_id=source_id(list(paths)))
    if subscriptions:
        check_selected_subscriptions(subscriptions, desired)
        desired, skipped = desired.restricted(frozenset(s.lower() for s in subscriptions))
        if skipped:
            io.note(f"Note: {skipped} role assignment(s) span subscriptions outside --subscription; "
                    "they are planned by a run that selects both.", style="yellow")
    return desired


@contextmanager
def open_session(
    paths: Sequence[str], target: TargetOptions, io: Interaction, subscriptions: Sequence[str] | None = None
) -> Iterator[Session]:
    """Load the manifests and open the target (ARM and the directory, Microsoft Graph). The
    embedded sandbox is seeded from the manifests, so they are loaded first (built-in roles
    only) and nothing is started when they do not load; any other target is opened first so
    that custom role names resolve against the live role definitions."""
    if target.sandbox_db:
        catalog = RoleCatalog()
        desired = load_desired(paths, catalog, io, subscriptions)
        with open_sandbox(target) as sandbox:
            sandbox.seed(desired)
            yield Session(desired, sandbox.gateway, catalog, sandbox.directory)
        return
    with open_target(target) as opened:
        catalog = RoleCatalog(live_lookup=opened.gateway.lookup_role)
        desired = load_desired(paths, catalog, io, subscriptions)
        yield Session(desired, opened.gateway, catalog, opened.directory)


def read_live(session: Session) -> LiveState:
    """What exists in Azure of what the manifests declare and own."""
    desired = session.desired
    return session.gateway.read_live(desired.read_scope())


def plan_and_live(session: Session, options: PlanOptions | None = None) -> tuple[Plan, LiveState]:
    live = read_live(session)
    # Names to object ids, declared ids checked, before the pure planner (reconciler/principals.py).
    resolution = resolve(session.desired, live, session.directory)
    return annotate(make_plan(resolution.desired, live, session.catalog.name_of, options), resolution), live


def make_fresh_plan(session: Session, options: PlanOptions | None = None) -> Plan:
    return plan_and_live(session, options)[0]


def with_preflight(gateway: ArmGateway, live: LiveState, the_plan: Plan, apply_as: str | None) -> Plan:
    """The plan with its `preflight` section: which steps `apply_as` (default: the caller) would
    be refused (reconciler/preflight)."""
    from reconciler import preflight_reads

    if not isinstance(gateway, AuthorizationReader):
        raise ReconcilerError("this target cannot evaluate preflight; pass --no-preflight")
    result = preflight_reads.evaluate(gateway, live, the_plan, apply_as)
    return dataclasses.replace(the_plan, preflight=result.to_json())


def print_calls(gateway: ArmGateway, label: str, io: Interaction) -> None:
    counts = gateway.call_counts()
    total = sum(counts.values())
    io.note(f"ARM calls ({label}): {total}", style="dim")
    for kind, n in sorted(counts.items()):
        io.note(f"  {n:6d}  {kind}", style="dim")
    io.note(f"  {gateway.stats_summary()}", style="dim")
    graph = gateway.graph_call_counts()
    if graph:
        io.note(f"Microsoft Graph calls ({label}): {sum(graph.values())}", style="dim")
        for kind, n in sorted(graph.items()):
            io.note(f"  {n:6d}  {kind}", style="dim")
