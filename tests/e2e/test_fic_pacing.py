"""Apply paces FIC writes to the FIC API's real limits (one write per identity every 4 s, two per
second per subscription; Microsoft's FIC page), so a sandbox with Azure's defaults never answers 429."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import run, seed


def test_apply_against_the_real_fic_limits_gets_no_429(capsys: pytest.CaptureFixture[str], manifests: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with SandboxServer().start() as server:  # Azure's defaults, FIC API limits included
        seed(server, [manifests])
        monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", server.admin_token())
        env = ["--arm-endpoint", server.url, "--ca-cert", server.ca_cert_path]
        code, out, err = run(capsys, "apply", str(manifests), "--auto-approve", *env)
        assert code == 0, err + out
        counts = server.request_counts()
        # Two identities get two credentials each: their second writes had to wait, not retry.
        assert counts.get("throttled", 0) == 0
        assert counts["FederatedIdentityCredentials_CreateOrUpdate"] == 5
