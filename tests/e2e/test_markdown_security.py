"""A plan too big for one PR comment is abridged, but never hides who may impersonate an
identity: every federated credential's issuer and subject and every grant's principal, role
and scope stay in the comment (the plan made by the real CLI against the sandbox)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer
from tests.e2e.support import SUB, run, seed

IDENTITIES = 60
GITHUB = "https://token.actions.githubusercontent.com"


def write_estate(folder: Path) -> Path:
    folder.mkdir()
    lines = ["apiVersion: reconciler/v1", "kind: IdentitySet", "metadata: {owner: big}", "spec:",
             f"  subscription: {SUB}", "  defaults: {resourceGroup: rg-big, location: westeurope}", "  identities:"]
    for i in range(IDENTITIES):
        lines += [
            f"    - name: service-{i:03d}",
            "      tags: {component: service, tier: backend, owner-team: platform-services}",
            "      federatedCredentials:",
            f"        - {{name: main, issuer: '{GITHUB}',"
            f" subject: 'repo:contoso/service-{i:03d}:ref:refs/heads/main'}}",
            f"        - {{name: prod, issuer: '{GITHUB}', subject: 'repo:contoso/service-{i:03d}:environment:prod',"
            " audiences: ['api://custom-audience']}",
            "      roles:",
            f"        - {{role: Reader, scope: /subscriptions/{SUB}/resourceGroups/rg-big}}",
            f"        - {{role: Monitoring Reader, scope: /subscriptions/{SUB}}}",
        ]
    (folder / "big.yaml").write_text("\n".join(lines) + "\n")
    return folder


def test_abridged_comment_keeps_every_credential_subject_and_grant(
    capsys: pytest.CaptureFixture[str], sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = write_estate(tmp_path / "m")
    seed(sandbox, [manifests])
    monkeypatch.setenv("RECONCILER_ACCESS_TOKEN", sandbox.admin_token())
    code, md, err = run(capsys, "plan", str(manifests), "--format", "markdown", "--arm-endpoint", sandbox.url,
                        "--ca-cert", sandbox.ca_cert_path, "--full-plan-hint", "full plan: artifact plan.json")
    assert code == 0, err
    assert len(md) < 65_536 and "This comment is abridged" in md
    section = md[md.index("#### Credentials and access"):]
    for i in range(IDENTITIES):
        group = section[section.index(f"- identity `rg-big/service-{i:03d}`\n"):]
        group = group[:group.index("\n- ", 1)] if "\n- " in group[1:] else group
        assert f"  - `+` credential `main` · issuer `{GITHUB}` · subject " \
               f"`repo:contoso/service-{i:03d}:ref:refs/heads/main`" in group
        assert f"  - `+` credential `prod` · issuer `{GITHUB}` · subject " \
               f"`repo:contoso/service-{i:03d}:environment:prod` · audiences `api://custom-audience`" in group
        assert f"  - `+` `Reader` at `/subscriptions/{SUB}/resourceGroups/rg-big`" in group
        assert f"  - `+` `Monitoring Reader` at `/subscriptions/{SUB}`" in group
    assert md.count(f"issuer `{GITHUB}`") == 2 * IDENTITIES
    assert "Not shown" not in md
    assert re.search(r"\| identity `rg-big/service-\d{3}` \| 5 \|", md)  # the rest is counted per group
