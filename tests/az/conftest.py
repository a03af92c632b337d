"""The real Azure CLI against `reconciler sandbox serve`, set up only with `reconciler sandbox env`.

The CLI comes from RECONCILER_AZ (what `make test-az` sets, pointing into its own venv .venv-az)
or from `az` on PATH; without either every test here is skipped, so `make test` never needs it.
Each worker starts one `sandbox serve` on a free port, evaluates the set-up lines `sandbox env`
prints (cloud register, cloud set, login --identity) in bash, then runs az with the variables it
exported. Every az call runs with --debug so the test can read the HTTP status of each request.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SUB = "00000000-0000-0000-0000-0000000a2a2a"
_CALL = re.compile(r'"(GET|PUT|PATCH|DELETE|POST|HEAD) (\S+) HTTP/1\.1" (\d{3})')


def az_path() -> str | None:
    configured = os.environ.get("RECONCILER_AZ")
    if configured:  # asked for explicitly (make test-az): a missing CLI is an error, not a skip
        if not Path(configured).exists():
            pytest.fail(f"RECONCILER_AZ={configured} does not exist; `make test-az` installs it")
        return configured
    return shutil.which("az")


@dataclass
class AzResult:
    rc: int
    out: Any
    err: str
    calls: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status) to ARM

    def statuses(self, method: str, path_part: str = "") -> list[int]:
        return [s for m, p, s in self.calls if m == method and path_part.lower() in p.lower()]


@dataclass
class Az:
    exe: str
    env: dict[str, str]
    url: str
    db: str
    tenant_id: str = ""

    def __call__(self, *args: str, config_dir: str | None = None) -> AzResult:
        env = dict(self.env)
        if config_dir:
            env["AZURE_CONFIG_DIR"] = config_dir
        proc = subprocess.run([self.exe, *args, "--debug", "-o", "json"], env=env,
                              capture_output=True, text=True, timeout=120)
        calls = [(m, p.split("?")[0], int(s)) for m, p, s in _CALL.findall(proc.stderr)
                 if not p.startswith(("/msi/token", "/metadata/"))]
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
        return AzResult(proc.returncode, out, proc.stderr, calls)

    def error_code(self, result: AzResult) -> str:
        """The ARM error code az printed (its `Code: X` line)."""
        found = re.search(r"^Code: (\w+)", result.err, re.MULTILINE)
        return found.group(1) if found else ""


def _exports(script: str) -> dict[str, str]:
    found = {}
    for line in script.splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            found[name] = shlex.split(value)[0]
    return found


@pytest.fixture(scope="session")
def az(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Az]:
    exe = az_path()
    if exe is None:
        pytest.skip("the Azure CLI is not installed (no `az` on PATH and RECONCILER_AZ unset): run `make test-az`")
    work = tmp_path_factory.mktemp("az")
    db = str(work / "sandbox.db")
    reconciler = [sys.executable, "-m", "reconciler", "sandbox"]
    log = (work / "serve.log").open("w")
    serve = subprocess.Popen([*reconciler, "serve", "--db", db, "--port", "0", "--subscription", SUB,
                              "--replication-delay", "0"], stdout=log, stderr=subprocess.STDOUT)
    try:
        info = Path(f"{db}.serve.json")
        deadline = time.monotonic() + 60
        while not info.exists():  # a condition, not a fixed sleep
            if serve.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sandbox serve did not start: {(work / 'serve.log').read_text()}")
            time.sleep(0.05)
        script = subprocess.run([*reconciler, "env", "--db", db], capture_output=True, text=True, check=True).stdout
        env = {**os.environ, "PATH": f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "AZURE_CORE_COLLECT_TELEMETRY": "no", "AZURE_CORE_NO_COLOR": "true"}
        setup = subprocess.run(["bash", "-ec", script], env=env, capture_output=True, text=True, timeout=300)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        client = Az(exe, {**env, **_exports(script)}, json.loads(info.read_text())["url"], db)
        account = client("account", "show")
        assert account.rc == 0, account.err[-2000:]
        client.tenant_id = account.out["tenantId"]
        yield client
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        log.close()
        assert not Path(f"{db}.serve.json").exists()  # serve forgets its address when it stops
