"""`python -m bench.sandbox_proc serve ...`: `reconciler sandbox serve`, with one cache added.

The stock sandbox answers every request by loading and JSON-decoding *every* role assignment
from SQLite (`Backend.role_assignments()` -> `Store.all("roleAssignment")`, called by each RBAC
check, each role-assignment list page and each role-assignment PUT): about 17 µs per assignment,
i.e. ~55 ms per request at 3,000 assignments and ~0.8 s at 50,000. That makes the sandbox, not
the client or ARM's throttling, the bottleneck of any large benchmark.

This wrapper memoizes `Store.all(kind)` and drops the cached copy of a kind on every write to it
(put, delete), on `clear()`, and on any rolled-back transaction. Behaviour is otherwise the stock
sandbox's, through its own CLI (same flags, same output). It is used to seed large estates
quickly, for figure 4 (which measures the reconciler process only), and for the diagnostic
re-run of figure 1 that shows what the client achieves when the sandbox is not CPU-bound.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from reconciler.sandbox.cli import sandbox_app
from reconciler.sandbox.store import Doc, Store

_caches: dict[int, dict[str, list[Doc]]] = {}
_guard = threading.Lock()


def _cache(store: Store) -> dict[str, list[Doc]]:
    with _guard:
        return _caches.setdefault(id(store), {})


def install() -> None:
    original_all = Store.all
    original_put = Store.put
    original_delete = Store.delete
    original_clear = Store.clear
    original_transaction = Store.transaction

    @functools.wraps(original_all)
    def all_docs(self: Store, kind: str) -> list[Doc]:
        with self._lock:
            cache = _cache(self)
            docs = cache.get(kind)
            if docs is None:
                docs = cache[kind] = original_all(self, kind)
            return list(docs)

    def invalidating(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Store, kind: str, *args: Any) -> Any:
            with self._lock:
                _cache(self).pop(kind, None)
                return original(self, kind, *args)

        return wrapper

    @functools.wraps(original_clear)
    def clear(self: Store) -> None:
        with self._lock:
            _cache(self).clear()
            original_clear(self)

    @contextmanager
    def transaction(self: Store) -> Iterator[Store]:
        try:
            with original_transaction(self) as store:
                yield store
        except BaseException:
            with self._lock:
                _cache(self).clear()  # a rollback may undo writes the cache already saw
            raise

    Store.all = all_docs  # type: ignore[method-assign]
    Store.put = invalidating(original_put)  # type: ignore[method-assign]
    Store.delete = invalidating(original_delete)  # type: ignore[method-assign]
    Store.clear = clear  # type: ignore[method-assign]
    Store.transaction = transaction  # type: ignore[method-assign]


def main() -> None:
    install()
    sandbox_app(prog_name="bench.sandbox_proc")


if __name__ == "__main__":
    main()
