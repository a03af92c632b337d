"""The command line: thin wiring from typer to the core, and the one error boundary.

Exit codes follow Terraform's convention, which CI users know:
    0  success / no changes
    1  every error, usage errors included
    2  changes present (`plan --detailed-exitcode`)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from reconciler import drift as drift_report
from reconciler.applier import DONE, ApplyReport, apply_plan
from reconciler.errors import Diagnostic, ManifestError, ReconcilerError
from reconciler.gateway import ArmGateway, AuthorizationReader
from reconciler.manifest.loader import load_manifests
from reconciler.model import DesiredState, LiveState
from reconciler.plan import Plan
from reconciler.planner import PlanOptions, make_plan
from reconciler.progress import BarReporter, LineReporter
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.roles import GUID_RE, RoleCatalog
from reconciler.safety import DEFAULT_MAX_DELETES, mass_delete_problems
from reconciler.sandbox.cli import sandbox_app
from reconciler.savedplan import (
    check_fresh,
    dumps_saved,
    plan_key,
    read_plan,
    recorded_paths,
    recorded_target,
    saved_paths,
    saved_target,
    with_fingerprints,
)
from reconciler.target import DEFAULT_SANDBOX_DB, TargetOptions, open_gateway

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

app = typer.Typer(
    name="reconciler",
    help="Declarative, stateless reconciler for Azure user-assigned managed identities, "
    "their federated credentials and role assignments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(sandbox_app, name="sandbox")


def _version(value: bool) -> None:
    if value:
        # From the package metadata, after checking that this `reconciler` is the one that
        # distribution installed (an unrelated PyPI project also ships `reconciler`).
        import reconciler
        from reconciler import distribution

        problem = distribution.provenance_problem(Path(reconciler.__file__ or "reconciler/__init__.py"))
        if problem:
            raise ReconcilerError(problem)
        sys.stdout.write(f"{distribution.DISTRIBUTION} {distribution.installed_version()}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Declarative, stateless reconciler for Azure user-assigned managed identities, their
    federated credentials and role assignments."""

err = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


# Strings, not Paths: Path("") is ".", which would turn an empty argument into "the current
# directory" instead of the error it is.
Paths = Annotated[
    list[str], typer.Argument(help="Manifest files or folders (searched recursively for *.yaml, *.yml).")
]
SandboxDb = Annotated[
    str | None,
    typer.Option("--sandbox-db", hidden=True, help="State file of the embedded sandbox (use --sandbox [DB])."),
]
ArmEndpoint = Annotated[
    str | None, typer.Option("--arm-endpoint", help="ARM endpoint URL, e.g. a `reconciler sandbox serve` URL.")
]
CaCert = Annotated[str | None, typer.Option("--ca-cert", help="PEM bundle to trust for --arm-endpoint.")]


def _print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for d in diagnostics:
        style = "yellow" if d.severity == "warning" else "red"
        err.print(str(d), style=style, markup=False, highlight=False)


Cloud = Annotated[
    str, typer.Option("--cloud", help="AzureCloud, AzureUSGovernment or AzureChinaCloud: sets the ARM endpoint, "
                      "the authority and the token scope together.")
]
Tenant = Annotated[str | None, typer.Option("--tenant", help="Entra ID tenant to authenticate in.")]
Subscriptions = Annotated[
    list[str] | None,
    typer.Option("--subscription", help="Restrict the run to this subscription (repeatable), e.g. one per CI job."),
]


@contextmanager
def _session(
    paths: list[str], target: TargetOptions, subscriptions: list[str] | None = None
) -> Iterator[tuple[DesiredState, ArmGateway, RoleCatalog]]:
    """Load the manifests and open the target. The embedded sandbox is seeded from the
    manifests, so they are loaded first (built-in roles only); any other target is opened
    first so that custom role names resolve against the live role definitions."""

    def load(catalog: RoleCatalog) -> DesiredState:
        desired, warnings = load_manifests(paths, catalog)
        _print_diagnostics(warnings)
        if subscriptions:
            desired, skipped = desired.restricted(frozenset(s.lower() for s in subscriptions))
            if skipped:
                err.print(f"Note: {skipped} role assignment(s) span subscriptions outside --subscription; "
                          "they are planned by a run that selects both.", style="yellow", markup=False)
        return desired

    if target.sandbox_db:
        catalog = RoleCatalog()
        desired = load(catalog)
        with open_gateway(target, desired) as gateway:
            yield desired, gateway, catalog
        return
    with open_gateway(target, DesiredState()) as gateway:
        catalog = RoleCatalog(live_lookup=gateway.lookup_role)
        yield load(catalog), gateway, catalog


def _make_plan(
    desired: DesiredState, gateway: ArmGateway, catalog: RoleCatalog, options: PlanOptions | None = None
) -> Plan:
    return _plan_and_live(desired, gateway, catalog, options)[0]


def _plan_and_live(
    desired: DesiredState, gateway: ArmGateway, catalog: RoleCatalog, options: PlanOptions | None = None
) -> tuple[Plan, LiveState]:
    live = gateway.read_live(desired.subscriptions, desired.owners, [i.key for i in desired.identities])
    return make_plan(desired, live, catalog.name_of, options), live


def _preflight(gateway: ArmGateway, live: LiveState, the_plan: Plan, apply_as: str | None) -> Plan:
    """The plan with its `preflight` section: which steps `apply_as` (default: the caller) would
    be refused (reconciler/preflight)."""
    from reconciler import preflight_reads

    if not isinstance(gateway, AuthorizationReader):
        raise ReconcilerError("this target cannot evaluate preflight; pass --no-preflight")
    result = preflight_reads.evaluate(gateway, live, the_plan, apply_as)
    return dataclasses.replace(the_plan, preflight=result.to_json())


def _print_calls(gateway: ArmGateway, label: str) -> None:
    counts = gateway.call_counts()
    total = sum(counts.values())
    err.print(f"ARM calls ({label}): {total}", style="dim", markup=False)
    for kind, n in sorted(counts.items()):
        err.print(f"  {n:6d}  {kind}", style="dim", markup=False)
    err.print(f"  {gateway.stats_summary()}", style="dim", markup=False)


def _echo(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@app.command()
def validate(
    paths: Paths,
    list_roles: Annotated[
        bool, typer.Option("--list-roles", help="Print the GUID and name of every role the manifests grant, "
                           "e.g. for the ABAC condition of the apply identity (docs/permissions.md).")
    ] = False,
) -> None:
    """Check manifests offline: syntax, schema, names, roles, references, duplicates."""
    catalog = RoleCatalog()
    desired, warnings = load_manifests(paths, catalog)
    _print_diagnostics(warnings)
    if list_roles:
        roles = sorted({(ra.role_definition_id, ra.role_name) for ra in desired.role_assignments})
        _echo("".join(f"{guid}\t{name}\n" for guid, name in roles))
        return
    _echo(
        f"Valid: {len(desired.files)} file(s), {len(desired.identities)} identities, "
        f"{len(desired.federated_credentials)} federated credentials, "
        f"{len(desired.role_assignments)} role assignments.\n"
    )


PruneUnmanaged = Annotated[
    bool, typer.Option("--prune-unmanaged", help="Also delete grants to our identities made outside the manifests.")
]
PruneOrphans = Annotated[
    bool, typer.Option("--prune-orphans", help="Also delete our grants whose principal no longer exists.")
]


@app.command()
def plan(
    paths: Paths,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    out: Annotated[
        Path | None, typer.Option("--out", help="Save the plan (JSON with fingerprints) for `apply PLANFILE`.")
    ] = None,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes, 0 when in sync.")
    ] = False,
    prune_unmanaged: PruneUnmanaged = False,
    prune_orphans: PruneOrphans = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Show in-sync and foreign resources, and ARM call counts.")
    ] = False,
    full_plan_hint: FullPlanHint = None,
    apply_as: Annotated[
        str | None, typer.Option("--apply-as", metavar="OBJECT_ID", help="Preflight for this principal (the apply "
                                 "identity's object id) instead of the caller.")
    ] = None,
    no_preflight: Annotated[
        bool, typer.Option("--no-preflight", help="Do not predict which steps apply would be refused, and do not "
                           "exit 1 for them.")
    ] = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
) -> None:
    """Show what apply would create, change or delete, and which of its steps the applying
    principal would be refused (preflight; exit 1 when any)."""
    options = PlanOptions(prune_unmanaged=prune_unmanaged, prune_orphans=prune_orphans, include_foreign=verbose)
    target = TargetOptions(sandbox_db, arm_endpoint, ca_cert, cloud, tenant)
    # A saved plan records its paths relative to the working directory: check before any I/O.
    saved_paths_ = recorded_paths(paths) if out else [str(p) for p in paths]
    key = plan_key() if out else None
    if apply_as is not None and not GUID_RE.match(apply_as):
        raise ReconcilerError(f"--apply-as {apply_as}: not an object id (a GUID)")
    with _session(paths, target, subscription) as (desired, gateway, catalog):
        the_plan, live = _plan_and_live(desired, gateway, catalog, options)
        if not no_preflight:
            the_plan = _preflight(gateway, live, the_plan, apply_as)
        the_plan = with_fingerprints(the_plan, desired, {
            "paths": saved_paths_, "prune_unmanaged": prune_unmanaged,
            "prune_orphans": prune_orphans, "target": target.describe(), "subscriptions": subscription or [],
            "target_options": recorded_target(target),
        })
        _show(the_plan, format, verbose, full_plan_hint)
        mass_deletes = mass_delete_problems(the_plan, DEFAULT_MAX_DELETES)
        for problem in mass_deletes:
            err.print(f"Warning: apply will refuse this plan without --allow-mass-delete: {problem}",
                      style="yellow", markup=False)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(dumps_saved(the_plan, key), encoding="utf-8")
            err.print(_saved_hint(out, target, bool(mass_deletes), key is not None), markup=False)
        if verbose:
            _print_calls(gateway, "plan")
    failures = len(the_plan.preflight["failures"]) if the_plan.preflight else 0
    if failures:
        raise ReconcilerError(f"preflight: {failures} step(s) of this plan will fail for principal "
                              f"{the_plan.preflight['principal'] if the_plan.preflight else ''} (listed above); "
                              "grant what they need first, or pass --no-preflight")
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(EXIT_CHANGES)


def _saved_hint(out: Path, target: TargetOptions, mass_delete: bool, signed: bool) -> str:
    """The complete command that applies a saved plan: it records its target and options."""
    command = f"reconciler apply {shlex.quote(str(out))}" + (" --allow-mass-delete" if mass_delete else "")
    needs = [f"{name} set" for name, on in (
        ("RECONCILER_PLAN_KEY", signed), ("RECONCILER_ACCESS_TOKEN", bool(target.arm_endpoint))) if on]
    return (f"Saved the plan ({'signed, ' if signed else ''}target: {target.describe()}) to {out}; "
            f"apply it from this directory{' with ' + ' and '.join(needs) if needs else ''} with: {command}")


FullPlanHint = Annotated[
    str | None,
    typer.Option("--full-plan-hint", envvar="RECONCILER_FULL_PLAN_HINT",
                 help="Markdown: where readers find the full plan when the comment must be abridged."),
]


def _show(the_plan: Plan, format: Format, verbose: bool = False, full_plan_hint: str | None = None) -> None:
    if format is Format.json:
        _echo(the_plan.dumps())
    elif format is Format.markdown:
        _echo(render_markdown(the_plan, full_plan_hint=full_plan_hint))
    else:
        _echo(render_text(the_plan, color=sys.stdout.isatty(), verbose=verbose))


@app.command()
def show(
    plan_files: Annotated[
        list[Path], typer.Argument(help="A plan saved with `plan --out`, or the plans of several shards "
                                   "(files, or folders of *.json plans).")
    ],
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    full_plan_hint: FullPlanHint = None,
    matrix_file: Annotated[
        Path | None, typer.Option("--matrix", help="The `reconciler matrix` output the shards were planned from: "
                                  "a shard without a plan makes the review incomplete and the exit code 1.")
    ] = None,
) -> None:
    """Render a saved plan as text, Markdown (for a PR comment) or JSON.

    Several plans (one per shard of a CI matrix) render as one review: one summary, one
    warnings list, one comment; JSON says which shard each change came from. A plan file that is
    missing or unreadable is reported in the review, and the exit code is 1."""
    # A folder stands for the plans in it (e.g. where a fan-in job downloaded every shard's plan).
    plan_files = [f for p in plan_files for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]
    if len(plan_files) == 1 and matrix_file is None:
        _show(read_plan(plan_files[0]), format, verbose=False, full_plan_hint=full_plan_hint)
        return
    _show_review(plan_files, format, full_plan_hint, matrix_file)


def _show_review(plan_files: list[Path], format: Format, full_plan_hint: str | None, matrix_file: Path | None) -> None:
    from reconciler import review

    shards: list[review.ShardPlan] = []
    for path in plan_files:
        try:
            shards.append(review.ShardPlan(path.stem, str(path), read_plan(path)))
        except ReconcilerError as e:
            shards.append(review.ShardPlan(path.stem, str(path), None, str(e)))
    if matrix_file is not None:
        try:
            expected = review.expected_shards(json.loads(matrix_file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise ReconcilerError(f"--matrix {matrix_file}: {e}") from None
        shards = review.account_for(shards, expected)
    if format is Format.json:
        _echo(json.dumps(review.review_json(shards), indent=2) + "\n")
    elif format is Format.markdown:
        _echo(review.review_markdown(shards, full_plan_hint))
    else:
        _echo(review.review_text(shards, color=sys.stdout.isatty()))
    errors = review.failures(shards, review.combined_plan(shards)[1])
    if errors:
        raise ReconcilerError(f"the review is incomplete: {len(errors)} shard problem(s), listed above")


def _confirm(auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        raise ReconcilerError("apply is not interactive here: review the plan and pass --auto-approve")
    answer = typer.prompt("Do you want to perform these actions? Only 'yes' will be accepted", default="")
    if answer.strip() != "yes":
        raise ReconcilerError("apply cancelled")


def _write_report(report: ApplyReport, path: Path, verified: bool | None = None) -> None:
    """`verified`: whether a fresh plan after apply was empty (None: not checked yet). The
    report is `ok` only when every step is done and verification did not fail."""
    data = report.to_json()
    data["ok"] = bool(data["ok"]) and verified is not False
    data["verified"] = verified
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _is_plan_file(paths: list[str]) -> bool:
    return len(paths) == 1 and paths[0].endswith(".json") and Path(paths[0]).is_file()


# apply's options that name where its writes go (see savedplan.saved_target).
_TARGET_PARAMS = ("sandbox_db", "arm_endpoint", "ca_cert", "cloud", "tenant")


def _given(ctx: typer.Context, names: Sequence[str]) -> frozenset[str]:
    """Which of these options the command line (not their defaults) set."""
    # By name: typer vendors click, whose ParameterSource enum is not public API.
    sources = {n: ctx.get_parameter_source(n) for n in names}
    return frozenset(n for n, src in sources.items() if src is not None and src.name != "DEFAULT")


@app.command()
def apply(
    ctx: typer.Context,
    paths: Annotated[
        list[str], typer.Argument(help="Manifest files or folders, or one plan file saved with `plan --out`.")
    ],
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")] = False,
    parallelism: Annotated[int, typer.Option("--parallelism", min=1, max=64, help="Concurrent ARM writes.")] = 8,
    max_deletes: Annotated[
        int, typer.Option("--max-deletes", min=0, help="Refuse plans that destroy more than this.")
    ] = DEFAULT_MAX_DELETES,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="Apply even past --max-deletes or deleting all of an owner.")
    ] = False,
    prune_unmanaged: PruneUnmanaged = False,
    prune_orphans: PruneOrphans = False,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Write the step report as JSON to this file.")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show ARM call counts.")] = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
) -> None:
    """Make Azure match the manifests: plan, confirm, apply, then verify a fresh plan is empty.

    Given a plan file, apply to the target it records, and only if a fresh plan makes exactly
    its changes (the fresh plan is what runs); refuse otherwise, saying what differs."""
    saved = read_plan(Path(paths[0]), key=plan_key()) if _is_plan_file(paths) else None
    target = TargetOptions(sandbox_db, arm_endpoint, ca_cert, cloud, tenant)
    if saved is not None:
        paths = saved_paths(saved)
        prune_unmanaged = bool(saved.inputs.get("prune_unmanaged", False))
        prune_orphans = bool(saved.inputs.get("prune_orphans", False))
        subscription = list(saved.inputs.get("subscriptions") or []) or None
        target = saved_target(saved, target, _given(ctx, _TARGET_PARAMS))
    options = PlanOptions(prune_unmanaged=prune_unmanaged, prune_orphans=prune_orphans)
    with _session(paths, target, subscription) as (desired, gateway, catalog):
        fresh = _make_plan(desired, gateway, catalog, options)
        the_plan = fresh  # a saved plan is a commitment: what runs is always the fresh plan
        if saved is not None:
            check_fresh(saved, desired, fresh)
            err.print(f"The saved plan is current: applying its {len(fresh.actionable)} change(s) to "
                      f"{target.describe()}.", markup=False)
        else:
            _echo(render_text(the_plan, color=sys.stdout.isatty()))
        if not the_plan.has_changes:
            if saved is not None:
                _echo("No changes. Azure matches the manifests.\n")
            return
        problems = mass_delete_problems(the_plan, max_deletes)
        if problems and not allow_mass_delete:
            raise ReconcilerError(
                "refusing to apply: " + "; ".join(problems)
                + ". Check the manifests (an emptied folder or a renamed owner looks like this); "
                "if the deletions are intended, pass --allow-mass-delete"
            )
        if saved is None:
            _confirm(auto_approve)
        if err.is_terminal:
            with BarReporter(the_plan, err, gateway.throttle_wait_seconds) as bar:
                report = apply_plan(the_plan, gateway, parallelism=parallelism, reporter=bar)
        else:
            report = apply_plan(the_plan, gateway, parallelism=parallelism, reporter=LineReporter(the_plan, err))
        counts = report.counts()
        if report_file:
            _write_report(report, report_file)
        if not report.ok:
            path = report_file or Path(".reconciler") / "last-apply-report.json"
            _write_report(report, path)
            for r in report.results:
                if r.status != DONE:
                    err.print(f"{r.status}: {r.address}: {r.detail}", style="red", markup=False)
            raise ReconcilerError(
                f"apply incomplete: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
                f"report written to {path}. Fix the cause and run apply again: done steps are not repeated."
            )
        _echo(f"Apply complete: {counts['done']} step(s) done.\n")
        after = _make_plan(desired, gateway, catalog, options)
        if verbose:
            _print_calls(gateway, "plan + apply + verify")
        if after.has_changes:
            path = report_file or Path(".reconciler") / "last-apply-report.json"
            _write_report(report, path, verified=False)
            _echo(render_text(after))
            raise ReconcilerError("Azure does not match the manifests after apply (see the plan above); "
                                  f"report written to {path}")
        if report_file:
            _write_report(report, report_file, verified=True)
        _echo("Verified: a fresh plan shows no changes.\n")


@app.command()
def drift(
    paths: Paths,
    format: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="Drift classes that make the exit code 2: "
                          "comma-separated missing,changed,unmanaged,orphaned, or all / none.")
    ] = "all",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show ARM call counts.")] = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
) -> None:
    """Report what changed in Azure out of band, by drift class. Never writes to Azure.

    Exit 0 in sync, 2 when drift of a --fail-on class is found, 1 on error."""
    try:
        classes = drift_report.parse_classes(fail_on)
    except ValueError as e:
        raise ReconcilerError(f"--fail-on: {e}") from None
    target = TargetOptions(sandbox_db, arm_endpoint, ca_cert, cloud, tenant)
    with _session(paths, target, subscription) as (desired, gateway, catalog):
        the_plan = _make_plan(desired, gateway, catalog)
        if format is Format.json:
            _echo(drift_report.dumps(the_plan))
        elif format is Format.markdown:
            _echo(drift_report.render_markdown(the_plan))
        else:
            _echo(drift_report.render_text(the_plan))
        if verbose:
            _print_calls(gateway, "drift")
    if drift_report.has_drift(the_plan, classes):
        raise typer.Exit(EXIT_CHANGES)


class MatrixFormat(StrEnum):
    github = "github"
    azure_pipelines = "azure-pipelines"
    json = "json"


@app.command()
def matrix(
    paths: Paths,
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, help="At most this many shards (CI jobs).")] = 4,
    format: Annotated[MatrixFormat, typer.Option("--format", help="github (strategy.matrix), azure-pipelines "
                                                 "(strategy: matrix) or json (with each subscription's cost).")]
    = MatrixFormat.github,
) -> None:
    """Split the manifests' subscriptions into at most --max-jobs shards for a CI job matrix,
    balanced by the reads and writes each will cost. Offline.

    Subscriptions joined by a grant (scope in one, identity in another) stay in one shard. Each
    shard's `args` (`--subscription A --subscription B`) selects it in plan, apply and drift."""
    from reconciler import matrix as sharding

    desired, warnings = load_manifests(paths, RoleCatalog())
    _print_diagnostics(warnings)
    shards = sharding.make_shards(desired, max_jobs)
    if not shards:
        raise ReconcilerError("the manifests declare no subscription to shard")
    unsharded = sharding.unsharded_grants(desired)
    if unsharded:
        err.print(f"Warning: {unsharded} grant(s) at management-group or tenant scope belong to no subscription: "
                  "no shard plans them; plan them in a run without --subscription.", style="yellow", markup=False)
    if format is MatrixFormat.json:
        data = sharding.matrix_json(desired, shards)
    elif format is MatrixFormat.azure_pipelines:
        data = sharding.azure_pipelines_matrix(shards)
    else:
        data = sharding.github_matrix(shards)
    _echo(sharding.dumps(data))


class OutputFormat(StrEnum):
    json = "json"
    env = "env"
    table = "table"


@app.command()
def output(
    paths: Paths,
    format: Annotated[OutputFormat, typer.Option("--format", help="json, env (NAME_CLIENT_ID=… lines) or table.")]
    = OutputFormat.json,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
) -> None:
    """Print the client id, principal id, tenant and resource id of every declared identity,
    for pipelines (azure/login) and clusters (workload identity). Never writes to Azure.

    Exit 1, printing nothing, when a declared identity does not exist yet: run apply first."""
    from reconciler import outputs

    target = TargetOptions(sandbox_db, arm_endpoint, ca_cert, cloud, tenant)
    with _session(paths, target, subscription) as (desired, gateway, _catalog):
        live = gateway.read_live(desired.subscriptions, desired.owners, [i.key for i in desired.identities])
    found, missing = outputs.identity_outputs(desired, live)
    if missing:
        names = ", ".join(f"{i.resource_group}/{i.name} ({i.source})" if i.source else f"{i.resource_group}/{i.name}"
                          for i in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ReconcilerError(f"{len(missing)} declared identit{'y does' if len(missing) == 1 else 'ies do'} "
                              f"not exist yet: {names}{more}. Run apply first; nothing was printed.")
    render = {OutputFormat.json: outputs.render_json, OutputFormat.env: outputs.render_env,
              OutputFormat.table: outputs.render_table}[format]
    _echo(render(found))


def _rewrite_sandbox_flag(argv: list[str]) -> list[str]:
    """`--sandbox [DB]` takes an optional value, which click cannot express: rewrite it to the
    hidden `--sandbox-db DB`. A following word is the DB only if it looks like one."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg.startswith("--sandbox="):
            out += ["--sandbox-db", arg.split("=", 1)[1] or DEFAULT_SANDBOX_DB]
        elif arg == "--sandbox":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("-") and nxt.endswith((".db", ".sqlite", ".sqlite3")):
                out += ["--sandbox-db", nxt]
                i += 1
            else:
                out += ["--sandbox-db", DEFAULT_SANDBOX_DB]
        else:
            out.append(arg)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """The single error boundary: every exception becomes a message and an exit code."""
    args = _rewrite_sandbox_flag(list(sys.argv[1:] if argv is None else argv))
    if not os.environ.get("RECONCILER_DEBUG"):
        # The SDK logs warnings (credential probes, retries) that our messages already say
        # better; they never contain tokens, but they do drown the one line that matters.
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    try:
        result = app(args=args, prog_name="reconciler", standalone_mode=False)
        return result if isinstance(result, int) else EXIT_OK
    except ManifestError as e:
        _print_diagnostics(e.diagnostics)
        err.print(f"Error: {e}", style="bold red", markup=False)
        return EXIT_ERROR
    except ReconcilerError as e:
        err.print(f"Error: {e}", style="bold red", markup=False)
        return EXIT_ERROR
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        err.print("Aborted.", style="red")
        return 130
    except KeyboardInterrupt:
        err.print("Interrupted.", style="red")
        return 130
    except Exception as e:  # the boundary: usage errors, else a bug, said as one
        # Usage errors (click's, vendored or not, expose `show` and `exit_code`): click would
        # exit 2, which here means "changes present", so they become 1 like every error.
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show(file=sys.stderr)
            return EXIT_ERROR
        err.print(f"Internal error (a bug in reconciler, please report it): {type(e).__name__}: {e}",
                  style="bold red", markup=False)
        if os.environ.get("RECONCILER_DEBUG"):
            traceback.print_exc()
        else:
            err.print("Set RECONCILER_DEBUG=1 to see the traceback.", style="dim")
        return EXIT_ERROR
