"""SQLite-backed document store for every piece of sandbox state.

Documents are JSON objects filed under (kind, key), where key is the lower-cased ARM id (ARM ids are
case-insensitive) and parent is the lower-cased id of the container they are listed under. One
connection guarded by one re-entrant lock: a handler runs its check-then-write inside
`transaction()`, so concurrent requests can neither lose nor duplicate writes. A file database uses
WAL so `reconciler sandbox token` can read it while `serve` writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

Doc = dict[str, Any]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    parent TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS docs_parent ON docs (kind, parent);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    """Thread-safe JSON documents in SQLite; `path=None` keeps them in private memory."""

    def __init__(self, path: str | None = None):
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        if path is not None and path != ":memory:":
            _create_private(path)
        # check_same_thread=False is safe because every use goes through self._lock.
        self._conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        if path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        # all(kind) is on the hot path (every permission check reads every role assignment), so
        # its decoded result is cached per kind until this store writes that kind or another
        # connection (a second process on the same file) commits anything.
        self._generation = 0
        self._all_cache: dict[str, tuple[tuple[int, int], list[Doc]]] = {}
        self._index_cache: dict[tuple[str, Callable[[Doc], str]], tuple[tuple[int, int], dict[str, list[Doc]]]] = {}
        self._derived_cache: dict[tuple[str, Callable[[list[Doc]], Any]], tuple[tuple[int, int], Any]] = {}

    def _written(self) -> None:
        self._generation += 1

    def _version(self) -> tuple[int, int]:
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0]), self._generation

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Serialise a read-check-write sequence; nested calls join the outer transaction."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._written()  # what was cached inside the rolled-back transaction is void
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def get(self, kind: str, key: str) -> Doc | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT doc FROM docs WHERE kind = ? AND key = ?", (kind, key.lower())
            ).fetchone()
        return None if row is None else _load(row[0])

    def put(self, kind: str, key: str, parent: str, doc: Doc) -> bool:
        """Insert or update; returns True when the document is new. Updates keep list order."""
        with self.transaction():
            self._written()
            cur = self._conn.execute(
                "UPDATE docs SET doc = ?, parent = ? WHERE kind = ? AND key = ?",
                (json.dumps(doc), parent.lower(), kind, key.lower()),
            )
            if cur.rowcount:
                return False
            self._conn.execute(
                "INSERT INTO docs (kind, key, parent, doc) VALUES (?, ?, ?, ?)",
                (kind, key.lower(), parent.lower(), json.dumps(doc)),
            )
            return True

    def delete(self, kind: str, key: str) -> bool:
        with self.transaction():
            self._written()
            cur = self._conn.execute("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, key.lower()))
            return cur.rowcount > 0

    def children(self, kind: str, parent: str) -> list[Doc]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc FROM docs WHERE kind = ? AND parent = ? ORDER BY seq", (kind, parent.lower())
            ).fetchall()
        return [_load(r[0]) for r in rows]

    def under(self, kind: str, parent_prefix: str) -> list[Doc]:
        """Documents whose parent is `parent_prefix` or lies below it (segment-wise)."""
        prefix = parent_prefix.lower().rstrip("/")
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc FROM docs WHERE kind = ? AND (parent = ? OR substr(parent, 1, ?) = ?) ORDER BY seq",
                (kind, prefix, len(prefix) + 1, prefix + "/"),
            ).fetchall()
        return [_load(r[0]) for r in rows]

    def all(self, kind: str) -> list[Doc]:
        """Every document of a kind, in insertion order. The documents are shared with later
        callers: treat them as read-only (copy before changing, as the handlers do)."""
        with self._lock:
            version = self._version()
            cached = self._all_cache.get(kind)
            if cached is not None and cached[0] == version:
                return list(cached[1])
            rows = self._conn.execute("SELECT doc FROM docs WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
            docs = [_load(r[0]) for r in rows]
            self._all_cache[kind] = (version, docs)
            return list(docs)

    def index(self, kind: str, key: Callable[[Doc], str]) -> dict[str, list[Doc]]:
        """all(kind) grouped by `key`, cached like all(). Read-only, like all()'s documents."""
        with self._lock:
            version = self._version()
            cached = self._index_cache.get((kind, key))
            if cached is not None and cached[0] == version:
                return cached[1]
            grouped: dict[str, list[Doc]] = {}
            for doc in self.all(kind):
                grouped.setdefault(key(doc), []).append(doc)
            self._index_cache[(kind, key)] = (version, grouped)
            return grouped

    def derived(self, kind: str, build: Callable[[list[Doc]], T]) -> T:
        """`build(all(kind))`, cached like all() until the kind changes: for indexes that need
        more than index()'s grouping (order, sorted keys). Read-only, like all()'s documents."""
        with self._lock:
            version = self._version()
            cached = self._derived_cache.get((kind, build))
            if cached is not None and cached[0] == version:
                return cast(T, cached[1])
            value = build(self.all(kind))
            self._derived_cache[(kind, build)] = (version, value)
            return value

    def count(self, kind: str, parent: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COUNT(*) FROM docs WHERE kind = ? AND parent = ?", (kind, parent.lower())
            ).fetchone()
        return int(row[0])

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def clear(self) -> None:
        """Forget every document; meta (tenant id, admin id) survives so tokens stay valid."""
        with self.transaction():
            self._written()
            self._conn.execute("DELETE FROM docs")


def _create_private(path: str) -> None:
    """Create the database file 0600 (it holds the token signing key), or tighten an existing one.
    SQLite gives its -wal and -shm files the database file's mode."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _load(text: str) -> Doc:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value
