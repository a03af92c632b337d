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
import re
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer import _click as click  # typer vendors click; its help classes live here
from typer.core import TyperArgument, TyperCommand

from reconciler import drift as drift_report
from reconciler.applier import FAILED, INTERRUPTED, NOT_STARTED, SKIPPED, ApplyReport, StopRequest, apply_plan
from reconciler.errors import Diagnostic, ManifestError, ReconcilerError
from reconciler.gateway import ArmGateway, AuthorizationReader
from reconciler.manifest.loader import load_manifests
from reconciler.manifest.privileged import privileged_grant_diagnostics
from reconciler.model import DesiredState, LiveState
from reconciler.plan import Plan
from reconciler.planner import PlanOptions, make_plan
from reconciler.principals import Directory, Unavailable, annotate, resolve
from reconciler.progress import BarReporter, LineReporter
from reconciler.render.markdown import render_markdown
from reconciler.render.text import render_text
from reconciler.roles import GUID_RE, RoleCatalog
from reconciler.safety import DEFAULT_MAX_DELETES, mass_delete_problems
from reconciler.sandbox import cli as sandbox_cli
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
from reconciler.sourceid import source_id
from reconciler.target import CLOUDS, DEFAULT_SANDBOX_DB, TargetOptions, open_gateway, open_target, seed_of
from reconciler.textsafe import json_safe, one_line, safe_message, scrub

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2



class _Command(TyperCommand):
    """Help in click's conventional form: `PATH...` for an argument that takes several, not
    typer's `{paths}...` and `<list[str]>`, so the usage line reads like every other tool's."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name or "ARG") + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments = []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.metavar and not param.hidden:
                record = param.get_help_record(ctx)
                if record is not None:
                    arguments.append((param.metavar + ("..." if param.nargs != 1 else ""), record[1]))
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        options = [r for p in self.get_params(ctx) if not isinstance(p, TyperArgument)
                   if (r := p.get_help_record(ctx)) is not None]
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


# Plain click help (no rich panels): nothing in a help text is read as markup, long option
# texts wrap instead of being cut at 80 columns, and `-h` is the short form of `--help`.
_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

app = typer.Typer(
    name="reconciler",
    help="Declarative, stateless reconciler for Azure user-assigned managed identities, "
    "their federated credentials and role assignments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=_CONTEXT,
)
app.add_typer(sandbox_app, name="sandbox", context_settings=_CONTEXT)


def _seed_from_manifests(paths: Sequence[str]) -> dict[str, list[tuple[str, ...]]]:
    """`sandbox serve --seed PATH`: what the manifests reference, as `--sandbox` seeds it."""
    desired, warnings = load_manifests(list(paths), RoleCatalog())
    _print_diagnostics(warnings)
    return seed_of(desired)


sandbox_cli.seed_from_manifests = _seed_from_manifests


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
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No ANSI colour (also with NO_COLOR set); accepted anywhere.")
    ] = False,
) -> None:
    """Declarative, stateless reconciler for Azure user-assigned managed identities, their
    federated credentials and role assignments."""
    if no_color:
        err.no_color = True

# Everything printed is verbatim: no markup, no emoji codes (`a.yaml:100:13:` must never become
# `a.yaml💯13:`), no highlighting. rich honours NO_COLOR itself; --no-color sets `no_color`.
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)


def _stdout_color() -> bool:
    """ANSI colour in the text plan: only on a terminal, never with NO_COLOR or --no-color."""
    return sys.stdout.isatty() and not err.no_color and not os.environ.get("NO_COLOR")


class Format(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


# Strings, not Paths: Path("") is ".", which would turn an empty argument into "the current
# directory" instead of the error it is.
Paths = Annotated[
    list[str],
    typer.Argument(metavar="PATH", help="Manifest files or folders (searched recursively for *.yaml, *.yml)."),
]
Sandbox = Annotated[
    bool,
    typer.Option("--sandbox", help=f"Run against the embedded ARM sandbox (state in {DEFAULT_SANDBOX_DB}; "
                 "--sandbox=FILE or --sandbox-db FILE picks another file)."),
]
SandboxDb = Annotated[
    str | None,
    typer.Option("--sandbox-db", metavar="PATH", help="State file of the embedded sandbox; implies --sandbox."),
]
ArmEndpoint = Annotated[
    str | None, typer.Option("--arm-endpoint", metavar="URL",
                             help="ARM endpoint URL, e.g. a `reconciler sandbox serve` URL.")
]
CaCert = Annotated[str | None, typer.Option("--ca-cert", metavar="PATH",
                                            help="PEM bundle to trust for --arm-endpoint.")]


def _sandbox_db(sandbox: bool, sandbox_db: str | None) -> str | None:
    return sandbox_db or (DEFAULT_SANDBOX_DB if sandbox else None)
GraphEndpoint = Annotated[
    str | None, typer.Option("--graph-endpoint", metavar="URL", help="Microsoft Graph endpoint URL for principal "
                             "names (default: the cloud's; the embedded sandbox serves its own).")
]


def _print_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    for d in diagnostics:
        style = "yellow" if d.severity == "warning" else "red"
        # Messages quote manifests and file names: escaped, so they cannot drive the terminal.
        err.print(safe_message(str(d)), style=style, markup=False, highlight=False)


def _check_cloud(value: str) -> str:
    """Checked on every target, the embedded sandbox included, so a typo is never ignored."""
    if value not in CLOUDS:
        raise typer.BadParameter(f"'{value}' is not one of {', '.join(repr(c) for c in CLOUDS)}.")
    return value


Cloud = Annotated[
    str, typer.Option("--cloud", metavar="[AzureCloud|AzureUSGovernment|AzureChinaCloud]", callback=_check_cloud,
                      help="Sets the ARM endpoint, the authority and the token scope together.")
]
Tenant = Annotated[str | None, typer.Option("--tenant", metavar="TEXT", help="Entra ID tenant to authenticate in.")]
Subscriptions = Annotated[
    list[str] | None,
    typer.Option("--subscription", metavar="ID",
                 help="Restrict the run to this subscription (repeatable), e.g. one per CI job."),
]
Shards = Annotated[
    int, typer.Option("--shards", metavar="INTEGER", min=1,
                      help="This run is one of N concurrent shards of one tenant (a CI job matrix): take 1/N of "
                           "the tenant-wide rate limits. `reconciler matrix` puts it in each shard's args."),
]


def _check_selected_subscriptions(selected: list[str], desired: DesiredState) -> None:
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


@contextmanager
def _session(
    paths: list[str], target: TargetOptions, subscriptions: list[str] | None = None
) -> Iterator[tuple[DesiredState, ArmGateway, RoleCatalog, Directory | Unavailable]]:
    """Load the manifests and open the target (ARM and the directory, Microsoft Graph). The
    embedded sandbox is seeded from the manifests, so they are loaded first (built-in roles
    only); any other target is opened first so that custom role names resolve against the live
    role definitions."""

    def load(catalog: RoleCatalog) -> DesiredState:
        desired, warnings = load_manifests(paths, catalog)
        _print_diagnostics(warnings)
        desired = dataclasses.replace(desired, source_id=source_id(paths))
        if subscriptions:
            _check_selected_subscriptions(subscriptions, desired)
            desired, skipped = desired.restricted(frozenset(s.lower() for s in subscriptions))
            if skipped:
                err.print(f"Note: {skipped} role assignment(s) span subscriptions outside --subscription; "
                          "they are planned by a run that selects both.", style="yellow", markup=False)
        return desired

    if target.sandbox_db:
        catalog = RoleCatalog()
        desired = load(catalog)
        with open_target(target, desired) as (gateway, directory):
            yield desired, gateway, catalog, directory
        return
    with open_target(target, DesiredState()) as (gateway, directory):
        catalog = RoleCatalog(live_lookup=gateway.lookup_role)
        yield load(catalog), gateway, catalog, directory


def _make_plan(
    desired: DesiredState, gateway: ArmGateway, catalog: RoleCatalog, directory: Directory | Unavailable,
    options: PlanOptions | None = None,
) -> Plan:
    return _plan_and_live(desired, gateway, catalog, directory, options)[0]


def _plan_and_live(
    desired: DesiredState, gateway: ArmGateway, catalog: RoleCatalog, directory: Directory | Unavailable,
    options: PlanOptions | None = None,
) -> tuple[Plan, LiveState]:
    live = gateway.read_live(desired.read_scope())
    # Names to object ids, declared ids checked, before the pure planner (reconciler/principals.py).
    resolution = resolve(desired, live, directory)
    return annotate(make_plan(resolution.desired, live, catalog.name_of, options), resolution), live


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


@app.command(cls=_Command)
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
    _print_diagnostics([*warnings, *privileged_grant_diagnostics(desired)])
    if list_roles:
        roles = sorted({(ra.role_definition_id, ra.role_name) for ra in desired.role_assignments})
        _echo("".join(f"{guid}\t{one_line(name)}\n" for guid, name in roles))
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


@app.command(cls=_Command)
def plan(
    paths: Paths,
    format: Annotated[
        Format, typer.Option("--format", metavar="[text|markdown|json]", help="Output format.")
    ] = Format.text,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="PATH", help="Save the plan (JSON with fingerprints) for `apply PLANFILE`."),
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
    sandbox: Sandbox = False,
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
    shards: Shards = 1,
    graph_endpoint: GraphEndpoint = None,
) -> None:
    """Show what apply would create, change or delete, and which of its steps the applying
    principal would be refused (preflight; exit 1 when any)."""
    options = PlanOptions(prune_unmanaged=prune_unmanaged, prune_orphans=prune_orphans, include_foreign=verbose)
    target = TargetOptions(_sandbox_db(sandbox, sandbox_db), arm_endpoint, ca_cert, cloud, tenant, graph_endpoint,
                           shards=shards)
    if out:
        _check_output(out, "--out")
    # A saved plan records its paths relative to the working directory: check before any I/O.
    saved_paths_ = recorded_paths(paths) if out else [str(p) for p in paths]
    key = plan_key() if out else None
    if apply_as is not None and not GUID_RE.match(apply_as):
        raise ReconcilerError(f"--apply-as {apply_as}: not an object id (a GUID)")
    with _session(paths, target, subscription) as (desired, gateway, catalog, directory):
        the_plan, live = _plan_and_live(desired, gateway, catalog, directory, options)
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
            _write_output(out, dumps_saved(the_plan, key), "--out")
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
    typer.Option("--full-plan-hint", metavar="TEXT", envvar="RECONCILER_FULL_PLAN_HINT",
                 help="Markdown: where readers find the full plan when the comment must be abridged."),
]


def _show(the_plan: Plan, format: Format, verbose: bool = False, full_plan_hint: str | None = None) -> None:
    if format is Format.json:
        _echo(json_safe(the_plan.dumps()))
    elif format is Format.markdown:
        _echo(render_markdown(the_plan, full_plan_hint=full_plan_hint))
    else:
        _echo(render_text(the_plan, color=_stdout_color(), verbose=verbose))


@app.command(cls=_Command)
def show(
    plan_files: Annotated[
        list[Path], typer.Argument(metavar="PLANFILE...", help="A plan saved with `plan --out`, or the plans of "
                                   "several shards (files, or folders of *.json plans).")
    ],
    format: Annotated[
        Format, typer.Option("--format", metavar="[text|markdown|json]", help="Output format.")
    ] = Format.text,
    full_plan_hint: FullPlanHint = None,
    matrix_file: Annotated[
        Path | None, typer.Option("--matrix", metavar="PATH",
                                  help="The `reconciler matrix` output the shards were planned from: a shard "
                                  "without a plan makes the review incomplete and the exit code 1.")
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
        _echo(review.review_text(shards, color=_stdout_color()))
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


def _check_output(path: Path, option: str) -> None:
    """Refuse an output path that cannot be written, before anything is read from or written
    to Azure: `apply --report DIR` must not be found out only after applying."""
    if path.is_dir():
        raise ReconcilerError(f"{option} {path}: is a directory; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ReconcilerError(f"{option} {path}: not writable")
        return
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ReconcilerError(f"{option} {path}: cannot create it under {parent} (not a writable directory)")


def _write_output(path: Path, text: str, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ReconcilerError(f"{option} {path}: cannot write it: {e.strerror or e}") from None


def _write_report(report: ApplyReport, path: Path, verified: bool | None = None) -> None:
    """`verified`: whether a fresh plan after apply was empty (None: not checked yet). The
    report is `ok` only when every step is done and verification did not fail."""
    data = report.to_json()
    data["ok"] = bool(data["ok"]) and verified is not False
    data["verified"] = verified
    # Step details quote ARM and SDK messages: scrubbed, as every error that leaves the tool.
    _write_output(path, scrub(json.dumps(data, indent=2)) + "\n", "--report")


# How long the first Ctrl-C / SIGTERM waits for steps in flight (their ARM calls retry
# transient faults for up to 120 s, so this is a bound, not an expectation).
INTERRUPT_GRACE_SECONDS = 60.0
_SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(ReconcilerError):
    """Apply stopped on a signal; `immediate` when in-flight steps were abandoned."""

    def __init__(self, message: str, exit_code: int, immediate: bool) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.immediate = immediate


@contextmanager
def _stop_on_signals(stop: StopRequest) -> Iterator[list[int]]:
    """First SIGINT/SIGTERM: stop handing out steps; second: stop at once. Yields the
    signals received. Handlers stay until the report is written, so it always is."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        (stop.request if len(received) == 1 else stop.now)()

    previous = {s: signal.signal(s, handler) for s in _SIGNAL_EXIT}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_steps(the_plan: Plan, gateway: ArmGateway, parallelism: int, report_file: Path | None) -> ApplyReport:
    """Apply the plan's steps with progress, write the report, and raise unless all were done."""

    def announce(in_flight: int) -> None:
        err.print(f"Interrupted: waiting for {in_flight} in-flight step(s) (at most "
                  f"{INTERRUPT_GRACE_SECONDS:.0f} s; interrupt again to stop at once)…", style="yellow", markup=False)

    stop = StopRequest(INTERRUPT_GRACE_SECONDS, announce)
    with _stop_on_signals(stop) as received:
        if err.is_terminal:
            with BarReporter(the_plan, err, gateway.throttle_wait_seconds) as bar:
                report = apply_plan(the_plan, gateway, parallelism=parallelism, reporter=bar, stop=stop,
                                    abort=gateway.unreachable)
        else:
            report = apply_plan(the_plan, gateway, parallelism=parallelism, reporter=LineReporter(the_plan, err),
                                stop=stop, abort=gateway.unreachable)
        if report_file:
            _write_report(report, report_file)
        if report.ok and received:
            raise Interrupted("apply interrupted after every step was done; the verifying plan was skipped",
                              _SIGNAL_EXIT.get(signal.Signals(received[0]), 130), immediate=False)
        if report.ok:
            return report
        path = report_file or Path(".reconciler") / "last-apply-report.json"
        _write_report(report, path)
    c = report.counts()
    summary = f"{c['done']} done, {c[FAILED]} failed, {c[SKIPPED]} skipped"
    if report.interrupted:
        summary += f", {c[INTERRUPTED]} in flight (outcome unknown), {c[NOT_STARTED]} not started"
        raise Interrupted(
            f"apply interrupted: {summary}; report written to {path}. "
            "Run apply again to finish: done steps are not repeated.",
            _SIGNAL_EXIT.get(signal.Signals(received[0]), 130) if received else 130,
            immediate=c[INTERRUPTED] > 0,
        )
    if report.stopped:
        not_started = sum(1 for r in report.results if r.detail.startswith("not started:"))
        err.print(safe_message(f"Stopped handing out steps ({not_started} not started): {one_line(report.stopped)}"),
                  style="red", markup=False)
    raise ReconcilerError(
        f"apply incomplete: {summary}; report written to {path}. "
        "Fix the cause and run apply again: done steps are not repeated."
    )


def _is_plan_file(paths: list[str]) -> bool:
    """One file that is a saved plan, told apart from a manifest by its content: a plan is a
    JSON object with `format_version`. A manifest may be JSON too (YAML reads it), whatever its
    name; a `.json` file that is not JSON at all is taken for a broken plan and said so."""
    if len(paths) != 1 or not Path(paths[0]).is_file():
        return False
    try:
        data = json.loads(Path(paths[0]).read_bytes())
    except (OSError, ValueError, RecursionError):
        return paths[0].endswith(".json")
    return isinstance(data, dict) and "format_version" in data


# apply's options that name where its writes go (see savedplan.saved_target).
_TARGET_PARAMS = ("sandbox_db", "arm_endpoint", "ca_cert", "cloud", "tenant")


def _given(ctx: typer.Context, names: Sequence[str]) -> frozenset[str]:
    """Which of these options the command line (not their defaults) set."""
    # By name: typer vendors click, whose ParameterSource enum is not public API.
    sources = {n: ctx.get_parameter_source(n) for n in names}
    return frozenset(n for n, src in sources.items() if src is not None and src.name != "DEFAULT")


@app.command(cls=_Command)
def apply(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", help="Manifest files or folders, or one plan file saved with `plan --out`."),
    ],
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")] = False,
    parallelism: Annotated[
        int, typer.Option("--parallelism", metavar="INTEGER", min=1, max=64, help="Concurrent ARM writes.")
    ] = 8,
    max_deletes: Annotated[
        int, typer.Option("--max-deletes", metavar="INTEGER", min=0, help="Refuse plans that destroy more than this.")
    ] = DEFAULT_MAX_DELETES,
    allow_mass_delete: Annotated[
        bool, typer.Option("--allow-mass-delete", help="Apply even past --max-deletes or deleting all of an owner.")
    ] = False,
    prune_unmanaged: PruneUnmanaged = False,
    prune_orphans: PruneOrphans = False,
    report_file: Annotated[
        Path | None, typer.Option("--report", metavar="PATH", help="Write the step report as JSON to this file.")
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show ARM call counts.")] = False,
    sandbox: Sandbox = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
    shards: Shards = 1,
    graph_endpoint: GraphEndpoint = None,
) -> None:
    """Make Azure match the manifests: plan, confirm, apply, then verify a fresh plan is empty.

    Given a plan file, apply to the target it records, and only if a fresh plan makes exactly
    its changes (the fresh plan is what runs); refuse otherwise, saying what differs."""
    if report_file:
        _check_output(report_file, "--report")
    saved = read_plan(Path(paths[0]), key=plan_key()) if _is_plan_file(paths) else None
    target = TargetOptions(_sandbox_db(sandbox, sandbox_db), arm_endpoint, ca_cert, cloud, tenant, graph_endpoint,
                           shards=shards)
    if saved is not None:
        paths = saved_paths(saved)
        prune_unmanaged = bool(saved.inputs.get("prune_unmanaged", False))
        prune_orphans = bool(saved.inputs.get("prune_orphans", False))
        subscription = list(saved.inputs.get("subscriptions") or []) or None
        given = _given(ctx, (*_TARGET_PARAMS, "sandbox"))
        if "sandbox" in given:  # the bare flag names the default sandbox file
            given = (given - {"sandbox"}) | {"sandbox_db"}
        target = dataclasses.replace(saved_target(saved, target, given), shards=shards)
    options = PlanOptions(prune_unmanaged=prune_unmanaged, prune_orphans=prune_orphans)
    with _session(paths, target, subscription) as (desired, gateway, catalog, directory):
        fresh = _make_plan(desired, gateway, catalog, directory, options)
        the_plan = fresh  # a saved plan is a commitment: what runs is always the fresh plan
        if saved is not None:
            check_fresh(saved, desired, fresh)
            err.print(f"The saved plan is current: applying its {len(fresh.actionable)} change(s) to "
                      f"{target.describe()}.", markup=False)
        else:
            _echo(render_text(the_plan, color=_stdout_color()))
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
        report = _run_steps(the_plan, gateway, parallelism, report_file)
        _echo(f"Apply complete: {report.counts()['done']} step(s) done.\n")
        after = _make_plan(desired, gateway, catalog, directory, options)
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


@app.command(cls=_Command)
def drift(
    paths: Paths,
    format: Annotated[
        Format, typer.Option("--format", metavar="[text|markdown|json]", help="Output format.")
    ] = Format.text,
    fail_on: Annotated[
        str, typer.Option("--fail-on", metavar="CLASSES", help="Drift classes that make the exit code 2: "
                          "comma-separated missing,changed,unmanaged,orphaned, or all / none.")
    ] = "all",
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show ARM call counts.")] = False,
    sandbox: Sandbox = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
    subscription: Subscriptions = None,
    shards: Shards = 1,
    graph_endpoint: GraphEndpoint = None,
) -> None:
    """Report what changed in Azure out of band, by drift class. Never writes to Azure.

    Exit 0 in sync, 2 when drift of a --fail-on class is found, 1 on error."""
    try:
        classes = drift_report.parse_classes(fail_on)
    except ValueError as e:
        raise ReconcilerError(f"--fail-on: {e}") from None
    target = TargetOptions(_sandbox_db(sandbox, sandbox_db), arm_endpoint, ca_cert, cloud, tenant, graph_endpoint,
                           shards=shards)
    with _session(paths, target, subscription) as (desired, gateway, catalog, directory):
        the_plan = _make_plan(desired, gateway, catalog, directory)
        if format is Format.json:
            _echo(json_safe(drift_report.dumps(the_plan)))
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


@app.command(cls=_Command)
def matrix(
    paths: Paths,
    max_jobs: Annotated[
        int, typer.Option("--max-jobs", metavar="INTEGER", min=1, help="At most this many shards (CI jobs).")
    ] = 4,
    format: Annotated[MatrixFormat, typer.Option(
        "--format", metavar="[github|azure-pipelines|json]",
        help="github (strategy.matrix), azure-pipelines (strategy: matrix) or json (with each subscription's cost).")]
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


@app.command(cls=_Command)
def output(
    paths: Paths,
    format: Annotated[OutputFormat, typer.Option(
        "--format", metavar="[json|env|table]", help="json, env (NAME_CLIENT_ID=… lines) or table.")]
    = OutputFormat.json,
    sandbox: Sandbox = False,
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

    target = TargetOptions(_sandbox_db(sandbox, sandbox_db), arm_endpoint, ca_cert, cloud, tenant)
    with _session(paths, target, subscription) as (desired, gateway, _catalog, _directory):
        live = gateway.read_live(desired.read_scope())
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


class ExportPer(StrEnum):
    resource_group = "resource-group"
    subscription = "subscription"


@app.command(cls=_Command)
def export(
    subscription: Annotated[
        list[str], typer.Option("--subscription", metavar="ID", help="Subscription to export (repeatable).")
    ],
    owner: Annotated[str, typer.Option("--owner", metavar="TEXT", help="metadata.owner of the manifests written.")],
    resource_group: Annotated[
        list[str] | None, typer.Option("--resource-group", metavar="TEXT",
                                       help="Only identities in this resource group (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="PATH", help="Folder to write the manifests to.")] = None,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print the manifests instead of writing them.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that is not empty.")] = False,
    per: Annotated[ExportPer, typer.Option("--per", metavar="[resource-group|subscription]",
                                           help="One file per resource group or per subscription.")]
    = ExportPer.resource_group,
    sandbox: Sandbox = False,
    sandbox_db: SandboxDb = None,
    arm_endpoint: ArmEndpoint = None,
    ca_cert: CaCert = None,
    cloud: Cloud = "AzureCloud",
    tenant: Tenant = None,
) -> None:
    """Write the live estate (identities, their federated credentials, the grants to them and on
    them) as manifests that plan only adoptions. Never writes to Azure."""
    import re
    import tempfile
    import threading
    import time
    from importlib import resources as importlib_resources

    from reconciler import export as exporter
    from reconciler.manifest.schema import schema
    from reconciler.roles import GUID_RE

    if not re.match(schema()["$defs"]["owner"]["pattern"], owner):
        raise ReconcilerError(f"--owner {owner!r} is not a valid owner: {schema()['$defs']['owner']['description']}")
    bad = [s for s in subscription if not GUID_RE.match(s)]
    if bad:
        raise ReconcilerError(f"--subscription {bad[0]!r} is not a subscription id (a GUID)")
    if out is None and not stdout:
        raise ReconcilerError("say where the manifests go: --out DIR, or --stdout")
    if out is not None and not stdout and out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ReconcilerError(f"{out} exists and is not empty; choose another folder, or pass --force to write "
                              "into it (files of the same name are overwritten, others are left alone)")
    target = TargetOptions(_sandbox_db(sandbox, sandbox_db), arm_endpoint, ca_cert, cloud, tenant)
    local_schema = Path("schemas/manifest.schema.json")
    schema_path = local_schema if local_schema.is_file() else Path(
        str(importlib_resources.files("reconciler.data").joinpath("manifest.schema.json")))
    options = exporter.ExportOptions(
        owner=owner, subscriptions=tuple(s.lower() for s in subscription),
        resource_groups=frozenset(g.lower() for g in resource_group or ()), per=per.value,
        out_dir=str(out or "."), schema_path=str(schema_path.resolve()),
    )
    with open_gateway(target, DesiredState()) as gateway:
        started = time.monotonic()
        err.print(f"Reading {len(subscription)} subscription(s) from {target.describe()}...", markup=False)
        done = threading.Event()

        def tick() -> None:  # a line every 10 s while ARM is read, so a long export is visibly alive
            while not done.wait(10.0):
                err.print(f"  ... {sum(gateway.call_counts().values())} ARM calls so far, "
                          f"{time.monotonic() - started:.0f} s", markup=False)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            live = gateway.read_estate(options.subscriptions, owner, options.resource_groups)
        finally:
            done.set()
            ticker.join()
        err.print(f"Read {len(live.identities)} identities, {len(live.role_assignments)} role assignments and "
                  f"the federated credentials of {len(live.federated_credentials)} identities in "
                  f"{time.monotonic() - started:.1f} s.", markup=False)
        catalog = RoleCatalog(live_lookup=gateway.lookup_role)

        def role_name(sub: str, guid: str) -> str | None:
            role = catalog.resolve(guid, sub)
            return role.name if role is not None else None

        result = exporter.export_estate(live, options, role_name)
        if not result.files:
            raise ReconcilerError("no identity to export (" + "; ".join(result.summary()[1:] or ["none found"])
                                  + "); nothing was written")
        # The round trip starts here: what we write must load without a single error.
        with tempfile.TemporaryDirectory() as tmp:
            for rel, text in result.files.items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_text(text, encoding="utf-8")
            try:
                load_manifests([tmp], catalog)
            except ManifestError as e:
                raise ReconcilerError(f"export produced manifests that do not load (a bug; please report it):\n{e}"
                                      ) from None
    if stdout:
        _echo("---\n".join(result.files.values()))
    else:
        assert out is not None
        for rel, text in result.files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text, encoding="utf-8")
            err.print(f"Wrote {out / rel}", markup=False)
    for line in result.summary():
        err.print(line, markup=False)


_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _rewrite_sandbox_flag(argv: list[str]) -> list[str]:
    """`--sandbox` is a flag; the state file is named by `--sandbox-db PATH` or `--sandbox=PATH`.
    For compatibility `--sandbox FILE.db` (a word ending in .db, .sqlite or .sqlite3 that is no
    directory) still names the file; any other word after `--sandbox` is a manifest path, and
    one that does not exist is refused here, before it could be taken for either."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg.startswith("--sandbox="):
            value = arg.split("=", 1)[1]
            out += ["--sandbox-db", value] if value else ["--sandbox"]
        elif arg == "--sandbox":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and nxt.endswith(_DB_SUFFIXES) and not Path(nxt).is_dir():
                out += ["--sandbox-db", nxt]
                i += 1
            elif nxt is not None and nxt and not nxt.startswith("-") and not Path(nxt).exists():
                raise ReconcilerError(
                    f"'{nxt}' after --sandbox is no manifest file or folder; --sandbox takes no value: "
                    f"name the sandbox's state file with --sandbox-db {nxt} or --sandbox={nxt}"
                )
            else:
                out.append("--sandbox")
        else:
            out.append(arg)
        i += 1
    return out


def _hoist_no_color(argv: list[str]) -> list[str]:
    """`--no-color` is accepted anywhere before `--`; it is the root command's option."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--no-color" not in argv[:end]:
        return argv
    return ["--no-color", *(a for a in argv[:end] if a != "--no-color"), *argv[end:]]


_USAGE_NOISE = re.compile(r"Value error, ")


class _ScrubFilter(logging.Filter):
    """Log lines pass through the same scrubber as errors (the SDK redacts Authorization
    headers itself, but not a token quoted in an exception message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = safe_message(record.getMessage()), None
        return True


def _scrub_logs() -> None:
    for handler in [*logging.getLogger().handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, _ScrubFilter) for f in handler.filters):
            handler.addFilter(_ScrubFilter())


def main(argv: Sequence[str] | None = None) -> int:
    """The single error boundary: every exception becomes a message and an exit code."""
    if not os.environ.get("RECONCILER_DEBUG"):
        # The SDK logs warnings (credential probes, retries) that our messages already say
        # better; they never contain tokens, but they do drown the one line that matters.
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    err.no_color = os.environ.get("NO_COLOR", "") != ""  # as rich decides it; --no-color may set it
    _scrub_logs()
    try:
        args = _hoist_no_color(_rewrite_sandbox_flag(list(sys.argv[1:] if argv is None else argv)))
        result = app(args=args, prog_name="reconciler", standalone_mode=False)
        return result if isinstance(result, int) else EXIT_OK
    except ManifestError as e:
        _print_diagnostics(e.diagnostics)
        err.print(f"Error: {e}", style="bold red", markup=False)
        return EXIT_ERROR
    except Interrupted as e:
        err.print(f"Error: {e}", style="bold red", markup=False)
        if e.immediate:
            # Worker threads still wait on ARM calls that were abandoned; the interpreter
            # would join them on exit. The report is written: leave now.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except ReconcilerError as e:
        # The boundary: every message that leaves is scrubbed of tokens and control characters.
        err.print(f"Error: {safe_message(str(e))}", style="bold red", markup=False)
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
            message = getattr(e, "message", None)
            if isinstance(message, str):  # "Value error, " is pydantic's wording, not ours
                e.message = _USAGE_NOISE.sub("", message)  # type: ignore[attr-defined]
            e.show(file=sys.stderr)
            return EXIT_ERROR
        err.print(safe_message(f"Internal error (a bug in reconciler, please report it): {type(e).__name__}: {e}"),
                  style="bold red", markup=False)
        if os.environ.get("RECONCILER_DEBUG"):
            traceback.print_exc()
        else:
            err.print("Set RECONCILER_DEBUG=1 to see the traceback.", style="dim")
        return EXIT_ERROR
