"""ARM resource ids and scopes as one value type: the only place that splits an ARM id.

ARM treats the keywords (`subscriptions`, `resourceGroups`, `providers`), the provider
namespace, resource types and names case-insensitively, and some of its own APIs return
them in other casings (activity logs: `/SUBSCRIPTIONS/…/RESOURCEGROUPS/…`). `ResourceId.parse`
accepts any casing; `str()` gives one canonical form (canonical keywords, names as written);
equality and hashing compare the case-insensitive `key`.

    /                                                               tenant root
    /providers/Microsoft.Management/managementGroups/{mg}          management group
    /subscriptions/{sub}                                            subscription
    /subscriptions/{sub}/resourceGroups/{rg}                        resource group
    [/subscriptions/{sub}[/resourceGroups/{rg}]]/providers/{Namespace}/{type}/{name}[/{type}/{name}...]
                                                                    a resource; an extension resource
                                                                    adds /providers/… after it
"""

from __future__ import annotations

from dataclasses import dataclass

SUBSCRIPTIONS = "subscriptions"
RESOURCE_GROUPS = "resourceGroups"
PROVIDERS = "providers"
MANAGEMENT_GROUPS = "Microsoft.Management/managementGroups"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
ROLE_DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"

_HINT = (
    "write /subscriptions/{id}[/resourceGroups/{name}[/providers/{Namespace}/{type}/{name}...]]: "
    "keywords in any case, every segment non-empty (no '//'); one trailing slash is ignored"
)


class ResourceIdError(ValueError):
    """Not an ARM id; the message names the whole text and what is wrong with it."""

    hint = _HINT


def scope_key(text: str) -> str:
    """Case-insensitive comparison form of any ARM id or scope, valid or not: lower case, one
    leading slash, no trailing or doubled slashes. `/` stays `/`. Equal to `ResourceId.key`
    for every id that parses."""
    return "/" + "/".join(p for p in text.strip().split("/") if p).lower()


@dataclass(frozen=True)
class ProviderPath:
    """`/providers/{namespace}/{type}/{name}[/{type}/{name}...]`: one provider's part of an id."""

    namespace: str
    levels: tuple[tuple[str, str], ...]  # (type, name) from the outermost in

    @property
    def type(self) -> str:
        """The full resource type, e.g. `Microsoft.ManagedIdentity/userAssignedIdentities`."""
        return "/".join([self.namespace, *(t for t, _ in self.levels)])

    def __str__(self) -> str:
        return f"/{PROVIDERS}/{self.namespace}" + "".join(f"/{t}/{n}" for t, n in self.levels)


@dataclass(frozen=True, eq=False)
class ResourceId:
    subscription: str | None = None
    resource_group: str | None = None
    providers: tuple[ProviderPath, ...] = ()

    # -- construction ------------------------------------------------------------------

    @staticmethod
    def parse(text: str) -> ResourceId:
        """Parse an ARM id or scope in any keyword casing; raise ResourceIdError otherwise."""
        rid, collection = _parse(text, allow_collection=False)
        assert collection is None
        return rid

    @staticmethod
    def try_parse(text: str) -> ResourceId | None:
        try:
            return ResourceId.parse(text)
        except ResourceIdError:
            return None

    @staticmethod
    def of_request_path(path: str) -> tuple[ResourceId, str | None] | None:
        """The id a request URL's path addresses and, for a path that names a collection
        (`…/resourcegroups`, `…/userAssignedIdentities`, `…/locations`), that collection's type
        word; None for a path that is no ARM id at all."""
        try:
            return _parse(path, allow_collection=True)
        except ResourceIdError:
            return None

    @staticmethod
    def identity(subscription: str, resource_group: str, name: str) -> ResourceId:
        namespace, kind = IDENTITY_TYPE.split("/")
        return ResourceId(subscription, resource_group, (ProviderPath(namespace, ((kind, name),)),))

    # -- accessors ---------------------------------------------------------------------

    @property
    def level(self) -> str:
        """tenant, managementGroup, subscription, resourceGroup or resource."""
        if self.providers:
            if self.subscription is None and self.providers[0].type.lower() == MANAGEMENT_GROUPS.lower() \
                    and len(self.providers) == 1 and len(self.providers[0].levels) == 1:
                return "managementGroup"
            return "resource"
        if self.resource_group is not None:
            return "resourceGroup"
        return "subscription" if self.subscription is not None else "tenant"

    @property
    def provider(self) -> str | None:
        """The namespace of the innermost resource, e.g. `Microsoft.ManagedIdentity`."""
        return self.providers[-1].namespace if self.providers else None

    @property
    def type(self) -> str | None:
        """The full type of the innermost resource, e.g. `Microsoft.ManagedIdentity/userAssignedIdentities`."""
        return self.providers[-1].type if self.providers else None

    @property
    def name(self) -> str | None:
        """The innermost name: the resource's, else the resource group's, else the subscription id."""
        if self.providers:
            return self.providers[-1].levels[-1][1]
        return self.resource_group if self.resource_group is not None else self.subscription

    @property
    def parent(self) -> ResourceId | None:
        """One level up (a child resource's parent, a resource's group, a group's
        subscription, a subscription's tenant root); None at the tenant root."""
        if self.providers:
            last = self.providers[-1]
            if len(last.levels) > 1:
                return ResourceId(self.subscription, self.resource_group,
                                  (*self.providers[:-1], ProviderPath(last.namespace, last.levels[:-1])))
            return ResourceId(self.subscription, self.resource_group, self.providers[:-1])
        if self.resource_group is not None:
            return ResourceId(self.subscription)
        return ResourceId() if self.subscription is not None else None

    def is_type(self, resource_type: str) -> bool:
        return self.type is not None and self.type.lower() == resource_type.lower()

    @property
    def key(self) -> str:
        return str(self).lower()

    def __str__(self) -> str:
        text = ""
        if self.subscription is not None:
            text += f"/{SUBSCRIPTIONS}/{self.subscription}"
            if self.resource_group is not None:
                text += f"/{RESOURCE_GROUPS}/{self.resource_group}"
        text += "".join(str(p) for p in self.providers)
        return text or "/"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceId) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def _parse(text: str, *, allow_collection: bool) -> tuple[ResourceId, str | None]:
    return _Parser(text, allow_collection).parse()


class _Parser:
    """One pass over an id's segments: the subscription and resource group, then each
    `providers/{namespace}/{type}/{name}...` block. With `allow_collection` an id may end in a
    collection word (`.../locations`), returned beside the id of its parent."""

    def __init__(self, text: str, allow_collection: bool) -> None:
        self.text = text
        self.allow_collection = allow_collection
        raw = text.strip()
        if not raw.startswith("/"):
            raise ResourceIdError(f"'{text}' is not an ARM id: it must start with '/'")
        body = raw[1:-1] if raw.endswith("/") and raw != "/" else raw[1:]
        self.segments = body.split("/") if body else []
        if any(not s for s in self.segments):
            raise ResourceIdError(f"'{text}' is not an ARM id: it has an empty segment ('//')")
        self.low = [s.lower() for s in self.segments]
        self.i = 0
        self.subscription: str | None = None
        self.resource_group: str | None = None
        self.providers: list[ProviderPath] = []

    def fail(self, what: str) -> ResourceIdError:
        return ResourceIdError(f"'{self.text}' is not an ARM id: {what}")

    def at(self, word: str) -> bool:
        return self.i < len(self.low) and self.low[self.i] == word

    def at_last(self) -> bool:
        return self.i == len(self.segments) - 1

    def rid(self, *more: ProviderPath) -> ResourceId:
        return ResourceId(self.subscription, self.resource_group, (*self.providers, *more))

    def collection(self, word: str) -> tuple[ResourceId, str | None]:
        if not self.allow_collection or not self.at_last():
            raise self.fail(f"'{word}' must be followed by a name")
        return self.rid(), word

    def parse(self) -> tuple[ResourceId, str | None]:
        if self.at("subscriptions"):
            if self.at_last():
                return self.collection(SUBSCRIPTIONS)
            self.subscription = self.segments[self.i + 1]
            self.i += 2
            if self.at("resourcegroups"):
                if self.at_last():
                    return self.collection(RESOURCE_GROUPS)
                self.resource_group = self.segments[self.i + 1]
                self.i += 2
        while self.i < len(self.segments):
            ended = self.provider()
            if ended is not None:
                return ended
        return self.rid(), None

    def provider(self) -> tuple[ResourceId, str | None] | None:
        """Reads one `providers/...` block; the result when the id ends in a collection in it."""
        segments = self.segments
        if not self.at("providers"):
            if self.allow_collection and self.at_last() and not self.providers:
                return self.rid(), segments[self.i]  # e.g. /subscriptions/x/locations
            expected = "'providers'" if self.resource_group is not None or self.subscription is None else \
                "'resourceGroups' or 'providers'"
            raise self.fail(f"found '{segments[self.i]}' where {expected} was expected")
        if self.at_last():
            raise self.fail("'providers' must be followed by a namespace such as Microsoft.Authorization")
        namespace = segments[self.i + 1]
        self.i += 2
        levels: list[tuple[str, str]] = []
        while self.i < len(segments) and not self.at("providers"):
            if self.at_last():
                if self.allow_collection:
                    rid = self.rid(ProviderPath(namespace, tuple(levels))) if levels else self.rid()
                    return rid, segments[self.i]
                raise self.fail(f"resource type '{segments[self.i]}' has no name after it")
            levels.append((segments[self.i], segments[self.i + 1]))
            self.i += 2
        if not levels:
            if self.allow_collection and self.i == len(segments):
                return self.rid(), namespace
            raise self.fail(f"'providers/{namespace}' must be followed by a resource type and name")
        self.providers.append(ProviderPath(namespace, tuple(levels)))
        return None
