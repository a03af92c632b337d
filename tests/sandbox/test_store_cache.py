"""The store's cache of all(kind) never serves stale documents."""

from __future__ import annotations

from pathlib import Path

import pytest

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
