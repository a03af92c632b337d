"""Names as declared reach ARM as declared (issue 11): addresses are lower-cased keys, but an
identity declared `RG-Pay/Payments-API` is written to, and its credentials under, exactly that path.

ARM (and the sandbox) compare these names case-insensitively, so the stored resources cannot tell;
what can is the request path the sandbox received from the real SDK clients over HTTPS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from reconciler.sandbox import SandboxServer
from reconciler.sandbox.app import Response, SandboxApp
from tests.e2e.support import SUB, run, seed

MANIFEST = f"""apiVersion: reconciler/v1
kind: IdentitySet
metadata: {{owner: payments}}
spec:
  subscription: {SUB}
  defaults: {{resourceGroup: RG-Pay, location: westeurope}}
  identities:
    - name: Payments-API
      federatedCredentials:
        - name: GitHub-Main
          issuer: https://token.actions.githubusercontent.com
          subject: repo:contoso/payments:ref:refs/heads/main
"""
IDENTITY_PATH = (f"/subscriptions/{SUB}/resourceGroups/RG-Pay/providers/Microsoft.ManagedIdentity/"
                 "userAssignedIdentities/Payments-API")


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Method and decoded path of every PUT and DELETE the sandbox answers."""
    seen: list[str] = []
    handle = SandboxApp.handle

    def recording(app: SandboxApp, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        if method in ("PUT", "DELETE"):
            seen.append(f"{method} {unquote(urlsplit(target).path)}")
        return handle(app, method, target, headers, body)

    monkeypatch.setattr(SandboxApp, "handle", recording)
    yield seen


def test_identity_and_credential_are_written_under_the_names_as_declared(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, seeded: SandboxServer, cli_env: list[str],
    writes: list[str],
) -> None:
    path = tmp_path / "pay.yaml"
    path.write_text(MANIFEST, encoding="utf-8")
    seed(seeded, [path])
    code, out, err = run(capsys, "apply", str(path), "--auto-approve", *cli_env)
    assert code == 0, out + err
    assert f"PUT {IDENTITY_PATH}" in writes
    assert f"PUT {IDENTITY_PATH}/federatedIdentityCredentials/GitHub-Main" in writes, writes
    # and nothing under the lower-cased key
    assert not [w for w in writes if "/rg-pay/" in w or "payments-api" in w], writes
    # the plan's address stays the lower-cased key, and the next plan is empty
    code, out, err = run(capsys, "plan", str(path), "--detailed-exitcode", *cli_env)
    assert code == 0, out + err
