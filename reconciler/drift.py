"""Drift: a plan read as "what changed out of band", grouped by drift class. Pure: which changes
are drift, which classes a run fails on. The reports (text, Markdown, JSON) are rendered by
reconciler/render/drift.py."""

from __future__ import annotations

from reconciler.plan import Change, DriftClass, Plan

# Classes that describe drift of our own resources; FOREIGN is context, never drift.
DRIFT_CLASSES = (DriftClass.MISSING, DriftClass.CHANGED, DriftClass.UNMANAGED, DriftClass.ORPHANED)


def group(plan: Plan) -> dict[DriftClass, list[Change]]:
    grouped: dict[DriftClass, list[Change]] = {c: [] for c in DRIFT_CLASSES}
    for change in plan.changes:
        if change.drift in grouped and not change.consequence_of:
            grouped[change.drift].append(change)
    return grouped


def parse_classes(text: str) -> frozenset[DriftClass]:
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["all"]:
        return frozenset(DRIFT_CLASSES)
    if names == ["none"]:
        return frozenset()
    valid = {c.value: c for c in DRIFT_CLASSES}
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown drift class {', '.join(unknown)}; choose from {', '.join(valid)}, all or none")
    return frozenset(valid[n] for n in names)


def has_drift(plan: Plan, classes: frozenset[DriftClass]) -> bool:
    # An owner whose manifests are all gone left unmanaged identities behind.
    abandoned = DriftClass.UNMANAGED in classes and bool(plan.abandoned)
    return abandoned or any(group(plan)[c] for c in classes)
