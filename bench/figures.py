"""The four figures of docs/BENCHMARKS.md. Each returns a report Section (rows and notes).

The sandbox always runs in its own process (bench.sandbox.SandboxProcess); the reconciler runs in
this process (figures 1-3) or in a fresh child (figure 4, so that its peak RSS is its own).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bounds import Limits, apply_bound, read_floor, read_floor_spread
from bench.report import INFO, Row, Section, verdict
from bench.sandbox import SandboxProcess, by_operation, count_delta, operations
from bench.workload import Estate
from reconciler.applier import DONE, ApplyReport, apply_plan
from reconciler.azure.budget import BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway, role_definition_id
from reconciler.manifest.loader import load_manifests
from reconciler.model import DesiredState, LiveState, norm_scope
from reconciler.plan import Plan
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog
from reconciler.target import seed_of

READ_LATENCY = 0.040
WRITE_LATENCY = 0.150
LATENCY = {"latency_read_ms": READ_LATENCY * 1000, "latency_write_ms": WRITE_LATENCY * 1000,
           "latency_delete_ms": WRITE_LATENCY * 1000}
BASELINE_PARALLELISM = 10  # terraform's default -parallelism
APPLY_PARALLELISM = 8  # `reconciler apply`'s default --parallelism


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def target_for(sbx: SandboxProcess, scale: float, *, budget: bool = True) -> ArmTarget:
    """The product's ArmTarget; its client-side budget is ARM's, scaled like the sandbox."""
    return ArmTarget(StaticTokenCredential(sbx.token), sbx.url, sbx.ca_cert_path,
                     budget=RateBudget(BudgetConfig().scaled(scale)) if budget else None)


def seed_references(sbx: SandboxProcess, desired: DesiredState) -> None:
    """Subscriptions, resource groups and external principals, as `--sandbox` seeds them."""
    data = seed_of(desired)
    sbx.seed([s for (s,) in data["subscriptions"]], [(s, r, loc) for s, r, loc in data["resource_groups"]],
             [(o, t, n) for o, t, n in data["principals"]])


def load(paths: Path, gateway: AzureGateway | None = None) -> tuple[DesiredState, RoleCatalog]:
    catalog = RoleCatalog(live_lookup=gateway.lookup_role if gateway else None)
    desired, _ = load_manifests([paths], catalog)
    return desired, catalog


def plan_of(desired: DesiredState, gateway: AzureGateway, catalog: RoleCatalog) -> tuple[Plan, LiveState]:
    live = gateway.read_live(desired.read_scope())
    return make_plan(desired, live, catalog.name_of), live


@dataclass
class Measured:
    wall: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)  # sandbox request counters, delta
    sandbox_cpu: float = 0.0
    client_cpu: float = 0.0
    load: float = 0.0  # the machine's 1-minute load average at the end (other processes included)

    @property
    def requests(self) -> int:
        return operations(self.counts)

    @property
    def throttled(self) -> int:
        return self.counts.get("throttled", 0)

    @property
    def faults(self) -> int:
        return self.counts.get("faults", 0)

    def describe(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in by_operation(self.counts).items())
        return (f"{self.requests} requests ({ops}); 429s {self.throttled}; injected faults {self.faults}; "
                f"wall {self.wall:.1f} s; CPU: sandbox {self.sandbox_cpu:.1f} s, reconciler {self.client_cpu:.1f} s; "
                f"machine load average {self.load:.1f}")


@contextmanager
def measure(sbx: SandboxProcess) -> Iterator[Measured]:
    m = Measured()
    before = sbx.request_counts()
    sandbox_cpu, client_cpu = sbx.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    try:
        yield m
    finally:
        m.wall = time.perf_counter() - start
        m.client_cpu = time.process_time() - client_cpu
        m.sandbox_cpu = sbx.cpu_seconds() - sandbox_cpu
        m.counts = count_delta(before, sbx.request_counts())
        m.load = os.getloadavg()[0]


def target_summary(target: ArmTarget) -> str:
    return target.stats().summary()


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


# -- figure 1 -------------------------------------------------------------------------------------


def _refresh_calls(desired: DesiredState, live: LiveState) -> list[tuple[str, Callable[[AzureGateway], Any]]]:
    """What a Terraform refresh of these resources sends, from ids its state holds (taken from a
    read after seeding): GET each identity, FIC and role assignment, plus one role definition GET
    per distinct (subscription, role) (cached, which is kinder to the baseline than azurerm,
    whose role assignment read looks the definition up for every assignment)."""
    calls: list[tuple[str, Callable[[AzureGateway], Any]]] = []
    roles = sorted({(norm_scope(ra.scope).split("/")[2], ra.role_definition_id) for ra in desired.role_assignments})
    for sub, guid in roles:
        calls.append(("roleDefinitions.get", functools.partial(
            lambda gw, s, g: gw.auth(s).role_definitions.get(f"/subscriptions/{s}", g), s=sub, g=guid)))
    for ident in desired.identities:
        have = live.identities[ident.key]
        calls.append(("identities.get", functools.partial(
            lambda gw, s, r, n: gw.msi(s).user_assigned_identities.get(r, n),
            s=have.subscription, r=have.resource_group, n=have.name)))
    for fic in desired.federated_credentials:
        have = live.identities[fic.identity]
        calls.append(("fics.get", functools.partial(
            lambda gw, s, r, n, f: gw.msi(s).federated_identity_credentials.get(r, n, f),
            s=have.subscription, r=have.resource_group, n=have.name, f=fic.name)))
    by_key = {ra.key: ra for ra in live.role_assignments}
    for ra in desired.role_assignments:
        principal = (live.identities[ra.principal.identity].principal_id if ra.principal.identity
                     else str(ra.principal.object_id))
        found = by_key[(norm_scope(ra.scope), ra.role_definition_id, principal.lower())]
        sub = norm_scope(found.id).split("/")[2]
        calls.append(("roleAssignments.get", functools.partial(
            lambda gw, s, i: gw.auth(s).role_assignments.get_by_id(i), s=sub, i=found.id)))
    return calls


def _seed_by_apply(sbx: SandboxProcess, manifests: Path, scale: float) -> tuple[DesiredState, LiveState]:
    """Throttling off, no latency: the product's own plan + apply creates the estate over the SDK."""
    # The identity-creation window applies even with throttling off: lift it too (the measured runs
    # start a fresh sandbox process, whose config is ARM's again).
    sbx.configure(throttling=False, latency_read_ms=0, latency_write_ms=0, latency_delete_ms=0,
                  identity_creates_per_window=1_000_000)
    with AzureGateway(target_for(sbx, scale, budget=False), read_parallelism=16) as gateway:
        desired, catalog = load(manifests, gateway)
        seed_references(sbx, desired)
        plan, _ = plan_of(desired, gateway, catalog)
        report = apply_plan(plan, gateway, parallelism=16)
        if not report.ok:
            raise RuntimeError(f"seeding failed: {report.counts()}")
        again, live = plan_of(desired, gateway, catalog)
    if again.has_changes:
        raise RuntimeError(f"seeding did not converge: {len(again.actionable)} changes left")
    return desired, live


def figure1(estate: Estate, scale: float, workdir: Path) -> Section:
    limits = Limits(scale)
    section = Section("Figure 1: plan of an estate in sync, ours vs a Terraform-style refresh")
    manifests = estate.write(workdir / "fig1-manifests")
    db = workdir / "fig1.db"
    log(f"figure 1: seeding {estate.describe()} (throttling off)")
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        start = time.perf_counter()
        desired, live = _seed_by_apply(sbx, manifests, scale)
        log(f"figure 1: seeded in {time.perf_counter() - start:.0f} s")
    refresh = _refresh_calls(desired, live)

    def run_ours(sbx: SandboxProcess) -> tuple[Measured, int, ArmTarget]:
        sbx.configure(throttling=True, **LATENCY)
        target = target_for(sbx, scale)
        with AzureGateway(target) as gateway, measure(sbx) as m:
            plan, _ = plan_of(desired, gateway, RoleCatalog(live_lookup=gateway.lookup_role))
        return m, len(plan.actionable), target

    log("figure 1: our plan (stock sandbox)")
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        ours, changes, ours_target = run_ours(sbx)
    log(f"figure 1: ours: {ours.describe()}")

    log(f"figure 1: baseline refresh, {len(refresh)} GETs at parallelism {BASELINE_PARALLELISM} (stock sandbox)")
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=True, **LATENCY)
        base_target = target_for(sbx, scale)
        with AzureGateway(base_target) as gateway, measure(sbx) as base, \
                ThreadPoolExecutor(max_workers=BASELINE_PARALLELISM) as pool:
            list(pool.map(lambda call: call[1](gateway), refresh))
    log(f"figure 1: baseline: {base.describe()}")

    # Our plan lists every identity's credentials (ARM has no subscription-wide FIC list), and the
    # FIC API allows 5 lists/s per subscription: at 1,000 identities in one subscription that, not
    # the read bucket, is the floor. The baseline GETs only the credentials its state names.
    fic_lists = ours.counts.get("FederatedIdentityCredentials_List", 0)
    refresh_fics = base.counts.get("FederatedIdentityCredentials_Get", 0)
    floor = read_floor_spread(ours.requests, estate.subscriptions, limits, READ_LATENCY, 8, fic_lists=fic_lists)
    calls_ratio, wall_ratio = ratio(base.requests, ours.requests), ratio(base.wall, ours.wall)
    section.rows += [
        Row("1 plan: ARM calls (sandbox count)", f"{ours.requests:,}", f"baseline {base.requests:,}",
            f"{calls_ratio:.1f}× fewer", "≥ 4× fewer", verdict(calls_ratio >= 4)),
        # Was "≥ 4× less", set before the sandbox had the FIC API's limits: no plan that lists every
        # identity's credentials (the only way to see one added out of band) can meet it on one
        # subscription, where those lists alone take longer than the whole refresh. The floor row
        # below is the target on wall time; docs/BENCHMARKS.md says why.
        Row("1 plan: wall time vs the refresh", f"{ours.wall:.1f} s", f"baseline {base.wall:.1f} s",
            f"{wall_ratio:.2f}× less" if wall_ratio >= 1 else f"{1 / wall_ratio:.2f}× more", "report", INFO),
        Row("1 plan: wall vs read floor (read bucket, FIC list limits)", f"{ours.wall:.1f} s",
            f"floor {floor:.1f} s for {ours.requests:,} reads ({fic_lists:,} FIC lists)",
            f"{ratio(ours.wall, floor):.2f}×", "≤ 1.2×", verdict(ours.wall <= 1.2 * floor)),
        Row("1 plan: in sync", f"{changes} changes", "", "", "0", verdict(changes == 0)),
    ]
    fic_floor = max(0.0, (fic_lists - 5) / 5)
    section.notes += [
        f"Wall time against the refresh: our plan lists the credentials of each of the {fic_lists:,} identities "
        f"(ARM has no list across identities), and the FIC API serves 5 lists/s per subscription: "
        f"{fic_floor:.0f} s for those lists alone, whatever the client, against the refresh's {base.wall:.0f} s "
        f"in all. The refresh GETs only the {refresh_fics:,} credentials its state names, so it cannot see one "
        "added out of band, the change a reviewer most needs to see on an identity that holds grants. Hence "
        "the target on wall time is the floor row (≤ 1.2× the read and FIC limits), and the ratio to the "
        "refresh is reported.",
        f"Estate: {estate.describe()}, one owner per resource group; seeded through the SDK by the product's "
        "own plan + apply (throttling off), then the sandbox was restarted with throttling and latency on. Each "
        "contender gets a freshly started sandbox on the same state, so both start with full buckets.",
        f"Ours: {ours.describe()}. Client: {target_summary(ours_target)}.",
        f"Baseline ({len(refresh):,} GETs from ids a state file would hold; role definitions looked up once per "
        f"distinct role): {base.describe()}. Client: {target_summary(base_target)}.",
        f"Floor formula: max((N − C)/r, (⌈N/P⌉ − 1)·L, (F − 15)/15, (F − 5)/5) + L with N = {ours.requests} "
        f"(our requests as the sandbox counted them), F = {fic_lists} of them FIC lists (the FIC API: 15 lists/s "
        f"per tenant, 5/s per subscription), C = {limits.reads_capacity:g}, r = {limits.reads_per_second:g}/s, "
        f"L = {READ_LATENCY} s, P = 8 (AzureGateway.read_parallelism) = {floor:.1f} s. The baseline's read-bucket "
        f"floor for its own "
        f"{base.requests:,} reads at P = {BASELINE_PARALLELISM} would be "
        f"{read_floor(base.requests, limits, READ_LATENCY, BASELINE_PARALLELISM):.1f} s.",
        f"Sandbox CPU-bound check: the sandbox process used {ours.sandbox_cpu:.1f} CPU-s during our "
        f"{ours.wall:.1f} s plan ({ratio(ours.sandbox_cpu, ours.wall):.0%} of one core) and "
        f"{base.sandbox_cpu:.1f} CPU-s during the baseline's {base.wall:.1f} s "
        f"({ratio(base.sandbox_cpu, base.wall):.0%}).",
    ]
    return section


# -- figures 2 and 3 ------------------------------------------------------------------------------


def _apply_run(estate: Estate, scale: float, workdir: Path, name: str,
               faults: dict[str, Any] | None) -> tuple[Measured, ApplyReport, int, ArmTarget, Measured, float, int]:
    manifests = estate.write(workdir / f"{name}-manifests")
    db = workdir / f"{name}.db"
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=True, **LATENCY, **(faults or {}))
        target = target_for(sbx, scale)
        with AzureGateway(target) as gateway:
            desired, catalog = load(manifests, gateway)
            seed_references(sbx, desired)
            started = time.perf_counter()
            plan, _ = plan_of(desired, gateway, catalog)
            plan_wall = time.perf_counter() - started
            log(f"{name}: plan has {len(plan.actionable)} changes ({plan_wall:.1f} s); applying")
            with measure(sbx) as m:
                report = apply_plan(plan, gateway, parallelism=APPLY_PARALLELISM)
            log(f"{name}: apply: {m.describe()}; steps {report.counts()}")
            with measure(sbx) as verify:
                after, _ = plan_of(desired, gateway, catalog)
    return m, report, len(after.actionable), target, verify, plan_wall, len(plan.actionable)


def _bound_for(estate: Estate, scale: float) -> tuple[Any, int]:
    writes = estate.identities + estate.role_assignments + estate.federated_credentials
    bound = apply_bound(writes=writes, identity_creates=estate.identities, fics=estate.federated_credentials,
                        max_fics_per_identity=estate.fics_per_identity if estate.fic_every else 0,
                        limits=Limits(scale), write_latency=WRITE_LATENCY, parallelism=APPLY_PARALLELISM)
    return bound, writes


def figure2(estate: Estate, scale: float, workdir: Path) -> Section:
    section = Section("Figure 2: apply against the throttling bound")
    log(f"figure 2: apply creating {estate.describe()}")
    m, report, left, target, verify, plan_wall, steps = _apply_run(estate, scale, workdir, "fig2", None)
    bound, writes = _bound_for(estate, scale)
    counts = report.counts()
    share = ratio(m.throttled, m.requests)
    section.rows += [
        Row("2 apply: wall time", f"{m.wall:.1f} s", f"bound {bound.bound:.1f} s ({bound.binding})",
            f"{ratio(m.wall, bound.bound):.2f}×", "≤ 1.15×", verdict(m.wall <= 1.15 * bound.bound)),
        Row("2 apply: failed steps", f"{counts['failed']} failed, {counts['skipped']} skipped of {steps}", "", "",
            "0", verdict(counts["failed"] == 0 and counts["skipped"] == 0)),
        Row("2 apply: 429 responses", f"{m.throttled} of {m.requests} requests", "", f"{share:.1%}", "≤ 2%",
            verdict(share <= 0.02)),
        Row("2 apply: converged (fresh plan empty)", f"{left} changes left", "", "", "0", verdict(left == 0)),
    ]
    limits = Limits(scale)
    section.notes += [
        f"Estate created: {estate.describe()} ({writes} writes in one subscription and region), "
        f"`apply_plan(parallelism={APPLY_PARALLELISM})` (the CLI default), reads {READ_LATENCY * 1000:g} ms, "
        f"writes {WRITE_LATENCY * 1000:g} ms. The plan before it took {plan_wall:.1f} s (not counted).",
        f"Apply: {m.describe()}. Client: {target_summary(target)}. Steps: {counts}.",
        f"Bound terms (s): writes bucket max(0, ({writes} − {limits.writes_capacity:g})/{limits.writes_per_second:g})"
        f" + {WRITE_LATENCY} = {bound.writes:.1f}; identity window ⌊({estate.identities} − 1)/"
        f"{limits.identity_creates_per_window}⌋·{limits.identity_create_window_seconds:g} + 2·{WRITE_LATENCY} = "
        f"{bound.window:.1f}; FIC subscription bucket max(0, ({estate.federated_credentials} − "
        f"{limits.fic_writes_capacity_subscription:g})/{limits.fic_writes_per_second_subscription:g}) + "
        f"{WRITE_LATENCY} + 0.2 = {bound.fic_subscription:.1f}; FIC chain (one FIC write per identity every "
        f"{1 / limits.fic_writes_per_second_identity:g} s) {bound.chain:.2f}; parallelism ({writes}·{WRITE_LATENCY} + "
        f"{estate.federated_credentials}·0.2)/{APPLY_PARALLELISM} = {bound.workers:.1f} (0.2 s: the sandbox's "
        "fic_write_window_seconds, which each FIC write spends before it answers).",
        f"Verification plan after apply: {verify.describe()}.",
    ]
    return section


def figure3(estate: Estate, scale: float, workdir: Path) -> Section:
    section = Section("Figure 3: the same apply with injected 503s and dropped connections")
    faults = {"fault_rate": 0.06, "fault_kinds": ["503"] * 5 + ["drop"], "fault_seed": 20240601}
    log("figure 3: apply with 5% 503s and 1% dropped connections")
    m, report, left, target, verify, _plan_wall, steps = _apply_run(estate, scale, workdir, "fig3", faults)
    bound, _ = _bound_for(estate, scale)
    counts = report.counts()
    failed = [f"{r.address}: {r.detail}" for r in report.results if r.status != DONE][:5]
    section.rows += [
        Row("3 apply with faults: failed steps", f"{counts['failed']} failed, {counts['skipped']} skipped of {steps}",
            "", "", "0", verdict(counts["failed"] == 0 and counts["skipped"] == 0)),
        Row("3 apply with faults: converged (fresh plan empty)", f"{left} changes left", "", "", "0",
            verdict(left == 0)),
        Row("3 apply with faults: wall time", f"{m.wall:.1f} s", f"bound {bound.bound:.1f} s (no faults)",
            f"{ratio(m.wall, bound.bound):.2f}×", "none", INFO),
    ]
    section.notes += [
        "Sandbox faults: rate 6% of requests, kinds drawn 5:1 from 503 (Retry-After: 1) and dropped "
        f"connection, seed {faults['fault_seed']}; on for the whole run (plan, apply, verification plan).",
        f"Apply: {m.describe()}. Client: {target_summary(target)}.",
        f"Verification plan: {verify.describe()}.",
    ] + [f"Not done: {f}" for f in failed]
    return section


# -- figure 4 -------------------------------------------------------------------------------------


def seed_direct(db: Path, desired: DesiredState, *, owned: bool = True) -> None:
    """Write an in-sync estate straight into the sandbox's store, shaped as its handlers write it
    (providers/msi.py put_identity and put_fic, providers/role_assignments.py put_role_assignment).
    `owned=False`: as if made by hand (no ownership tags, assignment names no owner derives).

    Going through the API would take hours at this size: every role-assignment PUT scans every
    assignment. The plan of figure 4 must come out empty, which checks the shapes.
    """
    from reconciler.model import assignment_name
    from reconciler.sandbox import SandboxServer
    from reconciler.sandbox.backend import FIC, IDENTITY, ROLE_ASSIGNMENT, rg_key, timestamp
    from reconciler.sandbox.providers.msi import FIC_TYPE, NS_TYPE, identity_id
    from reconciler.sandbox.providers.role_assignments import RA_SEGMENT
    from reconciler.sandbox.scopes import normalize

    server = SandboxServer(db_path=str(db))
    try:
        data = seed_of(desired)
        server.seed([s for (s,) in data["subscriptions"]], [(s, r, loc) for s, r, loc in data["resource_groups"]],
                    [(o, t, n) for o, t, n in data["principals"]])
        store, directory = server.store, server.backend.directory
        now = timestamp(time.time())
        principals: dict[Any, str] = {}
        ids: dict[Any, str] = {}
        with store.transaction():
            for ident in desired.identities:
                rid = identity_id(ident.subscription, ident.resource_group, ident.name)
                principal = str(uuid.uuid5(uuid.NAMESPACE_URL, rid.lower()))
                client = str(uuid.uuid5(uuid.NAMESPACE_DNS, rid.lower()))
                principals[ident.key], ids[ident.key] = principal, rid
                store.put(IDENTITY, rid, rg_key(ident.subscription, ident.resource_group), {
                    "id": rid, "name": ident.name, "type": NS_TYPE, "location": ident.location.replace(" ", "").lower(),
                    "tags": ident.desired_tags() if owned else dict(ident.tags),
                    "properties": {"tenantId": directory.tenant_id, "principalId": principal, "clientId": client,
                                   "isolationScope": "None"}})
                directory.add(principal, "ServicePrincipal", ident.name, created_at=0.0, replicates=True,
                              app_id=client)
            for fic in desired.federated_credentials:
                fid = f"{ids[fic.identity]}/federatedIdentityCredentials/{fic.name}"
                store.put(FIC, fid, ids[fic.identity], {
                    "id": fid, "name": fic.name, "type": FIC_TYPE,
                    "properties": {"issuer": fic.issuer, "subject": fic.subject, "audiences": list(fic.audiences)}})
            for ra in desired.role_assignments:
                ident_key = ra.principal.identity
                principal = principals[ident_key] if ident_key else str(ra.principal.object_id).lower()
                scope = normalize(ra.scope)
                by_hand = f"{scope.lower()}|{ra.role_definition_id}|{principal}"
                name = (assignment_name(ra.owner, ra.scope, ra.role_definition_id, principal) if owned
                        else str(uuid.uuid5(uuid.NAMESPACE_OID, by_hand)))
                store.put(ROLE_ASSIGNMENT, name, scope, {
                    "properties": {
                        "roleDefinitionId": normalize(role_definition_id(scope, ra.role_definition_id)),
                        "principalId": principal,
                        "principalType": "ServicePrincipal" if ident_key else ra.principal.principal_type,
                        "scope": scope, "condition": ra.condition, "conditionVersion": ra.condition_version,
                        "createdOn": now, "updatedOn": now, "createdBy": None, "updatedBy": None,
                        "delegatedManagedIdentityResourceId": None, "description": ra.description},
                    "id": f"{scope.rstrip('/')}{RA_SEGMENT}{name}",
                    "type": "Microsoft.Authorization/roleAssignments", "name": name})
    finally:
        server.stop()


def figure4(estate: Estate, scale: float, workdir: Path) -> Section:
    section = Section("Figure 4: plan memory and CPU at 10 subscriptions")
    manifests = estate.write(workdir / "fig4-manifests")
    db = workdir / "fig4.db"
    log(f"figure 4: writing {estate.describe()} into the sandbox's store")
    started = time.perf_counter()
    desired, _ = load(manifests)
    seed_direct(db, desired)
    del desired
    log(f"figure 4: seeded in {time.perf_counter() - started:.0f} s; planning in a child process")
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=True, **LATENCY)
        with measure(sbx) as m:
            w = sbx.run_plan_worker(manifests, scale)
    cpu = w["cpu_user"] + w["cpu_system"]
    # FIC lists the plan needs: the client's count less the retries of 429s (the client does not pace
    # FIC lists; every 429 of this read-only run is one).
    fic_lists = max(0, w["call_counts"].get("GET federatedIdentityCredentials (list)", 0) - w["retries"].get("429", 0))
    spread = read_floor_spread(m.requests, estate.subscriptions, Limits(scale), READ_LATENCY, 8, fic_lists=fic_lists)
    wall = w["wall_load"] + w["wall_read"] + w["wall_plan"]
    read_plan = w["wall_read"] + w["wall_plan"]  # what the read floor bounds; loading is figure 6's
    section.rows += [
        Row("4 plan at scale: peak RSS of the reconciler process", f"{w['peak_rss_mb']:.0f} MB", "", "",
            "≤ 150 MB", verdict(w["peak_rss_mb"] <= 150)),
        Row("4 plan at scale: CPU of the reconciler process", f"{cpu:.1f} s", "", "", "report", INFO),
        Row("4 plan at scale: CPU of the sandbox process", f"{m.sandbox_cpu:.1f} s", "", "", "report", INFO),
        Row("4 plan at scale: wall time of reading and planning", f"{read_plan:.1f} s",
            f"floor {spread:.1f} s for {m.requests:,} reads ({fic_lists:,} FIC lists) over "
            f"{estate.subscriptions} subscriptions",
            f"{ratio(read_plan, spread):.2f}×", "≤ 1.5×", verdict(read_plan <= 1.5 * spread)),
        Row("4 plan at scale: wall time, loading included", f"{wall:.1f} s", f"floor {spread:.1f} s",
            f"{ratio(wall, spread):.2f}×", "report", INFO),
        Row("4 plan at scale: in sync", f"{w['actionable']} changes", "", "", "0", verdict(w["actionable"] == 0)),
        Row("4 plan at scale: preflight's extra ARM calls", f"{sum(w['preflight_calls'].values())}",
            ", ".join(f"{k} {v}" for k, v in sorted(w["preflight_calls"].items())), "",
            f"≤ {2 * estate.subscriptions} (2 per subscription)",
            verdict(sum(w["preflight_calls"].values()) <= 2 * estate.subscriptions)),
        Row("4 plan at scale: preflight wall time", f"{w['wall_preflight']:.1f} s",
            f"{w['preflight_failures']} failures, {w['preflight_unknown']} unknown", "",
            "report", INFO),
    ]
    section.notes += [
        f"Estate: {estate.describe()}, written straight into the sandbox's SQLite store (seed_direct), as "
        "seeding 50,000 assignments through the API would take hours. Throttling and latency on. The plan "
        "runs in a fresh child process (bench/plan_worker.py, what `reconciler plan --arm-endpoint` does), "
        "which reports its own getrusage(RUSAGE_SELF): peak RSS and user + system CPU.",
        f"Worker: load {w['wall_load']:.1f} s, read {w['wall_read']:.1f} s, plan + render {w['wall_plan']:.1f} s; "
        f"CPU user {w['cpu_user']:.1f} s + system {w['cpu_system']:.1f} s; {w['calls']:,} ARM calls "
        f"({', '.join(f'{k} {v}' for k, v in sorted(w['call_counts'].items()))}); budget waits "
        f"{w['budget_waits']} ({w['budget_wait_seconds']:.0f} s summed over threads); 429s {w['throttled']}; "
        f"retries {w['retries']}; {w['planned']:,} plan entries; {w['live_identities']:,} identities and "
        f"{w['live_role_assignments']:,} role assignments read. Peak RSS so far after loading "
        f"{w['peak_rss_mb_after']['load']:.0f} MB, after reading {w['peak_rss_mb_after']['read']:.0f} MB, after "
        f"planning and rendering {w['peak_rss_mb_after']['plan']:.0f} MB (`python -m bench.plan_memory --worker` "
        "measures the same worker against an unthrottled sandbox in a minute).",
        f"Sandbox during the plan: {m.describe()}.",
        "Preflight (what `reconciler plan` now adds): evaluated in the worker after the plan, for the caller; "
        "its Microsoft Graph membership call is not made (the worker has no Graph token), so grants to groups "
        "would come out unknown.",
    ]
    return section


# -- figure 5 -------------------------------------------------------------------------------------


def figure5(estate: Estate, scale: float, workdir: Path) -> Section:
    """`reconciler export` of a hand-made estate against the read-bucket floor, then the round trip."""
    from collections import Counter

    from reconciler.export import ExportOptions, export_estate

    limits = Limits(scale)
    section = Section("Figure 5: export of a hand-made estate, and the round trip")
    manifests = estate.write(workdir / "fig5-manifests")
    db, out = workdir / "fig5.db", workdir / "fig5-export"
    log(f"figure 5: writing {estate.describe()} into the sandbox's store, as if made by hand")
    desired, _ = load(manifests)
    seed_direct(db, desired, owned=False)
    subs = tuple(sorted(desired.subscriptions))
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=True, **LATENCY)
        target = target_for(sbx, scale)
        with AzureGateway(target) as gateway:
            catalog = RoleCatalog(live_lookup=gateway.lookup_role)

            def role_name(sub: str, guid: str) -> str | None:
                role = catalog.resolve(guid, sub)
                return role.name if role is not None else None

            with measure(sbx) as m:
                started = time.perf_counter()
                live = gateway.read_estate(subs, "exported")
                read_wall = time.perf_counter() - started
                result = export_estate(live, ExportOptions(owner="exported", subscriptions=subs, out_dir=str(out),
                                                           schema_path="schemas/manifest.schema.json"), role_name)
                for rel, text in result.files.items():
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    (out / rel).write_text(text, encoding="utf-8")
            started = time.perf_counter()
            exported, warnings = load_manifests([out], catalog)  # export's own check that the files load
            check_wall = time.perf_counter() - started
    log(f"figure 5: export: {m.describe()}")
    with SandboxProcess(db, throttle_scale=scale) as sbx:
        sbx.configure(throttling=False)
        with AzureGateway(target_for(sbx, scale, budget=False)) as gateway:
            plan, _ = plan_of(exported, gateway, RoleCatalog(live_lookup=gateway.lookup_role))
    actions = Counter(c.action.value for c in plan.actionable)
    expected = len(desired.identities) + len(desired.role_assignments)
    fic_lists = m.counts.get("FederatedIdentityCredentials_List", 0)  # one per identity, as in figure 1
    floor = read_floor_spread(m.requests, estate.subscriptions, limits, READ_LATENCY, 8, fic_lists=fic_lists)
    section.rows += [
        Row("5 export: ARM calls (sandbox count)", f"{m.requests:,}", "", "", "report", INFO),
        Row("5 export: read, build, write: wall vs read floor (read bucket, FIC list limits)", f"{m.wall:.1f} s",
            f"floor {floor:.1f} s for {m.requests:,} reads ({fic_lists:,} FIC lists)",
            f"{ratio(m.wall, floor):.2f}×", "≤ 1.2×", verdict(m.wall <= 1.2 * floor)),
        Row("5 export: of which reading ARM", f"{read_wall:.1f} s", f"floor {floor:.1f} s",
            f"{ratio(read_wall, floor):.2f}×", "report", INFO),
        Row("5 export: then loading the files back (its self-check)", f"{check_wall:.1f} s", "", "", "report", INFO),
        Row("5 round trip: plan of the export", ", ".join(f"{n:,} {a}" for a, n in sorted(actions.items())),
            f"{expected:,} identities and grants", "", "adopt only, all of them",
            verdict(set(actions) == {"adopt"} and actions["adopt"] == expected)),
    ]
    section.notes += [
        f"Estate: {estate.describe()} (figure 1's), written straight into the sandbox's store without "
        "ownership tags and under assignment names no owner derives, as if made by hand. Throttling and "
        "latency on for the export. As in figure 1, loading manifests is not in the measured wall time: the "
        "export's check that its files load back (what `plan` would load) is timed on its own; "
        f"the round-trip plan runs with throttling off and is not timed. {len(result.files)} files, "
        f"{result.identities:,} identities, {result.credentials:,} credentials, {result.assignments:,} grants "
        f"exported; skipped: {dict(result.skipped) or 'nothing'}; {len(warnings)} loader warnings.",
        f"Export: {m.describe()}. Client: {target_summary(target)}. The export reads every identity's "
        "credentials (plan reads only those of declared or owned identities).",
    ]
    return section


# -- figure 6 -------------------------------------------------------------------------------------

_C_LOADER = ("import sys, yaml\n"
             "for path in sys.argv[1:]:\n"
             "    with open(path, encoding='utf-8') as handle:\n"
             "        list(yaml.load_all(handle.read(), Loader=yaml.CSafeLoader))\n")


def _child(argv: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and exit status of one child process, from its own rusage."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             cwd=Path(__file__).resolve().parents[1])
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_maxrss / 1024.0, child.returncode


def figure7(estate: Estate, workdir: Path, rounds: int = 3) -> Section:
    """`reconciler validate` against PyYAML's C loader reading the same files, side by side."""
    import statistics

    section = Section("Figure 7: validate at scale, against PyYAML's C loader")
    manifests = estate.write(workdir / "fig6-manifests")
    files = sorted(str(p) for p in manifests.glob("*.yaml"))
    ours_argv = [sys.executable, "-m", "reconciler", "validate", str(manifests)]
    c_argv = [sys.executable, "-c", _C_LOADER, *files]
    ours: list[tuple[float, float, int]] = []
    theirs: list[tuple[float, float, int]] = []
    load = os.getloadavg()[0]
    for _ in range(rounds):  # interleaved, so both see the same machine
        theirs.append(_child(c_argv))
        ours.append(_child(ours_argv))
    if any(status != 0 for _, _, status in ours):
        raise RuntimeError(f"reconciler validate failed on the generated estate: {ours_argv}")
    wall = statistics.median(w for w, _, _ in ours)
    c_wall = statistics.median(w for w, _, _ in theirs)
    rss = max(r for _, r, _ in ours)
    section.rows += [
        Row(f"7 validate at scale: wall (median of {rounds})", f"{wall:.1f} s",
            f"PyYAML CSafeLoader {c_wall:.1f} s", f"{ratio(wall, c_wall):.2f}×", "≤ 3×", verdict(wall <= 3 * c_wall)),
        Row("7 validate at scale: peak RSS", f"{rss:.0f} MB", f"CSafeLoader {max(r for _, r, _ in theirs):.0f} MB",
            "", "≤ 200 MB", verdict(rss <= 200)),
    ]
    section.notes += [
        f"Estate: {estate.describe()} in {len(files)} files ({sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB). "
        f"`python -m reconciler validate DIR` (every check: YAML, schema, names, roles, references) and a Python "
        f"child that only reads the same files with `yaml.load_all(..., Loader=yaml.CSafeLoader)`, each as a whole "
        f"process (interpreter start and imports included), alternated {rounds} times; medians; peak RSS from each "
        f"child's own rusage. Load average at the start: {load:.1f} on {os.cpu_count()} CPUs.",
        "Ours: " + ", ".join(f"{w:.1f} s" for w, _, _ in ours) + "; CSafeLoader: "
        + ", ".join(f"{w:.1f} s" for w, _, _ in theirs) + ".",
    ]
    return section
