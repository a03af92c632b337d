"""The sandbox must not share code with the product it tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import reconciler.sandbox

PACKAGE = Path(reconciler.sandbox.__file__).resolve().parent


def test_sandbox_sources_import_only_stdlib_cryptography_typer_and_themselves() -> None:
    allowed_roots = set(sys.stdlib_module_names) | {"cryptography", "typer"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # relative imports stay inside reconciler.sandbox
            for name in names:
                root = name.split(".")[0]
                if name.startswith("reconciler.sandbox") or root in allowed_roots:
                    continue
                offenders.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert offenders == []


def test_importing_the_sandbox_loads_no_other_reconciler_module() -> None:
    code = (
        "import sys, reconciler\n"
        "before = set(sys.modules)\n"
        "import reconciler.sandbox, reconciler.sandbox.cli\n"
        "from reconciler.sandbox.roles import builtin_roles\n"
        "assert len(builtin_roles()) == 928\n"
        "new = sorted(m for m in set(sys.modules) - before if m.startswith('reconciler'))\n"
        "print('\\n'.join(m for m in new if not m.startswith(('reconciler.sandbox', 'reconciler.data'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
