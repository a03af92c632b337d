"""`reconciler matrix`: split an estate's subscriptions into CI jobs.

ARM throttles per subscription and per principal, and one process already saturates a
subscription's buckets, so a large estate scales out by subscription: one shard per job of the
CI system's matrix, each with its own budget. Shards are balanced by what a run will cost, and
a grant whose scope and principal live in two subscriptions keeps both in one shard (a shard
that saw only one side would skip the grant, see `DesiredState.restricted`). Pure: no I/O.
"""

from __future__ import annotations

import heapq
import json
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import DesiredState, scope_subscription

# A run lists resource groups, identities and role assignments once per subscription, then the
# credentials of each identity; a first apply writes each identity, credential and grant. That
# upper bound of reads plus writes is the weight: it is what the subscription's buckets pay.
FIXED_READS_PER_SUBSCRIPTION = 3


@dataclass
class SubscriptionCost:
    subscription: str
    identities: int = 0
    federated_credentials: int = 0
    role_assignments: int = 0

    @property
    def reads(self) -> int:
        return FIXED_READS_PER_SUBSCRIPTION + self.identities

    @property
    def writes(self) -> int:
        return self.identities + self.federated_credentials + self.role_assignments

    @property
    def weight(self) -> int:
        return self.reads + self.writes


@dataclass
class Shard:
    name: str
    subscriptions: list[str] = field(default_factory=list)
    weight: int = 0
    of: int = 1  # how many shards run at once

    @property
    def args(self) -> str:
        """The options that select this shard, for a workflow's `extra-args`: its subscriptions,
        and its share of the tenant-wide limits (FIC lists and writes are limited per tenant)."""
        return " ".join([*(f"--subscription {s}" for s in self.subscriptions), f"--shards {self.of}"])


def subscription_costs(desired: DesiredState) -> dict[str, SubscriptionCost]:
    costs: dict[str, SubscriptionCost] = {}

    def cost(subscription: str) -> SubscriptionCost:
        return costs.setdefault(subscription, SubscriptionCost(subscription))

    for identity in desired.identities:
        cost(identity.subscription.lower()).identities += 1
    for fic in desired.federated_credentials:
        cost(fic.identity.subscription).federated_credentials += 1
    for ra in desired.role_assignments:
        scope_sub = scope_subscription(ra.scope)
        # A grant at a management group or the tenant root is written by the principal's run.
        owner_sub = scope_sub or (ra.principal.identity.subscription if ra.principal.identity else None)
        if owner_sub:
            cost(owner_sub).role_assignments += 1
    return costs


def linked_subscriptions(desired: DesiredState) -> list[set[str]]:
    """Subscriptions that must share a shard: connected by a grant whose scope is in one and
    whose principal (an identity of ours) is in another."""
    parent: dict[str, str] = {}

    def find(s: str) -> str:
        parent.setdefault(s, s)
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for sub in subscription_costs(desired):
        find(sub)
    for ra in desired.role_assignments:
        scope_sub = scope_subscription(ra.scope)
        ident = ra.principal.identity
        if scope_sub and ident is not None and ident.subscription != scope_sub:
            parent[find(scope_sub)] = find(ident.subscription)
    groups: dict[str, set[str]] = {}
    for sub in parent:
        groups.setdefault(find(sub), set()).add(sub)
    return list(groups.values())


def make_shards(desired: DesiredState, max_jobs: int) -> list[Shard]:
    """At most `max_jobs` shards, balanced by weight: the heaviest linked group first, each
    to the lightest shard so far (longest-processing-time first: within 4/3 of the best
    possible makespan). Deterministic for the same manifests."""
    if max_jobs < 1:
        raise ValueError("--max-jobs must be at least 1")
    costs = subscription_costs(desired)
    groups = sorted(
        (sorted(g) for g in linked_subscriptions(desired)),
        key=lambda g: (-sum(costs[s].weight for s in g), g),
    )
    count = min(max_jobs, len(groups))
    heap: list[tuple[int, int]] = [(0, i) for i in range(count)]
    members: list[list[str]] = [[] for _ in range(count)]
    for group in groups:
        weight, index = heapq.heappop(heap)
        members[index] += group
        heapq.heappush(heap, (weight + sum(costs[s].weight for s in group), index))
    shards = [Shard("", sorted(m), sum(costs[s].weight for s in m)) for m in members]
    shards.sort(key=lambda s: (-s.weight, s.subscriptions))
    for i, shard in enumerate(shards, 1):
        shard.name = f"shard_{i}"  # letters, digits, underscore: valid as an Azure Pipelines job name
        shard.of = len(shards)
    return shards


def unsharded_grants(desired: DesiredState) -> int:
    """Grants at management-group or tenant scope: no subscription run plans them."""
    return sum(1 for ra in desired.role_assignments if scope_subscription(ra.scope) is None)


def github_matrix(shards: list[Shard]) -> dict[str, Any]:
    """`strategy.matrix` for GitHub Actions: `matrix: ${{ fromJSON(needs.x.outputs.matrix) }}`."""
    return {"include": [{"name": s.name, "subscriptions": " ".join(s.subscriptions), "args": s.args}
                        for s in shards]}


def azure_pipelines_matrix(shards: list[Shard]) -> dict[str, Any]:
    """The map Azure Pipelines' `strategy: matrix:` expects: one job per key, its values as
    variables ($(shard), $(subscriptions), $(args))."""
    return {s.name: {"shard": s.name, "subscriptions": " ".join(s.subscriptions), "args": s.args} for s in shards}


def matrix_json(desired: DesiredState, shards: list[Shard]) -> dict[str, Any]:
    costs = subscription_costs(desired)
    return {
        "unsharded_grants": unsharded_grants(desired),
        "shards": [
            {
                "name": s.name,
                "subscriptions": s.subscriptions,
                "weight": s.weight,
                "costs": [
                    {"subscription": sub, "identities": costs[sub].identities,
                     "federatedCredentials": costs[sub].federated_credentials,
                     "roleAssignments": costs[sub].role_assignments,
                     "reads": costs[sub].reads, "writes": costs[sub].writes}
                    for sub in s.subscriptions
                ],
            }
            for s in shards
        ]
    }


def dumps(data: dict[str, Any]) -> str:
    # One line: GitHub step outputs and Azure Pipelines variables are single-line values.
    return json.dumps(data, separators=(",", ":")) + "\n"
