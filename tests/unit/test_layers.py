"""The edges between layers: only the adapter (reconciler/azure) imports the Azure SDK, the
sandbox imports nothing from the core, and `validate`, which runs in every pre-commit hook,
loads neither the SDK nor the sandbox server."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import reconciler

PACKAGE = Path(reconciler.__file__).resolve().parent
# The adapter owns the SDK; the sandbox stands alone and may use what it likes.
ALLOWED = ("azure", "sandbox")
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def sdk_imports(source: str) -> list[str]:
    """Every `azure.*` module a source imports: at module level, in functions, under
    TYPE_CHECKING alike (relative imports stay inside reconciler)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{n} (line {node.lineno})" for n in names if n.split(".")[0] == "azure"]
    return found


def test_the_check_sees_imports_wherever_they_are() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import reconciler.azure.clouds\n"
        "from reconciler.azure import credentials\n"
        "if TYPE_CHECKING:\n    from azure.core.credentials import TokenCredential\n"
        "def f():\n    import azure.identity\n    from azure.mgmt.msi import models\n"
    )
    assert sdk_imports(source) == ["azure.core.credentials (line 5)", "azure.identity (line 7)",
                                   "azure.mgmt.msi (line 8)"]


def test_only_the_adapter_imports_the_azure_sdk() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in ALLOWED
        for name in sdk_imports(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "move SDK use under reconciler/azure/"


def test_validate_loads_neither_the_sdk_nor_the_sandbox_server() -> None:
    code = (
        "import sys\n"
        "from reconciler.cli import main\n"
        f"code = main(['validate', {str(MANIFESTS)!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'azure' or m.startswith(("
        "'reconciler.sandbox.server', 'reconciler.azure.client', 'reconciler.azure.gateway', 'reconciler.workflow')))\n"
        "print(code, loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Valid:" in run.stdout
    assert run.stdout.splitlines()[-1] == "0 []"


def core_imports(source: str, package: str = "reconciler.sandbox") -> list[str]:
    """Every module of reconciler outside reconciler.sandbox that a source of `package` imports,
    relative imports resolved against `package`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names = [f"{base}.{a.name}" for a in node.names] if base == "reconciler" else [base]
        else:
            continue
        found += [f"{n} (line {node.lineno})" for n in names
                  if n.split(".")[0] == "reconciler" and not n.startswith("reconciler.sandbox")]
    return found


def test_the_sandbox_check_sees_core_imports() -> None:
    source = ("import reconciler.sandbox.store\nfrom reconciler.sandbox import tokens\nfrom . import paging\n"
              "def f():\n    from reconciler.model import IdentityKey\n    from reconciler import plan\n"
              "    from ... import errors\n    from ..scopes import key\n    from .. import roles\n")
    assert core_imports(source, "reconciler.sandbox.providers") == [
        "reconciler.model (line 5)", "reconciler.plan (line 6)", "reconciler.errors (line 7)"]


def test_the_sandbox_imports_nothing_from_the_core() -> None:
    # The emulator must behave like ARM, not like our idea of ARM: sharing the core's parsing
    # or models would let one misunderstanding pass on both sides of the wire.
    sandbox = PACKAGE / "sandbox"
    offenders = [f"{path.relative_to(PACKAGE)}: {name}" for path in sorted(sandbox.rglob("*.py"))
                 for name in core_imports(path.read_text(encoding="utf-8"), _package_of(path))]
    assert offenders == [], "the sandbox stands alone: copy what it needs into reconciler/sandbox/"


def _package_of(path: Path) -> str:
    """The dotted package a module file belongs to (an __init__ is its own package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1])
