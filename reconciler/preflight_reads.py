"""Gather what preflight evaluates (`preflight.evaluate.Facts`) from the plan's own live state
and the few reads it adds: custom role definitions and deny assignments of each subscription
(one list each), and at most one Microsoft Graph call for the principal's group memberships —
none when no role assignment read is made to a group, since then no membership can grant
anything. A read that fails makes the steps it could decide `unknown`, never allowed.
"""

from __future__ import annotations

import contextlib
import json
from functools import cache
from importlib import resources

from reconciler import addresses
from reconciler.errors import ReconcilerError
from reconciler.gateway import AuthorizationReader
from reconciler.model import LiveState
from reconciler.plan import Plan
from reconciler.preflight.evaluate import Facts, PermissionBlock, Preflight, RoleDefinition, preflight


@cache
def builtin_definitions() -> dict[str, RoleDefinition]:
    """The built-in role definitions shipped in the package, with their permissions."""
    raw = json.loads(resources.files("reconciler.data").joinpath("builtin_roles.json").read_text("utf-8"))
    return {
        r["id"].lower(): RoleDefinition(r["id"].lower(), r["roleName"], tuple(
            PermissionBlock(tuple(p.get("actions", ())), tuple(p.get("notActions", ())), p.get("condition"))
            for p in r.get("permissions", ())))
        for r in raw
    }


def gather(reader: AuthorizationReader, live: LiveState, apply_as: str | None) -> Facts:
    principal = (apply_as or reader.caller_object_id()).lower()
    subs = sorted(live.subscriptions)
    roles = dict(builtin_definitions())
    with contextlib.suppress(ReconcilerError):  # custom roles' assignments then come out `unknown`
        roles.update(reader.custom_role_definitions(subs))
    deny_problem = ""
    try:
        deny = tuple(reader.deny_assignments(subs))
    except ReconcilerError as e:
        deny, deny_problem = (), str(e)
    groups: frozenset[str] | None = frozenset()
    groups_problem = ""
    # An assignment without a principal type might be to a group: read memberships then too.
    if any((ra.principal_type or "group").lower() == "group" for ra in live.role_assignments):
        types = [ra.principal_type for ra in live.role_assignments if ra.principal_id == principal]
        try:
            groups = reader.group_memberships(principal, types[0] if types else None)
        except ReconcilerError as e:
            groups, groups_problem = None, str(e)
    fic_counts = {addresses.identity(key): len(fics) for key, fics in live.federated_credentials.items()}
    return Facts(principal=principal, assignments=live.role_assignments, roles=roles, groups=groups,
                 groups_problem=groups_problem, deny_assignments=deny, deny_problem=deny_problem,
                 subscriptions=frozenset(subs), fic_counts=fic_counts)


def evaluate(reader: AuthorizationReader, live: LiveState, plan: Plan, apply_as: str | None) -> Preflight:
    return preflight(plan, gather(reader, live, apply_as))
