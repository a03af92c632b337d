"""Where a run's tokens come from: a static bearer token, or DefaultAzureCredential in a cloud
(optionally pinned to one tenant). The SDK's credential types stay behind this module."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from reconciler.azure.client import StaticTokenCredential, checked_token, close_credential
from reconciler.azure.clouds import Cloud
from reconciler.errors import ReconcilerError

# What the rest of the package calls a credential, named here so it needs no SDK import.
Credential = TokenCredential


class TenantCredential:
    """Asks every token for one tenant (`--tenant`), whichever source DefaultAzureCredential
    ends up using (Azure CLI, workload identity, managed identity…)."""

    def __init__(self, inner: TokenCredential, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        kwargs.setdefault("tenant_id", self._tenant)
        return self._inner.get_token(*scopes, **kwargs)

    def close(self) -> None:
        close_credential(self._inner)


def default_credential(cloud: Cloud, tenant: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    tenant_kwargs = {
        f"{source}_tenant_id": tenant
        for source in ("workload_identity", "interactive_browser", "shared_cache", "visual_studio_code", "broker")
    } if tenant else {}
    credential: TokenCredential = DefaultAzureCredential(authority=cloud.authority, **tenant_kwargs)
    return TenantCredential(credential, tenant) if tenant else credential


def static_credential(token: str, source: str) -> TokenCredential:
    """A bearer token handed to the run (`source` names where it came from, for the error)."""
    try:
        return StaticTokenCredential(checked_token(token, source))
    except ValueError as e:
        raise ReconcilerError(str(e)) from None
