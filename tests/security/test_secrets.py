"""Tokens never reach output: RECONCILER_ACCESS_TOKEN is checked on input (surrounding
whitespace stripped, anything else a header cannot carry refused without quoting it), and
anything token-shaped is scrubbed at the error boundary, in logs and in written reports."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.applier import FAILED, ApplyReport, StepResult
from reconciler.azure.client import ArmTarget, StaticTokenCredential, checked_token
from reconciler.azure.gateway import AzureGateway
from reconciler.cli import main
from reconciler.errors import LiveReadError
from reconciler.model import ReadScope
from reconciler.plan import Action
from reconciler.sandbox import SandboxServer
from reconciler.textsafe import REDACTED, scrub
from reconciler.workflow.files import write_report
from tests.e2e.support import SUB, run, seed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[SandboxServer, Path]]:
    """A sandbox seeded for a private copy of the example manifests."""
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", manifests)
    server = SandboxServer().start()
    try:
        seed(server, [manifests])
        yield server, manifests
    finally:
        server.stop()

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtc3ViamVjdCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_scrub_replaces_jwts_and_bearer_credentials() -> None:
    text = f"header value: 'Bearer {JWT}\\n' and token={JWT}; Bearer abcdefghijklmnopqrstuvwxyz"
    out = scrub(text)
    assert JWT not in out and "abcdefghijklmnop" not in out
    assert out.count(REDACTED) == 3
    assert scrub("a bearer token is needed") == "a bearer token is needed"


@pytest.mark.parametrize("raw", [f"{JWT}\n", f"{JWT}\r\n", f"  {JWT}\t"])
def test_surrounding_whitespace_is_stripped_from_the_token(raw: str) -> None:
    assert checked_token(raw, "RECONCILER_ACCESS_TOKEN") == JWT


@pytest.mark.parametrize("raw", [f"{JWT[:20]}\n{JWT[20:]}", f"{JWT[:20]} {JWT[20:]}", f"{JWT}é", "  \n"])
def test_a_token_a_header_cannot_carry_is_refused_without_quoting_it(raw: str) -> None:
    with pytest.raises(ValueError) as caught:
        checked_token(raw, "RECONCILER_ACCESS_TOKEN")
    assert "RECONCILER_ACCESS_TOKEN" in str(caught.value)
    assert JWT[:12] not in str(caught.value)


def test_token_with_a_trailing_newline_works_end_to_end(
    seeded: tuple[SandboxServer, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, manifests = seeded
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.admin_token() + "\r\n")
    code, out, err = run(capsys, "plan", str(manifests), "--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path)
    assert code == 0, err
    assert "Plan:" in out


def test_token_with_a_line_break_inside_is_refused_and_never_printed(
    seeded: tuple[SandboxServer, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, manifests = seeded
    token = server.admin_token()
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", token[:30] + "\n" + token[30:])
    code, out, err = run(capsys, "plan", str(manifests), "--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path)
    assert code == 1
    assert "RECONCILER_ACCESS_TOKEN" in err and "could not be reached" not in err
    assert token[:20] not in out + err


def test_an_unsendable_header_is_not_called_unreachable_and_the_token_is_scrubbed(
    seeded: tuple[SandboxServer, Path],
) -> None:
    server = seeded[0]
    # Past the input check (a credential handed in by code): the SDK's own error quotes the header.
    token = server.admin_token()
    target = ArmTarget(StaticTokenCredential(token + "\n"), server.url, server.ca_cert_path, sleeper=lambda _: None)
    with AzureGateway(target) as gateway, pytest.raises(LiveReadError) as caught:
        gateway.read_live(ReadScope(frozenset({SUB})))
    text = str(caught.value)
    assert "InvalidRequestHeader" in text and "could not be reached" not in text
    assert token[:20] not in text
    assert target.retry_stats.snapshot().retries == {}  # never worth a retry
    assert target.reachability.down is None


def test_error_boundary_scrubs_tokens(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler import cli
    from reconciler.errors import ReconcilerError

    def boom(*args: object, **kwargs: object) -> None:
        raise ReconcilerError(f"ARM said: Authorization: Bearer {JWT}")

    monkeypatch.setattr(cli, "load_manifests", boom)
    assert main(["validate", "x"]) == 1
    _, err = capsys.readouterr()
    assert JWT not in err and REDACTED in err


def test_logs_are_scrubbed() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logging.getLogger().addHandler(handler)
    try:
        main(["--version"])
        logging.getLogger("reconciler.security-test").warning("request failed: %s", f"Bearer {JWT}")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "request failed" in buffer.getvalue() and JWT not in buffer.getvalue()


def test_written_reports_are_scrubbed(tmp_path: Path) -> None:
    report = ApplyReport([StepResult("identity/s/rg/x", Action.CREATE, FAILED, f"ConnectionError: 'Bearer {JWT}'")])
    path = tmp_path / "report.json"
    write_report(report, path)
    text = path.read_text(encoding="utf-8")
    assert JWT not in text and json.loads(text)["steps"][0]["status"] == FAILED
