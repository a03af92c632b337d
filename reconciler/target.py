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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

# Only names from the SDK-free core at module level: the CLI imports this module for every
# command, and `validate` must not pay for the Azure SDK (the adapter is imported when a
# target is opened).
from reconciler.azure.clouds import CLOUDS, Cloud
from reconciler.errors import ReconcilerError
from reconciler.model import DesiredState
from reconciler.principals import Directory, Unavailable
from reconciler.resource_id import ResourceId

if TYPE_CHECKING:
    from reconciler.azure.credentials import Credential
    from reconciler.azure.gateway import AzureGateway
    from reconciler.azure.graph import GraphTarget
    from reconciler.sandbox import SandboxServer

DEFAULT_SANDBOX_DB = ".reconciler/sandbox.db"
TOKEN_ENV = "RECONCILER_ACCESS_TOKEN"
GRAPH_TOKEN_ENV = "RECONCILER_GRAPH_ACCESS_TOKEN"


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


@dataclass(frozen=True)
class Target:
    """An opened target: the ARM gateway and the directory (Microsoft Graph), one credential."""

    gateway: AzureGateway
    directory: Directory | Unavailable


@dataclass(frozen=True)
class EmbeddedSandbox(Target):
    """The embedded sandbox, which comes up with what its state file holds; `seed` adds what
    the manifests reference (their subscriptions, resource groups and external principals)."""

    server: SandboxServer

    def seed(self, desired: DesiredState) -> None:
        seed = seed_of(desired)
        self.server.seed(
            subscriptions=[s for (s,) in seed["subscriptions"]],
            resource_groups=[(s, r, loc) for s, r, loc in seed["resource_groups"]],
            principals=[(o, t, n) for o, t, n in seed["principals"]],
        )


@contextmanager
def open_gateway(options: TargetOptions) -> Iterator[AzureGateway]:
    with open_target(options) as target:
        yield target.gateway


def _graph_target(credential: Credential, options: TargetOptions, ca_cert: str | None) -> GraphTarget:
    """Microsoft Graph with the run's credential (a token for the cloud's Graph resource)."""
    from reconciler.azure.graph import GRAPH_ENDPOINTS, GraphTarget, graph_scope

    endpoint = (options.graph_endpoint or GRAPH_ENDPOINTS[options.cloud]).rstrip("/")
    if not endpoint.startswith("https://"):
        raise ReconcilerError(f"--graph-endpoint must be an https:// URL (got {endpoint}); tokens never go over http")
    return GraphTarget(credential, endpoint, graph_scope(options.cloud), ca_cert=ca_cert)


@contextmanager
def open_target(options: TargetOptions) -> Iterator[Target]:
    """Select and open the target the options name. The embedded sandbox comes up unseeded:
    a caller that needs what the manifests reference calls `open_sandbox` and seeds it."""
    if options.sandbox_db:
        with open_sandbox(options) as sandbox:
            yield sandbox
        return
    with _open_remote(options) as target:
        yield target


@contextmanager
def open_sandbox(options: TargetOptions) -> Iterator[EmbeddedSandbox]:
    """The embedded sandbox (`--sandbox`): a local HTTPS ARM and Graph in this process."""
    from reconciler.azure.budget import BudgetConfig, RateBudget
    from reconciler.azure.client import ArmTarget, StaticTokenCredential
    from reconciler.azure.gateway import AzureGateway
    from reconciler.sandbox import SandboxServer
    from reconciler.sandbox.graph import GRAPH_AUDIENCE

    assert options.sandbox_db
    Path(options.sandbox_db).parent.mkdir(parents=True, exist_ok=True)
    server = SandboxServer(db_path=options.sandbox_db).start()
    try:
        # Size the client budget like the sandbox's buckets, as ARM's defaults size it for Azure.
        budget = RateBudget(BudgetConfig(fic_scale=server.config.fic_throttle_scale,
                                         tenant_shares=options.shards).scaled(server.config.throttle_scale))
        target = ArmTarget(StaticTokenCredential(server.admin_token()), server.url, server.ca_cert_path,
                           budget=budget)
        graph_token = server.token_for(server.admin_object_id, audience=GRAPH_AUDIENCE)
        graph_options = TargetOptions(cloud=options.cloud, graph_endpoint=options.graph_endpoint or server.url)
        sandbox_graph = _graph_target(StaticTokenCredential(graph_token), graph_options, server.ca_cert_path)
        with AzureGateway(target, graph=sandbox_graph) as gateway:
            yield EmbeddedSandbox(gateway, gateway.directory(), server)
    finally:
        server.stop()


@contextmanager
def _open_remote(options: TargetOptions) -> Iterator[Target]:
    """Azure, or any ARM-compatible endpoint (`--arm-endpoint`)."""
    from reconciler.azure.client import close_credential
    from reconciler.azure.credentials import default_credential, static_credential

    if options.cloud not in CLOUDS:
        raise ReconcilerError(f"--cloud {options.cloud}: unknown; choose one of {', '.join(CLOUDS)}")
    cloud = CLOUDS[options.cloud]
    token = os.environ.get(TOKEN_ENV)
    credential = static_credential(token, TOKEN_ENV) if token else default_credential(cloud, options.tenant)
    with ExitStack() as stack:
        # Closed last, after the clients that use it (DefaultAzureCredential holds sessions too).
        stack.callback(close_credential, credential)
        yield stack.enter_context(_opened(options, cloud, credential, token))


@contextmanager
def _opened(options: TargetOptions, cloud: Cloud, credential: Credential, token: str | None) -> Iterator[Target]:
    from reconciler.azure import transports
    from reconciler.azure.budget import BudgetConfig, RateBudget
    from reconciler.azure.client import ArmTarget, StaticTokenCredential
    from reconciler.azure.gateway import AzureGateway

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
    unavailable = Unavailable(
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
    with AzureGateway(ArmTarget(credential, endpoint, options.ca_cert, credential_scopes=scopes, budget=budget),
                      graph=graph, graph_unavailable=why) as gateway:
        yield Target(gateway, gateway.directory() if graph is not None else unavailable)
