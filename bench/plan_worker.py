"""`python -m bench.plan_worker MANIFESTS URL CA SCALE [SUB,SUB… [SHARDS]]`: one `reconciler plan`, measured
from inside (a shard: its subscriptions and `--shards`).

What `reconciler plan MANIFESTS --arm-endpoint URL --ca-cert CA` does (load the manifests with a
live role catalog, read the live state, make the plan, render it as text), with the client-side
rate budget scaled like the sandbox (and its FIC budget by BENCH_FIC_SCALE, default 1: what
`python -m bench.plan_memory --worker` raises against an unthrottled sandbox). The bearer token
comes from RECONCILER_ACCESS_TOKEN. Prints
one JSON object: peak RSS and CPU seconds of this process (the sandbox is another process),
phase wall times, ARM calls and the plan's size, and what preflight added: its wall time and ARM
calls (the worker has no Microsoft Graph token, so its one membership call is not made and group
grants come out unknown).
"""

from __future__ import annotations

import io
import json
import os
import resource
import sys
import time
from pathlib import Path

from reconciler import preflight_reads
from reconciler.azure.budget import BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.manifest.loader import load_manifests
from reconciler.planner import make_plan
from reconciler.render.text import render_text
from reconciler.roles import RoleCatalog


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main(argv: list[str]) -> int:
    manifests, url, ca, scale = Path(argv[0]), argv[1], argv[2], float(argv[3])
    started = time.perf_counter()
    budget = BudgetConfig(tenant_shares=int(argv[5]) if len(argv) > 5 else 1,
                          fic_scale=float(os.environ.get("BENCH_FIC_SCALE", "1"))).scaled(scale)
    target = ArmTarget(StaticTokenCredential(os.environ["RECONCILER_ACCESS_TOKEN"]), url, ca,
                       budget=RateBudget(budget))
    gateway = AzureGateway(target)
    catalog = RoleCatalog(live_lookup=gateway.lookup_role)
    desired, _warnings = load_manifests([manifests], catalog)
    if len(argv) > 4 and argv[4]:  # a shard: `--subscription A --subscription B`, as a CI matrix job runs
        desired, _skipped = desired.restricted(frozenset(argv[4].lower().split(",")))
    loaded = time.perf_counter()
    peaks = {"load": _peak_mb()}
    live = gateway.read_live(desired.read_scope())
    read = time.perf_counter()
    peaks["read"] = _peak_mb()
    plan = make_plan(desired, live, catalog.name_of)
    text = render_text(plan, color=False)
    planned = time.perf_counter()
    peaks["plan"] = _peak_mb()
    io.StringIO().write(text)
    before = gateway.call_counts()
    checked = preflight_reads.evaluate(gateway, live, plan, None)
    preflighted = time.perf_counter()
    after = gateway.call_counts()
    preflight_calls = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    gateway.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = target.stats()
    print(json.dumps({
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux reports KiB
        "peak_rss_mb_after": peaks,  # the peak so far, at the end of loading, reading and planning
        "cpu_user": usage.ru_utime,
        "cpu_system": usage.ru_stime,
        "wall_load": loaded - started,
        "wall_read": read - loaded,
        "wall_plan": planned - read,
        "wall_preflight": preflighted - planned,
        "calls": sum(before.values()),
        "call_counts": before,
        "preflight_calls": preflight_calls,
        "preflight_failures": len(checked.failures),
        "preflight_unknown": len(checked.unknown),
        "planned": len(plan.changes),
        "actionable": len(plan.actionable),
        "live_identities": len(live.identities),
        "live_role_assignments": len(live.role_assignments),
        "budget_waits": stats.budget.waits,
        "budget_wait_seconds": stats.budget.wait_seconds,
        "throttled": stats.budget.throttled,
        "retries": stats.retries,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
