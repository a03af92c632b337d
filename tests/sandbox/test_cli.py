"""`reconciler sandbox serve` and `token`, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from typer.testing import CliRunner

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.cli import sandbox_app

SUB = "00000000-0000-0000-0000-00000000eeee"


def test_token_command_prints_a_token_the_server_accepts(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with SandboxServer(db_path=db).start() as srv:
        srv.seed(subscriptions=[SUB], principals=[("33333333-3333-3333-3333-333333333333", "User", "carol")])
        runner = CliRunner()
        admin = runner.invoke(sandbox_app, ["token", "--db", db])
        assert admin.exit_code == 0, admin.output
        carol = runner.invoke(sandbox_app, ["token", "--db", db, "--principal", "carol"])
        assert carol.exit_code == 0
        ctx = ssl.create_default_context(cafile=srv.ca_cert_path)
        req = urllib.request.Request(f"{srv.url}/subscriptions/{SUB}?api-version=2022-12-01",
                                     headers={"Authorization": f"Bearer {admin.output.strip()}"})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            assert json.load(resp)["subscriptionId"] == SUB
        missing = runner.invoke(sandbox_app, ["token", "--db", db, "--principal", "nobody"])
        assert missing.exit_code == 1


def test_token_command_without_state_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(sandbox_app, ["token", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1


def test_serve_prints_url_and_ca_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = str(tmp_path / "serve.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from reconciler.sandbox.cli import sandbox_app; sandbox_app()",
         "serve", "--db", db, "--port", "0", "--subscription", SUB, "--page-size", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        lines = {}
        while "Press Ctrl-C" not in (line := proc.stdout.readline()):
            assert line, proc.stderr.read() if proc.stderr else ""
            key, _, value = line.partition(":")
            lines[key.strip()] = value.strip()
        url, ca = lines["sandbox ARM endpoint"], lines["CA certificate"]
        assert "page_size=5" in lines["settings"]
        token = CliRunner().invoke(sandbox_app, ["token", "--db", db]).output.strip()
        req = urllib.request.Request(f"{url}/subscriptions/{SUB}?api-version=2022-12-01",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGINT)
        with proc:  # closes its pipes
            assert proc.wait(timeout=20) == 0
