"""Which files are manifests, and their bytes read without surprises.

Paths given on the command line name files (read whatever their suffix) or directories (their
`*.yaml` / `*.yml` files, recursively, sorted, skipping dot-files and dot-directories such as
`.git`); a file reached twice (a symlink, a path given twice) counts once. A path that names
nothing, or a directory without manifests, is an error, never an empty desired state.

Reading refuses what is not a regular file (a FIFO would block forever, a device never ends)
and files over MAX_FILE_BYTES; parsing the bytes is yaml_source's business.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from reconciler.errors import Diagnostic, SourceLocation

MANIFEST_SUFFIXES = (".yaml", ".yml")
# With yaml_source's bounds (MAX_DEPTH, MAX_NODES, ...), keeps time and memory proportional to
# a real estate whatever a file holds.
MAX_FILE_BYTES = 10 * 1024 * 1024


def collect_files(paths: Sequence[str | Path], diagnostics: list[Diagnostic]) -> list[str]:
    """The manifest files named by `paths`, in a stable order, each once, spelled as given.

    A file named explicitly is read whatever its suffix; directories contribute their
    `*.yaml` / `*.yml` files."""
    files: list[str] = []
    seen: set[str] = set()

    def add(file: str) -> None:
        real = os.path.realpath(file)
        if real not in seen:
            seen.add(real)
            files.append(file)

    if not paths:
        diagnostics.append(Diagnostic(None, "no manifest paths given", _PATH_HINT))
    for given in paths:
        # Path("") is ".", so the empty string must be caught before it becomes a Path.
        text = given if isinstance(given, str) else str(given)
        if not text.strip():
            diagnostics.append(Diagnostic(None, "empty manifest path given", _PATH_HINT))
        elif os.path.isfile(text):
            add(text)
        elif os.path.isdir(text):
            found = _walk(text)
            if not found:
                diagnostics.append(
                    Diagnostic(
                        None,
                        f"{text}: no *.yaml or *.yml manifests in this directory",
                        "an empty directory never means 'delete everything'; to delete every "
                        "identity of an owner, keep its IdentitySet with `identities: []` and "
                        "`defaults.resourceGroup` naming their resource group",
                    )
                )
            for file in found:
                add(file)
        elif os.path.exists(text):
            diagnostics.append(Diagnostic(None, f"{text}: not a file or directory", _PATH_HINT))
        else:
            diagnostics.append(Diagnostic(None, f"{text}: no such file or directory", _PATH_HINT))
    return files


_PATH_HINT = "pass manifest files or directories that contain *.yaml / *.yml manifests"


def _walk(root: str) -> list[str]:
    found: list[str] = []
    for directory, subdirs, names in os.walk(root):
        # Skip .git, .github and the like; sort so the order (and the output) is stable.
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name.lower().endswith(MANIFEST_SUFFIXES):
                found.append(os.path.join(directory, name))
    return found


def _not_regular(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return kind
    return "not a regular file"


def read_bytes(path: str) -> tuple[bytes | None, Diagnostic | None]:
    """The bytes of one regular file of at most MAX_FILE_BYTES, or None and why not."""
    where = SourceLocation(path, 1, 1)
    try:
        # Never open what is not a regular file: a FIFO blocks the reader forever, a device
        # never ends. Checked before opening (opening some devices acts) and again on the open
        # file, which is opened non-blocking so that a FIFO swapped in between cannot hang us.
        kind = _not_regular(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as handle:
                kind = _not_regular(os.fstat(fd).st_mode)
                data = handle.read(MAX_FILE_BYTES + 1) if kind is None else b""
    except OSError as exc:
        return None, Diagnostic(where, f"cannot read file: {exc.strerror or exc}")
    if kind is not None:
        return None, Diagnostic(where, f"not a regular file ({kind}); it is not read",
                                "keep only manifest files under the given paths")
    if len(data) > MAX_FILE_BYTES:
        return None, Diagnostic(where, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", "split it")
    return data, None


__all__ = ["MANIFEST_SUFFIXES", "MAX_FILE_BYTES", "collect_files", "read_bytes"]
