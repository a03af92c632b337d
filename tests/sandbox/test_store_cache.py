"""The store's cache of all(kind) never serves stale documents; indexes built on it answer as a scan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.sandbox import scopes
from reconciler.sandbox.backend import ROLE_ASSIGNMENT
from reconciler.sandbox.providers.role_assignments import assignments_around
from reconciler.sandbox.store import Store


def test_own_writes_rollbacks_and_other_processes_invalidate_the_cache(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    a, b = Store(path), Store(path)  # two connections, as `serve` and the embedded sandbox would be
    try:
        a.put("k", "1", "", {"n": 1})
        assert [d["n"] for d in a.all("k")] == [1]
        a.put("k", "2", "", {"n": 2})
        assert [d["n"] for d in a.all("k")] == [1, 2]
        b.put("k", "3", "", {"n": 3})  # another connection commits
        assert [d["n"] for d in a.all("k")] == [1, 2, 3]
        with pytest.raises(RuntimeError), a.transaction():
            a.put("k", "4", "", {"n": 4})
            assert [d["n"] for d in a.all("k")] == [1, 2, 3, 4]
            raise RuntimeError("roll back")
        assert [d["n"] for d in a.all("k")] == [1, 2, 3]
        b.delete("k", "1")
        assert [d["n"] for d in a.all("k")] == [2, 3]
        a.clear()
        assert a.all("k") == []
    finally:
        a.close()
        b.close()


def test_index_groups_documents_and_follows_writes(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "i.db"))

    def by_owner(doc: dict[str, object]) -> str:
        return str(doc["owner"])

    try:
        store.put("k", "1", "", {"owner": "a"})
        store.put("k", "2", "", {"owner": "b"})
        assert {k: len(v) for k, v in store.index("k", by_owner).items()} == {"a": 1, "b": 1}
        store.put("k", "3", "", {"owner": "a"})
        assert {k: len(v) for k, v in store.index("k", by_owner).items()} == {"a": 2, "b": 1}
        store.delete("k", "2")
        assert set(store.index("k", by_owner)) == {"a"}
    finally:
        store.close()


def test_derived_values_follow_writes(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "d.db"))

    def names(docs: list[dict[str, object]]) -> list[object]:
        return [d["n"] for d in docs]

    try:
        store.put("k", "1", "", {"n": 1})
        assert store.derived("k", names) == [1]
        store.put("k", "2", "", {"n": 2})
        assert store.derived("k", names) == [1, 2]
        store.delete("k", "1")
        assert store.derived("k", names) == [2]
    finally:
        store.close()


SCOPES = ["/", "/subscriptions/s1", "/subscriptions/S1/resourceGroups/rg", "/subscriptions/s1/resourcegroups/rg2",
          "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
          "/subscriptions/s1/resourceGroups/rg-x", "/subscriptions/s10", "/subscriptions/s1/resourceGroups/rg/"]


@given(st.lists(st.sampled_from(SCOPES), max_size=12), st.sampled_from(SCOPES), st.booleans())
@settings(max_examples=150, deadline=None)
def test_assignments_around_a_scope_match_the_scan_of_every_assignment(
        held: list[str], scope: str, at_scope: bool) -> None:
    """The index by scope answers what walking every assignment answered, in store order."""
    store = Store()
    try:
        for n, held_scope in enumerate(held):
            store.put(ROLE_ASSIGNMENT, str(n), "", {"n": n, "properties": {"scope": held_scope}})
        expected = [d["n"] for d in store.all(ROLE_ASSIGNMENT)
                    if scopes.is_at_or_above(d["properties"]["scope"], scope)
                    or (not at_scope and scopes.is_at_or_above(scope, d["properties"]["scope"]))]
        assert [d["n"] for d in assignments_around(store, scope, at_scope)] == expected
    finally:
        store.close()
