"""`python -m bench.plan_memory [--quick] [--trace | --worker]`: the memory of figure 4's plan in a minute.

Figure 4 (bench/figures.py) measures the whole `reconciler plan` at 10,000 identities, 50,000
grants and 2,500 FICs against a throttled sandbox, which takes about 13 minutes, almost all of
it waiting on ARM's read rates. What the plan itself holds does not depend on how the live state
was read: this builds the same in-sync live state in-process (shaped as bench/figures.py
seed_direct stores it, deserialised by the SDK and converted by the
gateway's functions, the worker's imports loaded), then does what the plan worker does after
its reads (make the plan, render it as text, evaluate preflight) and prints one JSON object: the peak RSS of this
process after loading, after building the live state and at the end; with --trace, also the
bytes the plan holds (tracemalloc, the plan alone; tracing inflates the peak RSS, so measure
that in a run without it). Use it to compare two versions of the planner; figure 4 stays the
measurement of record.

With --worker, figure 4's own plan worker (bench/plan_worker.py) instead, over HTTPS against a
sandbox seeded as figure 4 seeds it but with throttling off and the client's FIC budget raised:
the same process, reads and plan as figure 4 (its peak RSS within 2 MB of figure 4's), in about
a minute instead of 13. Prints the worker's JSON: peak RSS at the end and after each phase.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import tracemalloc
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The plan worker's imports (bench/plan_worker.py), the Azure SDK included: they are part of its peak.
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignment
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity

from bench.workload import FIGURE4, QUICK4, Estate
from reconciler import preflight_reads
from reconciler.azure import gateway
from reconciler.azure.budget import BudgetConfig, RateBudget  # noqa: F401
from reconciler.azure.client import ArmTarget, StaticTokenCredential  # noqa: F401
from reconciler.errors import ReconcilerError
from reconciler.manifest.loader import load_manifests
from reconciler.model import (
    DesiredState,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveState,
    assignment_name,
)
from reconciler.planner import make_plan
from reconciler.preflight.evaluate import DenyAssignment, RoleDefinition
from reconciler.render.text import render_text
from reconciler.roles import RoleCatalog

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _wire(body: dict[str, Any]) -> dict[str, Any]:
    """A body as the SDK receives it: text decoded afresh, as each HTTP response page is."""
    loaded: dict[str, Any] = json.loads(json.dumps(body))
    return loaded


def _identity_body(desired: DesiredState, i: int) -> dict[str, Any]:
    ident = desired.identities[i]
    rid = ident.resource_id
    return {"id": rid, "name": ident.name, "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "location": ident.location.replace(" ", "").lower(), "tags": ident.desired_tags(),
            "properties": {"tenantId": TENANT, "principalId": str(uuid.uuid5(uuid.NAMESPACE_URL, rid.lower())),
                           "clientId": str(uuid.uuid5(uuid.NAMESPACE_DNS, rid.lower())), "isolationScope": "None"}}


def in_sync_live(desired: DesiredState) -> LiveState:
    """What the gateway reads from a sandbox seeded by bench/figures.py seed_direct: everything as
    declared, in the JSON shapes the sandbox serves, deserialised by the SDK's models and converted
    by the gateway's own functions (each SDK object dropped after conversion, as the gateway does)."""
    identities: dict[IdentityKey, LiveIdentity] = {}
    for i in range(len(desired.identities)):
        live = gateway._live_identity(Identity.deserialize(_wire(_identity_body(desired, i))))
        identities[live.key] = live
    fics: dict[IdentityKey, list[LiveFederatedCredential]] = {key: [] for key in identities}
    for fic in desired.federated_credentials:
        owner = identities[fic.identity]
        body = {"id": f"{owner.id}/federatedIdentityCredentials/{fic.name}", "name": fic.name,
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
                "properties": {"issuer": fic.issuer, "subject": fic.subject, "audiences": list(fic.audiences)}}
        fics[fic.identity].append(gateway._live_fic(owner, FederatedIdentityCredential.deserialize(_wire(body))))
    grants = []
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # seed_direct stores created/updatedOn
    for ra in desired.role_assignments:
        key = ra.principal.identity
        principal = identities[key].principal_id if key else str(ra.principal.object_id).lower()
        name = assignment_name(ra.owner, ra.scope, ra.role_definition_id, principal)
        scope = ra.scope.rstrip("/") or "/"
        sub = scope.split("/")[2]
        body = {"properties": {
            "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
                                f"{ra.role_definition_id}",
            "principalId": principal, "principalType": "ServicePrincipal" if key else ra.principal.principal_type,
            "scope": scope, "condition": ra.condition, "conditionVersion": ra.condition_version,
            "createdOn": now, "updatedOn": now, "createdBy": None, "updatedBy": None,
            "delegatedManagedIdentityResourceId": None, "description": ra.description},
            "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
            "type": "Microsoft.Authorization/roleAssignments", "name": name}
        grants.append(gateway._live_assignment(RoleAssignment.deserialize(_wire(body))))
    unique = {ra.id.lower(): ra for ra in grants}  # as read_schedule.read_state does
    return LiveState(
        identities=identities, federated_credentials={k: tuple(v) for k, v in fics.items()},
        role_assignments=tuple(unique.values()), subscriptions=frozenset(desired.subscriptions),
        resource_groups=frozenset((i.subscription.lower(), i.resource_group.lower()) for i in desired.identities))


class _SandboxReader:
    """What the worker's gateway answers preflight at figure 4: no custom roles or deny
    assignments, and no Microsoft Graph token for group memberships."""

    def caller_object_id(self) -> str:
        return "00000000-0000-0000-0000-00000000b00c"

    def custom_role_definitions(self, subscriptions: Iterable[str]) -> dict[str, RoleDefinition]:
        return {}

    def deny_assignments(self, subscriptions: Iterable[str]) -> list[DenyAssignment]:
        return []

    def group_memberships(self, object_id: str, principal_type: str | None) -> frozenset[str]:
        raise ReconcilerError("no Microsoft Graph token")


def worker(estate: Estate) -> dict[str, Any]:
    """Figure 4's worker against an unthrottled sandbox (see the module's docstring)."""
    from bench.figures import seed_direct
    from bench.sandbox import SandboxProcess

    with tempfile.TemporaryDirectory(prefix="reconciler-plan-memory-") as tmp:
        manifests, db = estate.write(Path(tmp) / "manifests"), Path(tmp) / "sandbox.db"
        desired, _ = load_manifests([manifests], RoleCatalog())
        seed_direct(db, desired)
        del desired
        with SandboxProcess(db, throttle_scale=1000, throttling=False) as sbx:
            return sbx.run_plan_worker(manifests, 1000, env={"BENCH_FIC_SCALE": "1000"})


def main(argv: list[str]) -> int:
    estate = QUICK4 if "--quick" in argv else FIGURE4
    if "--worker" in argv:
        w = worker(estate)
        print(json.dumps({"estate": estate.describe(), **{k: w[k] for k in (
            "peak_rss_mb", "peak_rss_mb_after", "cpu_user", "cpu_system", "wall_load", "wall_read", "wall_plan",
            "calls", "planned", "actionable")}}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        desired, _ = load_manifests([estate.write(Path(tmp))], RoleCatalog())
    loaded = _rss_mb()
    live = in_sync_live(desired)
    with_live = _rss_mb()
    trace = "--trace" in argv
    if trace:
        tracemalloc.start()
    plan = make_plan(desired, live, RoleCatalog().name_of)
    plan_bytes = tracemalloc.get_traced_memory()[0] if trace else 0
    tracemalloc.stop()
    text = render_text(plan, color=False)
    planned = _rss_mb()
    checked = preflight_reads.evaluate(_SandboxReader(), live, plan, None)  # as the worker does, after rendering
    print(json.dumps({
        "estate": estate.describe(),
        "planned": len(plan.changes), "actionable": len(plan.actionable), "text_chars": len(text),
        "plan_mb": round(plan_bytes / 2**20, 1) if trace else None,
        "preflight_unknown": len(checked.unknown),
        "peak_rss_mb_loaded": round(loaded, 1), "peak_rss_mb_live": round(with_live, 1),
        "peak_rss_mb_planned": round(planned, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
