"""Saved plans: write a plan with fingerprints, read it back, and refuse it when stale.

There is no state file, so a saved plan proves what it was made from with hashes: one of the
manifests (every file's path and bytes) and one per touched resource of its live state (the
normalised `before` of its change). `apply plan.json` re-reads both and applies the saved
changes only when nothing moved; otherwise it says what did.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.errors import ReconcilerError, StalePlanError
from reconciler.plan import FORMAT_VERSION, Change, Plan

MANIFESTS_KEY = "manifests"
LIVE_PREFIX = "live:"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifests_fingerprint(files: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(Path(name).read_bytes() + b"\0")
    return digest.hexdigest()


def live_fingerprint(change: Change) -> str:
    """Hash of what ARM had for a resource when planned ("absent" when it did not exist)."""
    return _sha(json.dumps(change.before, sort_keys=True).encode())


def with_fingerprints(plan: Plan, files: Iterable[str], inputs: dict[str, Any]) -> Plan:
    prints = {MANIFESTS_KEY: manifests_fingerprint(files)}
    for change in plan.actionable:
        prints[LIVE_PREFIX + change.address] = live_fingerprint(change)
    return replace(plan, fingerprints=prints, inputs=inputs)


def _schema() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("reconciler.data").joinpath("plan.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def read_plan(path: Path) -> Plan:
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise ReconcilerError(f"{path}: not a regular file, so not a plan file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReconcilerError(f"{path}: not a readable plan file ({e})") from None
    except RecursionError:
        raise ReconcilerError(f"{path}: not a readable plan file (nested too deeply)") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise ReconcilerError(f"{path}: not a reconciler plan (no format_version)")
    major = str(data["format_version"]).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise ReconcilerError(
            f"{path}: plan format {data['format_version']} cannot be applied by this version "
            f"(format {FORMAT_VERSION}); run plan again"
        )
    try:
        errors = sorted(jsonschema.Draft202012Validator(_schema()).iter_errors(data), key=lambda e: list(e.path))
    except RecursionError:
        raise ReconcilerError(f"{path}: invalid plan file (nested too deeply)") from None
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "(top)"
        raise ReconcilerError(f"{path}: invalid plan file at {where}: {errors[0].message}")
    return Plan.from_json(data)


def check_fresh(saved: Plan, files: Iterable[str], fresh: Plan) -> None:
    """Raise StalePlanError unless the manifests and every touched resource are as planned."""
    problems: list[str] = []
    if manifests_fingerprint(files) != saved.fingerprints.get(MANIFESTS_KEY):
        problems.append("the manifests changed since the plan was made")
    fresh_changes = {c.address: c for c in fresh.actionable}
    saved_changes = {c.address: c for c in saved.actionable}
    for address, change in saved_changes.items():
        now = fresh_changes.get(address)
        if now is None:
            problems.append(f"{address}: no longer needs a change (changed out of band?)")
        elif LIVE_PREFIX + address not in saved.fingerprints:
            problems.append(f"{address}: the plan file has no fingerprint for it")
        elif live_fingerprint(now) != saved.fingerprints[LIVE_PREFIX + address] or now.action != change.action:
            problems.append(f"{address}: its live state changed since the plan was made")
    for address in sorted(set(fresh_changes) - set(saved_changes)):
        problems.append(f"{address}: now needs a change the saved plan does not have")
    if problems:
        listed = "\n  ".join(problems[:20]) + ("\n  …" if len(problems) > 20 else "")
        raise StalePlanError(f"the saved plan is stale; run plan again:\n  {listed}")
