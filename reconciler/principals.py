"""Principals by name, not GUID: resolve manifest names through the directory, check declared
object ids, and put display names beside object ids in a plan.

The directory (Microsoft Graph; reconciler/azure/graph.py) is reached through the small
`Directory` protocol, so this module imports no SDK. Resolution runs BEFORE the pure planner:

    resolve(desired, live, directory)   one query per distinct name, ONE getByIds per plan for
                                        declared object ids, live grantees and the actors of
                                        changes; returns the desired state with object ids and
                                        a map object id -> display info
    with_names(plan, names)             the plan with display info beside every object id
    pins(desired)                       name -> object id, recorded in saved plans

A name that matches nothing or several objects, and an object id that does not exist or has
another type, is a located error (`file:line:col`), listing the candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from reconciler.errors import Diagnostic, ManifestError, ReconcilerError, SourceLocation
from reconciler.model import DesiredRoleAssignment, DesiredState, LiveState, PrincipalRef, norm_scope
from reconciler.payloads import Payload, RoleAssignmentValue
from reconciler.plan import Change, Plan

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Types getByIds can return; other declared types (ForeignGroup, Device) cannot be checked.
CHECKABLE_TYPES = frozenset({"User", "Group", "ServicePrincipal"})
# Least Graph application permissions (docs/permissions.md), per manifest form, for messages.
NAME_PERMISSIONS = {"group": "GroupMember.Read.All", "user": "User.Read.All",
                    "servicePrincipal": "Application.Read.All"}
IDS_PERMISSION = "Directory.Read.All"
# Keys `with_names` adds to a plan's `principal`: display only, never compared.
DISPLAY_KEYS = frozenset({"type", "displayName", "userPrincipalName", "appId"})
# Plan input recording what each principal name resolved to (`group:sg-admins` -> object id).
PINS_KEY = "principals"


class DirectoryEntry(Protocol):
    """A user, group or service principal as the directory names it."""

    @property
    def object_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def user_principal_name(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...


class Directory(Protocol):
    def find_users(self, user_principal_name: str) -> Sequence[DirectoryEntry]: ...
    def find_groups(self, display_name: str) -> Sequence[DirectoryEntry]: ...
    def find_service_principals(self, app_id_or_name: str) -> Sequence[DirectoryEntry]: ...
    def get_by_ids(self, object_ids: Iterable[str]) -> Mapping[str, DirectoryEntry]: ...


class DirectoryPermissionError(ReconcilerError):
    """The credential may not read the directory (Graph 403). Adapters raise a subclass that
    sets `permission`: the least Graph permission that would allow the lookup."""

    permission: str = IDS_PERMISSION
    reason: str = "the credential may not read the directory (Microsoft Graph answered 403)"


@dataclass(frozen=True)
class Unavailable:
    """Why there is no directory to ask (e.g. a static ARM token and no Graph token)."""

    reason: str
    hint: str


@dataclass(frozen=True)
class Resolution:
    desired: DesiredState  # every principal with an object id
    names: dict[str, dict[str, str]]  # object id (lower) -> display info, see `display`
    warnings: tuple[str, ...] = ()
    lookups: int = 0  # name queries made
    id_batches: int = 0  # getByIds calls made


def display(entry: DirectoryEntry) -> dict[str, str]:
    """The display info a plan carries for a directory object (JSON-ready, stable key order)."""
    info = {"type": entry.type}
    if entry.display_name is not None:
        info["displayName"] = entry.display_name
    if entry.user_principal_name:
        info["userPrincipalName"] = entry.user_principal_name
    if entry.app_id:
        info["appId"] = entry.app_id
    return info


def describe(object_id: str, info: Mapping[str, str] | None, fallback_type: str | None = None) -> str:
    """`Group 'sg-admins' (1111…)`, `User 'Alice' <alice@contoso.com> (…)`, or `Group 1111…` when
    the directory did not say."""
    if not info:
        return f"{fallback_type or 'principal'} {object_id}"
    extra = info.get("userPrincipalName") or (f"appId {info['appId']}" if info.get("appId") else None)
    name = f" '{info['displayName']}'" if info.get("displayName") is not None else ""
    return f"{info.get('type') or fallback_type or 'principal'}{name}" + (f" <{extra}>" if extra else "") \
        + f" ({object_id})"


def _candidate(entry: DirectoryEntry) -> str:
    return describe(entry.object_id, display(entry))


def _permission_of(exc: DirectoryPermissionError, default: str) -> str:
    return getattr(exc, "permission", None) or default


def _actors(live: LiveState) -> set[str]:
    """Object ids among who last changed a live resource (ARM gives user/app names for some)."""
    mods = [li.modified for li in live.identities.values()]
    mods += [f.modified for fics in live.federated_credentials.values() for f in fics]
    mods += [ra.modified for ra in live.role_assignments]
    return {m.by.lower() for m in mods if m is not None and m.by and _GUID.match(m.by)}


def resolve(desired: DesiredState, live: LiveState, directory: Directory | Unavailable) -> Resolution:
    """Resolve names to object ids and check declared object ids; raise ManifestError with every
    located problem. With no directory (or one that refuses to be read) plans still work with
    object ids only, with ONE warning; names then fail with that explanation."""
    errors: list[Diagnostic] = []
    warnings: list[str] = []
    ours = {li.principal_id.lower() for li in live.identities.values()}
    found, refused, lookups = _find_names(desired, directory)
    to_check, by_id, batches = _get_ids(desired, live, directory, ours, warnings)
    names = {oid.lower(): display(entry) for oid, entry in (by_id or {}).items()}
    answers = _Answers(found, refused, to_check, by_id, names)

    # -- rewrite the desired state, collecting located problems ---------------------------------
    out: list[DesiredRoleAssignment] = []
    seen: dict[tuple[str, str, object], SourceLocation | None] = {}
    for ra in desired.role_assignments:
        where = ra.source
        principal = answers.principal(ra)
        if isinstance(principal, Diagnostic):
            errors.append(principal)
            continue
        if principal.object_id is not None:
            dup = (norm_scope(ra.scope), ra.role_definition_id, principal.object_id)
            if dup in seen:
                who = describe(principal.object_id, names.get(principal.object_id))
                errors.append(Diagnostic(
                    where, f"role '{ra.role_name}' on {ra.scope} is granted to {who} twice; first at {seen[dup]}",
                    "a principal holds a role at a scope once; one of the two names or ids resolves to the other"))
                continue
            seen[dup] = where
        out.append(replace(ra, principal=principal) if principal is not ra.principal else ra)
    if errors:
        raise ManifestError(errors)
    return Resolution(replace(desired, role_assignments=tuple(out)), names, tuple(warnings), lookups, batches)


def _find_names(
    desired: DesiredState, directory: Directory | Unavailable
) -> tuple[dict[tuple[str, str], list[DirectoryEntry]], dict[tuple[str, str], tuple[str, str]], int]:
    """One query per distinct (kind, name): what each found, why each could not be asked
    ((reason, hint)), and how many queries were made."""
    wanted: dict[tuple[str, str], str] = {}
    for ra in desired.role_assignments:
        if ra.principal.name is not None:
            kind, value = ra.principal.name
            wanted.setdefault((kind, value.lower()), value)
    found: dict[tuple[str, str], list[DirectoryEntry]] = {}
    refused: dict[tuple[str, str], tuple[str, str]] = {}  # -> (reason, hint)
    lookups = 0
    for key, value in wanted.items():
        kind = key[0]
        if isinstance(directory, Unavailable):
            refused[key] = (directory.reason, directory.hint)
            continue
        try:
            lookups += 1
            finder = {"group": directory.find_groups, "user": directory.find_users,
                      "servicePrincipal": directory.find_service_principals}[kind]
            found[key] = list(finder(value))
        except DirectoryPermissionError as exc:
            permission = _permission_of(exc, NAME_PERMISSIONS[kind])
            refused[key] = (exc.reason,
                            f"grant the signed-in principal the Graph application permission {permission} "
                            "(docs/permissions.md), or write the principal as {objectId, type}")
    return found, refused, lookups


def _get_ids(
    desired: DesiredState, live: LiveState, directory: Directory | Unavailable, ours: set[str], warnings: list[str]
) -> tuple[set[str], Mapping[str, DirectoryEntry] | None, int]:
    """One batched getByIds for declared ids, live grantees and actors: the declared ids to
    check, the directory's answer (None when it could not be asked: warned) and the calls made."""
    declared = {ra.principal.object_id for ra in desired.role_assignments
                if ra.principal.object_id is not None and ra.principal.principal_type in CHECKABLE_TYPES}
    to_check = {i for i in declared if i not in ours}
    ids = to_check | {ra.principal_id for ra in live.role_assignments if ra.principal_id not in ours}
    ids |= _actors(live)
    by_id: Mapping[str, DirectoryEntry] | None = None
    batches = 0
    if isinstance(directory, Unavailable):
        if ids:
            warnings.append(f"principals are shown by object id only and declared object ids are not checked: "
                            f"{directory.reason}; {directory.hint}")
    elif ids:
        try:
            batches = 1
            by_id = directory.get_by_ids(sorted(ids))
        except DirectoryPermissionError as exc:
            warnings.append(
                f"principals are shown by object id only and declared object ids are not checked: {exc.reason}; "
                "the Graph application permission "
                f"{_permission_of(exc, IDS_PERMISSION)} (or the Directory Readers role) would add names")
    return to_check, by_id, batches


@dataclass
class _Answers:
    """What the directory said, read assignment by assignment."""

    found: dict[tuple[str, str], list[DirectoryEntry]]
    refused: dict[tuple[str, str], tuple[str, str]]
    to_check: set[str]
    by_id: Mapping[str, DirectoryEntry] | None
    names: dict[str, dict[str, str]]  # grows with each name resolved

    def principal(self, ra: DesiredRoleAssignment) -> PrincipalRef | Diagnostic:
        """The assignment's principal with its object id, or the located problem."""
        principal = ra.principal
        if principal.name is not None:
            return self._named(ra)
        if principal.object_id is not None and self.by_id is not None and principal.object_id in self.to_check:
            return self._checked(ra)
        return principal

    def _named(self, ra: DesiredRoleAssignment) -> PrincipalRef | Diagnostic:
        principal = ra.principal
        where = ra.source
        assert principal.name is not None
        kind, value = principal.name
        key = (kind, value.lower())
        label = principal.label()
        if key in self.refused:
            reason, hint = self.refused[key]
            return Diagnostic(where, f"cannot resolve {label}: {reason}", hint)
        matches = self.found.get(key, [])
        if not matches:
            return Diagnostic(where, f"{label} matches no {_noun(kind)} in the directory", _missing_hint(kind))
        if len(matches) > 1:
            listed = "; ".join(_candidate(m) for m in sorted(matches, key=lambda m: m.object_id))
            return Diagnostic(where, f"{label} matches {len(matches)} {_noun(kind)}s: {listed}",
                              "names are not unique in Entra ID: grant to one of them by "
                              "{objectId, type}, or rename the others")
        entry = matches[0]
        self.names[entry.object_id.lower()] = display(entry)
        return replace(principal, object_id=entry.object_id.lower())

    def _checked(self, ra: DesiredRoleAssignment) -> PrincipalRef | Diagnostic:
        principal = ra.principal
        where = ra.source
        assert self.by_id is not None
        entry_or_none = self.by_id.get(str(principal.object_id))
        if entry_or_none is None:
            return Diagnostic(
                where, f"object id {principal.object_id} ({principal.principal_type}) does not exist in the "
                "directory", "check the id (az ad group show / az ad user show / az ad sp show), or write the "
                "principal by name: {group: NAME}, {user: UPN} or {servicePrincipal: APP_ID}")
        if entry_or_none.type != principal.principal_type:
            return Diagnostic(
                where, f"object id {principal.object_id} is declared as type {principal.principal_type}, but "
                f"the directory has {_candidate(entry_or_none)}",
                f"write type: {entry_or_none.type} (ARM rejects a principal type that does not match the object)")
        return principal


def _noun(kind: str) -> str:
    return {"group": "group", "user": "user", "servicePrincipal": "service principal"}[kind]


def _missing_hint(kind: str) -> str:
    return {
        "group": "group names are matched exactly (case-insensitively) against displayName; check the spelling "
                 "in the Entra admin center or with `az ad group list --display-name NAME`",
        "user": "users are matched by user principal name (alice@contoso.com), not display name or mail; check "
                "with `az ad user show --id UPN`",
        "servicePrincipal": "service principals are matched by appId (a GUID) or displayName; an app registration "
                            "without a service principal in this tenant has none: `az ad sp create --id APP_ID`",
    }[kind]


# ----------------------------------------------------------------------------- saved plans


def pins(desired: DesiredState) -> dict[str, str]:
    """`group:sg-admins` -> object id, for every principal written by name (names lower case)."""
    out: dict[str, str] = {}
    for ra in desired.role_assignments:
        p = ra.principal
        if p.name is not None and p.object_id is not None:
            out[f"{p.name[0]}:{p.name[1].lower()}"] = p.object_id
    return dict(sorted(out.items()))


def repinned(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Names pinned in a saved plan that now resolve to another object, as messages."""
    out = []
    for key, was in sorted(saved.items()):
        if key in now and now[key] != was:
            kind, _, name = key.partition(":")
            out.append(f"{kind} '{name}' now resolves to a different object: {now[key]} (the plan was made "
                       f"for {was}); a name was renamed or reused")
    return out


# ----------------------------------------------------------------------------- display


def _named(value: Payload | None, names: Mapping[str, Mapping[str, str]]) -> Payload | None:
    if not isinstance(value, RoleAssignmentValue) or "objectId" not in value.principal:
        return value
    info = names.get(str(value.principal["objectId"]).lower())
    if not info:
        return value
    return replace(value, principal={"objectId": value.principal["objectId"], **info})


def with_names(plan: Plan, names: Mapping[str, Mapping[str, str]], warnings: Sequence[str] = ()) -> Plan:
    """The plan with display info (type, displayName, userPrincipalName or appId) in the
    `principal` of every role assignment and in `modified.byName`, where the directory knew
    the object. Display only: apply and the saved-plan check ignore it."""
    changes: list[Change] = []
    for c in plan.changes:
        modified = c.modified
        if modified and modified.get("by") and str(modified["by"]).lower() in names:
            by = str(modified["by"])
            modified = {**modified, "byName": describe(by, names[by.lower()])}
        before, after = c.before, c.after
        named_before, named_after = _named(before, names), _named(after, names)
        if named_before is before and named_after is after and modified is c.modified:
            changes.append(c)  # nothing to name: the change itself (at scale, most are compact in-sync records)
            continue
        changes.append(replace(c, before=named_before, after=named_after, modified=modified))
    return replace(plan, changes=tuple(changes), warnings=(*plan.warnings, *warnings))


def annotate(plan: Plan, resolution: Resolution) -> Plan:
    """The plan of a resolved desired state: names beside ids, the directory's warnings, and
    the object ids its principal names resolved to (pinned in saved plans)."""
    named = with_names(plan, resolution.names, resolution.warnings)
    pinned = pins(resolution.desired)
    return replace(named, inputs={**named.inputs, PINS_KEY: pinned}) if pinned else named
