"""Files a workflow writes (saved plans, apply reports): checked before anything is read from
or written to Azure, written with errors that name the option."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reconciler.applier import ApplyReport
from reconciler.errors import ReconcilerError
from reconciler.textsafe import scrub

# Where a failed apply's report goes when --report names no file.
DEFAULT_REPORT = Path(".reconciler") / "last-apply-report.json"


def check_output(path: Path, option: str) -> None:
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


def write_output(path: Path, text: str, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ReconcilerError(f"{option} {path}: cannot write it: {e.strerror or e}") from None


def write_report(report: ApplyReport, path: Path, verified: bool | None = None) -> None:
    """`verified`: whether a fresh plan after apply was empty (None: not checked yet). The
    report is `ok` only when every step is done and verification did not fail."""
    data = report.to_json()
    data["ok"] = bool(data["ok"]) and verified is not False
    data["verified"] = verified
    # Step details quote ARM and SDK messages: scrubbed, as every error that leaves the tool.
    write_output(path, scrub(json.dumps(data, indent=2)) + "\n", "--report")
