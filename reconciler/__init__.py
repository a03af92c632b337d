"""reconciler: declarative, stateless reconciler for Azure user-assigned managed identities,
their federated identity credentials and role assignments.

The library surface, for scripts and tests (the CLI is a thin layer over it):

    desired, warnings = load_manifests(["manifests/"], RoleCatalog())
    live = gateway.read_live(desired.read_scope())
    plan = make_plan(desired, live)
    report = apply_plan(plan, gateway)

Exports load lazily, so that `import reconciler.sandbox` (which must not depend on the core)
does not import the core through this package's __init__. `__version__` is the version in the
package metadata of the distribution `managed-identity-reconciler` (reconciler.distribution).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Action": "reconciler.plan",
    "ApplyReport": "reconciler.applier",
    "Change": "reconciler.plan",
    "DesiredState": "reconciler.model",
    "LiveState": "reconciler.model",
    "Plan": "reconciler.plan",
    "PlanOptions": "reconciler.planner",
    "ReconcilerError": "reconciler.errors",
    "RetryPolicy": "reconciler.apply_retry",
    "RoleCatalog": "reconciler.roles",
    "apply_plan": "reconciler.applier",
    "load_manifests": "reconciler.manifest.loader",
    "make_plan": "reconciler.planner",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from reconciler.distribution import installed_version

        return installed_version() or "0+unknown"  # running from a source tree that was never installed
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reconciler' has no attribute {name!r}")
