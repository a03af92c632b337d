"""A grant to a principal that Entra ID has not replicated yet waits off the workers.

Real SDK clients over HTTPS against the sandbox, whose directory shows a new identity's service
principal to Microsoft.Authorization only after `replication_delay_seconds`. Real ARM skips that
lookup for principalType ServicePrincipal, which reconciler sends; the sandbox is told to look
anyway (`service_principal_type_skips_lookup=False`), so it answers PrincipalNotFound until the
principal has replicated, as ARM does in the cases the applier's retries are for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.applier import DONE, RetryPolicy, apply_plan
from reconciler.model import DesiredIdentity, DesiredRoleAssignment, DesiredState, LiveState, PrincipalRef
from reconciler.plan import Plan, ResourceType
from reconciler.planner import make_plan
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB, gateway_for
from tests.events import Events

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OTHERS = 6


@pytest.fixture
def late_directory() -> Iterator[SandboxServer]:
    server = SandboxServer(config=E2E_CONFIG.replace(replication_delay_seconds=2.0,
                                                                  service_principal_type_skips_lookup=False)).start()
    try:
        server.seed(subscriptions=[SUB], resource_groups=[(SUB, "rg", "westeurope")])
        yield server
    finally:
        server.stop()



def plan_with_a_late_grant() -> tuple[Plan, str]:
    """Identity `late` with a grant, and OTHERS identities without grants."""
    late = DesiredIdentity("o", SUB, "rg", "late", "westeurope", {})
    others = tuple(DesiredIdentity("o", SUB, "rg", f"other-{n}", "westeurope", {}) for n in range(OTHERS))
    grant = DesiredRoleAssignment("o", f"/subscriptions/{SUB}", READER, "Reader", PrincipalRef(identity=late.key))
    plan = make_plan(DesiredState(identities=(late, *others), role_assignments=(grant,), owners=frozenset({"o"})),
                     LiveState())
    return plan, next(c.address for c in plan.changes if c.type is ResourceType.ROLE_ASSIGNMENT)


def test_one_worker_creates_other_identities_while_a_grant_waits_for_replication(
        late_directory: SandboxServer) -> None:
    plan, grant = plan_with_a_late_grant()
    events = Events()
    report = apply_plan(plan, gateway_for(late_directory), parallelism=1, reporter=events,
                        retry=RetryPolicy(principal_backoff=(0.2,) * 40))
    assert report.ok, [r for r in report.results if r.status != DONE]
    waited = events.lines[events.lines.index(f"start {grant}"):events.lines.index(f"finish {grant}")]
    # With one worker, a retry that slept in the worker would let nothing else finish meanwhile.
    assert sum(1 for line in waited if line.startswith("finish ")) >= 1, events.lines
    result = next(r for r in report.results if r.address == grant)
    assert result.seconds >= 0.2  # it did wait for the principal: at least one retry
