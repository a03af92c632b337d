"""Manifest files -> DesiredState, or a ManifestError listing every problem found.

Three passes, each reporting everything it finds before the next one runs on what is left:

1. files: every `*.yaml` / `*.yml` under the given paths (recursively, sorted, skipping
   dot-files and dot-directories such as `.git`; `discovery`), each read safely (`yaml_source`);
2. structure: each document against the JSON Schema (`schema`);
3. meaning: defaults, role names, `{identity: name}` references, duplicates across files,
   Azure limits the schema cannot express.

A path that names nothing, or a directory without manifests, is an error and never an empty
desired state: an emptied folder must not read as "delete everything". Messages name files
exactly as the user gave them.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler import locations
from reconciler.errors import Diagnostic, ManifestError, SourceLocation
from reconciler.manifest import schema as manifest_schema
from reconciler.manifest.discovery import collect_files
from reconciler.manifest.yaml_source import Path as DocPath
from reconciler.manifest.yaml_source import YamlDocument, read_file
from reconciler.model import (
    DEFAULT_AUDIENCES,
    MAX_FICS_PER_IDENTITY,
    NAMED_PRINCIPAL_KINDS,
    RESERVED_TAGS,
    VM_SAFE_NAME_LENGTH,
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    PrincipalRef,
    identity_id,
    norm_scope,
    role_guid,
)
from reconciler.resource_id import ResourceId
from reconciler.roles import GUID_RE, RoleCatalog, role_definition_guid

# Azure allows 50 tags per resource; reconciler writes the reserved ones itself.
MAX_USER_TAGS = 50 - len(RESERVED_TAGS)
DEFAULT_CONDITION_VERSION = "2.0"

_TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec"})


def load_manifests(
    paths: Sequence[str | Path], catalog: RoleCatalog
) -> tuple[DesiredState, list[Diagnostic]]:
    """Read every manifest under `paths` into one DesiredState.

    Returns the state and the warnings. Raises ManifestError carrying every error (and the
    warnings) when there is at least one error. `catalog` resolves role names: offline it
    knows built-in roles only."""
    diagnostics: list[Diagnostic] = []
    files = collect_files(paths, diagnostics)
    builder = _StateBuilder(catalog)
    for file in files:
        file_docs, file_diags = read_file(file)
        diagnostics.extend(file_diags)
        # Each file's documents (values plus positions) are dropped once added: at 10,000
        # identities all of them at once would be half of validate's memory.
        for doc in _non_empty(file, file_docs, file_diags, diagnostics):
            builder.add(doc)
    diagnostics.extend(builder.diagnostics)
    diagnostics = [_printable(d) for d in diagnostics]
    order = {f: i for i, f in enumerate(files)}
    diagnostics.sort(
        key=lambda d: (
            (order.get(d.location.file, -1), d.location.line, d.location.col) if d.location else (-1, 0, 0)
        )
    )
    if any(d.severity == "error" for d in diagnostics):
        raise ManifestError(diagnostics)
    state = DesiredState(
        identities=tuple(builder.identities),
        federated_credentials=tuple(builder.credentials),
        role_assignments=tuple(builder.assignments),
        owners=frozenset(builder.owners),
        files=tuple(files),
        declared_subscriptions=frozenset(builder.subscriptions),
        owner_groups=frozenset(builder.owner_groups),
    )
    return state, diagnostics


def _escape(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _printable(diagnostic: Diagnostic) -> Diagnostic:
    """Messages quote what the user wrote; escape control characters so a manifest cannot
    write terminal escape sequences into someone's CI log."""
    hint = _escape(diagnostic.hint) if diagnostic.hint is not None else None
    return replace(diagnostic, message=_escape(diagnostic.message), hint=hint)


def _non_empty(
    file: str, docs: list[YamlDocument], parse_diags: list[Diagnostic], out: list[Diagnostic]
) -> list[YamlDocument]:
    kept = [d for d in docs if d.data is not None]
    for doc in docs:
        if doc.data is None and kept:
            out.append(
                Diagnostic(
                    SourceLocation(file, *doc.start),
                    "empty document ignored",
                    "remove the stray '---' or write the document",
                    severity="warning",
                )
            )
    if not kept and not any(d.severity == "error" for d in parse_diags):
        out.append(
            Diagnostic(
                SourceLocation(file, 1, 1),
                "file contains no manifest (it is empty or only comments)",
                "write an IdentitySet document, or delete the file; an empty file never means "
                "'delete everything'",
            )
        )
    return kept


# ----------------------------------------------------------------------------- semantics


@dataclass
class _IdentityEntry:
    """An identity as far as it could be understood, for references within its set."""

    name: str
    key: IdentityKey | None
    resource_id: str | None


@dataclass
class _SetContext:
    doc: YamlDocument
    owner: str | None
    subscription: str | None
    bad: list[DocPath]
    default_tags: dict[str, str] | None = None  # None: unusable (already reported)
    # Some identity's name could not be read: a reference that matches nothing may mean it.
    unnamed: bool = False
    names: dict[str, list[_IdentityEntry]] = field(default_factory=dict)
    take_over_from: frozenset[str] = frozenset()  # metadata.takeOverFrom

    def ok(self, path: DocPath) -> bool:
        """True when the schema found nothing wrong at or below `path`."""
        return not any(b[: len(path)] == path for b in self.bad)


def _get(value: object, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


class _StateBuilder:
    def __init__(self, catalog: RoleCatalog) -> None:
        self.catalog = catalog
        self.diagnostics: list[Diagnostic] = []
        self.identities: list[DesiredIdentity] = []
        self.credentials: list[DesiredFederatedCredential] = []
        self.assignments: list[DesiredRoleAssignment] = []
        self.owners: set[str] = set()
        self.subscriptions: set[str] = set()
        self.owner_groups: set[tuple[str, str, str]] = set()
        self._identity_at: dict[IdentityKey, SourceLocation] = {}
        self._assignment_at: dict[tuple[str, str, object], SourceLocation] = {}
        self._bad_locations: set[str] = set()
        self._scope_ids: dict[str, ResourceId | None] = {}

    def error(self, where: SourceLocation, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(where, message, hint))

    def add(self, doc: YamlDocument) -> None:
        if isinstance(doc.data, dict) and not _TOP_LEVEL & set(doc.data):
            # Probably some other YAML file in the folder: one clear error, not one per field.
            self.error(
                SourceLocation(doc.file, *doc.start),
                "document is not a reconciler manifest (it has no apiVersion, kind, metadata or spec)",
                "start it with `apiVersion: reconciler/v1` and `kind: IdentitySet`, or keep other "
                "YAML files out of the manifest paths",
            )
            return
        found = manifest_schema.validate(doc)
        self.diagnostics.extend(d for _, d in found)
        data = doc.data
        if not isinstance(data, dict):
            return  # the schema already said it must be a mapping
        ctx = _SetContext(doc, None, None, [p for p, _ in found])
        owner = _get(_get(data, "metadata"), "owner")
        if isinstance(owner, str) and ctx.ok(("metadata", "owner")):
            ctx.owner = owner
            self.owners.add(owner)
        take_over = _get(_get(data, "metadata"), "takeOverFrom")
        if isinstance(take_over, list) and ctx.ok(("metadata", "takeOverFrom")):
            ctx.take_over_from = frozenset(str(o) for o in take_over) - {owner}
        spec = _get(data, "spec")
        subscription = _get(spec, "subscription")
        if isinstance(subscription, str) and ctx.ok(("spec", "subscription")):
            ctx.subscription = subscription.lower()
            self.subscriptions.add(ctx.subscription)
        default_group = _get(_get(spec, "defaults"), "resourceGroup")
        if ctx.owner and ctx.subscription and isinstance(default_group, str):
            self.owner_groups.add((ctx.owner, ctx.subscription, default_group.lower()))
        if ctx.ok(("spec", "defaults", "tags")):
            ctx.default_tags = self._check_tags(ctx, ("spec", "defaults", "tags"))
        identities = _list(_get(spec, "identities"))
        entries = [self._identity(ctx, item, ("spec", "identities", i)) for i, item in enumerate(identities)]
        # Roles last: `{identity: name}` may name an identity declared further down.
        for index, (item, entry) in enumerate(zip(identities, entries, strict=True)):
            for r, role in enumerate(_list(_get(item, "roles"))):
                path: DocPath = ("spec", "identities", index, "roles", r)
                principal = (
                    PrincipalRef(identity=entry.key, principal_type="ServicePrincipal")
                    if entry is not None and entry.key is not None
                    else None
                )
                self._assignment(ctx, role, path, principal)
        for r, assignment in enumerate(_list(_get(spec, "roleAssignments"))):
            path = ("spec", "roleAssignments", r)
            if ctx.ok((*path, "principal")):
                principal = self._principal(ctx, _get(assignment, "principal"), (*path, "principal"))
                self._assignment(ctx, assignment, path, principal)
            else:
                self._assignment(ctx, assignment, path, None)

    # -- identities ----------------------------------------------------------------------

    def _identity(self, ctx: _SetContext, item: object, path: DocPath) -> _IdentityEntry | None:
        doc = ctx.doc
        name = _get(item, "name")
        if not isinstance(name, str) or not ctx.ok((*path, "name")):
            ctx.unnamed = True
            return None
        where = doc.location((*path, "name"))
        if len(name) > VM_SAFE_NAME_LENGTH:
            self.diagnostics.append(
                Diagnostic(
                    where,
                    f"identity name '{name}' is {len(name)} characters long; identities with names "
                    f"over {VM_SAFE_NAME_LENGTH} characters cannot be assigned to virtual machines "
                    "or scale sets",
                    f"shorten it to {VM_SAFE_NAME_LENGTH} characters if a VM or scale set will use it",
                    severity="warning",
                )
            )
        resource_group = self._inherited(ctx, item, path, "resourceGroup", "resource group")
        location = self._inherited(ctx, item, path, "location", "location")
        if location is not None:
            location = self._region(ctx, item, path, location)
        key = resource_id = None
        if ctx.subscription and resource_group:
            key = IdentityKey.of(ctx.subscription, resource_group, name)
            resource_id = identity_id(ctx.subscription, resource_group, name)
            first = self._identity_at.get(key)
            if first is not None:
                self.error(
                    where,
                    f"identity '{name}' (resource group {resource_group}, subscription "
                    f"{ctx.subscription}) is declared twice; first at {first}",
                    "declare each identity once, in one IdentitySet (names compare case-insensitively)",
                )
            else:
                self._identity_at[key] = where
        entry = _IdentityEntry(name, key, resource_id)
        ctx.names.setdefault(name.lower(), []).append(entry)

        tags = self._merged_tags(ctx, item, path, name)
        protect = _get(item, "protect")
        if ctx.subscription and resource_group and location and ctx.owner and tags is not None:
            self.identities.append(
                DesiredIdentity(
                    owner=ctx.owner,
                    subscription=ctx.subscription,
                    resource_group=resource_group,
                    name=name,
                    location=location,
                    tags=tags,
                    protect=protect is True,
                    source=doc.location(path),
                    take_over_from=ctx.take_over_from,
                )
            )
        self._credentials(ctx, item, path, key)
        return entry

    def _inherited(
        self, ctx: _SetContext, item: object, path: DocPath, field_name: str, words: str
    ) -> str | None:
        """The identity's own value, else spec.defaults', else an error (unless the schema
        already rejected one of them)."""
        own_path = (*path, field_name)
        default_path: DocPath = ("spec", "defaults", field_name)
        if isinstance(item, dict) and field_name in item:
            value = item[field_name]
            return value if isinstance(value, str) and ctx.ok(own_path) else None
        default = _get(_get(_get(ctx.doc.data, "spec"), "defaults"), field_name)
        if default is not None:
            return default if isinstance(default, str) and ctx.ok(default_path) else None
        name = _get(item, "name")
        self.error(
            ctx.doc.location((*path, "name")),
            f"identity '{name}' has no {words}",
            f"set {field_name} on the identity, or spec.defaults.{field_name} for the whole set",
        )
        return None

    def _region(self, ctx: _SetContext, item: object, path: DocPath, location: str) -> str | None:
        """The region's short name (display names such as 'West Europe' are normalised), or None
        after an error at the value that was written (reported once for spec.defaults)."""
        found = locations.canonical(location)
        if found is not None:
            return found
        own = isinstance(item, dict) and "location" in item
        where = ctx.doc.location((*path, "location") if own else ("spec", "defaults", "location"))
        if str(where) not in self._bad_locations:
            self._bad_locations.add(str(where))
            close = locations.suggestion(location)
            self.error(
                where,
                f"unknown Azure region '{location}'",
                (f"did you mean '{close}'? " if close else "")
                + "use a region's name (westeurope) or display name (West Europe); "
                "`az account list-locations -o table` lists them",
            )
        return None

    def _check_tags(self, ctx: _SetContext, path: DocPath) -> dict[str, str] | None:
        tags = _get_path(ctx.doc.data, path)
        if not isinstance(tags, dict):
            return {} if tags is None else None
        seen: dict[str, str] = {}
        good = True
        for key in tags:
            lowered = key.lower()
            if lowered in RESERVED_TAGS:
                good = False
                self.error(
                    ctx.doc.location((*path, key), key=True),
                    f"tag '{key}' is reserved",
                    f"reconciler writes {', '.join(sorted(RESERVED_TAGS))} itself to prove "
                    "ownership (and protection); remove it — the owner comes from metadata.owner "
                    "and protection from `protect: true`",
                )
            elif lowered in seen:
                good = False
                self.error(
                    ctx.doc.location((*path, key), key=True),
                    f"tag '{key}' repeats tag '{seen[lowered]}'; Azure tag names are case-insensitive",
                    "keep one of them",
                )
            else:
                seen[lowered] = key
        return {str(k): str(v) for k, v in tags.items()} if good else None

    def _merged_tags(
        self, ctx: _SetContext, item: object, path: DocPath, name: str
    ) -> dict[str, str] | None:
        own = self._check_tags(ctx, (*path, "tags")) if ctx.ok((*path, "tags")) else None
        default_tags = ctx.default_tags
        if default_tags is None or own is None:
            return None
        # Identity wins, and case-insensitively, because ARM would merge `Team` and `team`.
        own_lower = {k.lower() for k in own}
        merged = {k: v for k, v in default_tags.items() if k.lower() not in own_lower}
        merged.update(own)
        if len(merged) > MAX_USER_TAGS:
            self.error(
                ctx.doc.location((*path, "tags") if isinstance(item, dict) and "tags" in item else path),
                f"identity '{name}' has {len(merged)} tags with spec.defaults.tags merged in; "
                f"at most {MAX_USER_TAGS} are allowed",
                f"Azure allows 50 tags per resource and reconciler uses {len(RESERVED_TAGS)}; "
                "drop some tags",
            )
            return None
        return merged

    def _credentials(
        self, ctx: _SetContext, item: object, path: DocPath, key: IdentityKey | None
    ) -> None:
        doc = ctx.doc
        names: dict[str, SourceLocation] = {}
        pairs: dict[tuple[str, str], SourceLocation] = {}
        credentials = _list(_get(item, "federatedCredentials"))
        for index, fic in enumerate(credentials[:MAX_FICS_PER_IDENTITY]):
            fic_path: DocPath = (*path, "federatedCredentials", index)
            if not isinstance(fic, dict):
                continue
            # Any: each field is trusted only once the schema passed it (ctx.ok).
            name: Any = fic.get("name")
            issuer: Any = fic.get("issuer")
            subject: Any = fic.get("subject")
            name_ok = isinstance(name, str) and ctx.ok((*fic_path, "name"))
            name_at = doc.location((*fic_path, "name"))
            if name_ok and name.lower() in names:
                self.error(
                    name_at,
                    f"federated credential name '{name}' is used twice on this identity; "
                    f"first at {names[name.lower()]}",
                    "names are unique per identity (case-insensitive); rename one",
                )
            elif name_ok:
                names[name.lower()] = name_at
            pair_ok = ctx.ok((*fic_path, "issuer")) and ctx.ok((*fic_path, "subject"))
            if pair_ok and isinstance(issuer, str) and isinstance(subject, str):
                if (issuer, subject) in pairs:
                    self.error(
                        doc.location((*fic_path, "subject")),
                        f"federated credential '{name}' repeats the issuer and subject of the one "
                        f"at {pairs[issuer, subject]}",
                        "Azure allows one credential per issuer + subject on an identity; remove one",
                    )
                pairs.setdefault((issuer, subject), doc.location((*fic_path, "subject")))
            if not ctx.ok(fic_path):
                continue
            if key is not None and ctx.owner:
                audiences = fic.get("audiences")
                self.credentials.append(
                    DesiredFederatedCredential(
                        owner=ctx.owner,
                        identity=key,
                        name=name,
                        issuer=issuer,
                        subject=subject,
                        audiences=tuple(audiences) if audiences else DEFAULT_AUDIENCES,
                        source=doc.location(fic_path),
                    )
                )

    # -- role assignments ----------------------------------------------------------------

    def _reference(self, ctx: _SetContext, ref: object, path: DocPath) -> _IdentityEntry | None:
        """The identity `{identity: name}` at `path` refers to, or None (reported)."""
        name = _get(ref, "identity")
        if not isinstance(name, str):
            return None
        matches = ctx.names.get(name.lower(), [])
        where = ctx.doc.location((*path, "identity"))
        if not matches and ctx.unnamed:
            return None  # the schema already reported the identity whose name is unreadable
        if not matches:
            close = difflib.get_close_matches(name, [e.name for v in ctx.names.values() for e in v], n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            self.error(
                where,
                f"no identity named '{name}' in this IdentitySet",
                hint + "{identity: name} refers to an identity declared in the same document's "
                "spec.identities; for anything else write its ARM scope or objectId",
            )
            return None
        # Several entries with one key are already reported as duplicates: not ambiguous.
        distinct = {e.key for e in matches if e.key is not None}
        if len(distinct) > 1:
            self.error(
                where,
                f"'{name}' names {len(matches)} identities of this IdentitySet (in different "
                "resource groups)",
                "give the identities distinct names, or write the full ARM id as scope",
            )
            return None
        return next((e for e in matches if e.key is not None), matches[0])

    def _principal(self, ctx: _SetContext, principal: object, path: DocPath) -> PrincipalRef | None:
        if not isinstance(principal, dict):
            return None
        if "identity" in principal:
            entry = self._reference(ctx, principal, path)
            if entry is None or entry.key is None:
                return None
            return PrincipalRef(identity=entry.key, principal_type="ServicePrincipal")
        for kind, principal_type in NAMED_PRINCIPAL_KINDS.items():
            if kind in principal:
                # Resolved to an object id at plan time (reconciler/principals.py), never offline.
                return PrincipalRef(principal_type=principal_type, name=(kind, str(principal[kind])))
        return PrincipalRef(object_id=str(principal["objectId"]).lower(), principal_type=principal["type"])

    def _assignment(
        self, ctx: _SetContext, item: object, path: DocPath, principal: PrincipalRef | None
    ) -> None:
        if not isinstance(item, dict):
            return
        doc = ctx.doc
        scope: str | None = None
        raw_scope = item.get("scope")
        if ctx.ok((*path, "scope")):
            if isinstance(raw_scope, str):
                # The schema has checked its shape (any keyword casing, an optional trailing
                # slash); the scope is kept as written, less that slash, for messages and ARM.
                scope = raw_scope.rstrip("/") if self._scope_id(raw_scope) is not None else raw_scope
            elif isinstance(raw_scope, dict):
                entry = self._reference(ctx, raw_scope, (*path, "scope"))
                scope = entry.resource_id if entry else None
        role_text = item.get("role")
        role: tuple[str, str] | None = None
        if isinstance(role_text, str) and ctx.ok((*path, "role")):
            in_scope = self._scope_id(scope or "")
            subscription = (in_scope.subscription.lower() if in_scope is not None and in_scope.subscription
                            else ctx.subscription)
            if subscription is None and not self.catalog.online:
                subscription = ""  # offline resolution never looks at the subscription
            if subscription is not None:
                role = self._role(doc.location((*path, "role")), role_text, subscription)
        if scope is None or role is None or principal is None or not ctx.ok(path) or not ctx.owner:
            return
        guid, role_name = role
        where = doc.location(path)
        named = (principal.name[0], principal.name[1].lower()) if principal.name else None
        key = (norm_scope(scope), guid, principal.identity or principal.object_id or named)
        first = self._assignment_at.get(key)
        if first is not None:
            self.error(
                where,
                f"role '{role_name}' on {scope} is granted to the same principal twice; first at {first}",
                "a principal holds a role at a scope once; remove one of them (scopes compare "
                "case-insensitively)",
            )
            return
        self._assignment_at[key] = where
        condition = item.get("condition")
        self.assignments.append(
            DesiredRoleAssignment(
                owner=ctx.owner,
                scope=sys.intern(scope),  # grants repeat scopes: one string per scope, not per grant
                role_definition_id=guid,
                role_name=role_name,
                principal=principal,
                description=item.get("description"),
                condition=condition,
                condition_version=(
                    item.get("conditionVersion", DEFAULT_CONDITION_VERSION) if condition else None
                ),
                source=where,
                privileged_acknowledged=item.get("acknowledgePrivileged") is True,
                take_over_from=ctx.take_over_from,
            )
        )

    def _scope_id(self, text: str) -> ResourceId | None:
        """ResourceId.try_parse, remembered: 50,000 grants name a few hundred scopes, and parsing
        them was a fifth of the loader's own time (profile in docs/BENCHMARKS.md)."""
        if text not in self._scope_ids:
            self._scope_ids[text] = ResourceId.try_parse(text)
        return self._scope_ids[text]

    def _role(self, where: SourceLocation, text: str, subscription: str) -> tuple[str, str] | None:
        """(lower-case GUID, display name) of a role, or None (reported)."""
        found = self.catalog.resolve(text, subscription)
        if found is not None:
            return sys.intern(found.guid.lower()), found.name  # one string per role, not per grant
        value = text.strip()
        exact_id = GUID_RE.match(value) or role_definition_guid(value)
        if exact_id and not self.catalog.online:
            # Offline only built-ins are known; a GUID is already exact, so accept it and let
            # plan (online) check that the custom role exists.
            return role_guid(value), role_guid(value)
        close = RoleCatalog.suggestions(value)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        if self.catalog.online:
            hint += f"no built-in or custom role with this name or id exists in subscription {subscription}"
        else:
            hint += (
                "custom roles are resolved only online (plan/apply); to validate offline, "
                "write the custom role's definition GUID instead of its name"
            )
        self.error(where, f"unknown role '{text}'", hint)
        return None


def _get_path(data: object, path: DocPath) -> object:
    for part in path:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and part < len(data) else None
        else:
            data = _get(data, part)
    return data


__all__ = ["MAX_USER_TAGS", "load_manifests"]
