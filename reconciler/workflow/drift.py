"""`drift`: what changed in Azure out of band, by drift class. Never writes to Azure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.plan import Plan
from reconciler.target import TargetOptions
from reconciler.workflow.interaction import Interaction
from reconciler.workflow.session import SessionOpener, make_fresh_plan, open_session, print_calls


@dataclass(frozen=True)
class DriftRequest:
    paths: list[str]
    target: TargetOptions
    subscriptions: list[str] | None = None
    verbose: bool = False  # ARM call counts


def run_drift(
    request: DriftRequest, io: Interaction, show: Callable[[Plan], None], opener: SessionOpener = open_session
) -> Plan:
    """The plan drift is read from, after `show` rendered it."""
    with opener(request.paths, request.target, io, request.subscriptions) as session:
        the_plan = make_fresh_plan(session)
        show(the_plan)
        if request.verbose:
            print_calls(session.gateway, "drift", io)
    return the_plan
