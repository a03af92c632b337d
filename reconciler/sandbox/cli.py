"""`reconciler sandbox serve`, `token` and `env`: the sandbox as a command-line tool.

`serve` records where it listens in `<db>.serve.json` (URL, CA certificate, pid; removed when it
stops) so that `env` can tell a shell how to reach it without being told the port.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .config import SandboxConfig
from .directory import Directory
from .store import Store
from .tokens import AUDIENCES, issue, signing_key

# The server, its routes and Graph are imported by the commands that use them: the reconciler's
# command line registers these commands for every run, `validate` included.
if TYPE_CHECKING:
    from .server import SandboxServer

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
    insecure_unsigned_tokens: Annotated[bool, typer.Option(
        help="Also accept unsigned (alg: none) tokens: anyone who can reach the port can then act as any "
             "principal, the admin included.")] = False,
) -> None:
    """Serve the sandbox until Ctrl-C."""
    from .server import SandboxServer

    # Internal errors answer 500 without details; the traceback goes here, to stderr.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = SandboxConfig(
            throttling=throttling, throttle_scale=throttle_scale, latency_read_ms=latency_ms,
            latency_write_ms=latency_ms, latency_delete_ms=latency_ms, fault_rate=fault_rate,
            fault_seed=fault_seed, fault_kinds=tuple(k.strip() for k in fault_kinds.split(",") if k.strip()),
            replication_delay_seconds=replication_delay, fic_write_window_seconds=fic_write_window,
            page_size=page_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    server = SandboxServer(db_path=db, host=host, port=port, config=config,
                           insecure_unsigned_tokens=insecure_unsigned_tokens)
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
    info = record_serve_info(db, server)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    typer.echo(f"sandbox ARM endpoint: {server.url}")
    typer.echo(f"Graph endpoint:       {server.url}/v1.0 (tokens: --resource https://graph.microsoft.com)")
    typer.echo(f"CA certificate:       {server.ca_cert_path}")
    typer.echo(f"state:                {Path(db).resolve()}")
    typer.echo(f"admin object id:      {server.admin_object_id} (tenant {server.tenant_id})")
    typer.echo(f"admin token:          reconciler sandbox token --db {db}")
    typer.echo(f"Azure CLI set-up:     eval \"$(reconciler sandbox env --db {db})\"")
    if insecure_unsigned_tokens:
        typer.echo("WARNING: unsigned tokens are accepted (--insecure-unsigned-tokens).", err=True)
    changed = [f"{f.name}={getattr(config, f.name)}" for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(_DEFAULTS, f.name)]
    typer.echo(f"settings:             {', '.join(changed) or 'defaults'}")
    typer.echo("Press Ctrl-C to stop.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        info.unlink(missing_ok=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_info_path(db: str) -> Path:
    return Path(f"{db}.serve.json")


def record_serve_info(db: str, server: SandboxServer) -> Path:
    """Write `<db>.serve.json` (0600): where `serve` listens, for `sandbox env`."""
    path = serve_info_path(db)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": server.url, "caCert": str(Path(server.ca_cert_path).resolve()), "pid": os.getpid()}, out)
    return path


@sandbox_app.command()
def token(
    db: Db = DEFAULT_DB,
    principal: Annotated[str | None, typer.Option(metavar="TEXT",
        help="Display name or object id of a known principal; the sandbox admin by default.")] = None,
    resource: Annotated[str, typer.Option(metavar="URL",
        help="Resource the token is for: ARM, or https://graph.microsoft.com for the sandbox's Graph API.")] = (
        AUDIENCES[0]),
) -> None:
    """Print a bearer token for the sandbox stored in --db."""
    from .graph import audience_for

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
        typer.echo(issue(found.object_id, directory.tenant_id, found.app_id, key=signing_key(store),
                         audience=audience_for(resource)))
    finally:
        store.close()


@sandbox_app.command()
def env(
    db: Db = DEFAULT_DB,
    shell: Annotated[str, typer.Option(metavar="SHELL", help="bash (also zsh, sh) or pwsh.")] = "bash",
) -> None:
    """Print what a shell needs to point `az` and the Azure SDKs at the running `sandbox serve --db DB`.

    Use it as `eval "$(reconciler sandbox env)"` (bash) or
    `reconciler sandbox env --shell pwsh | Out-String | Invoke-Expression` (PowerShell)."""
    from . import discovery, identity_endpoint

    if shell not in ("bash", "pwsh"):
        raise typer.BadParameter("must be bash or pwsh", param_hint="--shell")
    info_path = serve_info_path(db)
    try:
        info: dict[str, Any] = json.loads(info_path.read_text())
        url, ca_cert = str(info["url"]), str(info["caCert"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        typer.echo(f"no running sandbox recorded for {db} ({info_path} is missing or unreadable); start one with "
                   f"`reconciler sandbox serve --db {db}`", err=True)
        raise typer.Exit(1) from exc
    store = Store(db)
    try:
        secret = identity_endpoint.secret(store)
    finally:
        store.close()
    config_dir = Path(f"{db}.az").resolve()
    config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    config_dir.chmod(0o700)
    variables = {
        "AZURE_CONFIG_DIR": str(config_dir),
        "REQUESTS_CA_BUNDLE": ca_cert,
        "IDENTITY_ENDPOINT": url + identity_endpoint.APP_SERVICE_PATH,
        "IDENTITY_HEADER": secret,
    }
    name, arm = discovery.CLOUD_NAME, url + "/"
    lines = [f"# reconciler sandbox at {url} (state {Path(db).resolve()})"]
    if shell == "bash":
        lines += [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]
        lines += [f"az cloud register --name {name} --endpoint-resource-manager {shlex.quote(arm)} --only-show-errors "
                  f">/dev/null 2>&1 || az cloud update --name {name} --endpoint-resource-manager {shlex.quote(arm)} "
                  "--only-show-errors >/dev/null"]
    else:
        lines += [f"$env:{k} = '{v}'" for k, v in variables.items()]
        lines += [f"az cloud register --name {name} --endpoint-resource-manager '{arm}' --only-show-errors 2>$null; "
                  f"if (-not $?) {{ az cloud update --name {name} --endpoint-resource-manager '{arm}' "
                  "--only-show-errors | Out-Null }"]
    lines += [f"az cloud set --name {name} --only-show-errors",
              "az login --identity --only-show-errors --output none",
              "# as a managed identity instead of the admin: az login --identity --client-id <its clientId>"]
    typer.echo("\n".join(lines))
