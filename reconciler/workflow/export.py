"""`export`: the live estate (identities, their federated credentials, the grants to them and
on them) written as manifests that plan only adoptions. Never writes to Azure."""

from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path

from reconciler import export as exporter
from reconciler.errors import ManifestError, ReconcilerError
from reconciler.gateway import ArmGateway
from reconciler.manifest.loader import load_manifests
from reconciler.manifest.schema import schema
from reconciler.roles import GUID_RE, RoleCatalog
from reconciler.target import TargetOptions, open_gateway
from reconciler.workflow.interaction import Interaction


@dataclass(frozen=True)
class ExportRequest:
    subscriptions: list[str]
    owner: str  # metadata.owner of the manifests written
    target: TargetOptions
    resource_groups: list[str] | None = None  # only identities in these
    out: Path | None = None  # folder to write to
    stdout: bool = False  # print the manifests instead
    force: bool = False  # write into a folder that is not empty
    per: str = "resource-group"  # one file per resource group, or per "subscription"


def check_request(request: ExportRequest) -> None:
    """Refuse a request that cannot succeed, before anything is read from Azure."""
    owner, out = request.owner, request.out
    if not re.match(schema()["$defs"]["owner"]["pattern"], owner):
        raise ReconcilerError(f"--owner {owner!r} is not a valid owner: {schema()['$defs']['owner']['description']}")
    bad = [s for s in request.subscriptions if not GUID_RE.match(s)]
    if bad:
        raise ReconcilerError(f"--subscription {bad[0]!r} is not a subscription id (a GUID)")
    if out is None and not request.stdout:
        raise ReconcilerError("say where the manifests go: --out DIR, or --stdout")
    if (out is not None and not request.stdout and out.exists() and (not out.is_dir() or any(out.iterdir()))
            and not request.force):
        raise ReconcilerError(f"{out} exists and is not empty; choose another folder, or pass --force to write "
                              "into it (files of the same name are overwritten, others are left alone)")


def export_options(request: ExportRequest) -> exporter.ExportOptions:
    local_schema = Path("schemas/manifest.schema.json")
    schema_path = local_schema if local_schema.is_file() else Path(
        str(importlib_resources.files("reconciler.data").joinpath("manifest.schema.json")))
    return exporter.ExportOptions(
        owner=request.owner, subscriptions=tuple(s.lower() for s in request.subscriptions),
        resource_groups=frozenset(g.lower() for g in request.resource_groups or ()), per=request.per,
        out_dir=str(request.out or "."), schema_path=str(schema_path.resolve()),
    )


@contextmanager
def _ticking(gateway: ArmGateway, started: float, io: Interaction) -> Iterator[None]:
    """A line every 10 s while ARM is read, so a long export is visibly alive."""
    done = threading.Event()

    def tick() -> None:
        while not done.wait(10.0):
            io.note(f"  ... {sum(gateway.call_counts().values())} ARM calls so far, "
                    f"{time.monotonic() - started:.0f} s")

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


def _check_round_trip(result: exporter.ExportResult, catalog: RoleCatalog) -> None:
    """The round trip starts here: what we write must load without a single error."""
    with tempfile.TemporaryDirectory() as tmp:
        for rel, text in result.files.items():
            (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / rel).write_text(text, encoding="utf-8")
        try:
            load_manifests([tmp], catalog)
        except ManifestError as e:
            raise ReconcilerError(f"export produced manifests that do not load (a bug; please report it):\n{e}"
                                  ) from None


def _read_and_export(request: ExportRequest, options: exporter.ExportOptions, io: Interaction) -> exporter.ExportResult:
    with open_gateway(request.target) as gateway:
        started = time.monotonic()
        io.note(f"Reading {len(request.subscriptions)} subscription(s) from {request.target.describe()}...")
        with _ticking(gateway, started, io):
            live = gateway.read_estate(options.subscriptions, request.owner, options.resource_groups)
        io.note(f"Read {len(live.identities)} identities, {len(live.role_assignments)} role assignments and "
                f"the federated credentials of {len(live.federated_credentials)} identities in "
                f"{time.monotonic() - started:.1f} s.")
        catalog = RoleCatalog(live_lookup=gateway.lookup_role)

        def role_name(sub: str, guid: str) -> str | None:
            role = catalog.resolve(guid, sub)
            return role.name if role is not None else None

        result = exporter.export_estate(live, options, role_name)
        if not result.files:
            raise ReconcilerError("no identity to export (" + "; ".join(result.summary()[1:] or ["none found"])
                                  + "); nothing was written")
        _check_round_trip(result, catalog)
    return result


def run_export(request: ExportRequest, io: Interaction) -> exporter.ExportResult:
    """Read the estate, export it, check the manifests load, then print or write them."""
    check_request(request)
    result = _read_and_export(request, export_options(request), io)
    if request.stdout:
        io.out("---\n".join(result.files.values()))
    else:
        out = request.out
        assert out is not None
        for rel, text in result.files.items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text, encoding="utf-8")
            io.note(f"Wrote {out / rel}")
    for line in result.summary():
        io.note(line)
    return result
