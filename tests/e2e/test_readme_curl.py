"""The README's curl examples work against the sandbox, exactly as written (only the endpoint,
database and placeholders are substituted)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer

REPO = Path(__file__).resolve().parents[2]
SUB = "00000000-0000-0000-0000-000000000001"
PRINCIPAL = "66666666-6666-6666-6666-666666666666"


def readme_curl_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("The REST calls people make by hand work with curl:")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "README lost its curl example"
    return block.group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed on this machine")
def test_readme_curl_examples_succeed(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    server = SandboxServer(db_path=str(db)).start()
    try:
        server.seed(subscriptions=[SUB], principals=[(PRINCIPAL, "User", "alice")])
        script = readme_curl_block()
        script = re.sub(r"^DB=\S+;", f"DB={db};", script, flags=re.M)
        script = re.sub(r"URL=https://127.0.0.1:8443;", f"URL={server.url};", script)
        script = script.replace("<principalId from the identity PUT>", PRINCIPAL)
        script = script.replace("$(uuidgen)", str(uuid.uuid4()))
        # report each call's status instead of its body
        script = script.replace('--cacert $CA)', '--cacert $CA -s -o /dev/null -w "%{http_code}\\n")')
        reconciler = f"{sys.executable} -m reconciler"
        script = script.replace("$(reconciler ", f"$({reconciler} ")
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        codes = done.stdout.split()
        assert len(codes) == 7, done.stdout
        assert all(code.startswith("2") for code in codes), codes
    finally:
        server.stop()
