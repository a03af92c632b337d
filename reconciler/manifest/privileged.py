"""`validate`'s warnings about grants of roles that can grant any access (Owner, User Access
Administrator, Role Based Access Control Administrator), located at the grant in its file.

Plans warn only when they add such a grant; validate shows every unacknowledged one, so a
reviewer of the manifests sees them all once."""

from __future__ import annotations

from reconciler.errors import Diagnostic
from reconciler.model import DesiredState
from reconciler.roles import privileged_grant_warning

HINT = ("if this grant is intended, add `acknowledgePrivileged: true` to it; otherwise prefer a narrower role "
        "or an ABAC condition (docs/permissions.md)")


def privileged_grant_diagnostics(desired: DesiredState) -> list[Diagnostic]:
    found = []
    for ra in desired.role_assignments:
        if ra.privileged_acknowledged:
            continue
        warning = privileged_grant_warning(ra.role_definition_id, ra.role_name, ra.scope)
        if warning:
            found.append(Diagnostic(ra.source, warning, HINT, severity="warning"))
    return found
