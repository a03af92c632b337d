"""Human names and field diffs for changes, shared by the text and Markdown renderers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reconciler.plan import UNKNOWN, Action, Change, ResourceType
from reconciler.principals import describe as describe_principal

TYPE_LABEL = {
    ResourceType.IDENTITY: "identity",
    ResourceType.FEDERATED_CREDENTIAL: "federated credential",
    ResourceType.ROLE_ASSIGNMENT: "role assignment",
}

VERB = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be destroyed",
    Action.NOOP: "is in sync",
    Action.ADOPT: "will be adopted",
}

# The fields shown per type, in display order.
FIELDS = {
    ResourceType.IDENTITY: ("subscription", "resourceGroup", "name", "location", "tags", "principalId", "clientId"),
    ResourceType.FEDERATED_CREDENTIAL: ("identity", "name", "issuer", "subject", "audiences"),
    ResourceType.ROLE_ASSIGNMENT: (
        "roleName", "scope", "principal", "principalId", "principalType", "name", "description", "condition",
    ),
}


def _principal_text(fields: dict[str, Any]) -> str:
    principal: dict[str, str] = fields.get("principal") or {}
    if "identity" in principal:
        # address form: identity/{sub}/{rg}/{name}
        rg, name = principal["identity"].rsplit("/", 2)[-2:]
        return f"identity {rg}/{name}"
    object_id = str(principal.get("objectId", fields.get("principalId")))
    # Display info from the directory, when plan could read it (principals.with_names).
    return describe_principal(object_id, principal if "type" in principal else None, fields.get("principalType"))


def title(change: Change) -> str:
    """One line naming what changes, e.g. `identity rg-payments/payments-api`."""
    fields = change.fields()
    if change.type is ResourceType.IDENTITY:
        return f"identity {fields.get('resourceGroup')}/{fields.get('name')}"
    if change.type is ResourceType.FEDERATED_CREDENTIAL:
        return f"federated credential {fields.get('identity')}/{fields.get('name')}"
    return f"role assignment '{fields.get('roleName')}' to {_principal_text(fields)} at {fields.get('scope')}"


def value_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True)


def field_lines(change: Change) -> list[tuple[str, str, str]]:
    """(marker, field, text) for every field worth showing: markers are +, -, ~ or blank."""
    lines: list[tuple[str, str, str]] = []
    before, after = change.before_fields() or {}, change.after_fields() or {}
    lines_of = _LINES.get(change.action)
    if lines_of is None:
        return lines
    for name in FIELDS[change.type]:
        if name != "principal":
            lines.extend(lines_of(change, name, before, after))
    return lines


_Fields = dict[str, Any]


def _created(change: Change, name: str, before: _Fields, after: _Fields) -> list[tuple[str, str, str]]:
    if name in change.unknown:
        return [("+", name, UNKNOWN)]
    if after.get(name) not in (None, "", {}, []):
        return [("+", name, value_text(after[name]))]
    return []


def _deleted(change: Change, name: str, before: _Fields, after: _Fields) -> list[tuple[str, str, str]]:
    if before.get(name) not in (None, "", {}, []):
        return [("-", name, value_text(before[name]))]
    return []


def _replaced(change: Change, name: str, before: _Fields, after: _Fields) -> list[tuple[str, str, str]]:
    if name in change.unknown:
        return [("~", name, f"{value_text(before.get(name))} -> {UNKNOWN}")]
    if before.get(name) != after.get(name):
        return [("~", name, f"{value_text(before.get(name))} -> {value_text(after.get(name))}")]
    return []


def _updated(change: Change, name: str, before: _Fields, after: _Fields) -> list[tuple[str, str, str]]:
    if name not in change.changed_fields():
        return []
    if isinstance(before.get(name), dict) and isinstance(after.get(name), dict):
        return _dict_diff(name, before[name], after[name])
    return [("~", name, f"{value_text(before.get(name))} -> {value_text(after.get(name))}")]


# What a change of each action shows of one field (other actions show no fields).
_LINES: dict[Action, Callable[[Change, str, _Fields, _Fields], list[tuple[str, str, str]]]] = {
    Action.CREATE: _created,
    Action.DELETE: _deleted,
    Action.REPLACE: _replaced,
    Action.UPDATE: _updated,
    Action.ADOPT: _updated,
}


_MARKERS = {"dictionary_item_added": "+", "dictionary_item_removed": "-", "values_changed": "~",
            "type_changes": "~"}


def _dict_diff(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """One line per key added, removed or changed (tags, nested at any depth)."""
    # Imported here: deepdiff costs a plan process ~6 MB of memory, and only plans that change a mapping use it.
    from deepdiff import DeepDiff

    out: list[tuple[str, str, str]] = []
    for kind, items in DeepDiff(old, new, view="tree").items():
        marker = _MARKERS.get(kind, "~")
        for item in items:
            path = ".".join(str(p) for p in item.path(output_format="list"))
            if marker == "+":
                text = value_text(item.t2)
            elif marker == "-":
                text = value_text(item.t1)
            else:
                text = f"{value_text(item.t1)} -> {value_text(item.t2)}"
            out.append((marker, f"{name}.{path}", text))
    return sorted(out, key=lambda line: line[1])
