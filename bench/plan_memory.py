"""`python -m bench.plan_memory [--quick] [--trace]`: the memory of figure 4's plan in a minute, without a
sandbox.

Figure 4 (bench/figures.py) measures the whole `reconciler plan` at 10,000 identities, 50,000
grants and 2,500 FICs against a throttled sandbox, which takes about 13 minutes, almost all of
it waiting on ARM's read rates. What the plan itself holds does not depend on how the live state
was read: this builds the same in-sync live state in-process (shaped as bench/figures.py
seed_direct stores it and the gateway reads it back), then does what the plan worker does after
its reads (make the plan, render it as text) and prints one JSON object: the peak RSS of this
process after loading, after building the live state and at the end; with --trace, also the
bytes the plan holds (tracemalloc, the plan alone; tracing inflates the peak RSS, so measure
that in a run without it). Use it to compare two versions of the planner; figure 4 stays the
measurement of record.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.workload import FIGURE4, QUICK4
from reconciler.manifest.loader import load_manifests
from reconciler.model import (
    DesiredState,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    Modified,
    assignment_name,
    norm_scope,
)
from reconciler.planner import make_plan
from reconciler.render.text import render_text
from reconciler.roles import RoleCatalog

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def in_sync_live(desired: DesiredState) -> LiveState:
    """What the gateway reads from a sandbox seeded by seed_direct: everything as declared."""
    identities: dict[IdentityKey, LiveIdentity] = {}
    for ident in desired.identities:
        rid = ident.resource_id
        identities[ident.key] = LiveIdentity(
            rid, ident.subscription, ident.resource_group, ident.name, ident.location.replace(" ", "").lower(),
            ident.desired_tags(), str(uuid.uuid5(uuid.NAMESPACE_URL, rid.lower())),
            str(uuid.uuid5(uuid.NAMESPACE_DNS, rid.lower())), TENANT)
    fics: dict[IdentityKey, list[LiveFederatedCredential]] = {key: [] for key in identities}
    for fic in desired.federated_credentials:
        fid = f"{identities[fic.identity].id}/federatedIdentityCredentials/{fic.name}"
        fics[fic.identity].append(LiveFederatedCredential(fic.identity, fid, fic.name, fic.issuer, fic.subject,
                                                          tuple(fic.audiences)))
    grants = []
    # seed_direct stores createdOn/updatedOn on every assignment (no systemData on the rest).
    now = datetime.now(UTC).isoformat()
    for ra in desired.role_assignments:
        key = ra.principal.identity
        principal = identities[key].principal_id if key else str(ra.principal.object_id).lower()
        name = assignment_name(ra.owner, ra.scope, ra.role_definition_id, principal)
        grants.append(LiveRoleAssignment(
            f"{norm_scope(ra.scope)}/providers/Microsoft.Authorization/roleAssignments/{name}", name, ra.scope,
            ra.role_definition_id, principal, "ServicePrincipal" if key else ra.principal.principal_type,
            ra.description, ra.condition, ra.condition_version, Modified(None, now)))
    return LiveState(
        identities=identities, federated_credentials={k: tuple(v) for k, v in fics.items()},
        role_assignments=tuple(grants), subscriptions=frozenset(desired.subscriptions),
        resource_groups=frozenset((i.subscription.lower(), i.resource_group.lower()) for i in desired.identities))


def main(argv: list[str]) -> int:
    estate = QUICK4 if "--quick" in argv else FIGURE4
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
    print(json.dumps({
        "estate": estate.describe(),
        "planned": len(plan.changes), "actionable": len(plan.actionable), "text_chars": len(text),
        "plan_mb": round(plan_bytes / 2**20, 1) if trace else None,
        "peak_rss_mb_loaded": round(loaded, 1), "peak_rss_mb_live": round(with_live, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
