"""`reconciler sandbox serve` and `reconciler sandbox token`: the sandbox as a command-line tool."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer

from .config import SandboxConfig
from .directory import Directory
from .server import SandboxServer
from .store import Store
from .tokens import issue

DEFAULT_DB = ".reconciler/sandbox.db"

sandbox_app = typer.Typer(
    help="A local HTTPS look-alike of Azure Resource Manager (identities, FICs, role assignments).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: nothing read as markup, nothing cut at 80 columns
)

Db = Annotated[str, typer.Option("--db", metavar="PATH", help="SQLite state file; certificates are cached beside it.")]
_DEFAULTS = SandboxConfig()

# What `serve --seed PATH` seeds: {"subscriptions": [(id,)], "resource_groups": [(sub, name,
# location)], "principals": [(object id, type, display name)]} for the manifests at the paths.
# Reading manifests is the reconciler's job, so its CLI installs this; the sandbox itself only
# takes the data and still imports nothing from the core.
Seeder = Callable[[Sequence[str]], dict[str, list[tuple[str, ...]]]]
seed_from_manifests: Seeder | None = None


@sandbox_app.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(
        metavar="HOST", help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="INTEGER", help="Port to listen on; 0 picks a free one.")] = 8443,
    subscription: Annotated[list[str] | None, typer.Option(
        "--subscription", metavar="ID",
        help="Seed this subscription (the admin becomes its Owner); repeatable.")] = None,
    seed: Annotated[list[str] | None, typer.Option(
        "--seed", metavar="PATH",
        help="Seed what these manifests reference (subscriptions, resource groups, principals), "
             "as plan --sandbox does; repeatable.")] = None,
    throttling: Annotated[bool, typer.Option(help="ARM token-bucket throttling.")] = _DEFAULTS.throttling,
    throttle_scale: Annotated[float, typer.Option(metavar="FLOAT",
        help="Multiply every bucket size and refill rate (0.1 = ten times stricter).")] = _DEFAULTS.throttle_scale,
    latency_ms: Annotated[float, typer.Option(metavar="FLOAT", help="Added latency for every request, in ms.")] = 0.0,
    fault_rate: Annotated[float, typer.Option(
        metavar="FLOAT", help="Probability of an injected fault per request.")] = 0.0,
    fault_seed: Annotated[int, typer.Option(
        metavar="INTEGER", help="Seed of the fault generator.")] = _DEFAULTS.fault_seed,
    fault_kinds: Annotated[str, typer.Option(metavar="TEXT", help="Comma-separated: 500,503,drop,slow.")] = ",".join(
        _DEFAULTS.fault_kinds),
    replication_delay: Annotated[float, typer.Option(metavar="FLOAT",
        help="Seconds before a new identity's principal is visible to role assignments.")] = (
        _DEFAULTS.replication_delay_seconds),
    fic_write_window: Annotated[float, typer.Option(metavar="FLOAT",
        help="Seconds one FIC write keeps its identity busy (overlapping writes get 409).")] = (
        _DEFAULTS.fic_write_window_seconds),
    page_size: Annotated[int, typer.Option(
        metavar="INTEGER", help="Items per list page before a nextLink.")] = _DEFAULTS.page_size,
) -> None:
    """Serve the sandbox until Ctrl-C."""
    try:
        config = SandboxConfig(
            throttling=throttling, throttle_scale=throttle_scale, latency_read_ms=latency_ms,
            latency_write_ms=latency_ms, latency_delete_ms=latency_ms, fault_rate=fault_rate,
            fault_seed=fault_seed, fault_kinds=tuple(k.strip() for k in fault_kinds.split(",") if k.strip()),
            replication_delay_seconds=replication_delay, fic_write_window_seconds=fic_write_window,
            page_size=page_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    server = SandboxServer(db_path=db, host=host, port=port, config=config)
    if subscription:
        server.seed(subscriptions=subscription)
    if seed:
        if seed_from_manifests is None:
            raise typer.BadParameter("--seed needs the reconciler command line, which reads manifests")
        data = seed_from_manifests(seed)
        server.seed(subscriptions=[s for (s,) in data["subscriptions"]],
                    resource_groups=[(s, r, loc) for s, r, loc in data["resource_groups"]],
                    principals=[(o, t, n) for o, t, n in data["principals"]])
    server.start()
    typer.echo(f"sandbox ARM endpoint: {server.url}")
    typer.echo(f"CA certificate:       {server.ca_cert_path}")
    typer.echo(f"state:                {Path(db).resolve()}")
    typer.echo(f"admin object id:      {server.admin_object_id} (tenant {server.tenant_id})")
    typer.echo(f"admin token:          reconciler sandbox token --db {db}")
    changed = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(_DEFAULTS, f.name)]
    typer.echo(f"settings:             {', '.join(changed) or 'defaults'}")
    typer.echo("Press Ctrl-C to stop.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")


@sandbox_app.command()
def token(
    db: Db = DEFAULT_DB,
    principal: Annotated[str | None, typer.Option(metavar="TEXT",
        help="Display name or object id of a known principal; the sandbox admin by default.")] = None,
) -> None:
    """Print a bearer token for the sandbox stored in --db."""
    if not Path(db).exists():
        typer.echo(f"no sandbox state at {db}; start one with `reconciler sandbox serve --db {db}`", err=True)
        raise typer.Exit(1)
    store = Store(db)
    try:
        directory = Directory(store)
        try:
            found = directory.find(principal or directory.admin_object_id)
        except LookupError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        typer.echo(issue(found.object_id, directory.tenant_id, found.app_id))
    finally:
        store.close()
