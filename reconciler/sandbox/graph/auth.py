"""Who may call Graph: the token's audience, and directory roles as the sandbox's permission model.

Audience: a Graph token carries `aud: https://graph.microsoft.com`; an ARM token is refused with 401
InvalidAuthenticationToken (GRAPH-FACTS §12, §13), and a Graph token is refused by ARM likewise.

Authorisation is modelled with Entra directory roles, assigned through Graph's own
`POST /v1.0/roleManagement/directory/roleAssignments` (tenant scope "/"):
- the sandbox admin is a Global Administrator (implicitly, as it is the subscriptions' Owner);
- member users may read the directory (Entra's default user permissions);
- any other principal (a managed identity, an application) reads only with Directory Readers,
  Directory Writers, Global Reader or Global Administrator: the route Azure SQL documents for an
  identity that resolves principals by name (GRAPH-FACTS §14);
- creating users, groups and memberships needs Directory Writers (or the User/Groups Administrator
  role for its kind), applications and service principals need Application Administrator, and
  assigning directory roles needs Privileged Role Administrator; Global Administrator may do all.
Graph application permissions (appRoleAssignments, the token's `roles` claim) are not modelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ArmError
from ..store import Doc
from ..tokens import Caller, authenticate
from .errors import GraphError, denied

if TYPE_CHECKING:
    from ..backend import Backend

GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_AUDIENCES = (GRAPH_AUDIENCE, GRAPH_AUDIENCE + "/", "00000003-0000-0000-c000-000000000000")

# Directory role template ids (learn.microsoft.com entra permissions-reference).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
GLOBAL_READER = "f2ef992c-3afb-46b9-b7cf-a126ee74c451"
DIRECTORY_READERS = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
DIRECTORY_WRITERS = "9360feb5-f418-4baa-8175-e2a00bac4301"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"
GROUPS_ADMINISTRATOR = "fdd7a751-b60b-444a-984c-02652fe8fa1c"
APPLICATION_ADMINISTRATOR = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
PRIVILEGED_ROLE_ADMINISTRATOR = "e8611ab8-c189-46e8-94e1-60213ab1f814"
ROLE_NAMES = {
    GLOBAL_ADMINISTRATOR: "Global Administrator",
    GLOBAL_READER: "Global Reader",
    DIRECTORY_READERS: "Directory Readers",
    DIRECTORY_WRITERS: "Directory Writers",
    USER_ADMINISTRATOR: "User Administrator",
    GROUPS_ADMINISTRATOR: "Groups Administrator",
    APPLICATION_ADMINISTRATOR: "Application Administrator",
    PRIVILEGED_ROLE_ADMINISTRATOR: "Privileged Role Administrator",
}

# What each kind of request needs (besides Global Administrator, which may do everything).
READ = frozenset({GLOBAL_READER, DIRECTORY_READERS, DIRECTORY_WRITERS, USER_ADMINISTRATOR, GROUPS_ADMINISTRATOR,
                  APPLICATION_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR})
WRITE_USERS = frozenset({DIRECTORY_WRITERS, USER_ADMINISTRATOR})
WRITE_GROUPS = frozenset({DIRECTORY_WRITERS, GROUPS_ADMINISTRATOR, USER_ADMINISTRATOR})
WRITE_APPS = frozenset({APPLICATION_ADMINISTRATOR})
WRITE_ROLES = frozenset({PRIVILEGED_ROLE_ADMINISTRATOR})

ROLE_ASSIGNMENT = "graphDirectoryRoleAssignment"


def audience_for(resource: str) -> str:
    """The `aud` of a token requested for `resource` (a resource URI or a `/.default` scope)."""
    bare = resource.removesuffix("/.default").rstrip("/")
    return GRAPH_AUDIENCE if bare == GRAPH_AUDIENCE else resource.removesuffix(".default")


def authenticate_graph(authorization: str | None, backend: Backend) -> Caller:
    """The caller of a Graph request, or Graph's 401 (GRAPH-FACTS §12 texts)."""
    try:
        return authenticate(authorization, backend.directory.tenant_id, audiences=GRAPH_AUDIENCES)
    except ArmError as err:
        if not authorization or not authorization.partition(" ")[2].strip():
            message = "Access token is empty."
        elif "audience" in err.message:
            message = "Access token validation failure. Invalid audience."
        elif err.code == "ExpiredAuthenticationToken":
            message = "Lifetime validation failed, the token is expired."
        elif err.code == "InvalidAuthenticationTokenTenant":
            message = "Access token validation failure."
        else:
            message = "CompactToken parsing failed with error code: 80049217"
        raise GraphError(401, "InvalidAuthenticationToken", message) from err


def role_assignments(backend: Backend) -> list[Doc]:
    """Directory role assignments of principals that still exist (Entra removes a deleted
    principal's assignments with it; the sandbox's directory does not know about them)."""
    directory = backend.directory
    return [d for d in backend.store.all(ROLE_ASSIGNMENT) if directory.get(d["principalId"]) is not None]


def roles_of(backend: Backend, object_id: str) -> set[str]:
    oid = object_id.lower()
    held = {d["roleDefinitionId"] for d in role_assignments(backend) if d["principalId"] == oid}
    if oid == backend.directory.admin_object_id:
        held.add(GLOBAL_ADMINISTRATOR)
    return held


def require(backend: Backend, caller: Caller, needed: frozenset[str] | None) -> None:
    """403 Authorization_RequestDenied unless the caller holds one of `needed` (None: a read)."""
    held = roles_of(backend, caller.object_id)
    if GLOBAL_ADMINISTRATOR in held:
        return
    if needed is None:
        principal = backend.directory.get(caller.object_id)
        if (principal is not None and principal.principal_type == "User") or held & READ:
            return
    elif held & needed:
        return
    raise denied()
