"""Turn the target options of a command into a gateway to ARM.

    --sandbox [DB]         the embedded sandbox: a local HTTPS ARM started in this process on
                           the state file DB, seeded with what the manifests reference
    --arm-endpoint URL     any ARM-compatible endpoint (`reconciler sandbox serve`, Azure Stack);
                           bearer token from RECONCILER_ACCESS_TOKEN, else DefaultAzureCredential
    (neither)              real Azure through DefaultAzureCredential
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from reconciler.azure.budget import BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential
from reconciler.azure.gateway import AzureGateway
from reconciler.azure.graph import GRAPH_ENDPOINTS, GraphTarget, graph_scope
from reconciler.errors import ReconcilerError
from reconciler.model import DesiredState

DEFAULT_SANDBOX_DB = ".reconciler/sandbox.db"
TOKEN_ENV = "RECONCILER_ACCESS_TOKEN"
GRAPH_TOKEN_ENV = "RECONCILER_GRAPH_TOKEN"  # with RECONCILER_ACCESS_TOKEN: a Microsoft Graph token


@dataclass(frozen=True)
class Cloud:
    arm_endpoint: str
    authority: str  # Entra ID host that issues tokens for this cloud

    @property
    def scope(self) -> str:
        return f"{self.arm_endpoint}/.default"


CLOUDS = {
    "AzureCloud": Cloud("https://management.azure.com", "login.microsoftonline.com"),
    "AzureUSGovernment": Cloud("https://management.usgovcloudapi.net", "login.microsoftonline.us"),
    "AzureChinaCloud": Cloud("https://management.chinacloudapi.cn", "login.chinacloudapi.cn"),
}


@dataclass(frozen=True)
class TargetOptions:
    sandbox_db: str | None = None
    arm_endpoint: str | None = None
    ca_cert: str | None = None
    cloud: str = "AzureCloud"
    tenant: str | None = None

    def describe(self) -> str:
        if self.sandbox_db:
            return f"embedded sandbox ({self.sandbox_db})"
        return self.arm_endpoint or f"{self.cloud} ({CLOUDS[self.cloud].arm_endpoint})"


class TenantCredential:
    """Asks every token for one tenant (`--tenant`), whichever source DefaultAzureCredential
    ends up using (Azure CLI, workload identity, managed identity…)."""

    def __init__(self, inner: TokenCredential, tenant: str) -> None:
        self._inner = inner
        self._tenant = tenant

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        kwargs.setdefault("tenant_id", self._tenant)
        return self._inner.get_token(*scopes, **kwargs)


def default_credential(cloud: Cloud, tenant: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    tenant_kwargs = {
        f"{source}_tenant_id": tenant
        for source in ("workload_identity", "interactive_browser", "shared_cache", "visual_studio_code", "broker")
    } if tenant else {}
    credential: TokenCredential = DefaultAzureCredential(authority=cloud.authority, **tenant_kwargs)
    return TenantCredential(credential, tenant) if tenant else credential


def seed_of(desired: DesiredState) -> dict[str, list[tuple[str, ...]]]:
    """What an empty sandbox needs so that the manifests can be applied: their subscriptions,
    resource groups (of identities and of scopes) and the external principals they grant to."""
    default_location = desired.identities[0].location if desired.identities else "westeurope"
    groups: dict[tuple[str, str], str] = {}
    for sub, rg, location in sorted(desired.resource_groups):
        groups.setdefault((sub.lower(), rg.lower()), location)
    rg_names = {(i.subscription.lower(), i.resource_group.lower()): i.resource_group for i in desired.identities}
    for ra in desired.role_assignments:
        parts = [p for p in ra.scope.split("/") if p]
        if len(parts) >= 4 and parts[0].lower() == "subscriptions" and parts[2].lower() == "resourcegroups":
            key = (parts[1].lower(), parts[3].lower())
            groups.setdefault(key, default_location)
            rg_names.setdefault(key, parts[3])
    return {
        "subscriptions": [(s,) for s in sorted(desired.subscriptions)],
        "resource_groups": [(sub, rg_names[(sub, rg)], loc) for (sub, rg), loc in sorted(groups.items())],
        "principals": [
            (oid, ptype, f"{ptype.lower()}-{oid[:8]}") for oid, ptype in sorted(desired.external_principals)
        ],
    }


@contextmanager
def open_gateway(options: TargetOptions, desired: DesiredState) -> Iterator[AzureGateway]:
    if options.sandbox_db:
        from reconciler.sandbox import SandboxServer

        Path(options.sandbox_db).parent.mkdir(parents=True, exist_ok=True)
        server = SandboxServer(db_path=options.sandbox_db).start()
        try:
            seed = seed_of(desired)
            server.seed(
                subscriptions=[s for (s,) in seed["subscriptions"]],
                resource_groups=[(s, r, loc) for s, r, loc in seed["resource_groups"]],
                principals=[(o, t, n) for o, t, n in seed["principals"]],
            )
            # Size the client budget like the sandbox's buckets, as ARM's defaults size it for Azure.
            budget = RateBudget(BudgetConfig().scaled(server.config.throttle_scale))
            target = ArmTarget(StaticTokenCredential(server.admin_token()), server.url, server.ca_cert_path,
                               budget=budget)
            from reconciler.sandbox.tokens import issue

            graph_token = issue(server.admin_object_id, server.tenant_id, audience="https://graph.microsoft.com")
            sandbox_graph = GraphTarget(StaticTokenCredential(graph_token), endpoint=server.url,
                                ca_cert=server.ca_cert_path)
            yield AzureGateway(target, graph=sandbox_graph)
        finally:
            server.stop()
        return
    if options.cloud not in CLOUDS:
        raise ReconcilerError(f"--cloud {options.cloud}: unknown; choose one of {', '.join(CLOUDS)}")
    cloud = CLOUDS[options.cloud]
    token = os.environ.get(TOKEN_ENV)
    credential = StaticTokenCredential(token) if token else default_credential(cloud, options.tenant)
    endpoint = (options.arm_endpoint or cloud.arm_endpoint).rstrip("/")
    if not endpoint.startswith("https://"):
        raise ReconcilerError(f"--arm-endpoint must be an https:// URL (got {endpoint}); ARM tokens never go over http")
    if options.ca_cert and not Path(options.ca_cert).is_file():
        raise ReconcilerError(f"--ca-cert {options.ca_cert}: no such file")
    # The token audience follows the cloud; a custom endpoint (Azure Stack) keeps it too.
    scopes = (cloud.scope,) if options.cloud != "AzureCloud" else None
    graph, why = _graph_target(options, credential, bool(token), endpoint)
    yield AzureGateway(ArmTarget(credential, endpoint, options.ca_cert, credential_scopes=scopes),
                       graph=graph, graph_unavailable=why)


def _graph_target(options: TargetOptions, credential: TokenCredential, static: bool,
                  endpoint: str) -> tuple[GraphTarget | None, str]:
    """Microsoft Graph for preflight's one membership read. A bearer token handed in for ARM is
    not valid for Graph: with RECONCILER_ACCESS_TOKEN, Graph needs RECONCILER_GRAPH_TOKEN, and an
    --arm-endpoint (a sandbox) serves Graph at the same URL."""
    if static:
        graph_token = os.environ.get(GRAPH_TOKEN_ENV)
        if not graph_token:
            return None, f"{TOKEN_ENV} is set but {GRAPH_TOKEN_ENV} is not (a token for Microsoft Graph)"
        where = endpoint if options.arm_endpoint else GRAPH_ENDPOINTS[options.cloud]
        return GraphTarget(StaticTokenCredential(graph_token), endpoint=where, ca_cert=options.ca_cert), ""
    return GraphTarget(credential, endpoint=GRAPH_ENDPOINTS[options.cloud], scope=graph_scope(options.cloud)), ""
