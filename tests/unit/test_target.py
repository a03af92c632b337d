"""Target options -> where ARM is and how tokens are asked for (no network)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials import AccessToken

from reconciler.azure.credentials import TenantCredential
from reconciler.errors import ReconcilerError
from reconciler.target import TOKEN_ENV, TargetOptions, open_gateway


@pytest.mark.parametrize(("cloud", "endpoint", "scope"), [
    ("AzureCloud", "https://management.azure.com", None),
    ("AzureUSGovernment", "https://management.usgovcloudapi.net", ("https://management.usgovcloudapi.net/.default",)),
    ("AzureChinaCloud", "https://management.chinacloudapi.cn", ("https://management.chinacloudapi.cn/.default",)),
])
def test_cloud_sets_endpoint_and_token_scope_together(
    monkeypatch: pytest.MonkeyPatch, cloud: str, endpoint: str, scope: tuple[str, ...] | None
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "not-a-real-token")
    with open_gateway(TargetOptions(cloud=cloud)) as gateway:
        assert gateway.target.endpoint == endpoint
        assert gateway.target.credential_scopes == scope


def test_unknown_cloud_and_plain_http_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "x")
    with pytest.raises(ReconcilerError, match="unknown"), open_gateway(TargetOptions(cloud="Mars")):
        pass
    with pytest.raises(ReconcilerError, match="https"), \
            open_gateway(TargetOptions(arm_endpoint="http://127.0.0.1:1")):
        pass


def test_tenant_is_asked_for_on_every_token() -> None:
    seen: list[dict[str, Any]] = []

    class Inner:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            seen.append(kwargs)
            return AccessToken("t", 0)

    TenantCredential(Inner(), "tenant-1").get_token("https://management.azure.com/.default")
    assert seen == [{"tenant_id": "tenant-1"}]
