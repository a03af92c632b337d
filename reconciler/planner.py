"""make_plan(desired, live) -> Plan: pure, no I/O, no SDK.

Level-based: the plan is recomputed from what the manifests want and what ARM has now,
never from a record of earlier runs. Ownership decides what may be deleted:
- an identity is ours when its tags say `managed-by: reconciler` and name one of the owners
  in the manifests; it is deleted only in a resource group that owner's manifests name (tags
  can be copied by anyone who may write them: elsewhere it is a warning);
- a role assignment is ours when its name is the deterministic name that owner would derive
  for its key (`model.assignment_name`), or when it is granted to an identity of ours that is
  being deleted (it would otherwise be orphaned).
Nothing else is ever deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from reconciler import addresses
from reconciler.errors import PlanError
from reconciler.field_views import (
    desired_identity_fields,
    desired_ra_fields,
    desired_tags,
    live_identity_fields,
    live_ra_fields,
    matched_ra_fields,
    principal_view,
    source_text,
)
from reconciler.in_sync import InSyncGrant, InSyncIdentity
from reconciler.model import (
    OWNER_TAG,
    SOURCE_TAG,
    VM_SAFE_NAME_LENGTH,
    DesiredFederatedCredential,
    DesiredIdentity,
    DesiredRoleAssignment,
    DesiredState,
    IdentityKey,
    LiveFederatedCredential,
    LiveIdentity,
    LiveRoleAssignment,
    LiveState,
    Modified,
    assignment_name,
    is_protected,
    norm_location,
    norm_scope,
    scope_resource_group,
    split_owner_marker,
    tag_value,
    with_owner_marker,
)
from reconciler.payloads import FederatedCredentialValue, IdentityValue, RoleAssignmentValue, expect
from reconciler.plan import AbandonedOwner, Action, Change, DriftClass, Plan, ReasonCode, ResourceType
from reconciler.roles import privileged_grant_warning

RoleNamer = Callable[[str], str]


@dataclass(frozen=True)
class PlanOptions:
    """Choices the user makes on the command line that change what the plan deletes or shows."""

    prune_unmanaged: bool = False  # delete grants to our identities made outside the manifests
    prune_orphans: bool = False  # delete our grants whose principal no longer exists
    include_foreign: bool = False  # list other owners' identities as context (never changed)


def norm_text(value: str | None) -> str:
    """Descriptions and conditions: ARM may echo None, "" or trailing whitespace for the same."""
    return " ".join((value or "").split())


def norm_tags(tags: dict[str, str] | None) -> dict[str, str]:
    # Tag names are case-insensitive in ARM; values are not.
    return {k.lower(): v for k, v in (tags or {}).items()}


def _src(d: DesiredIdentity | DesiredFederatedCredential | DesiredRoleAssignment) -> str | None:
    return source_text(d)


def _fic_fields(name: str, issuer: str, subject: str, audiences: Iterable[str],
                identity_name: str, fic_id: str | None = None) -> FederatedCredentialValue:
    return FederatedCredentialValue(id=fic_id, identity=identity_name, name=name, issuer=issuer, subject=subject,
                                    audiences=tuple(audiences))


# ----------------------------------------------------------------------------- planner


@dataclass
class _Planner:
    desired: DesiredState
    live: LiveState
    role_name: RoleNamer
    options: PlanOptions
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # identity key -> action on that identity (create/replace/delete/update/no-op)
    identity_action: dict[IdentityKey, Action] = field(default_factory=dict)
    # principal id (lower) -> identity key, for every live identity
    principal_owner: dict[str, IdentityKey] = field(default_factory=dict)
    identity_principals: dict[IdentityKey, dict[str, str]] = field(default_factory=dict)
    external_principals: frozenset[str] = frozenset()
    owner_groups: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    # live assignments matched by a declared grant that is not in sync (in-sync ones hold theirs)
    matched_live: list[LiveRoleAssignment] = field(default_factory=list)

    def run(self) -> Plan:
        self.principal_owner = {li.principal_id.lower(): k for k, li in self.live.identities.items()}
        self.external_principals = frozenset(o.lower() for o, _ in self.desired.external_principals)
        self._check_resource_groups()
        self._check_locations()
        self._plan_identities()
        self._plan_federated_credentials()
        self._plan_role_assignments()
        if self.errors:
            raise PlanError("\n".join(self.errors))
        self._pair_replacements()
        self._order_deletes_first()
        self._attach_modifications()
        return Plan(
            changes=in_plan_order(self.changes),
            warnings=tuple(dict.fromkeys(self.warnings)),
            owners=tuple(sorted(self.desired.owners)),
            abandoned=self._abandoned_owners(),
        )

    def _abandoned_owners(self) -> tuple[AbandonedOwner, ...]:
        """Owners whose identities carry this repository's source tag but that no manifest
        declares: deleting every manifest of an owner must not look like "No changes". Other
        repositories' owners carry another source (or none) and stay out of the plan."""
        source = self.desired.source_id
        if not source:
            return ()
        found: dict[str, list[LiveIdentity]] = {}
        for li in self.live.identities.values():
            if (li.owner is not None and li.owner not in self.desired.owners
                    and tag_value(li.tags, SOURCE_TAG) == source):
                found.setdefault(li.owner, []).append(li)
        out = []
        for owner, identities in sorted(found.items()):
            principals = {li.principal_id.lower() for li in identities}
            grants = {ra.id.lower() for ra in self.live.role_assignments
                      if ra.principal_id in principals
                      or ra.name.lower() == assignment_name(owner, ra.scope, ra.role_definition_id, ra.principal_id)}
            out.append(AbandonedOwner(
                owner, source, tuple(sorted(f"{li.resource_group}/{li.name}" for li in identities)), len(grants),
                tuple(sorted({li.subscription.lower() for li in identities})),
            ))
        return tuple(out)

    def _pair_replacements(self) -> None:
        """A declared grant whose role, scope or principal was edited shows up as one of ours
        to delete and one to create that share the other two parts of the key. ARM cannot
        change any of the three in place (RoleAssignmentUpdateNotPermitted), so present the pair
        as what it is to the reviewer: one replace, under the new key's name."""
        ra = ResourceType.ROLE_ASSIGNMENT
        deletes = [c for c in self.changes if c.type is ra and c.action is Action.DELETE and not c.consequence_of
                   and c.drift is DriftClass.UNMANAGED]
        creates = [c for c in self.changes if c.type is ra and c.action is Action.CREATE and not c.consequence_of]

        def parts(value: RoleAssignmentValue) -> tuple[str, str, str]:
            return norm_scope(value.scope), value.role_definition_id, str(value.principal_id or value.principal)

        merged: dict[str, Change] = {}
        used: set[str] = set()
        for new in sorted(creates, key=lambda c: c.address):
            for old in sorted(deletes, key=lambda c: c.address):
                if old.address in used or old.owner != new.owner:
                    continue
                same = [a == b for a, b in zip(parts(expect(old.before, RoleAssignmentValue)),
                                               parts(expect(new.after, RoleAssignmentValue)), strict=True)]
                if sum(same) != 2:
                    continue
                what = ("scope", "role", "principal")[same.index(False)]
                used.add(old.address)
                merged[new.address] = replace(
                    new, action=Action.REPLACE, before=old.before, drift=DriftClass.CHANGED,
                    reason=f"{what} changed; a role assignment cannot change its {what} in place",
                    reason_code=ReasonCode.IMMUTABLE_FIELD_CHANGED,
                    modified=old.modified,
                )
                break
        self.changes = [merged.get(c.address, c) for c in self.changes if c.address not in used]

    def _attach_modifications(self) -> None:
        """Who last changed each live resource and when: context for reviewers and drift."""
        # Keyed by the live id itself: every `before` was built from the live object, and at estate
        # scale lower-cased copies of 60,000 ids were a large part of planning's peak memory.
        mods: dict[str, Modified] = {li.id: li.modified for li in self.live.identities.values() if li.modified}
        for fics in self.live.federated_credentials.values():
            mods.update({f.id: f.modified for f in fics if f.modified})
        # A compact in-sync grant holds its live record; the other grants' records are found by id,
        # for those changes only (a live id is built when read: see LiveRoleAssignment).
        wanted = {c.before.id for c in self.changes if c.type is ResourceType.ROLE_ASSIGNMENT
                  and not isinstance(c, InSyncGrant) and c.before is not None}
        grants = {i: ra.modified for ra in self.live.role_assignments
                  if ra.modified and (i := ra.id) in wanted} if wanted else {}

        def modified(c: Change) -> Mapping[str, str | None] | None:
            if isinstance(c, InSyncGrant):
                return self._actor(c.live.modified) if c.live.modified else None
            if isinstance(c, InSyncIdentity):
                return c.live.modified  # what mods holds for its id, without building its before
            key = c.before.id if c.before is not None else None
            if key in grants:
                return self._actor(grants[key])
            return mods.get(key) if key is not None else None

        for c in self.changes:
            if (m := modified(c)) is not None:
                # In place: these changes are the planner's own until `run` returns them, and a
                # copy of each (`replace`) doubled 62,500 changes at estate scale for a moment.
                object.__setattr__(c, "modified", m)

    def _actor(self, modified: Modified) -> Mapping[str, str | None]:
        """Role assignments name their last writer by object id only (identities' systemData
        names it): name it when it is one of the live identities, e.g. a pipeline's own."""
        by = (modified.get("by") or "").lower()
        ident = self.principal_owner.get(by)
        if ident is None:
            return modified
        live = self.live.identities[ident]
        return {**modified, "by": f"identity {live.resource_group}/{live.name} (principal {by})",
                "byType": "ManagedIdentity"}

    def _order_deletes_first(self) -> None:
        """An identity is deleted (or replaced) only after the assignments granted to it are
        gone, so a failure half-way never leaves assignments pointing at nobody."""
        blockers: dict[str, list[str]] = {}
        for c in self.changes:
            if c.action is Action.DELETE and c.consequence_of and c.type is ResourceType.ROLE_ASSIGNMENT:
                blockers.setdefault(c.consequence_of, []).append(c.address)
        self.changes = [
            replace(c, requires=tuple(sorted({*c.requires, *blockers[c.address]})))
            if c.type is ResourceType.IDENTITY and c.address in blockers else c
            for c in self.changes
        ]

    # -- identities ----------------------------------------------------------------

    def _check_resource_groups(self) -> None:
        # Only subscriptions that were read say anything about their resource groups (an empty
        # subscription has none, which is exactly when this check matters).
        missing = sorted(
            {(i.subscription, i.resource_group, str(i.source)) for i in self.desired.identities
             if i.subscription.lower() in self.live.subscriptions
             and (i.subscription.lower(), i.resource_group.lower()) not in self.live.resource_groups},
        )
        for sub, rg, src in missing:
            self.errors.append(
                f"{src}: resource group '{rg}' does not exist in subscription {sub}; "
                "create it first (reconciler manages identities, not resource groups)"
            )
        # A grant's scope inside a missing group: ARM itself would accept it (it does not check that
        # the scope exists) and the grant would wait there for a group that may never come.
        reported = {(sub.lower(), rg.lower()) for sub, rg, _ in missing}
        for ra in self.desired.role_assignments:
            sub_rg = scope_resource_group(ra.scope)
            if (sub_rg is None or sub_rg in reported or sub_rg[0] not in self.live.subscriptions
                    or sub_rg in self.live.resource_groups):
                continue
            self.errors.append(
                f"{ra.source or ra.scope}: the scope {ra.scope} is in resource group '{sub_rg[1]}', which does "
                f"not exist in subscription {sub_rg[0]}; create the group first or fix the scope"
            )

    def _check_locations(self) -> None:
        """Each identity's region must be one its subscription offers (GET .../locations)."""
        for i in self.desired.identities:
            offered = self.live.locations.get(i.subscription.lower())
            if offered is None or i.location.replace(" ", "").lower() in offered:
                continue
            self.errors.append(
                f"{i.source}: subscription {i.subscription} does not offer location '{i.location}'; "
                "pick one that `az account list-locations -o table` lists for it"
            )

    def _plan_identities(self) -> None:
        declared = {i.key: i for i in self.desired.identities}
        for key, want in declared.items():
            have = self.live.identities.get(key)
            address = addresses.identity(key)
            if len(want.name) > VM_SAFE_NAME_LENGTH:
                self.warnings.append(
                    f"identity '{want.name}' has more than {VM_SAFE_NAME_LENGTH} characters: "
                    "it cannot be assigned to virtual machines or scale sets"
                )
            tags = desired_tags(want, self.desired.source_id)
            after = desired_identity_fields(want, tags)
            if have is None:
                self._add_identity(address, Action.CREATE, want, None, after, "declared, not in Azure",
                                   DriftClass.MISSING, ReasonCode.NOT_IN_AZURE, unknown=("principalId", "clientId"))
                continue
            transfer = have.owner is not None and have.owner != want.owner
            if transfer and have.owner not in want.take_over_from:
                self.errors.append(
                    f"{want.source}: identity '{have.name}' exists and is owned by '{have.owner}', "
                    f"not '{want.owner}'; change metadata.owner, remove the identity from one of the sets, "
                    f"or take it over with metadata.takeOverFrom: [{have.owner}]"
                )
                continue
            before = live_identity_fields(have)
            if norm_location(have.location) != norm_location(want.location):
                if want.protect:
                    self.errors.append(
                        f"{want.source}: identity '{want.name}' is protected but its location change "
                        f"({have.location} -> {want.location}) would replace it; remove `protect: true` "
                        "first if you really mean to replace it"
                    )
                    continue
                self.warnings.append(
                    f"identity '{want.name}' will be replaced (location is immutable): its principal id "
                    "changes, so every role assignment and federated credential is re-created"
                )
                self._add_identity(address, Action.REPLACE, want, before, after,
                                   f"location is immutable ({have.location} -> {want.location})",
                                   DriftClass.CHANGED, ReasonCode.IMMUTABLE_FIELD_CHANGED,
                                   unknown=("principalId", "clientId"))
                continue
            after = replace(after, principal_id=have.principal_id, client_id=have.client_id, id=have.id)
            if transfer:
                self._add_identity(address, Action.ADOPT, want, before, after,
                                   f"transfer from {have.owner}: rewrite ownership tags", None,
                                   ReasonCode.OWNER_TRANSFER)
            elif have.owner is None:
                # Still drift for `drift`: our tags may have been removed out of band.
                self._add_identity(address, Action.ADOPT, want, before, after,
                                   "adopt existing identity: add ownership tags", DriftClass.CHANGED,
                                   ReasonCode.ADOPT_EXISTING)
            elif norm_tags(dict(have.tags)) != norm_tags(tags):
                self._add_identity(address, Action.UPDATE, want, before, after, "tags differ", DriftClass.CHANGED,
                                   ReasonCode.FIELDS_DIFFER)
            else:
                self.identity_action[key] = Action.NOOP
                self.changes.append(InSyncIdentity.of(want, have, self.desired.source_id))
        self._plan_undeclared_identities(set(declared))

    def _plan_undeclared_identities(self, declared: set[IdentityKey]) -> None:
        """Live identities no manifest declares: ours are deleted, others reported or left alone."""
        for key, have in sorted(self.live.identities.items()):
            if key in declared:
                continue
            if have.owner not in self.desired.owners:
                self._report_undeclared_identity(key, have)
                continue
            if not self._in_owner_groups(have, have.owner):
                continue
            if is_protected(have.tags):
                self.errors.append(
                    f"identity '{have.name}' ({have.id}) is protected but no manifest declares it any more; "
                    "declare it again, or set `protect: false` and apply before removing it"
                )
                continue
            self.identity_action[key] = Action.DELETE
            self.changes.append(Change(
                address=addresses.identity(key), type=ResourceType.IDENTITY, action=Action.DELETE,
                reason=f"not in manifests; owned by {have.owner}", reason_code=ReasonCode.NOT_DECLARED,
                owner=have.owner,
                before=live_identity_fields(have), after=None, drift=DriftClass.UNMANAGED,
            ))

    def _in_owner_groups(self, have: LiveIdentity, owner: str) -> bool:
        """Deletions by tag are limited to resource groups the owner's manifests name: anyone
        who can write tags can copy an owner's tags onto any identity, and must not thereby
        make that owner's apply delete it. Outside them, the identity is a warning."""
        if owner not in self.owner_groups:
            self.owner_groups[owner] = self.desired.groups_of(owner)
        if (have.subscription.lower(), have.resource_group.lower()) in self.owner_groups[owner]:
            return True
        self.warnings.append(
            f"identity '{have.name}' ({have.id}) carries the ownership tags of '{owner}' but lies in resource "
            f"group '{have.resource_group}', which no manifest of '{owner}' names: it is not deleted (reconciler "
            "deletes only in resource groups an owner's manifests name); delete it by hand if it is really "
            "unwanted, or remove its tags"
        )
        return False

    def _report_undeclared_identity(self, key: IdentityKey, have: LiveIdentity) -> None:
        """Identities that are not provably ours: context, or deletion only on request."""
        claimed = tag_value(have.tags, OWNER_TAG)
        before = live_identity_fields(have)
        address = addresses.identity(key)
        if have.owner is None and claimed in self.desired.owners and self._in_owner_groups(have, claimed):
            # Tagged with one of our owners by hand, never created by reconciler.
            action = Action.DELETE if self.options.prune_unmanaged else Action.NOOP
            if action is Action.DELETE:
                self.identity_action[key] = Action.DELETE
            reason = (f"tagged {OWNER_TAG}={claimed} but not created by reconciler"
                      + ("" if action is Action.DELETE else "; remove with --prune-unmanaged"))
            self.changes.append(Change(address=address, type=ResourceType.IDENTITY, action=action, reason=reason,
                                       reason_code=ReasonCode.TAGGED_NOT_CREATED, owner=claimed, before=before,
                                       after=None, drift=DriftClass.UNMANAGED))
        elif have.owner is not None and self.options.include_foreign:
            self.changes.append(Change(address=address, type=ResourceType.IDENTITY, action=Action.NOOP,
                                       reason=f"owned by {have.owner}; shown as context, never changed",
                                       reason_code=ReasonCode.OTHER_OWNER,
                                       owner=have.owner, before=before, after=None, drift=DriftClass.FOREIGN))

    def _add_identity(self, address: str, action: Action, want: DesiredIdentity,
                      before: IdentityValue | None, after: IdentityValue, reason: str,
                      drift: DriftClass | None, code: ReasonCode, unknown: tuple[str, ...] = ()) -> None:
        self.identity_action[want.key] = action
        self.changes.append(Change(
            address=address, type=ResourceType.IDENTITY, action=action, reason=reason, reason_code=code,
            owner=want.owner,
            before=before, after=after, unknown=unknown, drift=drift, source=_src(want),
        ))

    # -- federated credentials -------------------------------------------------------

    def _plan_federated_credentials(self) -> None:
        by_identity: dict[IdentityKey, list[DesiredFederatedCredential]] = {}
        for fic in self.desired.federated_credentials:
            by_identity.setdefault(fic.identity, []).append(fic)
        identity_names = {i.key: i.name for i in self.desired.identities}

        for key, action in sorted(self.identity_action.items()):
            parent = addresses.identity(key)
            wanted = {f.name.lower(): f for f in by_identity.get(key, [])}
            live_fics = {f.name.lower(): f for f in self.live.federated_credentials.get(key, ())}
            if action is Action.DELETE:
                # Deleted with their identity by ARM: listed so reviewers see them, applied for free.
                for name, lf in sorted(live_fics.items()):
                    # Done only once the identity is gone: a failed identity delete keeps them.
                    self._add_fic(key, name, Action.DELETE, "deleted with its identity", ReasonCode.IDENTITY_DELETED,
                                  lf, None,
                                  requires=(parent,), consequence_of=parent, drift=DriftClass.UNMANAGED)
                continue
            fresh = action in (Action.CREATE, Action.REPLACE)
            for name, want in sorted(wanted.items()):
                after = _fic_fields(want.name, want.issuer, want.subject, want.audiences, identity_names[key])
                have = None if fresh else live_fics.get(name)
                if have is None:
                    replaced = action is Action.REPLACE
                    why = "re-created with its identity" if replaced else "declared, not in Azure"
                    code = ReasonCode.IDENTITY_REPLACED if replaced else ReasonCode.NOT_IN_AZURE
                    self._add_fic(key, name, Action.CREATE, why, code, None, after, want=want,
                                  requires=(parent,) if fresh else (),
                                  consequence_of=parent if action is Action.REPLACE else None,
                                  drift=DriftClass.MISSING)
                    continue
                same = (have.issuer == want.issuer and have.subject == want.subject
                        and sorted(have.audiences) == sorted(want.audiences))
                self._add_fic(key, name, Action.NOOP if same else Action.UPDATE,
                              "in sync" if same else "issuer, subject or audiences differ",
                              ReasonCode.IN_SYNC if same else ReasonCode.FIELDS_DIFFER,
                              have, after, want=want, drift=None if same else DriftClass.CHANGED)
            if fresh:
                continue
            for name, lf in sorted(live_fics.items()):
                if name not in wanted:
                    self._add_fic(key, name, Action.DELETE, "not in manifests; its identity is managed",
                                  ReasonCode.NOT_DECLARED,
                                  lf, None, drift=DriftClass.UNMANAGED)

    def _add_fic(self, key: IdentityKey, name: str, action: Action, reason: str, code: ReasonCode,
                 have: LiveFederatedCredential | None, after: FederatedCredentialValue | None, *,
                 want: DesiredFederatedCredential | None = None, requires: tuple[str, ...] = (),
                 consequence_of: str | None = None, drift: DriftClass | None = None) -> None:
        before = None
        if have is not None:
            before = _fic_fields(have.name, have.issuer, have.subject, have.audiences,
                                 key.name, fic_id=have.id)
            if after is not None:
                after = replace(after, id=have.id, identity=before.identity)
        owner = want.owner if want else self._live_owner(key)
        self.changes.append(Change(
            address=addresses.federated_credential(key, name), type=ResourceType.FEDERATED_CREDENTIAL,
            action=action, reason=reason, reason_code=code, owner=owner, before=before, after=after,
            requires=requires, consequence_of=consequence_of, drift=drift,
            source=_src(want) if want else None,
        ))

    def _live_owner(self, key: IdentityKey) -> str | None:
        li = self.live.identities.get(key)
        return li.owner if li else None

    # -- role assignments ------------------------------------------------------------

    def _identity_resource_ids(self) -> dict[str, IdentityKey]:
        return {norm_scope(i.resource_id): i.key for i in self.desired.identities}

    def _plan_role_assignments(self) -> None:
        live_by_key, later = _live_by_key(self.live.role_assignments)
        identity_ids = self._identity_resource_ids()
        # A declared grant takes the live assignment of its key out of live_by_key: what is left
        # (and the later assignments of a key, which no declaration can take) matched nothing.
        # A set of the matched ones beside the map was 3.5 MB at 50,000 grants.
        missed: _Missed = {}
        for want in self.desired.role_assignments:
            self._plan_desired_assignment(want, live_by_key, identity_ids, missed)
        unmatched = sorted([*live_by_key.values(), *later], key=lambda r: r.id.lower())
        del live_by_key
        if missed:
            self._match_taken(missed)
        for ra, ident, address in self._unmatched_addresses(unmatched):
            principal = self._principal_view(ident, ra.principal_id)
            verdict = self._classify_unmatched(ra, ident)
            if verdict is None:
                continue
            action, drift, (code, reason), owner, consequence = verdict
            self.changes.append(Change(
                address=address, type=ResourceType.ROLE_ASSIGNMENT, action=action, reason=reason,
                reason_code=code, owner=owner,
                before=live_ra_fields(ra, self.role_name(ra.role_definition_id), principal),
                after=None, consequence_of=consequence, drift=drift,
            ))

    def _unmatched_addresses(
        self, unmatched: list[LiveRoleAssignment]
    ) -> list[tuple[LiveRoleAssignment, IdentityKey | None, str]]:
        """Each live assignment no declared grant matched, with the live identity it is granted to
        and its address, except those whose address a declared grant already has (a second live
        assignment under the same key)."""
        out: list[tuple[LiveRoleAssignment, IdentityKey | None, str]] = []
        for ra in unmatched:
            ident = self.principal_owner.get(ra.principal_id)
            # The old grants of a replaced identity are addressed by the old principal id, so
            # they do not collide with the re-created grants addressed by the identity.
            by_object = ident is None or self.identity_action.get(ident) is Action.REPLACE
            out.append((ra, ident, addresses.role_assignment(
                ra.scope, ra.role_definition_id, addresses.principal(None if by_object else ident, ra.principal_id))))
        if not out:
            return out
        # One address at a time: a set of every declared grant's address was 13 MB at 50,000
        # grants, while the live assignments no declaration matched are usually a handful.
        wanted = {address for _, _, address in out}
        known = {a for c in self.changes if c.type is ResourceType.ROLE_ASSIGNMENT and (a := c.address) in wanted}
        return [entry for entry in out if entry[2] not in known]

    def _classify_unmatched(
        self, ra: LiveRoleAssignment, ident: IdentityKey | None
    ) -> tuple[Action, DriftClass, tuple[ReasonCode, str], str | None, str | None] | None:
        """What to do with a live assignment no manifest declares, and why. None: not ours to
        mention (someone else's grant to someone else)."""
        opts = self.options
        if ident is not None and self.identity_action.get(ident) in (Action.DELETE, Action.REPLACE):
            deleted = self.identity_action[ident] is Action.DELETE
            code = ReasonCode.IDENTITY_DELETED if deleted else ReasonCode.IDENTITY_REPLACED
            return (Action.DELETE, DriftClass.UNMANAGED,
                    (code, f"granted to an identity being {'deleted' if deleted else 'replaced'}; would be orphaned"),
                    self._live_owner(ident), addresses.identity(ident))
        ours = grant_owner(ra, self.desired.owners)
        ours = ours if ours in self.desired.owners else None
        if ours is not None and ident is None and ra.principal_id not in self.external_principals \
                and (ra.principal_type or "").lower() == "serviceprincipal":
            if self.desired.excluded_subscriptions:
                # The principal may be an identity in a subscription this run did not read (a
                # cross-subscription grant, planned by a run that selects both): a principal
                # outside the subscriptions read is never evidence of an orphan.
                return None
            # We granted it to a service principal that is no live identity any more: its
            # identity was deleted out of band and ARM left the assignment behind.
            if opts.prune_orphans:
                return (Action.DELETE, DriftClass.ORPHANED,
                        (ReasonCode.ORPHANED, "orphaned: its principal no longer exists"), ours, None)
            return (Action.NOOP, DriftClass.ORPHANED,
                    (ReasonCode.ORPHANED, "orphaned: its principal no longer exists; remove with --prune-orphans"),
                    ours, None)
        if ours is not None:
            return (Action.DELETE, DriftClass.UNMANAGED,
                    (ReasonCode.NOT_DECLARED, f"not in manifests; owned by {ours}"), ours, None)
        if ident is not None and self.identity_action.get(ident) is not None:
            # Granted by hand to one of our identities: visible always, deleted only on request.
            owner = self._live_owner(ident)
            if opts.prune_unmanaged:
                return (Action.DELETE, DriftClass.UNMANAGED, (ReasonCode.GRANTED_OUTSIDE_MANIFESTS,
                        "granted outside the manifests (--prune-unmanaged)"), owner, None)
            return (Action.NOOP, DriftClass.UNMANAGED, (ReasonCode.GRANTED_OUTSIDE_MANIFESTS,
                    "granted outside the manifests; remove with --prune-unmanaged"), owner, None)
        return None

    def _principal_view(self, ident: IdentityKey | None, object_id: str | None) -> dict[str, str]:
        if ident is not None:
            # One per identity, shared by all its grants (values never change what they hold).
            if ident not in self.identity_principals:
                self.identity_principals[ident] = principal_view(ident, None)
            return self.identity_principals[ident]
        return principal_view(None, object_id)

    def _match_taken(self, missed: _Missed) -> None:
        """Declared grants that found no live assignment because an earlier declaration of the same
        key took it (one principal declared by identity and by object id, or one grant under two
        owners): each declaration is planned against what is live, so they match it too, and two
        owners meet as an ownership error, never as a second assignment to create."""
        scopes: dict[str, str] = {}
        taken = (c.live for c in self.changes if isinstance(c, InSyncGrant))
        for have in (*self.matched_live, *taken):
            scope = scopes.get(have.scope)
            if scope is None:
                scope = scopes[have.scope] = norm_scope(have.scope)
            for want, planned, warning in missed.pop((scope, have.role_definition_id, have.principal_id), ()):
                del self.changes[next(i for i, c in enumerate(self.changes) if c is planned)]
                if warning is not None:
                    self.warnings.remove(warning)
                self._plan_matched_assignment(want, have)
            if not missed:
                return

    def _plan_desired_assignment(self, want: DesiredRoleAssignment,
                                 live_by_key: dict[tuple[str, str, str], LiveRoleAssignment],
                                 identity_ids: dict[str, IdentityKey], missed: _Missed) -> None:
        ident = want.principal.identity
        requires: list[str] = []
        consequence: str | None = None
        principal_id: str | None = want.principal.object_id.lower() if want.principal.object_id else None
        if ident is not None:
            action = self.identity_action.get(ident)
            if action is None:
                return  # its identity could not be planned (an error is already recorded)
            if action in (Action.CREATE, Action.REPLACE):
                requires.append(addresses.identity(ident))
                consequence = addresses.identity(ident) if action is Action.REPLACE else None
            else:
                principal_id = self.live.identities[ident].principal_id.lower()
        scope_ident = identity_ids.get(norm_scope(want.scope))
        if scope_ident is not None and self.identity_action.get(scope_ident) in (Action.CREATE, Action.REPLACE):
            requires.append(addresses.identity(scope_ident))
            consequence = consequence or (
                addresses.identity(scope_ident) if self.identity_action[scope_ident] is Action.REPLACE else None)

        key = None
        if principal_id is not None and not requires:
            key = (norm_scope(want.scope), want.role_definition_id, principal_id)
            have = live_by_key.pop(key, None)
            if have is not None:
                self._plan_matched_assignment(want, have)
                return
        principal = self._principal_view(ident, want.principal.object_id)
        after = desired_ra_fields(want, principal_id, principal)
        unknown: tuple[str, ...] = ()
        if principal_id is None:
            unknown = ("principalId", "name")
        else:
            after = replace(after, name=assignment_name(want.owner, want.scope, want.role_definition_id,
                                                        principal_id))
        # Said when such a grant is added, not on every plan that merely keeps it.
        privileged = None if want.privileged_acknowledged else privileged_grant_warning(
            want.role_definition_id, want.role_name, want.scope)
        if privileged:
            self.warnings.append(privileged)
        created = Change(
            address=_grant_address(want), type=ResourceType.ROLE_ASSIGNMENT, action=Action.CREATE,
            reason="re-created with its identity" if consequence else "declared, not in Azure",
            reason_code=ReasonCode.IDENTITY_REPLACED if consequence else ReasonCode.NOT_IN_AZURE,
            owner=want.owner, before=None, after=after, unknown=unknown, requires=tuple(requires),
            consequence_of=consequence, drift=DriftClass.MISSING, source=_src(want),
        )
        self.changes.append(created)
        if key is not None:  # unless an earlier declaration of the key took its live assignment (_match_taken)
            missed.setdefault(key, []).append((want, created, privileged))

    def _plan_matched_assignment(self, want: DesiredRoleAssignment, have: LiveRoleAssignment) -> None:
        """A declared grant that exists as `have`: in sync (a compact record), changed, or to adopt."""
        role_name = self.role_name(have.role_definition_id)
        user_description = split_owner_marker(have.description)[0]
        same = (norm_text(user_description) == norm_text(want.description)
                and norm_text(have.condition) == norm_text(want.condition))
        current = grant_owner(have, {want.owner, *self.desired.owners, *want.take_over_from})
        if current == want.owner and same:
            self.changes.append(InSyncGrant.of(want, have, role_name))
            return
        self.matched_live.append(have)
        address = _grant_address(want)
        principal = self._principal_view(want.principal.identity, want.principal.object_id)
        before = live_ra_fields(have, role_name, principal)
        after = matched_ra_fields(want, have, principal)
        if current != want.owner:
            self._adopt_assignment(want, have, address, before, after, current, same)
            return
        self.changes.append(Change(
            address=address, type=ResourceType.ROLE_ASSIGNMENT, action=Action.UPDATE,
            reason="description or condition differs", reason_code=ReasonCode.FIELDS_DIFFER, owner=want.owner,
            before=before, after=after, drift=DriftClass.CHANGED, source=_src(want),
        ))

    def _adopt_assignment(self, want: DesiredRoleAssignment, have: LiveRoleAssignment, address: str,
                          before: RoleAssignmentValue, after: RoleAssignmentValue, current: str | None,
                          same: bool) -> None:
        """A declared grant that exists but is not provably ours: made by hand (adopt), or
        owned by an owner this set takes over from (transfer). Ownership is recorded in the
        description, so that removing the grant from the manifests later deletes it."""
        if current is not None and current not in want.take_over_from:
            self.errors.append(
                f"{want.source}: role assignment {have.name} ({want.role_name} on {want.scope}) is owned by "
                f"'{current}', not '{want.owner}'; remove it from one of the sets, or take it over with "
                f"metadata.takeOverFrom: [{current}]"
            )
            return
        after = replace(after, description=with_owner_marker(want.description, want.owner))
        what = "record ownership in its description"
        if not same:
            what += ", and set its description and condition as declared"
        reason = (f"transfer from {current}: {what}" if current is not None
                  else f"adopt existing grant {have.name}: {what}")
        self.changes.append(Change(
            address=address, type=ResourceType.ROLE_ASSIGNMENT, action=Action.ADOPT, reason=reason,
            reason_code=ReasonCode.OWNER_TRANSFER if current is not None else ReasonCode.ADOPT_EXISTING,
            owner=want.owner, before=before, after=after, source=_src(want),
        ))


# Declared grants planned as new although their key was looked up: (the grant, its change, its warning).
_Missed = dict[tuple[str, str, str], list[tuple[DesiredRoleAssignment, Change, str | None]]]


def _grant_address(want: DesiredRoleAssignment) -> str:
    return addresses.role_assignment(want.scope, want.role_definition_id,
                                     addresses.principal(want.principal.identity, want.principal.object_id))


def _grant_parts(c: Change) -> tuple[str, str, str]:
    """The scope, role and principal of a role assignment change's address."""
    if isinstance(c, InSyncGrant):
        return c.address_parts()
    parsed = addresses.Address.parse(c.address)
    return parsed.scope, parsed.role, parsed.principal


def _ranks(parts: set[str], end: str) -> dict[str, int]:
    return {part: i for i, part in enumerate(sorted(parts, key=lambda p: p + end))}


def in_plan_order(changes: Iterable[Change]) -> tuple[Change, ...]:
    """Identities, then credentials, then role assignments, each by address.

    A role assignment's address is `roleAssignment[scope|role|principal]`. It sorts here by one
    number per grant, the ranks of its scope + "|", role + "|" and principal + "]" among all
    grants' (which orders exactly as the whole string does: no part holds a "|"), instead of by
    its address: at 50,000 compact in-sync grants (reconciler/in_sync.py) building every address,
    or a tuple of parts per grant, to sort by was 5 to 13 MB at the plan's peak memory."""
    identities: list[Change] = []
    credentials: list[Change] = []
    grants: list[Change] = []
    for c in changes:
        {ResourceType.IDENTITY: identities, ResourceType.FEDERATED_CREDENTIAL: credentials,
         ResourceType.ROLE_ASSIGNMENT: grants}[c.type].append(c)
    identities.sort(key=lambda c: c.address)
    credentials.sort(key=lambda c: c.address)
    found: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    for c in grants:
        for seen, part in zip(found, _grant_parts(c), strict=True):
            seen.add(part)
    scopes, roles, principals = (_ranks(seen, end) for seen, end in zip(found, "||]", strict=True))
    del found
    width_r, width_p = len(roles), len(principals)

    def rank(c: Change) -> int:
        scope, role, principal = _grant_parts(c)
        return (scopes[scope] * width_r + roles[role]) * width_p + principals[principal]

    grants.sort(key=rank)
    return (*identities, *credentials, *grants)


def _live_by_key(
    assignments: Iterable[LiveRoleAssignment],
) -> tuple[dict[tuple[str, str, str], LiveRoleAssignment], list[LiveRoleAssignment]]:
    """Live assignments by (normalised scope, role GUID, principal id), the first of each key,
    and the later ones of a key; keyed as `LiveRoleAssignment.key`, with one normalised string
    per distinct scope, not per grant."""
    scopes: dict[str, str] = {}
    out: dict[tuple[str, str, str], LiveRoleAssignment] = {}
    later: list[LiveRoleAssignment] = []
    for ra in assignments:
        scope = scopes.get(ra.scope)
        if scope is None:
            scope = scopes[ra.scope] = norm_scope(ra.scope)
        if out.setdefault((scope, ra.role_definition_id, ra.principal_id), ra) is not ra:
            later.append(ra)
    return out, later


def grant_owner(ra: LiveRoleAssignment, candidates: Iterable[str]) -> str | None:
    """Who owns a live grant: the owner its description's marker names, else the candidate
    whose deterministic name it carries, else nobody we can prove."""
    marked = split_owner_marker(ra.description)[1]
    if marked is not None:
        return marked
    return next((o for o in sorted(candidates)
                 if ra.name.lower() == assignment_name(o, ra.scope, ra.role_definition_id, ra.principal_id)), None)


def make_plan(
    desired: DesiredState, live: LiveState, role_name: RoleNamer | None = None, options: PlanOptions | None = None
) -> Plan:
    """Compare desired with live and say what to do. Raises PlanError when they cannot be
    reconciled as written (ownership conflicts, protected identities, missing resource groups)."""
    unresolved = [ra.principal.label() for ra in desired.role_assignments if not ra.principal.resolved]
    if unresolved:  # names are resolved through the directory first (reconciler/principals.py)
        raise PlanError(f"principal names not resolved to object ids: {', '.join(sorted(set(unresolved)))}")
    return _Planner(desired, live, role_name or (lambda guid: guid), options or PlanOptions()).run()
