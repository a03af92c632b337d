"""export_estate(live, options) -> manifests: the live estate written as v1 manifests.

Pure: the caller reads ARM (the same paged lists as plan) and resolves role names; this module
decides what belongs to the exported set and writes it the way a person would: defaults
factored out, role names instead of GUIDs, `{identity: name}` for an identity of the same
document, FIC audiences only when not the default, other principals as `{objectId, type}`.

The round trip is the contract: planning the result against the same estate plans nothing but
adoptions (see planner: Action.ADOPT).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.manifest.emitter import Commented, Flow, emit
from reconciler.manifest.schema import schema
from reconciler.model import (
    DEFAULT_AUDIENCES,
    PRINCIPAL_TYPES,
    RESERVED_TAGS,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    is_protected,
    norm_scope,
    split_owner_marker,
)

PER_RESOURCE_GROUP = "resource-group"
PER_SUBSCRIPTION = "subscription"
DEFAULT_CONDITION_VERSION = "2.0"

# (subscription, role GUID) -> role name, or None when unknown (the GUID is written instead).
RoleNamer = Callable[[str, str], "str | None"]


@dataclass(frozen=True)
class ExportOptions:
    owner: str
    subscriptions: tuple[str, ...]
    resource_groups: frozenset[str] = frozenset()  # lower case; empty: all
    per: str = PER_RESOURCE_GROUP
    out_dir: str = "."  # where the files go, for the modeline's relative path
    schema_path: str = "schemas/manifest.schema.json"


@dataclass
class ExportResult:
    files: dict[str, str] = field(default_factory=dict)  # path relative to out_dir -> YAML
    identities: int = 0
    credentials: int = 0
    assignments: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # why -> how many

    def summary(self) -> list[str]:
        lines = [f"Exported {self.identities} identities, {self.credentials} federated credentials and "
                 f"{self.assignments} role assignments in {len(self.files)} file(s)."]
        lines += [f"Skipped {n} {why}." for why, n in sorted(self.skipped.items())]
        return lines


@dataclass
class _Doc:
    subscription: str
    resource_group: str | None  # per resource group; None per subscription
    identities: list[LiveIdentity] = field(default_factory=list)
    roles: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # identity id -> its roles
    grants: list[Commented] = field(default_factory=list)  # roleAssignments to other principals


def export_estate(live: LiveState, options: ExportOptions, role_name: RoleNamer) -> ExportResult:
    result = ExportResult()
    subs = {s.lower() for s in options.subscriptions}
    members = _members(live, options, subs, result)
    docs = _Documents(options.per == PER_RESOURCE_GROUP)
    for li in members:
        docs.of(li).identities.append(li)
    by_principal = {li.principal_id.lower(): li for li in members}
    by_id = {norm_scope(li.id): li for li in members}
    scope_pattern = re.compile(schema()["$defs"]["armScope"]["pattern"])

    for ra in sorted(live.role_assignments, key=lambda r: (norm_scope(r.scope), r.role_definition_id, r.principal_id)):
        to = by_principal.get(ra.principal_id.lower())
        on = by_id.get(norm_scope(ra.scope))
        user_description, marked = split_owner_marker(ra.description)
        skipped = _skip_reason(ra, to, on, marked, options.owner, scope_pattern)
        if skipped is not None:
            result.skipped[skipped] += 1
            continue
        holder = to or on
        assert holder is not None
        doc = docs.of(holder)
        entry = _assignment_entry(ra, to, on, doc, role_name, user_description)
        result.assignments += 1
        if to is not None:
            doc.roles.setdefault(to.id.lower(), []).append(entry)
        else:
            comment = f"a {ra.principal_type}, not an identity of this set (display name not known to ARM)"
            doc.grants.append(Commented(entry, comment))

    for key, doc in sorted(docs.by_key.items()):
        rel = _file_name(key, len(subs) > 1)
        modeline = os.path.relpath(options.schema_path, os.path.dirname(os.path.join(options.out_dir, rel)) or ".")
        result.files[rel] = emit(_document(doc, live, options.owner, result), [
            f"yaml-language-server: $schema={modeline}",
            f"Exported by `reconciler export` from subscription {doc.subscription}"
            + (f", resource group {doc.resource_group}." if doc.resource_group else "."),
            "`reconciler plan` on it plans only adoptions: apply them to bring these resources under management.",
        ])
    return result


def _members(live: LiveState, options: ExportOptions, subs: set[str], result: ExportResult) -> list[LiveIdentity]:
    """The identities in the exported subscriptions and resource groups that are not another
    owner's (those are counted as skipped), in key order."""
    members: list[LiveIdentity] = []
    for li in sorted(live.identities.values(), key=lambda i: i.key):
        if li.subscription.lower() not in subs:
            continue
        if options.resource_groups and li.resource_group.lower() not in options.resource_groups:
            continue
        if li.owner is not None and li.owner != options.owner:
            result.skipped[f"identities owned by another reconciler owner ({li.owner})"] += 1
            continue
        members.append(li)
    return members


class _Documents:
    """The documents being written, one per resource group or per subscription."""

    def __init__(self, per_resource_group: bool) -> None:
        self.per_resource_group = per_resource_group
        self.by_key: dict[tuple[str, ...], _Doc] = {}

    def of(self, li: LiveIdentity) -> _Doc:
        per_rg = self.per_resource_group
        key = (li.subscription.lower(), li.resource_group.lower()) if per_rg else (li.subscription.lower(),)
        if key not in self.by_key:
            self.by_key[key] = _Doc(li.subscription.lower(), li.resource_group if per_rg else None)
        return self.by_key[key]


def _skip_reason(
    ra: LiveRoleAssignment,
    to: LiveIdentity | None,
    on: LiveIdentity | None,
    marked: str | None,
    owner: str,
    scope_pattern: re.Pattern[str],
) -> str | None:
    """Why a role assignment is left out of the export, or None when it is written."""
    if to is None and on is None:
        return "role assignments neither to nor on an identity of the set"
    if marked is not None and marked != owner:
        return f"role assignments owned by another reconciler owner ({marked})"
    if not scope_pattern.match(ra.scope):
        return "role assignments at a scope above a subscription (not expressible in a manifest)"
    if to is None and ra.principal_type not in PRINCIPAL_TYPES:
        return "role assignments to a principal of unknown type"
    return None


def _assignment_entry(
    ra: LiveRoleAssignment,
    to: LiveIdentity | None,
    on: LiveIdentity | None,
    doc: _Doc,
    role_name: RoleNamer,
    user_description: str | None,
) -> dict[str, object]:
    entry: dict[str, object] = {}
    if to is None:
        entry["principal"] = Flow({"objectId": ra.principal_id, "type": str(ra.principal_type)})
    entry["role"] = role_name(doc.subscription, ra.role_definition_id) or ra.role_definition_id
    entry["scope"] = _scope(ra, on, doc)
    if user_description and user_description.strip():
        entry["description"] = user_description
    if ra.condition:
        entry["condition"] = ra.condition
        if ra.condition_version and ra.condition_version != DEFAULT_CONDITION_VERSION:
            entry["conditionVersion"] = ra.condition_version
    return entry


def _file_name(key: tuple[str, ...], several_subscriptions: bool) -> str:
    if len(key) == 1:
        return f"{key[0]}.yaml"
    return f"{key[0]}/{key[1]}.yaml" if several_subscriptions else f"{key[1]}.yaml"


def _scope(ra: LiveRoleAssignment, on: LiveIdentity | None, doc: _Doc) -> object:
    """`{identity: name}` for an identity of the same document that its name alone designates."""
    if on is not None and on in doc.identities \
            and sum(1 for i in doc.identities if i.name.lower() == on.name.lower()) == 1:
        return Flow({"identity": on.name})
    return ra.scope


def _user_tags(li: LiveIdentity) -> dict[str, str]:
    reserved = {t.lower() for t in RESERVED_TAGS}
    return {k: v for k, v in sorted(li.tags.items()) if k.lower() not in reserved}


def _most_common(values: Iterable[str]) -> str:
    counts = Counter(values)
    return sorted(counts, key=lambda v: (-counts[v], v))[0]


def _common_tags(tag_sets: list[dict[str, str]]) -> dict[str, str]:
    if len(tag_sets) < 2:
        return {}
    first, *rest = tag_sets
    return {k: v for k, v in first.items() if all(t.get(k) == v for t in rest)}


def _document(doc: _Doc, live: LiveState, owner: str, result: ExportResult) -> dict[str, object]:
    identities = sorted(doc.identities, key=lambda i: (i.name.lower(), i.resource_group.lower()))
    tags = {i.id: _user_tags(i) for i in identities}
    default_rg = doc.resource_group or _most_common(i.resource_group for i in identities)
    default_location = _most_common(i.location for i in identities)
    common = _common_tags(list(tags.values()))
    defaults: dict[str, object] = {"resourceGroup": default_rg, "location": default_location}
    if common:
        defaults["tags"] = common
    entries: list[object] = []
    for li in identities:
        entry: dict[str, object] = {"name": li.name}
        if li.resource_group.lower() != default_rg.lower():
            entry["resourceGroup"] = li.resource_group
        if li.location != default_location:
            entry["location"] = li.location
        own = {k: v for k, v in tags[li.id].items() if k not in common}
        if own:
            entry["tags"] = own
        if is_protected(li.tags):  # the one reader of reserved tags, as the planner reads them
            entry["protect"] = True
        fics = sorted(live.federated_credentials.get(li.key, ()), key=lambda f: f.name.lower())
        if fics:
            entry["federatedCredentials"] = [_fic(f.name, f.issuer, f.subject, f.audiences) for f in fics]
            result.credentials += len(fics)
        roles = doc.roles.get(li.id.lower())
        if roles:
            entry["roles"] = roles
        entries.append(entry)
        result.identities += 1
    spec: dict[str, object] = {"subscription": doc.subscription, "defaults": defaults, "identities": entries}
    if doc.grants:
        spec["roleAssignments"] = doc.grants
    return {"apiVersion": "reconciler/v1", "kind": "IdentitySet", "metadata": {"owner": owner}, "spec": spec}


def _fic(name: str, issuer: str, subject: str, audiences: Iterable[str]) -> Mapping[str, object]:
    entry: dict[str, object] = {"name": name, "issuer": issuer, "subject": subject}
    if tuple(audiences) != DEFAULT_AUDIENCES:
        entry["audiences"] = list(audiences)
    return entry
