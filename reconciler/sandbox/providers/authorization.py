"""Microsoft.Authorization: effective permissions and deny assignments, and the scope every list
route of the provider names. Role definitions live in role_definitions.py, role assignments in
role_assignments.py.
"""

from __future__ import annotations

from .. import rbac, scopes
from ..calls import Call, Reply
from ..paging import page


def list_permissions(call: Call) -> Reply:
    scope = list_scope(call)
    call.backend.require_scope(scope)
    blocks = rbac.effective_permissions(call.backend.role_assignments(),
                                        call.backend.principal_ids(call.caller.object_id), scope,
                                        call.backend.role_definition)
    value = [{k: list(b.get(k, [])) for k in ("actions", "notActions", "dataActions", "notDataActions")}
             for b in blocks]
    return Reply(200, page(call, value))


def list_deny_assignments(call: Call) -> Reply:
    """Always empty: deny assignments are created only by Azure itself (managed applications,
    deployment stacks, Blueprints), none of which the sandbox models; the API cannot create one."""
    scope = list_scope(call)
    call.backend.require_scope(scope)
    call.authorize("Microsoft.Authorization/denyAssignments/read", scope)
    return Reply(200, page(call, []))


def list_scope(call: Call) -> str:
    """The scope a list route names: its {scope} parameter, or the one its fixed template spells."""
    p = call.params
    if "scope" in p:
        return scopes.normalize(p["scope"])
    scope = f"/subscriptions/{p['subscriptionId']}"
    if "resourceGroupName" in p:
        scope += f"/resourceGroups/{p['resourceGroupName']}"
    if "resourcePath" in p:
        scope += f"/providers/{p['resourcePath']}"
    return scope
