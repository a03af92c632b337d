"""The seam between a workflow and the person running it: what it prints, how it asks, how it
shows progress. The CLI implements it with rich consoles and typer's prompt; tests record it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from reconciler.applier import Reporter
from reconciler.errors import Diagnostic
from reconciler.plan import Plan


class Interaction(Protocol):
    @property
    def color(self) -> bool:
        """Whether plain-text plans written with `out` may carry ANSI colour."""

    def out(self, text: str) -> None:
        """The command's output (stdout), verbatim."""

    def note(self, text: str, style: str | None = None) -> None:
        """One message to the person (stderr): progress, warnings, what was written where."""

    def diagnostics(self, diagnostics: Sequence[Diagnostic]) -> None:
        """Warnings (or errors) about the manifests, each as `file:line:col: message`."""

    def confirm(self) -> None:
        """Ask before apply writes; raise `ReconcilerError` unless the answer is yes."""

    def progress(self, plan: Plan, throttle_wait: Callable[[], float]) -> AbstractContextManager[Reporter]:
        """The step reporter for an apply of `plan` (`throttle_wait`: seconds spent waiting for
        ARM's rate limits so far)."""
