"""A step reporter for tests of the applier: records starts and finishes, in order."""

from __future__ import annotations

import threading

from reconciler.applier import StepResult
from reconciler.plan import Change


class Events:
    """A reporter that records starts and finishes in order (workers call it concurrently)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def step_started(self, change: Change) -> None:
        with self.lock:
            self.lines.append(f"start {change.address}")

    def step_finished(self, result: StepResult) -> None:
        with self.lock:
            self.lines.append(f"finish {result.address}")
