"""A local HTTPS look-alike of the Azure Resource Manager slice reconciler uses.

    from reconciler.sandbox import SandboxServer, SandboxConfig
    with SandboxServer().start() as srv:
        srv.seed(subscriptions=[sub], resource_groups=[(sub, "rg", "westus")])
        ManagedServiceIdentityClient(cred, sub, base_url=srv.url, connection_verify=srv.ca_cert_path)

It imports nothing from the rest of reconciler, so it cannot share the product's bugs.
"""

from .config import SandboxConfig
from .errors import ArmError
from .server import SandboxServer

__all__ = ["ArmError", "SandboxConfig", "SandboxServer"]
