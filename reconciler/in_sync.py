"""In-sync changes as compact records.

At estate scale almost every change is a no-op: a plan of 10,000 identities and 50,000 grants
in sync held 62,500 full `Change` entries, each with its own address string, source string and
`before` value, about 30 MB that nobody reads unless they ask for `-v` or the JSON plan
(docs/BENCHMARKS.md, figure 4). An in-sync change here holds the desired and live records it
was planned from, which the run holds anyway, and builds its address, source, before and after
when they are read, with the same functions the planner uses (reconciler/field_views.py). To
every reader it is a `Change` with the same fields: renderers, the JSON plan, drift and apply
cannot tell the two apart, and a plan read back from JSON equals the plan it was written from.

The four derived fields stay assignable (`dataclasses.replace` builds a change of the same
class through `Change.__init__`): a value set on a record wins over the derived one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler import addresses
from reconciler.field_views import (
    existing_identity_fields,
    live_identity_fields,
    live_ra_fields,
    matched_ra_fields,
    principal_view,
    source_text,
)
from reconciler.model import (
    DesiredIdentity,
    DesiredRoleAssignment,
    LiveIdentity,
    LiveRoleAssignment,
    norm_scope,
    role_guid,
)
from reconciler.payloads import Payload
from reconciler.plan import Action, Change, ReasonCode, ResourceType


class _Derived:
    """A field of Change that a compact record builds when it is read, unless one was set."""

    def __init__(self, build: Callable[[Any], Any]) -> None:
        self.build = build

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.slot = Change.__dict__[name]  # Change's own slot for the field: where a set value goes

    def __get__(self, record: Change | None, owner: type[Any] | None = None) -> Any:
        if record is None:
            return self
        try:
            return self.slot.__get__(record, owner)
        except AttributeError:  # not set: built from the records
            return self.build(record)

    def __set__(self, record: Change, value: Any) -> None:
        self.slot.__set__(record, value)


def _start(record: Change, type_: ResourceType, owner: str) -> None:
    """The fields an in-sync change shares with every other: set once, in Change's own slots."""
    for name, value in (("type", type_), ("action", Action.NOOP), ("reason", "in sync"), ("owner", owner),
                        ("reason_code", ReasonCode.IN_SYNC), ("unknown", ()), ("requires", ()),
                        ("consequence_of", None), ("drift", None), ("modified", None)):
        object.__setattr__(record, name, value)


def _same_or(before: Payload, after: Payload) -> Payload:
    # As Change.__post_init__ does for a no-op: one value for both when they are equal.
    return before if after == before else after


class InSyncIdentity(Change):
    """A declared identity that exists as declared."""

    __slots__ = ("_have", "_source_id", "_want")
    _want: DesiredIdentity
    _have: LiveIdentity
    _source_id: str | None

    @classmethod
    def of(cls, want: DesiredIdentity, have: LiveIdentity, source_id: str | None) -> InSyncIdentity:
        record = object.__new__(cls)
        _start(record, ResourceType.IDENTITY, want.owner)
        for name, value in (("_want", want), ("_have", have), ("_source_id", source_id)):
            object.__setattr__(record, name, value)
        return record

    @property
    def live(self) -> LiveIdentity:
        """The live identity this change was planned from."""
        return self._have

    address = _Derived(lambda r: addresses.identity(r._want.key))
    source = _Derived(lambda r: source_text(r._want))
    before = _Derived(lambda r: live_identity_fields(r._have))
    after = _Derived(
        lambda r: _same_or(live_identity_fields(r._have), existing_identity_fields(r._want, r._source_id, r._have)))


class InSyncGrant(Change):
    """A declared role assignment that exists as declared, under its owner's name."""

    __slots__ = ("_have", "_role_name", "_want")
    _want: DesiredRoleAssignment
    _have: LiveRoleAssignment
    _role_name: str

    @classmethod
    def of(cls, want: DesiredRoleAssignment, have: LiveRoleAssignment, role_name: str) -> InSyncGrant:
        """`role_name`: the name of the live assignment's role."""
        record = object.__new__(cls)
        _start(record, ResourceType.ROLE_ASSIGNMENT, want.owner)
        for name, value in (("_want", want), ("_have", have), ("_role_name", role_name)):
            object.__setattr__(record, name, value)
        return record

    def _principal(self) -> dict[str, str]:
        return principal_view(self._want.principal.identity, self._want.principal.object_id)

    @property
    def live(self) -> LiveRoleAssignment:
        """The live assignment this change was planned from."""
        return self._have

    def address_parts(self) -> tuple[str, str, str]:
        """The scope, role and principal of the address, without building it."""
        want = self._want
        return (norm_scope(want.scope), role_guid(want.role_definition_id),
                addresses.principal(want.principal.identity, want.principal.object_id))

    def _before(self) -> Payload:
        return live_ra_fields(self._have, self._role_name, self._principal())

    address = _Derived(
        lambda r: addresses.role_assignment(r._want.scope, r._want.role_definition_id,
                                            addresses.principal(r._want.principal.identity,
                                                                r._want.principal.object_id)))
    source = _Derived(lambda r: source_text(r._want))
    before = _Derived(lambda r: r._before())
    after = _Derived(
        lambda r: _same_or(r._before(), matched_ra_fields(r._want, r._have, r._principal())))
