"""Sharding an estate by subscription: balanced, linked subscriptions together, bounded."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.matrix import azure_pipelines_matrix, github_matrix, make_shards, subscription_costs
from reconciler.model import (
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    PrincipalRef,
)

READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"


def sub(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-000000000000"


def estate(sizes: list[int], links: list[tuple[int, int]] | None = None) -> DesiredState:
    """`sizes[i]` identities in subscription i, each with one FIC; `links` (a, b): the first
    identity of a is granted Reader on subscription b."""
    ids = [DesiredIdentity("o", sub(i), "rg", f"id{j}", "westeurope", {})
           for i, n in enumerate(sizes) for j in range(n)]
    fics = [DesiredFederatedCredential("o", i.key, "f", "https://issuer", "s", ("api://AzureADTokenExchange",))
            for i in ids]
    ras = [DesiredRoleAssignment("o", f"/subscriptions/{sub(b)}", READER, "Reader",
                                 PrincipalRef(identity=DesiredIdentity("o", sub(a), "rg", "id0", "x", {}).key))
           for a, b in links or []]
    return DesiredState(tuple(ids), tuple(fics), tuple(ras), frozenset({"o"}))


def test_costs_count_reads_and_writes_per_subscription() -> None:
    costs = subscription_costs(estate([2, 1], [(0, 1)]))
    assert (costs[sub(0)].identities, costs[sub(0)].federated_credentials, costs[sub(0)].role_assignments) == (2, 2, 0)
    # The grant is written in the subscription of its scope.
    assert costs[sub(1)].role_assignments == 1
    assert costs[sub(0)].reads == 3 + 2 and costs[sub(0)].writes == 4


def test_balanced_and_at_most_max_jobs() -> None:
    shards = make_shards(estate([10, 9, 1, 1, 1]), 2)
    assert len(shards) == 2
    assert sorted(s for shard in shards for s in shard.subscriptions) == [sub(i) for i in range(5)]
    weights = sorted(s.weight for s in shards)
    assert weights[1] - weights[0] <= subscription_costs(estate([1]))[sub(0)].weight


def test_a_grant_across_subscriptions_keeps_them_in_one_shard() -> None:
    shards = make_shards(estate([1, 1, 1], [(0, 2)]), 3)
    assert len(shards) == 2
    assert any(set(s.subscriptions) == {sub(0), sub(2)} for s in shards)


def test_formats_select_the_shard() -> None:
    shards = make_shards(estate([1, 1]), 4)
    gh = github_matrix(shards)
    assert [e["name"] for e in gh["include"]] == ["shard_1", "shard_2"]
    # Each shard selects its subscriptions and takes its share of the tenant-wide limits.
    assert all(e["args"] == f"--subscription {e['subscriptions']} --shards 2" for e in gh["include"])
    azp = azure_pipelines_matrix(shards)
    assert set(azp) == {"shard_1", "shard_2"} and all(k.replace("_", "").isalnum() for k in azp)
    json.dumps(gh)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), max_size=6),
       st.integers(1, 6))
def test_every_subscription_in_exactly_one_shard_and_links_respected(
    sizes: list[int], links: list[tuple[int, int]], max_jobs: int
) -> None:
    links = [(a, b) for a, b in links if a < len(sizes) and b < len(sizes)]
    desired = estate(sizes, links)
    shards = make_shards(desired, max_jobs)
    assert 1 <= len(shards) <= max_jobs
    placed = [s for shard in shards for s in shard.subscriptions]
    assert sorted(placed) == sorted(sub(i) for i in range(len(sizes)))
    home = {s: shard.name for shard in shards for s in shard.subscriptions}
    assert all(home[sub(a)] == home[sub(b)] for a, b in links)
    assert make_shards(desired, max_jobs) == shards  # deterministic
