"""Which installed distribution this `reconciler` import package belongs to.

The distribution is `managed-identity-reconciler`: the name `reconciler` on PyPI belongs to an
unrelated project. The import package (and the command) stay `reconciler`, a top-level name that
project also installs. Installed into one environment, the two overwrite each other's files, so
`reconciler --version` checks where `reconciler` came from before it answers (docs/releasing.md).
"""

from __future__ import annotations

import base64
import hashlib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "managed-identity-reconciler"
PACKAGE = "reconciler"
INSTALL_HINT = f"install it on its own: `pipx install {DISTRIBUTION}` or `uv tool install {DISTRIBUTION}`"


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed_version() -> str | None:
    """The version in the package metadata, or None when the distribution is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _provides_package(dist: metadata.Distribution) -> bool:
    top_level = dist.read_text("top_level.txt")
    if top_level is not None:
        return PACKAGE in top_level.split()
    return any(f.parts[:1] == (PACKAGE,) for f in dist.files or [])


def _other_owners() -> list[str]:
    """Other installed distributions that also provide the top-level package `reconciler`, as
    `name version (where)`: a stale `reconciler.egg-info` of a source tree shows up here too."""
    return sorted({f"{dist.metadata['Name']} {dist.version} (in {dist.locate_file('')})"
                   for dist in metadata.distributions()
                   if _canonical(dist.metadata["Name"] or "") != DISTRIBUTION and _provides_package(dist)})


def _record_mismatch(dist: metadata.Distribution, imported: Path) -> str | None:
    """When the distribution's RECORD lists `reconciler/__init__.py` (a wheel install, not an
    editable one), the imported file must be that file, with the recorded hash."""
    init = next((f for f in dist.files or [] if f.as_posix() == f"{PACKAGE}/__init__.py"), None)
    if init is None:
        return None  # editable install: the package lives in the source tree
    installed = Path(str(dist.locate_file(init))).resolve()
    if installed != imported.resolve():
        return f"`{PACKAGE}` was imported from {imported.parent}, not from {DISTRIBUTION}'s {installed.parent}"
    if init.hash is not None and init.hash.mode == "sha256":
        digest = base64.urlsafe_b64encode(hashlib.sha256(installed.read_bytes()).digest()).rstrip(b"=").decode()
        if digest != init.hash.value:
            return f"{installed} is not the file {DISTRIBUTION} installed (another distribution overwrote it)"
    return None


def provenance_problem(imported: Path) -> str | None:
    """Why the `reconciler` package whose `__init__.py` is `imported` is not (only) ours, or None."""
    version = installed_version()
    if version is None:
        return (f"the distribution {DISTRIBUTION} is not installed in this environment, so `{PACKAGE}` "
                f"(imported from {imported.parent}) is not ours or not installed; {INSTALL_HINT}")
    others = _other_owners()
    if others:
        return (f"the import package `{PACKAGE}` is installed by {DISTRIBUTION} and also by "
                f"{', '.join(others)}; distributions sharing an import package overwrite each other's "
                f"files. Uninstall it and reinstall {DISTRIBUTION}, or {INSTALL_HINT}")
    return _record_mismatch(metadata.distribution(DISTRIBUTION), imported)
