"""Fail fast when ARM goes away mid-apply: the endpoint (a TCP relay in front of the sandbox)
is closed after a few steps; the run stops handing out steps, reports every step not started,
and the next run resumes and converges.

Real SDK clients over HTTPS; the bounds (attempts and seconds before ARM counts as gone) are
made small through `FailFast`, and retries do not sleep, so the test takes seconds."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.applier import DONE, SKIPPED, StepResult, apply_plan
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.azure.retry import FailFast, Reachability
from reconciler.manifest.loader import load_manifests
from reconciler.plan import Change
from reconciler.planner import make_plan
from reconciler.roles import RoleCatalog
from reconciler.sandbox import SandboxServer
from tests.e2e.support import E2E_CONFIG, SUB, gateway_for, seed

IDENTITIES = 30
PARALLELISM = 4
KILL_AFTER = 6
GITHUB = "https://token.actions.githubusercontent.com"


class Relay:
    """A TCP relay to the sandbox: closing it refuses new connections and resets open ones,
    as an endpoint that goes away does."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                if self.closed:  # accepted while close() ran: refuse it like the rest
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            self.closed = True
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def write_manifests(folder: Path) -> Path:
    folder.mkdir()
    lines = [
        "apiVersion: reconciler/v1", "kind: IdentitySet", "metadata: {owner: ff}", "spec:",
        f"  subscription: {SUB}", "  defaults: {resourceGroup: rg-ff, location: westeurope}", "  identities:",
    ]
    for i in range(IDENTITIES):
        lines += [
            f"    - name: app-{i:03d}",
            "      federatedCredentials:",
            f"        - {{name: github, issuer: '{GITHUB}', subject: 'repo:c/a{i}:x'}}",
            "      roles:",
            f"        - {{role: Reader, scope: /subscriptions/{SUB}/resourceGroups/rg-ff}}",
        ]
    (folder / "ff.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SandboxServer]:
    # FIC limits loosened as for every e2e test (support.E2E_CONFIG): the subject here is the
    # relay going away, and the run that resumes paces itself like this sandbox.
    sandbox = SandboxServer(config=E2E_CONFIG).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


class KillAfter:
    """Closes the relay once `count` steps have finished, and counts steps started after."""

    def __init__(self, relay: Relay, count: int) -> None:
        self.relay, self.count = relay, count
        self.finished = 0
        self.started_after_kill = 0
        self.killed = False

    def step_started(self, change: Change) -> None:
        if self.killed:
            self.started_after_kill += 1

    def step_finished(self, result: StepResult) -> None:
        self.finished += 1
        if self.finished == self.count:
            self.relay.close()
            self.killed = True


def test_apply_stops_handing_out_steps_when_arm_goes_away_and_the_next_run_resumes(
    server: SandboxServer, tmp_path: Path
) -> None:
    folder = write_manifests(tmp_path / "m")
    seed(server, [folder])
    desired, _ = load_manifests([folder], RoleCatalog())
    relay = Relay(server.port)
    target = ArmTarget(
        StaticTokenCredential(server.admin_token()), f"https://127.0.0.1:{relay.port}", server.ca_cert_path,
        budget=None, sleeper=lambda _: None, reachability=Reachability(FailFast(attempts=3, seconds=0.0)),
    )
    with AzureGateway(target) as gateway:
        plan = make_plan(desired, gateway.read_live(desired.read_scope()))
        total = len(plan.actionable)
        assert total == 3 * IDENTITIES
        hook = KillAfter(relay, KILL_AFTER)
        report = apply_plan(plan, gateway, parallelism=PARALLELISM, reporter=hook, abort=gateway.unreachable)

        assert gateway.unreachable() is not None
        assert report.stopped == gateway.unreachable()
        assert not report.ok
        counts = report.counts()
        assert counts["done"] >= KILL_AFTER - PARALLELISM
        # Only steps already handed out (at most one per worker, plus the ones handed out before
        # the failures added up) ran after the endpoint went away; the rest never started.
        assert hook.started_after_kill <= 2 * PARALLELISM
        not_started = [r for r in report.results if r.status == SKIPPED and r.detail.startswith("not started: ARM")]
        assert len(not_started) >= total - KILL_AFTER - 3 * PARALLELISM
        assert "stopped" in report.to_json()

    # The next run, with ARM back, resumes: it does only what is left, then nothing is left.
    fresh = gateway_for(server)
    again = make_plan(desired, fresh.read_live(desired.read_scope()))
    assert 0 < len(again.actionable) <= total - counts["done"]
    resumed = apply_plan(again, fresh, parallelism=PARALLELISM, abort=fresh.unreachable)
    assert resumed.ok and resumed.stopped is None
    final = make_plan(desired, fresh.read_live(desired.read_scope()))
    assert not final.has_changes
    assert all(r.status == DONE for r in resumed.results)


def test_reachability_needs_consecutive_failures_over_time() -> None:
    now = [0.0]
    reach = Reachability(FailFast(attempts=3, seconds=10.0), clock=lambda: now[0])
    for _ in range(5):
        reach.failed(ConnectionRefusedError("refused"))
    assert reach.down is None  # many failures, but within seconds: a blip
    reach.connected()
    now[0] = 11.0
    reach.failed(ConnectionRefusedError("refused"))
    now[0] = 30.0
    reach.failed(ConnectionRefusedError("refused"))
    assert reach.down is None  # a response reset the count: only two since
    reach.failed(ConnectionRefusedError("refused"))
    assert reach.down is not None and "3 consecutive attempts" in reach.down


def test_cli_apply_writes_the_report_and_exits_1_when_arm_goes_away(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler import cli
    from reconciler.azure import retry
    from reconciler.progress import LineReporter

    folder = write_manifests(tmp_path / "m")
    seed(server, [folder])
    relay = Relay(server.port)
    monkeypatch.setattr(retry, "DEFAULT_FAIL_FAST", FailFast(attempts=3, seconds=0.0))

    class Killing(LineReporter):
        finished = 0

        def step_finished(self, result: StepResult) -> None:
            super().step_finished(result)
            Killing.finished += 1
            if Killing.finished == KILL_AFTER:
                relay.close()

    monkeypatch.setattr("reconciler.progress.LineReporter", Killing)
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.admin_token())
    report = tmp_path / "report.json"
    code = cli.main(["apply", str(folder), "--arm-endpoint", f"https://127.0.0.1:{relay.port}",
                     "--ca-cert", server.ca_cert_path, "--auto-approve", "--parallelism", str(PARALLELISM),
                     "--report", str(report)])
    _, err = capsys.readouterr()
    assert code == 1
    assert "Stopped handing out steps" in err and "could not be reached" in err
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["ok"] is False and data["stopped"].startswith("ARM could not be reached")
    assert data["counts"]["skipped"] >= 3 * IDENTITIES - KILL_AFTER - 3 * PARALLELISM
