"""The read scheduler serves subscriptions in turn, runs tasks added by tasks, and raises the
first error."""

from __future__ import annotations

import threading

import pytest

from reconciler.azure.read_schedule import TakeTurns


def test_subscriptions_take_turns_and_tasks_may_add_tasks() -> None:
    order: list[str] = []
    lock = threading.Lock()
    work = TakeTurns(["a", "b"])

    def record(name: str) -> None:
        with lock:
            order.append(name)

    def spawn() -> None:
        record("a0")
        for i in range(1, 4):
            work.add("a", lambda i=i: record(f"a{i}"))  # type: ignore[misc]

    work.add("a", spawn)
    for i in range(3):
        work.add("b", lambda i=i: record(f"b{i}"))  # type: ignore[misc]
    work.run(threads=1)  # one thread: the order is the scheduling order
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2", "a3"]


def test_first_error_is_raised_and_stops_new_work() -> None:
    ran: list[int] = []
    work = TakeTurns(["a"])

    def boom() -> None:
        raise ValueError("boom")

    work.add("a", boom)
    for i in range(5):
        work.add("a", lambda i=i: ran.append(i))  # type: ignore[misc]
    with pytest.raises(ValueError, match="boom"):
        work.run(threads=1)
    assert ran == []
