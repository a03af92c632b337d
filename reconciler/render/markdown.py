"""Pull-request comment rendering of a Plan (GitHub-flavoured Markdown).

Reviewers read a plan comment top-down and often stop early, so the order is fixed by what
they must not miss:

1. a heading with the verdict: the text renderer's summary line, except that a plan whose
   only content is reported drift does not claim that Azure matches the manifests;
2. a table of counts per action and per drift class;
3. a note when the comment is abridged, saying what was left out and where the full plan is;
4. the plan's warnings, as a `[!WARNING]` callout;
5. every resource destroyed or replaced, as a `[!CAUTION]` callout, with its reason;
6. the changes grouped by identity (its own change, its federated credentials, the role
   assignments granted to it or at its scope; grants to other principals get one group per
   principal), each group a `<details>` section;
7. a Mermaid diagram of the role assignments that change, when it is small enough to read.

GitHub refuses comments over 65,536 characters, and a comment cut at an arbitrary point can
leave a `<details>` or a code fence open, which swallows everything after it. So the output
is never cut: it is built whole at the richest level that fits `max_chars`, degrading in steps

    FULL        everything above
    NO_DIAGRAM  without the diagram
    ONE_LINE    one line per change, no field diffs; a federated credential's line keeps its
                issuer, subject and non-default audiences
    COUNTS      security-relevant changes only, one line each: every deletion and replacement,
                every federated credential (issuer, subject, audiences) and every role
                assignment (principal, role, scope); everything else is counted per group.
                Should even those not fit, the comment says exactly how many of each kind
                are left out, and where the full plan is.

Values come from manifests and from Azure (names, tags, descriptions, role names), so every
one is escaped for the context it lands in: Markdown text, a code span, HTML, a code fence or
a Mermaid label.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import zip_longest

from reconciler.model import DEFAULT_AUDIENCES
from reconciler.plan import Action, Change, DriftClass, Plan, ResourceType
from reconciler.render.describe import VERB, field_lines, title
from reconciler.render.preflight import markdown_lines as preflight_markdown
from reconciler.render.text import summary_line
from reconciler.resource_id import IDENTITY_TYPE, MANAGEMENT_GROUPS, ResourceId, scope_key
from reconciler.textsafe import one_line

# Below this there is no room for the heading, the tables and the abridged note together.
MIN_MAX_CHARS = 2_000
# More edges than this make a Mermaid flowchart a hairball nobody reads.
MAX_DIAGRAM_EDGES = 40
# Small plans are read at a glance: their groups start open (still collapsible).
OPEN_GROUPS_UP_TO = 10
# COUNTS level only: one entry in a budgeted list never takes more than this much raw text.
_CLIP = 200
_HINT_CLIP = 300


class Level(IntEnum):
    FULL = 0
    NO_DIAGRAM = 1
    ONE_LINE = 2
    COUNTS = 3


_OMITTED = {
    Level.NO_DIAGRAM: "the access diagram is omitted",
    Level.ONE_LINE: "the access diagram and field-level details are omitted",
    Level.COUNTS: "only security-relevant changes are listed (deletions, federated credentials, role "
                  "assignments); other changes are counted per group",
}

_ACTION_COLUMNS = (
    (Action.CREATE, "add"),
    (Action.UPDATE, "change"),
    (Action.REPLACE, "replace"),
    (Action.DELETE, "destroy"),
    (Action.NOOP, "unchanged"),
)
_PHRASE = {
    Action.CREATE: "to add",
    Action.UPDATE: "to change",
    Action.REPLACE: "to replace",
    Action.DELETE: "to destroy",
    Action.NOOP: "reported, not changed",  # only no-ops with a drift class are listed
    Action.ADOPT: "to adopt",
}
# GitHub colours `diff` fences by the first character: `+` green, `-` red, `!` orange. `~`
# gets no colour, so in-place changes are marked `!` (as Terraform PR-comment tools do).
_DIFF_MARKER = {"+": "+", "-": "-", "~": "!", "": " ", " ": " "}
_EDGE_COLOUR = {Action.CREATE: "#1a7f37", Action.UPDATE: "#9a6700", Action.DELETE: "#cf222e"}


# ----------------------------------------------------------------------------- escaping

# `#` is left alone: it only matters at the start of a line, where a value never lands.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
# GitHub turns `@name` into a notification and `#12` into an issue link after Markdown is
# rendered, so a backslash does not stop them; an empty HTML comment splits the text node.
_REFERENCE = re.compile(r"([@#])(?=[A-Za-z0-9])")
# GitHub turns `:name:` into an emoji the same way (`a.yaml:100:13` would show 💯): split the
# text node after a colon that would open one. Shortcodes start with a letter, or are one of
# the few numeric ones, so times such as 22:40:00 stay as they are.
_EMOJI_CODE = re.compile(r":(?=(?:[A-Za-z][A-Za-z0-9_+-]*|100|1234|\+1|-1|8ball):)")


def _one_line(text: str) -> str:
    # A line break inside a value would end a table row, a list item or a callout line; other
    # control characters (terminal escapes, bidi overrides) are shown as escapes.
    return one_line(re.sub(r"[\r\n\t\v\f\u2028\u2029]+", " ", text))


def md_text(text: str) -> str:
    """Escape a value for Markdown inline text (paragraphs, list items, table cells)."""
    escaped = html.escape(_one_line(text), quote=False)
    escaped = _MD_SPECIAL.sub(r"\\\1", escaped)
    escaped = _EMOJI_CODE.sub(":<!-- -->", escaped)
    return _REFERENCE.sub(r"\1<!-- -->", escaped)


def md_code(text: str, *, in_table: bool = False) -> str:
    """A value as a code span: nothing inside is Markdown or HTML, only backticks matter."""
    value = _one_line(text)
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    if value.startswith(("`", " ")) or value.endswith(("`", " ")):
        value = f" {value} "  # CommonMark strips one space each side when both are there
    if in_table:
        value = value.replace("|", "\\|")  # GFM splits cells before parsing code spans
    return f"{fence}{value}{fence}"


def html_text(text: str) -> str:
    """A value inside an HTML block (e.g. `<summary>`), where Markdown is not parsed."""
    return html.escape(_one_line(text), quote=True)


def _code_fence(lines: list[str], info: str) -> list[str]:
    """A fenced block. Only a line *starting* with backticks closes it, and none can: diff
    lines start with their marker and values are JSON-quoted (no line breaks), Mermaid lines
    are ours and their labels have backticks as entity codes."""
    return [f"```{info}", *lines, "```"]


_MERMAID_SAFE = re.compile(r"[A-Za-z0-9 ._/:+~\-]")


def mermaid_label(text: str) -> str:
    """A quoted Mermaid label: everything outside a small safe set becomes an entity code
    (`#34;`), so quotes, brackets, pipes, backticks and HTML in names cannot end the label."""
    return "".join(ch if _MERMAID_SAFE.fullmatch(ch) else f"#{ord(ch)};" for ch in _one_line(text))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- grouping


@dataclass
class _Group:
    key: str
    kind: str  # "identity", or the principal type of another principal
    name: str
    changes: list[Change] = field(default_factory=list)

    def counts(self) -> Counter[Action]:
        return Counter(c.action for c in self.changes)


def _norm(scope: str) -> str:
    return scope_key(scope)


def _identity_at(scope: str) -> str | None:
    """The identity address of a scope that is an identity's resource id, else None."""
    rid = ResourceId.try_parse(scope)
    if (rid is None or not rid.is_type(IDENTITY_TYPE) or len(rid.providers) != 1
            or rid.subscription is None or rid.resource_group is None or rid.name is None):
        return None
    return f"identity/{rid.subscription}/{rid.resource_group}/{rid.name}".lower()


def _identity_name(address: str, changes: dict[str, Change]) -> str:
    change = changes.get(address)
    if change is not None:
        fields = change.fields()
        return f"{fields.get('resourceGroup')}/{fields.get('name')}"
    return "/".join(address.split("/")[-2:])  # identity/{sub}/{rg}/{name}


def _named_changes(plan: Plan) -> dict[str, Change]:
    """By address, the changes the comment names others by: identities (the groups' titles) and
    what a listed change is a consequence of. Not all of them: at estate scale most are compact
    in-sync records whose addresses are built when read (reconciler/in_sync.py)."""
    causes = {c.consequence_of for c in _shown(plan) if c.consequence_of}
    out: dict[str, Change] = {}
    for c in plan.changes:
        if c.type is ResourceType.IDENTITY:
            out[c.address] = c
        elif causes and (address := c.address) in causes:
            out[address] = c
    return out


def _shown(plan: Plan) -> list[Change]:
    """What the comment lists: every change, plus drift the planner reports without changing
    it (grants made by hand, orphans, other owners' identities shown as context)."""
    return [c for c in plan.changes if c.action is not Action.NOOP or c.drift is not None]


def _groups(plan: Plan) -> list[_Group]:
    by_address = _named_changes(plan)
    groups: dict[str, _Group] = {}

    def group_of(change: Change) -> _Group:
        fields = change.fields()
        if change.type is ResourceType.IDENTITY:
            key = change.address
        elif change.type is ResourceType.FEDERATED_CREDENTIAL:
            key = change.address.split("/federatedCredential/")[0]
        else:
            principal: dict[str, str] = fields.get("principal") or {}
            key = principal.get("identity") or _identity_at(str(fields.get("scope", ""))) or ""
            if not key:
                object_id = str(principal.get("objectId") or fields.get("principalId") or "unknown")
                key = f"principal:{object_id.lower()}"
                kind = str(principal.get("type") or fields.get("principalType") or "principal")
                return groups.setdefault(key, _Group(key, kind, _principal_name(principal, object_id)))
        return groups.setdefault(key, _Group(key, "identity", _identity_name(key, by_address)))

    for change in _shown(plan):
        group_of(change).changes.append(change)
    # Identities first, in address order; then other principals.
    return sorted(groups.values(), key=lambda g: (g.key.startswith("principal:"), g.key))


def _principal_name(principal: dict[str, str], object_id: str) -> str:
    """`sg-admins <upn or appId> (object id)` when plan could read the directory, else the id."""
    if principal.get("displayName") is None:
        return object_id
    extra = principal.get("userPrincipalName") or principal.get("appId")
    return f"{principal['displayName']}" + (f" <{extra}>" if extra else "") + f" ({object_id})"


# ----------------------------------------------------------------------------- pieces


def _verdict(plan: Plan) -> str:
    return summary_line(plan).rstrip(".")


def _heading(plan: Plan) -> list[str]:
    return [f"### {md_text(_verdict(plan))}", ""]


def _summary_table(plan: Plan) -> list[str]:
    actions = plan.summary()
    drift = Counter(c.drift for c in plan.changes if c.drift is not None)
    rows = ["| Action | Count | Drift | Count |", "| :-- | --: | :-- | --: |"]
    # Side by side because there are as many actions as drift classes; should either list
    # grow, the shorter column is padded rather than the comment failing.
    columns = [*_ACTION_COLUMNS, *([(Action.ADOPT, "adopt")] if "adopt" in actions else [])]
    for column, klass in zip_longest(columns, DriftClass):
        left = right = " | "
        if column is not None:
            action, label = column
            symbol = f"`{action.symbol}` " if action is not Action.NOOP else ""
            left = f"{symbol}{label} | {actions[action.value]}"
        if klass is not None:
            right = f"{klass.value} | {drift[klass]}"
        rows.append(f"| {left} | {right} |")
    return [*rows, ""]


def _where_full_plan(hint: str | None) -> str:
    if hint:
        return md_text(_clip(hint, _HINT_CLIP).rstrip("."))
    return "run `reconciler plan` for the full plan"


def _abridged_note(level: Level, hint: str | None) -> list[str]:
    if level is Level.FULL:
        return []
    return [
        "> [!NOTE]",
        f"> This comment is abridged to fit GitHub's size limit: {_OMITTED[level]} — {_where_full_plan(hint)}.",
        "",
    ]


def _abandoned(plan: Plan) -> list[str]:
    """Owners whose manifests are all gone: never abridged (a few lines per owner)."""
    if not plan.abandoned:
        return []
    out = ["> [!IMPORTANT]", "> **Identities in Azure with no manifest any more**"]
    for a in plan.abandoned:
        names = ", ".join(md_code(n) for n in a.identities[:5])
        more = f" and {len(a.identities) - 5} more" if len(a.identities) > 5 else ""
        out.append(f"> - {md_text(a.sentence())}: {names}{more}. To delete them, {md_text(a.how_to_delete())}.")
    return [*out, ""]


def _warning_items(plan: Plan, clip: int | None) -> list[str]:
    return [f"> - {md_text(_clip(w, clip) if clip else w)}" for w in plan.warnings]


def _preflight(plan: Plan) -> list[str]:
    return preflight_markdown(plan, md_text, lambda t: md_code(t, in_table=True))


def _warnings(items: list[str], total: int) -> list[str]:
    if not total:
        return []
    noun = "warning" if total == 1 else "warnings"
    return ["> [!WARNING]", f"> **{total} {noun}**", *items, ""]


def _symbol(change: Change) -> str:
    # `!` marks drift that is reported and left alone, as in the text renderer.
    return "!" if change.action is Action.NOOP else change.action.symbol


def _verb(change: Change) -> str:
    if change.action is Action.NOOP and change.drift is not None:
        return "is left unchanged"  # "is in sync" would be false: it differs, on purpose untouched
    return VERB[change.action]


def _head(change: Change, by_address: dict[str, Change], clip: int | None = None) -> str:
    """One line for a change: symbol, title, verb, reason, what it is a consequence of."""
    def cut(text: str) -> str:
        return _clip(text, clip) if clip else text

    line = f"`{_symbol(change)}` **{md_text(cut(title(change)))}** {_verb(change)}"
    if change.reason:
        line += f" — {md_text(cut(change.reason))}"
    if change.consequence_of:
        cause = by_address.get(change.consequence_of)
        what = md_text(cut(title(cause))) if cause is not None else md_code(change.consequence_of)
        line += f", because {what} {_verb(cause) if cause is not None else 'changes'}"
    return line


def _credential_fields(change: Change) -> str:
    """Who may use an identity: a federated credential's issuer, subject and non-default
    audiences, as one suffix (`old -> new` where an update changes them). Never abridged."""
    if change.type is not ResourceType.FEDERATED_CREDENTIAL:
        return ""
    before, after = change.before_fields() or {}, change.after_fields() or {}
    parts = []
    for name in ("issuer", "subject", "audiences"):
        old, new = before.get(name), after.get(name)
        if name == "audiences":
            old = None if old is None or list(old) == list(DEFAULT_AUDIENCES) else ", ".join(old)
            new = None if new is None or list(new) == list(DEFAULT_AUDIENCES) else ", ".join(new)
        if change.before is not None and change.after is not None and old != new:
            parts.append(f"{name} {md_code(str(old or 'default'))} → {md_code(str(new or 'default'))}")
        elif (value := new if change.after is not None else old) is not None:
            parts.append(f"{name} {md_code(str(value))}")
    return "".join(f" · {p}" for p in parts)


def _destroy_items(plan: Plan, abridged: bool) -> list[str]:
    by_address = _named_changes(plan)
    return [
        f"> {_security_item(c, by_address)}" if abridged else f"> - {_head(c, by_address)}"
        for c in plan.changes
        if c.action in (Action.DELETE, Action.REPLACE)
    ]


def _security_changes(plan: Plan) -> list[Change]:
    """Credentials and grants that the comment lists even when abridged (deletions and
    replacements are in the destroy list already)."""
    return [c for c in _shown(plan) if c.type is not ResourceType.IDENTITY
            and c.action not in (Action.DELETE, Action.REPLACE)]


def _security_item(change: Change, by_address: dict[str, Change]) -> str:
    # The title carries a grant's role, principal and scope: only the reason is clipped.
    line = _head(change, by_address)
    if change.reason and len(change.reason) > _CLIP:
        line = line.replace(md_text(change.reason), md_text(_clip(change.reason, _CLIP)), 1)
    return f"- {line}{_credential_fields(change)}"


def _destroys(plan: Plan, items: list[str]) -> list[str]:
    s = plan.summary()
    if not (s["delete"] or s["replace"]):
        return []
    what = ", ".join(
        f"{s[a.value]} {_PHRASE[a]}" for a in (Action.DELETE, Action.REPLACE) if s[a.value]
    )
    return ["> [!CAUTION]", f"> **{what}**: check that each is intended", *items, ""]


def _counts_text(counts: Counter[Action]) -> str:
    return ", ".join(f"{counts[a]} {_PHRASE[a]}" for a in (Action.ADOPT, *(a for a, _ in _ACTION_COLUMNS)) if counts[a])


def _group_label(group: _Group) -> str:
    return f"<b>{html_text(group.kind)} <code>{html_text(group.name)}</code></b>"


def _change_block(change: Change, by_address: dict[str, Change], level: Level) -> list[str]:
    line = _head(change, by_address)
    extras = [change.drift.value] if change.drift else []
    if change.source:
        extras.append(f"declared at {md_code(change.source)}")
    if change.modified and (change.modified.get("by") or change.modified.get("at")):
        # Who touched it last tells a reviewer whether drift was a person, a pipeline or us.
        by = change.modified.get("byName") or change.modified.get("by")
        at = change.modified.get("at")
        extras.append("last changed" + (f" by {md_code(by)}" if by else "") + (f" at {md_text(at)}" if at else ""))
    if extras:
        line += f" <sub>{' · '.join(extras)}</sub>"
    if level is Level.ONE_LINE:
        return [f"- {line}{_credential_fields(change)}"]
    # Field names come from tag keys and values from anywhere: one line each, no CI commands.
    diff = [one_line(f"{_DIFF_MARKER[marker]} {name} = {text}") for marker, name, text in field_lines(change)]
    return [line, "", *([*_code_fence(diff, "diff"), ""] if diff else [])]


def _group_sections(plan: Plan, groups: list[_Group], level: Level) -> Iterator[list[str]]:
    """One `<details>` section per group, lazily: the caller stops once it is too long."""
    by_address = _named_changes(plan)
    is_open = " open" if len(plan.actionable) <= OPEN_GROUPS_UP_TO else ""
    for group in groups:
        out = [f"<details{is_open}><summary>{_group_label(group)}: {_counts_text(group.counts())}</summary>", ""]
        for change in group.changes:
            out += _change_block(change, by_address, level)
        if level is Level.ONE_LINE:
            out.append("")  # end the list: `</details>` must start its own block to be HTML
        yield [*out, "</details>", ""]


def _group_rows(groups: list[_Group], adopt: bool = False) -> list[str]:
    rows = []
    columns = [a for a, _ in _ACTION_COLUMNS] + ([Action.ADOPT] if adopt else [])
    for group in groups:
        counts = group.counts()
        label = f"{md_text(group.kind)} {md_code(_clip(group.name, _CLIP), in_table=True)}"
        rows.append(f"| {label} | " + " | ".join(str(counts[a]) for a in columns) + " |")
    return rows


def _group_table_head(adopt: bool) -> list[str]:
    """The group table's header; an `adopt` column only when the plan adopts anything."""
    if not adopt:
        return _GROUP_TABLE_HEAD
    return [_GROUP_TABLE_HEAD[0] + " adopt |", _GROUP_TABLE_HEAD[1] + " --: |"]


_GROUP_TABLE_HEAD = [
    "| Group | add | change | replace | destroy | reported |",
    "| :-- | --: | --: | --: | --: | --: |",
]


# ----------------------------------------------------------------------------- diagram


def _scope_label(scope: str) -> list[str]:
    rid = ResourceId.try_parse(scope)
    if rid is None:
        return [scope or "/"]
    if rid.level == "subscription" and rid.subscription is not None:
        return ["subscription", rid.subscription]
    if rid.level == "resourceGroup":
        return [f"resource group {rid.resource_group}"]
    if rid.level == "resource" and rid.resource_group is not None:
        inner_type, inner_name = rid.providers[-1].levels[-1]
        return [f"{inner_type}/{inner_name}", f"in {rid.resource_group}"]
    if rid.level == "managementGroup" and rid.type is not None and rid.is_type(MANAGEMENT_GROUPS):
        return [f"management group {rid.name}"]
    return [scope or "/"]


def _diagram_edges(plan: Plan) -> list[Change]:
    return [c for c in plan.actionable if c.type is ResourceType.ROLE_ASSIGNMENT]


def _diagram(plan: Plan, groups: list[_Group]) -> list[str]:
    edges = _diagram_edges(plan)
    if not edges:
        return []
    if len(edges) > MAX_DIAGRAM_EDGES:
        return [f"_Access diagram omitted: {len(edges)} role assignments change, more than "
                f"{MAX_DIAGRAM_EDGES} do not read as a diagram._", ""]
    identity_names = {g.key: g.name for g in groups}
    nodes: dict[str, str] = {}  # node key -> node id
    lines = ["flowchart LR"]

    def node(key: str, shape: tuple[str, str], label_lines: list[str]) -> str:
        if key not in nodes:
            nodes[key] = f"n{len(nodes)}"
            label = "<br/>".join(mermaid_label(part) for part in label_lines)
            lines.append(f"  {nodes[key]}{shape[0]}\"{label}\"{shape[1]}")
        return nodes[key]

    def principal_node(fields: dict[str, object]) -> str:
        principal = fields.get("principal")
        ref = principal if isinstance(principal, dict) else {}
        if "identity" in ref:
            key = str(ref["identity"])
            return node(key, ("([", "])"), [identity_names.get(key) or "/".join(key.split("/")[-2:])])
        object_id = str(ref.get("objectId") or fields.get("principalId") or "unknown")
        named = [str(ref["displayName"])] if ref.get("displayName") is not None else []
        return node(f"principal:{object_id.lower()}", ("[/", "/]"),
                    [str(ref.get("type") or fields.get("principalType") or "principal"), *named, object_id])

    def scope_node(scope: str) -> str:
        identity = _identity_at(scope)
        if identity is not None:
            name = identity_names.get(identity) or "/".join(identity.split("/")[-2:])
            return node(identity, ("([", "])"), [name])
        return node(f"scope:{_norm(scope)}", ("[", "]"), _scope_label(scope))

    styles: dict[Action, list[int]] = {}
    edge_lines = []
    for index, change in enumerate(edges):
        fields = change.fields()
        source = principal_node(fields)
        target = scope_node(str(fields.get("scope", "")))
        arrow = "-.->" if change.action is Action.DELETE else "-->"
        label = mermaid_label(f"{change.action.symbol} {fields.get('roleName')}")
        edge_lines.append(f"  {source} {arrow}|\"{label}\"| {target}")
        styles.setdefault(change.action, []).append(index)
    lines += edge_lines
    for action, indexes in styles.items():
        colour = _EDGE_COLOUR.get(action)
        if colour:
            lines.append(f"  linkStyle {','.join(map(str, indexes))} stroke:{colour},color:{colour}")
    return ["#### Access changes", "", *_code_fence(lines, "mermaid"), ""]


# ----------------------------------------------------------------------------- assembly


def _footer(hint: str | None) -> list[str]:
    return [f"<sub>{md_text(_clip(hint, _HINT_CLIP))}</sub>", ""] if hint else []


def _join(lines: Iterable[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"


def _render(plan: Plan, groups: list[_Group], level: Level, hint: str | None, max_chars: int) -> str | None:
    """The whole comment at `level`, or None as soon as it cannot fit: a big plan is not
    rendered in full only to be thrown away."""
    def blocks() -> Iterator[list[str]]:
        yield [*_heading(plan), *_summary_table(plan), *_abridged_note(level, hint), *_abandoned(plan)]
        yield _preflight(plan)
        yield _warnings(_warning_items(plan, None), len(plan.warnings))
        yield _destroys(plan, _destroy_items(plan, abridged=False))
        yield from _group_sections(plan, groups, level)
        if level is Level.FULL:
            yield _diagram(plan, groups)
        yield _footer(hint)

    out: list[str] = []
    size = 0
    for block in blocks():
        size += sum(len(line) + 1 for line in block)
        if size >= max_chars + 1:  # +1: _join drops the last blank line
            return None
        out += block
    text = _join(out)
    return text if len(text) < max_chars else None


def _fit(items: list[str], budget: int, more: Callable[[int], str]) -> tuple[list[str], int]:
    """As many whole items as fit `budget` characters (one newline each), with a closing
    `more(n)` line when some are left out. Returns the lines and the characters used."""
    total = sum(len(i) + 1 for i in items)
    if total <= budget:
        return items, total
    reserve = len(more(len(items))) + 1
    kept: list[str] = []
    used = 0
    for item in items:
        if used + len(item) + 1 + reserve > budget:
            break
        kept.append(item)
        used += len(item) + 1
    tail = more(len(items) - len(kept))
    return [*kept, tail], used + len(tail) + 1


_KIND_NOUN: dict[object, str] = {
    "destroy": "deletions or replacements",
    ResourceType.FEDERATED_CREDENTIAL: "federated credential changes",
    ResourceType.ROLE_ASSIGNMENT: "role assignment changes",
}
# Room kept for the "not shown" note, whose numbers are known only after fitting.
_LEFT_OUT_RESERVE = 500


def _left_out_note(missing: dict[object, tuple[int, int]], hint: str | None) -> list[str]:
    parts = [f"{total - kept} of {total} {_KIND_NOUN[kind]}" for kind, (kept, total) in missing.items()
             if kept < total]
    if not parts:
        return []
    return ["> [!IMPORTANT]",
            f"> Not shown, for lack of space: {', '.join(parts)} — {_where_full_plan(hint)}. "
            "Review them there before approving: they may change who can use or manage an identity.", ""]


def _compact(change: Change, group: _Group) -> str:
    """A credential or grant in a few words, under its group's heading: a credential's issuer,
    subject and audiences, a grant's role, principal (unless it is the group's identity) and
    scope, all unabridged; the reason only when it is not "declared, not in Azure"."""
    fields = change.fields()
    text = f"`{_symbol(change)}` "
    if change.type is ResourceType.FEDERATED_CREDENTIAL:
        text += f"credential {md_code(str(fields.get('name')))}{_credential_fields(change)}"
    else:
        principal = fields.get("principal") or {}
        if principal.get("identity") == group.key:
            who = ""
        elif "identity" in principal:
            who = f" for identity {md_code('/'.join(str(principal['identity']).split('/')[-2:]))}"
        else:
            object_id = principal.get("objectId") or fields.get("principalId")
            who = f" for {md_text(str(fields.get('principalType') or 'principal'))} {md_code(str(object_id))}"
        text += f"{md_code(str(fields.get('roleName')))}{who} at {md_code(str(fields.get('scope') or '/'))}"
    if change.action is not Action.CREATE and change.reason:
        text += f" — {md_text(_clip(change.reason, _CLIP))}"
    return f"  - {text}"


def _render_counts(plan: Plan, groups: list[_Group], max_chars: int, hint: str | None) -> str:
    """Security-relevant changes in full, one short line each under their identity or
    principal; everything else counted per group."""
    head = [*_heading(plan), *_summary_table(plan), *_abridged_note(Level.COUNTS, hint), *_abandoned(plan),
            *_preflight(plan)]
    tail = _footer(hint)
    warnings = _warning_items(plan, _CLIP)
    destroys = _destroy_items(plan, abridged=True)
    security = {c.address for c in _security_changes(plan)}
    section = ["#### Credentials and access", ""] if security else []
    adopt = "adopt" in plan.summary()
    rows = _group_rows(groups, adopt)
    # Fixed lines of each section (callout headers, table header, blank lines) come first.
    fixed = len(_join([*head, *_warnings([], len(warnings)), *_destroys(plan, []), *section, *tail]))
    fixed += sum(len(r) + 1 for r in _group_table_head(adopt)) + 2 if rows else 0
    left = max_chars - 1 - fixed - 2
    # Security first, whole: credentials (who may sign in as an identity) and grants (what
    # it may do), then deletions (the destroy callout counts them all in any case). Only what
    # does not fit at all is left out, and counted by kind in a note.
    budget = left - _LEFT_OUT_RESERVE
    kinds = (ResourceType.FEDERATED_CREDENTIAL, ResourceType.ROLE_ASSIGNMENT)
    total: Counter[object] = Counter()
    kept: Counter[object] = Counter()
    security_lines: list[str] = []
    for group in groups:
        header = f"- {md_text(group.kind)} {md_code(group.name)}"
        shown = False
        for change in group.changes:
            if change.address not in security:
                continue
            total[change.type] += 1
            line = _compact(change, group)
            cost = len(line) + 1 + (0 if shown else len(header) + 1)
            if cost > budget:
                continue
            if not shown:
                security_lines.append(header)
                shown = True
            security_lines.append(line)
            kept[change.type] += 1
            budget -= cost
    kept_destroys: list[str] = []
    for item in destroys:
        if len(item) + 1 > budget:
            break
        kept_destroys.append(item)
        budget -= len(item) + 1
    missing: dict[object, tuple[int, int]] = {k: (kept[k], total[k]) for k in kinds}
    missing["destroy"] = (len(kept_destroys), len(destroys))
    note = _left_out_note(missing, hint)
    left -= sum(len(i) + 1 for i in [*security_lines, *kept_destroys, *note])
    kept_warnings, used = _fit(warnings, max(left // 2, 0), lambda n: f"> - …and {n} more warnings")
    left -= used
    kept_rows, _ = _fit(rows, max(left, 0), lambda n: f"| …and {n} more groups | | | | | |" + (" |" if adopt else ""))
    out = [*head, *note, *_warnings(kept_warnings, len(warnings)), *_destroys(plan, kept_destroys)]
    if security_lines:
        out += [*section, *security_lines, ""]
    if rows:
        out += [*_group_table_head(adopt), *kept_rows, ""]
    return _join([*out, *tail])


def render_markdown(plan: Plan, *, max_chars: int = 60_000, full_plan_hint: str | None = None) -> str:
    """The plan as a PR comment shorter than `max_chars` characters, whatever the plan's size.

    `full_plan_hint` says where the full plan is (e.g. "full plan: artifact plan.json"); it is
    shown at the end, and in the note of an abridged comment."""
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}, got {max_chars}")
    groups = _groups(plan)
    for level in (Level.FULL, Level.NO_DIAGRAM, Level.ONE_LINE):
        if level is Level.NO_DIAGRAM and not _diagram(plan, groups):
            continue  # FULL had no diagram to drop: NO_DIAGRAM would say so for nothing
        out = _render(plan, groups, level, full_plan_hint, max_chars)
        if out is not None:
            return out
    return _render_counts(plan, groups, max_chars, full_plan_hint)
