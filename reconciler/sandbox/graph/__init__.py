"""Microsoft Graph v1.0, the directory slice: served under `/v1.0/` on the sandbox's own HTTPS server.

It reads and writes the same directory ARM's role assignments check (sandbox/directory.py), so a
group created here can be granted a role through ARM, and an identity created through ARM appears
here as a service principal of type ManagedIdentity. It has its own audience, error envelope,
directory-role authorisation and resource-unit throttling, like the real service. See the Graph
section of docs/sandbox.md.
"""

from .api import GraphApi, serves
from .auth import GRAPH_AUDIENCE, GRAPH_AUDIENCES, audience_for

__all__ = ["GRAPH_AUDIENCE", "GRAPH_AUDIENCES", "GraphApi", "audience_for", "serves"]
