"""Ctrl-C / SIGTERM during apply: the first signal stops handing out steps, waits for those in
flight, prints the summary, writes the report and exits 130 (143 for SIGTERM); a second signal
stops at once and still writes the report; applying again finishes the job.

Everything runs as a user runs it: `reconciler sandbox serve` with latency in one process,
`reconciler apply` in another (its FIC writes paced for a sandbox without throttling,
tests/paced_cli.py), a real signal sent once the progress lines show steps done."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paced_cli import PACED_CLI, pace_env

SUB = "44444444-4444-4444-4444-444444444444"
IDENTITIES = 10
STEPS = IDENTITIES * 3  # identity, its credential, its grant
GITHUB = "https://token.actions.githubusercontent.com"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    ca: str
    token: str

    def env(self) -> dict[str, str]:
        # The sandbox runs with --no-throttling: pacing FIC writes at Azure's rate would only wait.
        return {**os.environ, "RECONCILER_ACCESS_TOKEN": self.token, "PYTHONUNBUFFERED": "1",
                **pace_env(self.url, 40.0)}

    def configure(self, **settings: float) -> None:
        self._call("PATCH", "/_sandbox/config", settings)

    def writes_arrived(self) -> int:
        """Writes the sandbox has received (counted on arrival, before their latency)."""
        count = self._call("GET", "/_sandbox/requests", None).get("write", 0)
        assert isinstance(count, int)
        return count

    def _call(self, method: str, path: str, body: Mapping[str, object] | None) -> dict[str, object]:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=self.ca), timeout=30) as resp:
            assert resp.status in (200, 201), resp.status
            data = json.load(resp)
            return data if isinstance(data, dict) else {}


def reconciler(*args: str) -> list[str]:
    """`reconciler ARGS` (tests/paced_cli.py: `python -m reconciler`, paced by RECONCILER_TEST_PACE)."""
    return [sys.executable, str(PACED_CLI), *args]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    db = str(tmp_path / "serve.db")
    proc = subprocess.Popen(
        reconciler("sandbox", "serve", "--db", db, "--port", "0", "--subscription", SUB, "--no-throttling",
                   "--latency-ms", "250", "--replication-delay", "0"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        while "Press Ctrl-C" not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read() if proc.stderr else ""
            key, _, value = line.partition(":")
            lines[key.strip()] = value.strip()
        token = subprocess.run(reconciler("sandbox", "token", "--db", db), capture_output=True, text=True,
                               check=True).stdout.strip()
        server = Served(proc, lines["sandbox ARM endpoint"], lines["CA certificate"], token)
        server._call("PUT", f"/subscriptions/{SUB}/resourcegroups/rg-int?api-version=2021-04-01",
                     {"location": "westeurope"})
        yield server
    finally:
        proc.send_signal(signal.SIGINT)
        with proc:  # closes its pipes
            proc.wait(timeout=30)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    lines = ["apiVersion: reconciler/v1", "kind: IdentitySet", "metadata: {owner: interrupt}", "spec:",
             f"  subscription: {SUB}", "  defaults: {resourceGroup: rg-int, location: westeurope}",
             "  identities:"]
    for i in range(IDENTITIES):
        lines += [f"    - name: app-{i:02d}",
                  f"      federatedCredentials: [{{name: github, issuer: '{GITHUB}', subject: 'repo:c/a{i}:x'}}]",
                  f"      roles: [{{role: Reader, scope: /subscriptions/{SUB}/resourceGroups/rg-int}}]"]
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "int.yaml").write_text("\n".join(lines) + "\n")
    return folder


def start_apply(served: Served, manifests: Path, report: Path | None, cwd: Path) -> subprocess.Popen[str]:
    report_args = ["--report", str(report)] if report else []
    return subprocess.Popen(
        reconciler("apply", str(manifests), "--auto-approve", "--parallelism", "2", *report_args,
                   "--arm-endpoint", served.url, "--ca-cert", served.ca),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=served.env(), cwd=cwd)


def read_until(proc: subprocess.Popen[str], needle: str, count: int = 1) -> list[str]:
    """stderr lines up to the `count`-th containing `needle`: waits on the condition, not on time."""
    assert proc.stderr is not None
    seen, lines = 0, []
    for line in proc.stderr:
        lines.append(line)
        if needle in line:
            seen += 1
            if seen >= count:
                return lines
    raise AssertionError(f"apply ended before {count} line(s) with {needle!r}:\n{''.join(lines)}")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, rest = proc.communicate(timeout=120)
    return proc.returncode, out, rest


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_waits_for_in_flight_steps_writes_the_report_and_apply_again_finishes(
    served: Served, manifests: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    report_file = tmp_path / "report.json"
    proc = start_apply(served, manifests, report_file, tmp_path)
    before = read_until(proc, " done ", count=3)
    proc.send_signal(sig)
    rc, out, rest = finish(proc)
    err = "".join(before) + rest
    assert rc == code, out + err
    assert "Interrupted: waiting for " in err and "in-flight step(s)" in err
    assert "apply interrupted: " in err and f"report written to {report_file}" in err
    report = json.loads(report_file.read_text())
    counts = report["counts"]
    assert report["interrupted"] is True and report["ok"] is False
    assert counts["done"] >= 3 and counts["not-started"] > 0
    assert counts["interrupted"] == 0 and counts["failed"] == 0  # in-flight steps were waited for
    assert sum(counts.values()) == STEPS
    assert f"{counts['done']} done, 0 failed, 0 skipped, 0 in flight (outcome unknown), " \
           f"{counts['not-started']} not started" in err

    served.configure(latency_read_ms=0, latency_write_ms=0, latency_delete_ms=0)
    again = subprocess.run(
        reconciler("apply", str(manifests), "--auto-approve", "--arm-endpoint", served.url, "--ca-cert", served.ca),
        capture_output=True, text=True, env=served.env(), cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    # Done steps are not repeated: the second apply does exactly the rest.
    assert f"Apply complete: {STEPS - counts['done']} step(s) done." in again.stdout
    assert "Verified: a fresh plan shows no changes." in again.stdout


def test_second_signal_stops_at_once_and_still_writes_the_default_report(
    served: Served, manifests: Path, tmp_path: Path
) -> None:
    served.configure(latency_write_ms=4000)  # in-flight writes outlast the second signal
    writes_before = served.writes_arrived()
    proc = start_apply(served, manifests, None, tmp_path)
    before = read_until(proc, " done ")
    # The condition: a second write has reached ARM and waits out its latency, so a step is in
    # flight when the signals come (the bounded poll is on that condition, not on a duration).
    deadline = time.monotonic() + 60
    while served.writes_arrived() < writes_before + 2:
        assert time.monotonic() < deadline, "apply sent no second write"
        threading.Event().wait(0.05)
    proc.send_signal(signal.SIGINT)
    before += read_until(proc, "Interrupted: waiting for ")
    proc.send_signal(signal.SIGINT)
    rc, out, rest = finish(proc)
    err = "".join(before) + rest
    assert rc == 130, out + err
    report_file = tmp_path / ".reconciler" / "last-apply-report.json"
    assert f"report written to {report_file.relative_to(tmp_path)}" in err
    report = json.loads(report_file.read_text())
    counts = report["counts"]
    # Abandoned while ARM was still answering: reported as in flight, outcome unknown.
    assert counts["interrupted"] > 0 and counts["done"] >= 1 and counts["not-started"] > 0
    assert sum(counts.values()) == STEPS
    abandoned = [s for s in report["steps"] if s["status"] == "interrupted"]
    assert all("outcome is unknown" in s["detail"] for s in abandoned)
