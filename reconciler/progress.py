"""Apply progress for people: a rich progress bar on a terminal, timestamped lines elsewhere
(CI logs keep every step readable). Both are applier Reporters; neither touches ARM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reconciler.applier import StepResult
from reconciler.plan import Change, Plan
from reconciler.render.describe import title
from reconciler.textsafe import one_line, scrub

_STYLE = {"done": "green", "failed": "red", "skipped": "yellow"}


class LineReporter:
    """One timestamped line per finished step."""

    def __init__(self, plan: Plan, console: Console) -> None:
        self.titles = {c.address: title(c) for c in plan.changes}
        self.console = console

    def step_started(self, change: Change) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        name = self.titles.get(result.address, result.address)
        self.console.print(f"{stamp} {result.status:7s} {result.action.value:7s} {one_line(name)}: "
                           f"{scrub(one_line(result.detail))}",
                           style=_STYLE[result.status], markup=False, highlight=False)


class BarReporter:
    """A live bar: steps done of total, steps per second, and time spent waiting for ARM's
    rate limits (`throttle_wait` returns the seconds waited so far). Failures still print."""

    def __init__(self, plan: Plan, console: Console, throttle_wait: Callable[[], float] | None = None) -> None:
        self.titles = {c.address: title(c) for c in plan.changes}
        self.console = console
        self.throttle_wait = throttle_wait or (lambda: 0.0)
        self.started = time.monotonic()
        self.done = 0
        self.lock = threading.Lock()
        self.progress = Progress(
            TextColumn("[bold]apply"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[waits]}"), TimeElapsedColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task("apply", total=len(plan.actionable), rate="", waits="")

    def __enter__(self) -> BarReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step_started(self, change: Change) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        with self.lock:
            self.done += 1
            elapsed = max(time.monotonic() - self.started, 1e-6)
            waited = self.throttle_wait()
            self.progress.update(self.task, advance=1, rate=f"{self.done / elapsed:.1f} steps/s",
                                 waits=f"throttled {waited:.1f}s" if waited else "")
        if result.status != "done":
            name = self.titles.get(result.address, result.address)
            self.progress.console.print(f"{result.status}: {one_line(name)}: {scrub(one_line(result.detail))}",
                                        style=_STYLE[result.status],
                                        markup=False, highlight=False)
