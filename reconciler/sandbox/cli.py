"""`reconciler sandbox serve` and `reconciler sandbox token`: the sandbox as a command-line tool."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from .config import SandboxConfig
from .directory import Directory
from .graph import audience_for
from .server import SandboxServer
from .store import Store
from .tokens import AUDIENCES, issue

DEFAULT_DB = ".reconciler/sandbox.db"

sandbox_app = typer.Typer(
    help="A local HTTPS look-alike of Azure Resource Manager (identities, FICs, role assignments).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Db = Annotated[str, typer.Option("--db", help="SQLite state file; certificates are cached beside it.")]
_DEFAULTS = SandboxConfig()


@sandbox_app.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8443,
    subscription: Annotated[list[str] | None, typer.Option(
        "--subscription", help="Seed this subscription (the admin becomes its Owner); repeatable.")] = None,
    throttling: Annotated[bool, typer.Option(help="ARM token-bucket throttling.")] = _DEFAULTS.throttling,
    throttle_scale: Annotated[float, typer.Option(
        help="Multiply every bucket size and refill rate (0.1 = ten times stricter).")] = _DEFAULTS.throttle_scale,
    latency_ms: Annotated[float, typer.Option(help="Added latency for every request, in ms.")] = 0.0,
    fault_rate: Annotated[float, typer.Option(help="Probability of an injected fault per request.")] = 0.0,
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault generator.")] = _DEFAULTS.fault_seed,
    fault_kinds: Annotated[str, typer.Option(help="Comma-separated: 500,503,drop,slow.")] = ",".join(
        _DEFAULTS.fault_kinds),
    replication_delay: Annotated[float, typer.Option(
        help="Seconds before a new identity's principal is visible to role assignments.")] = (
        _DEFAULTS.replication_delay_seconds),
    fic_write_window: Annotated[float, typer.Option(
        help="Seconds one FIC write keeps its identity busy (overlapping writes get 409).")] = (
        _DEFAULTS.fic_write_window_seconds),
    page_size: Annotated[int, typer.Option(help="Items per list page before a nextLink.")] = _DEFAULTS.page_size,
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
    server.start()
    typer.echo(f"sandbox ARM endpoint: {server.url}")
    typer.echo(f"Graph endpoint:       {server.url}/v1.0 (tokens: --resource https://graph.microsoft.com)")
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
    principal: Annotated[str | None, typer.Option(
        help="Display name or object id of a known principal; the sandbox admin by default.")] = None,
    resource: Annotated[str, typer.Option(
        help="Resource the token is for: ARM, or https://graph.microsoft.com for the sandbox's Graph API.")] = (
        AUDIENCES[0]),
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
        typer.echo(issue(found.object_id, directory.tenant_id, found.app_id, audience=audience_for(resource)))
    finally:
        store.close()
