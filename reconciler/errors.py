"""Every error reconciler raises on purpose, in one hierarchy.

    ReconcilerError                  base; the CLI maps all of these to exit code 1
    ├── ManifestError                one or more Diagnostics from loading/validating manifests
    ├── PlanError                    the plan cannot be made (e.g. ownership conflict, missing RG)
    ├── StalePlanError               a saved plan no longer matches manifests or live state
    ├── Interrupted                  apply stopped on a signal; carries the signal's exit code
    ├── LiveReadError                reading the live state from ARM failed
    └── ArmError                     an ARM call failed; carries code, message, address
        ├── TerminalArmError         4xx: retrying will not help; fix input or permissions
        └── RetryableArmError        throttling, 5xx, dropped connections: retry with backoff

Anything else that escapes is a bug: the CLI's single error boundary reports it as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.textsafe import one_line, quoted


@dataclass(frozen=True, slots=True)  # one per declaration: tens of thousands at estate scale
class SourceLocation:
    """Where in a manifest a value was written (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        # A file name is text from outside too: it may hold control characters or line breaks.
        return f"{one_line(self.file)}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the manifests, shown as `file:line:col: message` plus a hint."""

    location: SourceLocation | None
    message: str
    hint: str | None = None
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        kind = "warning: " if self.severity == "warning" else ""
        text = f"{where}{kind}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ReconcilerError(Exception):
    """Base of every expected error; its message is safe and useful to show a user."""


class ManifestError(ReconcilerError):
    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        errors = [d for d in diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in manifests")


class PlanError(ReconcilerError):
    """The desired and live state cannot be reconciled as written."""


class StalePlanError(ReconcilerError):
    """A saved plan was made against manifests or live state that have changed since."""


class Interrupted(ReconcilerError):
    """Apply stopped on a signal; `immediate` when in-flight steps were abandoned."""

    def __init__(self, message: str, exit_code: int, immediate: bool) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.immediate = immediate


class LiveReadError(ReconcilerError):
    """Reading live state failed; carries the ARM error text already formatted."""


class ArmError(ReconcilerError):
    """An ARM request failed. `code` and `message` are ARM's own; `address` is ours."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        address: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.code = code
        self.arm_message = message
        self.status = status
        self.address = address
        self.hint = hint
        # ARM's message can quote what was sent (names, descriptions), and a credential's lists
        # what it tried on several lines: quoted, so no line of it starts an output line.
        text = f"{code}: {message}"
        if address:
            text = f"{address}: {text}"
        if hint:
            text += f" ({hint})"
        super().__init__(quoted(text))


class TerminalArmError(ArmError):
    """A 4xx from ARM: the same request will fail again."""


class RetryableArmError(ArmError):
    """Throttling, 5xx, or a connection failure: the same request may succeed later."""
