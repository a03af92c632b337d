"""The sandbox in its own process, and the bench's view of it through the control API.

`SandboxProcess.start()` runs `python -m reconciler sandbox serve --db DB --port 0 ...`, the stock
sandbox exactly as users run it. Everything else the bench
needs (per-kind latency, faults, seeding, request counts) goes through the control API under
`/_sandbox/` over HTTPS, authenticated with the admin token of the DB.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

_URL_LINE = re.compile(r"sandbox ARM endpoint:\s*(\S+)")
_CA_LINE = re.compile(r"CA certificate:\s*(\S+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc), 0.0 when unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class SandboxProcess:
    def __init__(self, db: Path, *, throttle_scale: float, throttling: bool = True, page_size: int = 100) -> None:
        self.db = db
        self.throttle_scale = throttle_scale
        self.throttling = throttling
        self.page_size = page_size
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.ca_cert_path = ""
        self.token = ""
        self._ssl: ssl.SSLContext | None = None

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "reconciler", "sandbox", "serve", "--db", str(self.db), "--port", "0",
                "--throttle-scale", repr(self.throttle_scale),
                "--throttling" if self.throttling else "--no-throttling",
                "--page-size", str(self.page_size)]

    def start(self, timeout: float = 60.0) -> SandboxProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=Path(__file__).resolve().parents[1])
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while not (self.url and self.ca_cert_path):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the sandbox exited before it was ready: {' '.join(self.command)}")
            if m := _URL_LINE.search(line):
                self.url = m.group(1)
            if m := _CA_LINE.search(line):
                self.ca_cert_path = m.group(1)
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start in time")
        self._ssl = ssl.create_default_context(cafile=self.ca_cert_path)
        self.token = subprocess.run(
            [sys.executable, "-m", "reconciler", "sandbox", "token", "--db", str(self.db)],
            check=True, capture_output=True, text=True).stdout.strip()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_plan_worker(self, manifests: Path, scale: float, subscriptions: tuple[str, ...] | list[str] = (),
                        shards: int = 1, env: dict[str, str] | None = None) -> dict[str, Any]:
        """One `bench/plan_worker.py` plan against this sandbox in a fresh child process (a shard:
        its subscriptions and the matrix's shard count); its JSON."""
        done = subprocess.run(
            [sys.executable, "-m", "bench.plan_worker", str(manifests), self.url, self.ca_cert_path, repr(scale),
             ",".join(subscriptions), str(shards)],
            env=dict(os.environ, RECONCILER_ACCESS_TOKEN=self.token, **(env or {})),
            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the plan worker failed: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    # -- the control API -------------------------------------------------------------------

    def _control(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_sandbox/{action}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self._ssl, timeout=120) as response:
            return json.loads(response.read() or b"null")

    def configure(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._control("PATCH", "config", changes)
        return result

    def seed(self, subscriptions: list[str], resource_groups: list[tuple[str, str, str]],
             principals: list[tuple[str, str, str]]) -> None:
        self._control("POST", "seed", {"subscriptions": subscriptions,
                                       "resourceGroups": [list(g) for g in resource_groups],
                                       "principals": [list(p) for p in principals]})

    def request_counts(self) -> dict[str, int]:
        result: dict[str, int] = self._control("GET", "requests")
        return result


#: The sandbox counts every routed request twice: under its operationId and under its kind.
KINDS = ("read", "write", "delete")


def count_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}


def operations(counts: dict[str, int]) -> int:
    """ARM requests received (every attempt, throttled and faulted ones included)."""
    return sum(counts.get(k, 0) for k in KINDS)


def by_operation(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(counts.items()) if k not in KINDS and k not in ("throttled", "faults")}
