"""Figure 6: one process against `reconciler matrix` shards run side by side.

An estate of many subscriptions is planned once by a single process, then as the shards
`reconciler matrix --max-jobs N` makes, each in its own process (as each job of a CI matrix
would be), all at once. ARM's buckets are per subscription and principal, so the shards share
nothing but the sandbox process and this machine's cores; the figure shows what the split buys
and what it costs in calls.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.bounds import Limits, read_floor_spread
from bench.figures import LATENCY, READ_LATENCY, load, log, measure, ratio, seed_direct
from bench.report import INFO, Row, Section, verdict
from bench.sandbox import SandboxProcess
from bench.workload import Estate
from reconciler.azure.budget import FIC_LIMITS, FIC_LIST
from reconciler.matrix import make_shards


def _plan_worker(manifests: Path, sbx: SandboxProcess, scale: float, subscriptions: list[str],
                 shards: int = 1) -> dict[str, Any]:
    result = sbx.run_plan_worker(manifests, scale, subscriptions, shards)
    result["wall"] = result["wall_load"] + result["wall_read"] + result["wall_plan"]
    return result


def figure6(estate: Estate, scale: float, workdir: Path, jobs: int = 4) -> Section:
    section = Section(f"Figure 6: one process vs {jobs} matrix shards side by side, {estate.subscriptions} "
                      "subscriptions")
    manifests = estate.write(workdir / "fig6-manifests")
    db = workdir / "fig6.db"
    log(f"figure 6: writing {estate.describe()} into the sandbox's store")
    desired, _ = load(manifests)
    seed_direct(db, desired)
    shards = make_shards(desired, jobs)
    del desired
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=True, **LATENCY)
        log("figure 6: one process plans every subscription")
        with measure(sbx) as one:
            single = _plan_worker(manifests, sbx, scale, [])
        log(f"figure 6: {len(shards)} shard processes at once")
        started = time.perf_counter()
        with measure(sbx) as many, ThreadPoolExecutor(max_workers=len(shards)) as pool:
            results = list(pool.map(lambda s: _plan_worker(manifests, sbx, scale, s.subscriptions, s.of), shards))
        wall_all = time.perf_counter() - started
    floor = read_floor_spread(one.requests, estate.subscriptions, Limits(scale), READ_LATENCY, 8)
    # ARM has no subscription-wide FIC list: one list per identity, at most 15/s per tenant and
    # 5/s per subscription (FIC_LIMITS). Every subscription of the estate is in one tenant, so
    # this floor is the same for one process and for any number of shards.
    fic_lists = one.counts.get("FederatedIdentityCredentials_List", 0)
    fic_floor = max(fic_lists / FIC_LIMITS[FIC_LIST][0],
                    fic_lists / max(1, estate.subscriptions) / FIC_LIMITS[FIC_LIST][1])
    floor = max(floor, fic_floor)
    slowest = max(r["wall"] for r in results)
    section.rows += [
        Row("6 one process: wall time", f"{single['wall']:.1f} s",
            f"floor {floor:.1f} s (reads; FIC lists {fic_floor:.1f} s)", f"{ratio(single['wall'], floor):.2f}×",
            "report", INFO),
        Row(f"6 {len(shards)} shards side by side: wall time (all done)", f"{wall_all:.1f} s",
            f"one process {single['wall']:.1f} s", f"{ratio(wall_all, single['wall']):.2f}×", "report", INFO),
        Row(f"6 {len(shards)} shards: ARM calls", f"{many.requests:,}", f"one process {one.requests:,}",
            f"{ratio(many.requests, one.requests):.2f}×", "≤ 1.05×", verdict(many.requests <= one.requests * 1.05)),
        Row(f"6 {len(shards)} shards: in sync", f"{sum(r['actionable'] for r in results)} changes", "", "", "0",
            verdict(all(r["actionable"] == 0 for r in results) and single["actionable"] == 0)),
    ]
    section.notes += [
        f"Estate: {estate.describe()}, written straight into the sandbox's store (seed_direct). Shards from "
        f"`reconciler matrix --max-jobs {jobs}`: "
        + "; ".join(f"{s.name} {len(s.subscriptions)} subscriptions (weight {s.weight:,})" for s in shards) + ".",
        "Each plan runs in a fresh child process (bench/plan_worker.py), the shards all at once, as the jobs of a CI "
        "matrix would; on CI each job has its own runner, here they share this machine's cores and one sandbox "
        "process, so the split is measured at a disadvantage.",
        f"One process: {one.describe()}.",
        f"Shards: {many.describe()}; slowest shard {slowest:.1f} s; per shard: "
        + ", ".join(f"{r['wall']:.1f} s / {r['calls']:,} calls" for r in results) + ".",
    ]
    return section
