"""Fault injection: scripted faults for exact tests, and seeded random faults for soak runs.

Kinds: "500" and "503" (an ARM error with Retry-After, which azure-core retries), "drop" (the
connection is closed without a response), "slow" (the response is delayed by slow_seconds).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from .config import FAULT_KINDS, SandboxConfig
from .errors import ArmError


@dataclass
class ScriptedFault:
    kind: str
    operation: str  # operationId, or "*" for any operation
    remaining: int


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[ScriptedFault] = []
        self._rng = random.Random(0)
        self._seed: int | None = None

    def reset(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._seed = None

    def inject(self, kind: str, operation: str = "*", count: int = 1) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._scripted.append(ScriptedFault(kind, operation, count))

    def draw(self, config: SandboxConfig, operation: str) -> str | None:
        """The fault to apply to this request, if any; scripted faults come first."""
        with self._lock:
            for fault in self._scripted:
                if fault.operation in ("*", operation):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._scripted.remove(fault)
                    return fault.kind
            if config.fault_rate <= 0:
                return None
            if self._seed != config.fault_seed:
                self._rng.seed(config.fault_seed)
                self._seed = config.fault_seed
            if self._rng.random() >= config.fault_rate:
                return None
            return self._rng.choice(config.fault_kinds)


def server_error(kind: str, retry_after: int) -> ArmError:
    if kind == "503":
        return ArmError(503, "ServiceUnavailable", "The service is temporarily unavailable (injected by the sandbox).",
                        {"Retry-After": str(retry_after)})
    return ArmError(500, "InternalServerError",
                    "Encountered internal server error (injected by the sandbox).",
                    {"Retry-After": str(retry_after)})
