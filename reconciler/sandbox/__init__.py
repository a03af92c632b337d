"""A local HTTPS look-alike of the Azure Resource Manager slice reconciler uses.

    from reconciler.sandbox import SandboxServer, SandboxConfig
    with SandboxServer().start() as srv:
        srv.seed(subscriptions=[sub], resource_groups=[(sub, "rg", "westus")])
        ManagedServiceIdentityClient(cred, sub, base_url=srv.url, connection_verify=srv.ca_cert_path)

It imports nothing from the rest of reconciler, so it cannot share the product's bugs.
"""

from typing import TYPE_CHECKING, Any

from .config import SandboxConfig
from .errors import ArmError

if TYPE_CHECKING:
    from .server import SandboxServer

__all__ = ["ArmError", "SandboxConfig", "SandboxServer"]


def __getattr__(name: str) -> Any:
    # The server (HTTP, TLS, every provider) loads on first use: the reconciler's command line
    # imports `reconciler.sandbox.cli` for every command, and most never start a sandbox.
    if name == "SandboxServer":
        from .server import SandboxServer

        return SandboxServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
