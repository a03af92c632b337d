"""Turn the target options of a command into a gateway to ARM.

    --sandbox              the embedded sandbox: a local HTTPS ARM started in this process on
    --sandbox-db PATH      the state file (default .reconciler/sandbox.db), seeded with what
                           the manifests reference
    --arm-endpoint URL     any ARM-compatible endpoint (`reconciler sandbox serve`, Azure Stack);
                           bearer token from RECONCILER_ACCESS_TOKEN, else DefaultAzureCredential
    (neither)              real Azure through DefaultAzureCredential

Microsoft Graph (principal names) uses the same credential with the cloud's Graph scope, at
--graph-endpoint or the cloud's Graph; the embedded sandbox serves Graph itself. With a static
RECONCILER_ACCESS_TOKEN, Graph needs RECONCILER_GRAPH_ACCESS_TOKEN (else ids only, one warning).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

from reconciler.azure import transports
from reconciler.azure.budget import BudgetConfig, RateBudget
from reconciler.azure.client import ArmTarget, StaticTokenCredential, checked_token
from reconciler.azure.gateway import AzureGateway
from reconciler.azure.graph import GRAPH_ENDPOINTS, GraphTarget, graph_scope
from reconciler.errors import ReconcilerError
from reconciler.model import DesiredState
from reconciler.principals import Directory, Unavailable
from reconciler.resource_id import ResourceId

DEFAULT_SANDBOX_DB = ".reconciler/sandbox.db"
TOKEN_ENV = "RECONCILER_ACCESS_TOKEN"
GRAPH_TOKEN_ENV = "RECONCILER_GRAPH_ACCESS_TOKEN"


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
    graph_endpoint: str | None = None  # Microsoft Graph for names; None: the cloud's (or the sandbox)
    # How many shards of one tenant run at once (`--shards`): how the client budget is paced,
    # not where the run goes, so saved plans do not record it.
    shards: int = 1

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
        scope = ResourceId.try_parse(ra.scope)
        if scope is not None and scope.subscription is not None and scope.resource_group is not None:
            key = (scope.subscription.lower(), scope.resource_group.lower())
            groups.setdefault(key, default_location)
            rg_names.setdefault(key, scope.resource_group)
    return {
        "subscriptions": [(s,) for s in sorted(desired.subscriptions)],
        "resource_groups": [(sub, rg_names[(sub, rg)], loc) for (sub, rg), loc in sorted(groups.items())],
        "principals": [
            (oid, ptype, f"{ptype.lower()}-{oid[:8]}") for oid, ptype in sorted(desired.external_principals)
        ],
    }


@contextmanager
def open_gateway(options: TargetOptions, desired: DesiredState) -> Iterator[AzureGateway]:
    with open_target(options, desired) as (gateway, _directory):
        yield gateway


def _graph_target(credential: TokenCredential, options: TargetOptions, ca_cert: str | None) -> GraphTarget:
    """Microsoft Graph with the run's credential (a token for the cloud's Graph resource)."""
    endpoint = (options.graph_endpoint or GRAPH_ENDPOINTS[options.cloud]).rstrip("/")
    if not endpoint.startswith("https://"):
        raise ReconcilerError(f"--graph-endpoint must be an https:// URL (got {endpoint}); tokens never go over http")
    return GraphTarget(credential, endpoint, graph_scope(options.cloud), ca_cert=ca_cert)


@contextmanager
def open_target(
    options: TargetOptions, desired: DesiredState
) -> Iterator[tuple[AzureGateway, Directory | Unavailable]]:
    """The ARM gateway and the directory (Microsoft Graph) of a target, with one credential."""
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
            budget = RateBudget(BudgetConfig(fic_scale=server.config.fic_throttle_scale,
                                             tenant_shares=options.shards).scaled(server.config.throttle_scale))
            target = ArmTarget(StaticTokenCredential(server.admin_token()), server.url, server.ca_cert_path,
                               budget=budget)
            from reconciler.sandbox.graph import GRAPH_AUDIENCE

            graph_token = server.token_for(server.admin_object_id, audience=GRAPH_AUDIENCE)
            graph_options = TargetOptions(cloud=options.cloud, graph_endpoint=options.graph_endpoint or server.url)
            sandbox_graph = _graph_target(StaticTokenCredential(graph_token), graph_options, server.ca_cert_path)
            yield AzureGateway(target, graph=sandbox_graph), sandbox_graph.directory()
        finally:
            server.stop()
        return
    if options.cloud not in CLOUDS:
        raise ReconcilerError(f"--cloud {options.cloud}: unknown; choose one of {', '.join(CLOUDS)}")
    cloud = CLOUDS[options.cloud]
    token = os.environ.get(TOKEN_ENV)
    if token:
        try:
            token = checked_token(token, TOKEN_ENV)
        except ValueError as e:
            raise ReconcilerError(str(e)) from None
    credential = StaticTokenCredential(token) if token else default_credential(cloud, options.tenant)
    # Microsoft Graph: names of principals (reconciler/principals.py) and preflight's one group
    # membership read, with the same credential. A static token has one audience (ARM): Graph
    # needs its own, and a custom --arm-endpoint (a sandbox) serves Graph at the same URL.
    graph: GraphTarget | None = None
    why = ""
    if token:
        static_graph = os.environ.get(GRAPH_TOKEN_ENV)
        if static_graph:
            graph_options = replace(options, graph_endpoint=options.graph_endpoint or options.arm_endpoint)
            graph = _graph_target(StaticTokenCredential(static_graph), graph_options, options.ca_cert)
        else:
            why = f"{TOKEN_ENV} carries an ARM token only and {GRAPH_TOKEN_ENV} is not set"
    else:
        graph = _graph_target(credential, options, options.ca_cert)
    directory: Directory | Unavailable = graph.directory() if graph is not None else Unavailable(
        why, f"set {GRAPH_TOKEN_ENV} to a Microsoft Graph token (`az account get-access-token --resource-type "
        "ms-graph`, or `reconciler sandbox token --resource https://graph.microsoft.com`)")
    endpoint = (options.arm_endpoint or cloud.arm_endpoint).rstrip("/")
    if not endpoint.startswith("https://"):
        raise ReconcilerError(f"--arm-endpoint must be an https:// URL (got {endpoint}); ARM tokens never go over http")
    if options.ca_cert and not Path(options.ca_cert).is_file():
        raise ReconcilerError(f"--ca-cert {options.ca_cert}: no such file")
    # The token audience follows the cloud; a custom endpoint (Azure Stack) keeps it too.
    scopes = (cloud.scope,) if options.cloud != "AzureCloud" else None
    budget = RateBudget(BudgetConfig(tenant_shares=options.shards, fic_scale=transports.fic_scale(endpoint)))
    yield (AzureGateway(ArmTarget(credential, endpoint, options.ca_cert, credential_scopes=scopes, budget=budget),
                        graph=graph, graph_unavailable=why), directory)
