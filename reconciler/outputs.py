"""`reconciler output`: what pipelines and clusters need from each declared identity.

A workload that logs in as an identity needs its client id (azure/login, the AKS service
account annotation `azure.workload.identity/client-id`), sometimes its principal id (for a
grant made elsewhere), the tenant and the resource id. ARM assigns all of them at creation,
so they come from live state, never from the manifests. Pure: desired + live in, records out.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from dataclasses import dataclass

from reconciler.model import DesiredIdentity, DesiredState, LiveState


@dataclass(frozen=True)
class IdentityOutput:
    subscription: str
    resource_group: str
    name: str  # as declared in the manifest
    id: str
    client_id: str
    principal_id: str
    tenant_id: str

    def to_json(self) -> dict[str, str]:
        return {
            "subscription": self.subscription,
            "resourceGroup": self.resource_group,
            "name": self.name,
            "id": self.id,
            "clientId": self.client_id,
            "principalId": self.principal_id,
            "tenantId": self.tenant_id,
        }


def identity_outputs(
    desired: DesiredState, live: LiveState
) -> tuple[list[IdentityOutput], list[DesiredIdentity]]:
    """The outputs of every declared identity that exists, in manifest order, and the
    declared identities that do not exist yet (apply has not created them)."""
    found: list[IdentityOutput] = []
    missing: list[DesiredIdentity] = []
    for identity in desired.identities:
        now = live.identities.get(identity.key)
        if now is None:
            missing.append(identity)
            continue
        found.append(IdentityOutput(
            subscription=identity.subscription, resource_group=identity.resource_group, name=identity.name,
            id=now.id, client_id=now.client_id, principal_id=now.principal_id, tenant_id=now.tenant_id,
        ))
    return found, missing


def render_json(outputs: list[IdentityOutput]) -> str:
    return json.dumps({"identities": [o.to_json() for o in outputs]}, indent=2) + "\n"


def _variable_stem(text: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()
    return stem if stem and not stem[0].isdigit() else f"_{stem}"


def env_prefixes(outputs: list[IdentityOutput]) -> list[str]:
    """A shell variable prefix per identity: its name, qualified by the resource group and
    then the subscription only where two declared identities would otherwise collide
    (`api` and `API`, or the same name in two resource groups)."""
    candidates = [
        (_variable_stem(o.name),
         _variable_stem(f"{o.resource_group}_{o.name}"),
         _variable_stem(f"{o.subscription}_{o.resource_group}_{o.name}"))
        for o in outputs
    ]
    for level in range(3):
        counts = Counter(c[level] for c in candidates)
        # The fully qualified level is unique because identity keys are.
        if all(counts[c[level]] == 1 for c in candidates) or level == 2:
            return [c[level] for c in candidates]
    raise AssertionError("unreachable")


def render_env(outputs: list[IdentityOutput]) -> str:
    """`NAME_CLIENT_ID=…` lines that a POSIX shell can `eval` or append to $GITHUB_ENV /
    $GITHUB_OUTPUT. Values are quoted, so nothing from Azure is ever run by the shell."""
    lines: list[str] = []
    for prefix, o in zip(env_prefixes(outputs), outputs, strict=True):
        for suffix, value in (("CLIENT_ID", o.client_id), ("PRINCIPAL_ID", o.principal_id),
                              ("TENANT_ID", o.tenant_id), ("ID", o.id)):
            lines.append(f"{prefix}_{suffix}={shlex.quote(value)}")
    return "".join(line + "\n" for line in lines)


def render_table(outputs: list[IdentityOutput]) -> str:
    header = ("IDENTITY", "CLIENT ID", "PRINCIPAL ID", "TENANT ID")
    rows = [(f"{o.resource_group}/{o.name}", o.client_id, o.principal_id, o.tenant_id) for o in outputs]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n"
                   for row in [header, *rows])
