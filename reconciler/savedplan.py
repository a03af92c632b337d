"""Saved plans: a commitment, never an instruction.

`plan --out` records what a plan was made from (manifest paths relative to the working
directory, planning options, the target) and fingerprints: one of the normalised desired state
(so comments and formatting do not matter) and one per touched resource of its live state.
`apply plan.json` re-reads the manifests and Azure, makes a fresh plan, and proceeds only if
every change of the fresh plan is identical to the saved one; it then executes the FRESH plan,
so nothing is ever written from the file's own payload. With `RECONCILER_PLAN_KEY` set, saved
plans carry an HMAC-SHA256 and apply refuses one without a valid signature.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.addresses import Address
from reconciler.errors import ReconcilerError, StalePlanError
from reconciler.model import DesiredState
from reconciler.plan import FORMAT_VERSION, Change, Plan
from reconciler.principals import DISPLAY_KEYS, PINS_KEY, repinned
from reconciler.target import TargetOptions

MANIFESTS_KEY = "manifests"
LIVE_PREFIX = "live:"
KEY_ENV = "RECONCILER_PLAN_KEY"
SIGNATURE_PREFIX = "hmac-sha256:"
# Fields of a change that do not steer apply and legitimately differ between two plans of the
# same desired and live state: the declaration's line moves with comments, and who last
# touched a resource is display only. Everything else, `before` and `after` above all, must
# be identical.
UNCOMPARED_FIELDS = frozenset({"source", "modified"})
# The options that name where a plan's writes go; `--ca-cert` only says how this machine
# trusts that endpoint, so the apply job may give its own.
TARGET_FIELDS = ("sandbox_db", "arm_endpoint", "cloud", "tenant")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- fingerprints


def _plain(value: Any) -> Any:
    """JSON-ready form of the desired model, without source locations."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name != "source"}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def canonical_desired(desired: DesiredState) -> dict[str, Any]:
    """The desired state as data, independent of comments, formatting, key order, anchors,
    the order of entries and which file declares them."""

    def entries(items: tuple[Any, ...]) -> list[Any]:
        return sorted((_plain(i) for i in items), key=lambda v: json.dumps(v, sort_keys=True))

    return {
        "identities": entries(desired.identities),
        "federated_credentials": entries(desired.federated_credentials),
        "role_assignments": entries(desired.role_assignments),
        "owners": sorted(desired.owners),
    }


def desired_fingerprint(desired: DesiredState) -> str:
    return _sha(json.dumps(canonical_desired(desired), sort_keys=True, separators=(",", ":")).encode())


def live_fingerprint(change: Change) -> str:
    """Hash of what ARM had for a resource when planned ("absent" when it did not exist)."""
    return _sha(json.dumps(change.before_fields(), sort_keys=True).encode())


def with_fingerprints(plan: Plan, desired: DesiredState, inputs: dict[str, Any]) -> Plan:
    prints = {MANIFESTS_KEY: desired_fingerprint(desired)}
    for change in plan.actionable:
        prints[LIVE_PREFIX + change.address] = live_fingerprint(change)
    # The plan's own inputs (the object ids its principal names resolved to) are kept.
    return replace(plan, fingerprints=prints, inputs={**plan.inputs, **inputs})


# ----------------------------------------------------------------------------- inputs


def _portable(path: str, cwd: Path) -> str:
    """A path as the plan records it: relative to the working directory when inside it (the
    apply job checks out elsewhere), else absolute."""
    absolute = Path(os.path.abspath(cwd / path))  # lexically: `..` counts, links are kept
    try:
        return absolute.relative_to(Path(os.path.abspath(cwd))).as_posix()
    except ValueError:
        return str(absolute)


def recorded_paths(paths: list[str], cwd: Path | None = None) -> list[str]:
    """Manifest paths for a saved plan, relative to the working directory; refused outside it."""
    cwd = cwd or Path.cwd()
    recorded = []
    for p in paths:
        portable = _portable(p, cwd)
        if Path(portable).is_absolute():
            raise ReconcilerError(
                f"plan --out: the manifest path {p} is outside the working directory {cwd}; apply "
                "only reads manifests inside it. Run plan from a directory that contains the manifests"
            )
        recorded.append(portable)
    return recorded


def saved_paths(saved: Plan, cwd: Path | None = None) -> list[str]:
    """The manifest paths of a saved plan, refused when any resolves outside the working
    directory (absolute paths elsewhere, `..`, symbolic links out): a plan file must not be
    able to point apply at manifests nobody reviewed."""
    cwd = (cwd or Path.cwd()).resolve()
    paths = saved.inputs.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise ReconcilerError("the plan file does not say which manifests it was made from; run plan again")
    for p in paths:
        if not (cwd / p).resolve().is_relative_to(cwd):
            raise ReconcilerError(
                f"the plan file names the manifest path {p!r}, which is outside the working directory "
                f"{cwd}; refusing it. Run apply from the directory plan ran in, with a plan it made"
            )
    return list(paths)


def recorded_target(target: TargetOptions, cwd: Path | None = None) -> dict[str, Any]:
    """The target options for a saved plan; file paths are kept relative to the working
    directory like the manifest paths."""
    cwd = cwd or Path.cwd()
    return {
        "sandbox_db": _portable(target.sandbox_db, cwd) if target.sandbox_db else None,
        "arm_endpoint": target.arm_endpoint,
        "ca_cert": _portable(target.ca_cert, cwd) if target.ca_cert else None,
        "cloud": target.cloud,
        "tenant": target.tenant,
        "graph_endpoint": target.graph_endpoint,
    }


def _target_key(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if name == "sandbox_db":
        return str(Path(value).resolve())
    if name == "arm_endpoint":
        return value.rstrip("/").lower()
    return value.lower() if name == "tenant" else value


def saved_target(saved: Plan, given: TargetOptions, explicit: frozenset[str]) -> TargetOptions:
    """The target to apply a saved plan to: the one recorded in it. Target options given on
    the apply command line (`explicit` names them) must name the same target, or the plan is
    refused; the real-Azure default is never chosen for a plan made elsewhere."""
    rec = saved.inputs.get("target_options")
    if not isinstance(rec, dict):
        raise ReconcilerError("the plan file does not record the target it was made against (an older "
                              "format); run plan again")
    recorded = TargetOptions(
        sandbox_db=rec.get("sandbox_db"), arm_endpoint=rec.get("arm_endpoint"), ca_cert=rec.get("ca_cert"),
        cloud=rec.get("cloud") or "AzureCloud", tenant=rec.get("tenant"),
        # Where names are looked up; apply may give its own (the pinned ids are checked anyway).
        graph_endpoint=given.graph_endpoint or rec.get("graph_endpoint"),
    )
    differ = [
        name for name in TARGET_FIELDS
        if name in explicit and (
            _target_key(name, getattr(given, name)) != _target_key(name, getattr(recorded, name))
            # an endpoint, cloud or tenant names something other than the embedded sandbox
            or (recorded.sandbox_db is not None and name != "sandbox_db"))
    ]
    if differ:
        flags = ", ".join("--" + n.replace("_", "-").replace("sandbox-db", "sandbox") for n in differ)
        raise ReconcilerError(
            f"the plan was made against {recorded.describe()}, but the options given ({flags}) name "
            f"{given.describe()}; refusing to apply it elsewhere. Apply the plan without target options "
            "to use the one it records, or make a new plan against the other target"
        )
    if "ca_cert" in explicit:
        recorded = replace(recorded, ca_cert=given.ca_cert)
    return recorded


# ----------------------------------------------------------------------------- signing, reading, writing


def plan_key() -> bytes | None:
    value = os.environ.get(KEY_ENV)
    if value is None:
        return None
    if not value.strip():
        raise ReconcilerError(f"{KEY_ENV} is set but empty; set it to the signing secret, or unset it")
    return value.encode("utf-8")


def _canonical(data: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature(data: dict[str, Any], key: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(key, _canonical(data), hashlib.sha256).hexdigest()


def dumps_saved(plan: Plan, key: bytes | None) -> str:
    """The saved-plan file: the plan's JSON, signed when a key is set."""
    data = plan.to_json()
    if key is not None:
        data["signature"] = signature(data, key)
    return json.dumps(data, indent=2) + "\n"


def _schema() -> dict[str, Any]:
    from importlib import resources

    text = resources.files("reconciler.data").joinpath("plan.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def read_plan(path: Path, key: bytes | None = None) -> Plan:
    """Read a saved plan; with `key`, refuse it unless its signature is valid."""
    if path.exists() and not path.is_file():  # a FIFO or device would block or never end
        raise ReconcilerError(f"{path}: not a regular file, so not a plan file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ReconcilerError(f"{path}: not a readable plan file (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReconcilerError(f"{path}: not a readable plan file ({str(e)[:200]})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise ReconcilerError(f"{path}: not a reconciler plan (no format_version)")
    if key is not None:
        given = data.get("signature")
        if not isinstance(given, str):
            raise ReconcilerError(f"{path}: the plan is not signed, and {KEY_ENV} is set: refusing it. "
                                  f"Make the plan with {KEY_ENV} set to the same secret")
        if not hmac.compare_digest(given.encode("utf-8"), signature(data, key).encode("utf-8")):
            raise ReconcilerError(f"{path}: the plan's signature is not valid for {KEY_ENV}: it was altered "
                                  "or signed with another key; refusing it")
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
    try:
        return Plan.from_json(data)
    except ValueError as e:  # a change's before or after lacks a field of its type
        raise ReconcilerError(f"{path}: invalid plan file: {e}; run plan again") from None


# ----------------------------------------------------------------------------- the commitment check


def _entry(address: str) -> str:
    """A short name of what an address declares, for messages."""
    try:
        parsed = Address.parse(address)
    except ValueError:
        return address
    if parsed.kind == "federatedCredential":
        return f"federated credential {parsed.resource_group}/{parsed.identity_name}/{parsed.credential}"
    if parsed.kind == "identity":
        return f"identity {parsed.resource_group}/{parsed.identity_name}"
    return address


def _file_of(change: Change) -> str:
    return change.source.rsplit(":", 2)[0] if change.source else "(manifests)"


def _compared(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    """A change's before/after without the display info principals.with_names adds (a group
    renamed between plan and apply changes no grant)."""
    principal = (fields or {}).get("principal")
    if fields is None or not isinstance(principal, dict):
        return fields
    return {**fields, "principal": {k: v for k, v in principal.items() if k not in DISPLAY_KEYS}}


def _dict_diff(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    old, new = _compared(old), _compared(new)
    if old == new:
        return []
    if old is None or new is None:
        return [name]
    return [f"{name}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def field_differences(saved: Change, fresh: Change) -> list[str]:
    """Every compared field in which two changes of one address differ ("after.roleDefinitionId")."""
    old, new = saved.to_json(), fresh.to_json()
    out: list[str] = []
    for name in old:
        if name in UNCOMPARED_FIELDS or (name == "reason_code" and old[name] is None):
            continue  # a plan made before format 1.3 has no reason codes to compare
        if name in ("before", "after"):
            out += _dict_diff(name, old[name], new[name])
        elif old[name] != new[name]:
            out.append(name)
    return out


def manifest_differences(saved: Plan, fresh: Plan) -> list[str]:
    """What changed in the desired state, by file and entry, read from the `after` of the
    declared entries of both plans (every declared entry has a change, no-op included)."""
    def declared(plan: Plan) -> dict[str, Change]:
        return {c.address: c for c in plan.changes if c.after is not None}

    old, new = declared(saved), declared(fresh)
    out: list[str] = []
    for address in sorted(set(old) | set(new)):
        was, now = old.get(address), new.get(address)
        if was is None and now is not None:
            out.append(f"{_file_of(now)}: {_entry(address)}: added")
        elif now is None and was is not None:
            out.append(f"{_file_of(was)}: {_entry(address)}: removed")
        elif was is not None and now is not None and _compared(was.after_fields()) != _compared(now.after_fields()):
            old_after, new_after = _compared(was.after_fields()) or {}, _compared(now.after_fields()) or {}
            fields = [k for k in sorted(set(old_after) | set(new_after)) if old_after.get(k) != new_after.get(k)]
            out.append(f"{_file_of(now)}: {_entry(address)}: {', '.join(fields)} changed")
    if set(saved.owners) != set(fresh.owners):
        out.append(f"owners changed: {sorted(saved.owners)} -> {sorted(fresh.owners)}")
    return out or ["the desired state changed (a setting no planned change shows)"]


def commitment_problems(saved: Plan, desired: DesiredState, fresh: Plan) -> list[str]:
    """Why a saved plan may not be applied now; empty when every change of a fresh plan is
    identical to the saved one and the desired state is the one it was made from."""
    problems: list[str] = []
    moved = repinned(saved.inputs.get(PINS_KEY) or {}, fresh.inputs.get(PINS_KEY) or {})
    if moved:
        # Same manifests, but a name means another object now: every grant to it would move.
        return moved
    if desired_fingerprint(desired) != saved.fingerprints.get(MANIFESTS_KEY):
        # Every change may follow from that; the desired state is what to review first.
        return ["the manifests' desired state changed since the plan was made:"] + [
            "  " + d for d in manifest_differences(saved, fresh)]
    fresh_changes = {c.address: c for c in fresh.actionable}
    saved_changes = {c.address: c for c in saved.actionable}
    for address, change in sorted(saved_changes.items()):
        now = fresh_changes.get(address)
        if now is None:
            problems.append(f"{address}: a fresh plan has no {change.action.value} for it "
                            "(changed out of band, or the plan file was edited)")
            continue
        differ = field_differences(change, now)
        if not differ:
            continue
        why = ""
        if saved.fingerprints.get(LIVE_PREFIX + address) != live_fingerprint(change):
            why = " (the plan file was edited)"
        elif all(d == "action" or d.startswith("before") for d in differ):
            why = " (its live state changed since the plan was made, or the plan file was edited)"
        problems.append(f"{address}: differs from a fresh plan in {', '.join(differ)}{why}")
    for address in sorted(set(fresh_changes) - set(saved_changes)):
        problems.append(f"{address}: now needs a {fresh_changes[address].action.value} the saved plan does not have")
    return problems


def check_fresh(saved: Plan, desired: DesiredState, fresh: Plan) -> None:
    """Raise StalePlanError unless a fresh plan commits to exactly the saved changes."""
    problems = commitment_problems(saved, desired, fresh)
    if problems:
        listed = "\n  ".join(problems[:30]) + ("\n  …" if len(problems) > 30 else "")
        raise StalePlanError(
            "the saved plan is stale or was altered: it is not what the manifests and Azure call for now, "
            f"so nothing was applied. Make a new plan and review it:\n  {listed}"
        )
