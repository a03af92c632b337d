"""Generated manifests: one IdentitySet file per (subscription, resource group), one owner each.

Shape of every estate (counts are parameters):
  * identities spread evenly over the resource groups of each subscription, all in westeurope;
  * `roles_per_identity` grants TO each identity at resource-group scopes (its own group, then
    the next ones), cycling through a few built-in roles;
  * `operator_grants`: each identity may also be granted to its team's group (Managed Identity
    Operator on the identity), declared under `roleAssignments`;
  * federated credentials on the first identities of each group (`fic_every`-th identity), each
    with `fics_per_identity` credentials (GitHub subjects).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROLES = ("Reader", "Storage Blob Data Reader", "Key Vault Secrets User", "Azure Service Bus Data Receiver",
         "Monitoring Metrics Publisher")
LOCATION = "westeurope"
_NS = uuid.UUID("0b7c1a52-7e0a-4c61-9d0e-5a7f0f1d2c3b")


def subscription_id(n: int) -> str:
    return str(uuid.uuid5(_NS, f"subscription-{n}"))


def group_object_id(sub: int, rg: int) -> str:
    return str(uuid.uuid5(_NS, f"group-{sub}-{rg}"))


@dataclass(frozen=True)
class Estate:
    subscriptions: int
    groups_per_subscription: int
    identities_per_group: int
    roles_per_identity: int
    operator_grants: bool
    fic_every: int  # every n-th identity of a group has credentials; 0: none
    fics_per_identity: int = 1

    @property
    def identities(self) -> int:
        return self.subscriptions * self.groups_per_subscription * self.identities_per_group

    @property
    def role_assignments(self) -> int:
        return self.identities * (self.roles_per_identity + (1 if self.operator_grants else 0))

    @property
    def federated_credentials(self) -> int:
        if not self.fic_every:
            return 0
        per_group = len(range(0, self.identities_per_group, self.fic_every))
        return self.subscriptions * self.groups_per_subscription * per_group * self.fics_per_identity

    def describe(self) -> str:
        return (f"{self.identities:,} identities in {self.subscriptions * self.groups_per_subscription} resource "
                f"groups of {self.subscriptions} subscription(s), {self.role_assignments:,} role assignments, "
                f"{self.federated_credentials:,} FICs")

    # -- manifests ---------------------------------------------------------------------------

    def documents(self) -> list[tuple[str, dict[str, Any]]]:
        docs = []
        for s in range(self.subscriptions):
            sub = subscription_id(s)
            for g in range(self.groups_per_subscription):
                docs.append((f"s{s:02d}-rg{g:03d}.yaml", self._document(s, sub, g)))
        return docs

    def _rg(self, g: int) -> str:
        return f"rg-bench-{g % self.groups_per_subscription:03d}"

    def _document(self, s: int, sub: str, g: int) -> dict[str, Any]:
        identities: list[dict[str, Any]] = []
        grants: list[dict[str, Any]] = []
        for i in range(self.identities_per_group):
            name = f"id-s{s:02d}-g{g:03d}-{i:04d}"
            ident: dict[str, Any] = {"name": name, "tags": {"component": f"c{i % 7}"}}
            if self.fic_every and i % self.fic_every == 0:
                ident["federatedCredentials"] = [
                    {"name": f"gh-{k}", "issuer": "https://token.actions.githubusercontent.com",
                     "subject": f"repo:contoso/{name}:environment:env{k}"}
                    for k in range(self.fics_per_identity)
                ]
            ident["roles"] = [
                {"role": ROLES[(i + k) % len(ROLES)],
                 "scope": f"/subscriptions/{sub}/resourceGroups/{self._rg(g + k)}"}
                for k in range(self.roles_per_identity)
            ]
            identities.append(ident)
            if self.operator_grants:
                grants.append({"principal": {"objectId": group_object_id(s, g), "type": "Group"},
                               "role": "Managed Identity Operator", "scope": {"identity": name}})
        spec: dict[str, Any] = {
            "subscription": sub,
            "defaults": {"resourceGroup": self._rg(g), "location": LOCATION, "tags": {"team": f"team-{s}-{g}"}},
            "identities": identities,
        }
        if grants:
            spec["roleAssignments"] = grants
        return {"apiVersion": "reconciler/v1", "kind": "IdentitySet",
                "metadata": {"owner": f"team-{s:02d}-{g:03d}"}, "spec": spec}

    def write(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for filename, doc in self.documents():
            (directory / filename).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return directory


# The four estates of the brief, and their --quick versions (about a tenth).
FIGURE1 = Estate(subscriptions=1, groups_per_subscription=20, identities_per_group=50, roles_per_identity=2,
                 operator_grants=True, fic_every=2)  # 1,000 identities, 3,000 RAs, 500 FICs
FIGURE2 = Estate(subscriptions=1, groups_per_subscription=5, identities_per_group=60, roles_per_identity=2,
                 operator_grants=False, fic_every=6, fics_per_identity=2)  # 300 identities, 600 RAs, 100 FICs
FIGURE4 = Estate(subscriptions=10, groups_per_subscription=10, identities_per_group=100, roles_per_identity=4,
                 operator_grants=True, fic_every=4)  # 10,000 identities, 50,000 RAs, 2,500 FICs

# Figure 6: 20 subscriptions of 120 identities each (1 grant each, a FIC on every 4th). A plan
# lists every identity's credentials, and ARM allows 15 FIC lists/s per tenant however the plan
# is sharded, so each contender's floor is identities / 15 s: 160 s here. The first version had
# 1,000 identities per subscription (a 22-minute floor per contender, 50 minutes for the figure)
# and measured the same two ratios (calls and wall of 4 shards against one process), which do
# not depend on the size once every subscription has more identities than one list page.
FIGURE6 = Estate(subscriptions=20, groups_per_subscription=2, identities_per_group=60, roles_per_identity=1,
                 operator_grants=False, fic_every=4)  # 2,400 identities, 2,400 RAs, 600 FICs

QUICK1 = Estate(subscriptions=1, groups_per_subscription=5, identities_per_group=20, roles_per_identity=2,
                operator_grants=True, fic_every=2)  # 100 identities, 300 RAs, 50 FICs
QUICK2 = Estate(subscriptions=1, groups_per_subscription=2, identities_per_group=15, roles_per_identity=2,
                operator_grants=False, fic_every=3, fics_per_identity=2)  # 30 identities, 60 RAs, 20 FICs
QUICK4 = Estate(subscriptions=2, groups_per_subscription=5, identities_per_group=100, roles_per_identity=4,
                operator_grants=True, fic_every=4)  # 1,000 identities, 5,000 RAs, 250 FICs
QUICK6 = Estate(subscriptions=20, groups_per_subscription=1, identities_per_group=50, roles_per_identity=1,
                operator_grants=False, fic_every=4)  # 1,000 identities, 1,000 RAs, 260 FICs

# Figure 7 (validate at scale): the brief's 10 files, 10,000 identities, 50,000 grants, 2,500 FICs.
FIGURE7 = Estate(subscriptions=10, groups_per_subscription=1, identities_per_group=1000, roles_per_identity=4,
                 operator_grants=True, fic_every=4)
QUICK7 = Estate(subscriptions=10, groups_per_subscription=1, identities_per_group=100, roles_per_identity=4,
                operator_grants=True, fic_every=4)  # 1,000 identities, 5,000 RAs, 250 FICs
