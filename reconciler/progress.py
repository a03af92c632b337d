"""Apply progress for people: a rich progress bar on a terminal, timestamped lines elsewhere
(CI logs keep every step readable). Both are applier Reporters; neither touches ARM.

Every finished step gets one line, named as the plan names it (never by its internal
address); a failure carries the manifest location of its declaration, ARM's code and message,
and is printed once, here."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reconciler.applier import DONE, FAILED, StepResult, StepStatus
from reconciler.plan import Change, Plan
from reconciler.render.describe import title
from reconciler.textsafe import one_line, scrub

_STYLE = {StepStatus.DONE: "green", StepStatus.FAILED: "red", StepStatus.SKIPPED: "yellow",
          StepStatus.NOT_STARTED: "yellow", StepStatus.INTERRUPTED: "red"}


class _StepLines:
    """The text of one finished step, shared by both reporters."""

    def __init__(self, plan: Plan) -> None:
        # The steps only: apply never runs a no-op, and at estate scale the plan holds 60,000 of them.
        self.changes = {c.address: c for c in plan.actionable}
        self.titles = {address: title(c) for address, c in self.changes.items()}
        # Details may mention other steps by address ("requires identity/…, which failed").
        self._addresses = re.compile("|".join(re.escape(a) for a in sorted(self.titles, key=len, reverse=True))) \
            if self.titles else None

    def readable(self, text: str) -> str:
        if self._addresses is None:
            return text
        return self._addresses.sub(lambda m: self.titles[m.group(0)], text)

    def line(self, result: StepResult) -> str:
        name = self.titles.get(result.address, result.address)
        detail = self.readable(result.detail)
        if result.status == DONE:
            return f"{name}: {detail} [{result.seconds:.1f}s]"
        if result.status == FAILED:
            change = self.changes.get(result.address)
            where = f"{change.source}: " if change is not None and change.source else ""
            return f"{where}failed to {result.action.value} {name}: {detail}"
        return f"{result.status} {name}: {detail}"


class LineReporter:
    """One timestamped line per finished step."""

    def __init__(self, plan: Plan, console: Console) -> None:
        self.lines = _StepLines(plan)
        self.console = console

    def step_started(self, change: Change) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        if result.status == FAILED:
            text = self.lines.line(result)
        else:
            name = self.lines.titles.get(result.address, result.address)
            text = f"{result.status:7s} {result.action.value:7s} {name}: {self.lines.readable(result.detail)}"
        self.console.print(f"{stamp} {scrub(one_line(text))}", style=_STYLE[result.status], markup=False,
                           highlight=False, emoji=False)


class BarReporter:
    """A live bar: steps done of total, steps per second, and time spent waiting for ARM's
    rate limits (`throttle_wait` returns the seconds waited so far). Each finished step prints
    one line above the bar, as Terraform's "Creation complete" lines do."""

    def __init__(self, plan: Plan, console: Console, throttle_wait: Callable[[], float] | None = None) -> None:
        self.lines = _StepLines(plan)
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
            self.progress.console.print(scrub(one_line(self.lines.line(result))), style=_STYLE[result.status],
                                        markup=False, highlight=False, emoji=False)
