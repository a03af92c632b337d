"""Safe YAML reading that remembers where every value was written.

PyYAML's safe constructor throws positions away, so this module composes the node graph and
builds plain values (dict / list / str / int / float / bool / None) itself, recording the
1-based line and column of every mapping key, mapping value and sequence item under its path
(`("spec", "identities", 0, "name")`). Everything that can go wrong with the bytes of a file
becomes a Diagnostic instead of an exception: undecodable bytes, binary files, syntax
errors, duplicate keys (both positions), aliases, unsupported tags, numbers Python refuses
to convert, absurd nesting.

Aliases (`*name`) are refused rather than expanded: a manifest must read as what it does,
and refusing them also rules out alias bombs. Timestamps stay strings (JSON has no dates).
Keys are taken as written (`on:` is the key "on", not True), since manifests only have
string keys.
"""

from __future__ import annotations

import codecs
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Diagnostic, SourceLocation
from reconciler.manifest.discovery import read_bytes

Path = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based (line, col)

# Bounds that keep time and memory proportional to a real estate, whatever a file holds: a
# manifest has one document per IdentitySet and a dozen values per identity; 10 MiB of `---`
# or of `[[[[` must end in a clear error, not minutes of work and gigabytes of memory. (Files
# over discovery.MAX_FILE_BYTES are not read at all.)
MAX_DEPTH = 64
MAX_DOCUMENTS = 1_000  # per file
MAX_NODES = 250_000  # per file: about 15,000 identities with a credential and a grant each

_TAG = "tag:yaml.org,2002:"
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


_COL_BITS = 24  # columns of a line up to 16 Mi characters; files stop at 10 MiB


def _packed(mark: yaml.Mark) -> int:
    """A position as one int: 10,000 identities have 400,000 positions, and an int is a third
    of the memory of a (line, col) tuple."""
    return ((mark.line + 1) << _COL_BITS) | (mark.column + 1)


class Positions(Mapping[Path, Position]):
    """Read-only (line, col) by path over packed ints."""

    __slots__ = ("_packed",)

    def __init__(self, packed: dict[Path, int] | None = None) -> None:
        self._packed = packed if packed is not None else {}

    def __getitem__(self, path: Path) -> Position:
        value = self._packed[path]
        return (value >> _COL_BITS, value & ((1 << _COL_BITS) - 1))

    def __contains__(self, path: object) -> bool:
        return path in self._packed

    def __iter__(self) -> Iterator[Path]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


@dataclass(frozen=True)
class YamlDocument:
    """One `---` document of a file: its value plus where each part of it was written."""

    file: str  # as the user gave it
    index: int  # 0-based position of the document in its file
    data: Any  # plain JSON-like value
    start: Position
    values: Mapping[Path, Position] = field(default_factory=Positions)
    keys: Mapping[Path, Position] = field(default_factory=Positions)
    # Source text of scalars that did not become strings (`yes`, `2.0`), for "quote it" hints.
    raw: Mapping[Path, str] = field(default_factory=dict)

    def location(self, path: Path, *, key: bool = False) -> SourceLocation:
        """Where `path` was written: its key (when `key` and it has one) or its value; a path
        that does not exist (a missing field) falls back to its nearest existing parent."""
        probe = tuple(path)
        if key and probe in self.keys:
            line, col = self.keys[probe]
            return SourceLocation(self.file, line, col)
        while probe:
            if probe in self.values:
                line, col = self.values[probe]
                return SourceLocation(self.file, line, col)
            probe = probe[:-1]
        return SourceLocation(self.file, *self.start)


class _Refused(Exception):
    """A construct we do not accept, raised out of the composer with its position."""

    def __init__(self, mark: yaml.Mark, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message
        self.hint = hint


class _Loader(yaml.SafeLoader):
    """SafeLoader (pure Python, so the composer can be hooked) that refuses aliases before
    they are resolved."""

    document_start: Position = (1, 1)
    nodes = 0
    depth = 0

    def compose_document(self) -> Node | None:
        # Remember where the document begins (its `---`): an empty document has no node of
        # its own to point at.
        self.document_start = _pos(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(
                event.start_mark,
                f"YAML alias '*{event.anchor}' is not supported",
                "write the value out in full; for values shared by all identities use spec.defaults",
            )
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Refused(self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                           f"file has more than {MAX_NODES:,} values", "split it into several files")
        # Counted here, before PyYAML recurses, so deep nesting never reaches Python's stack limit.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH + 1:  # the document's own node is depth 1, at path ()
                raise _Refused(self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                               f"value nested deeper than {MAX_DEPTH} levels", "flatten the document")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _pos(mark: yaml.Mark) -> Position:
    return (mark.line + 1, mark.column + 1)


def _line_col(text: str, offset: int) -> Position:
    """Position of `offset`, counting line breaks as YAML (and so PyYAML's marks) does."""
    breaks = list(_LINE_BREAK.finditer(text, 0, offset))
    line_start = breaks[-1].end() if breaks else 0
    return (len(breaks) + 1, offset - line_start + 1)


def _prefix(data: bytes) -> tuple[str, int]:
    text = data.decode("utf-8", "replace")
    return text, len(text)


def decode(data: bytes, file: str) -> tuple[str | None, Diagnostic | None]:
    """Bytes to text as YAML 1.1 allows (UTF-8, or UTF-16/32 with a BOM)."""
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(encoding), None
            except UnicodeDecodeError:
                return None, Diagnostic(
                    SourceLocation(file, 1, 1),
                    f"file starts with a {encoding} byte order mark but is not valid {encoding}",
                    "save the file as UTF-8",
                )
    if b"\0" in data:
        # Count characters of the UTF-8 text before it: as Latin-1, the byte 0x85 inside 'Å'
        # would be a YAML line break (NEL) and put the NUL on a line the file does not have.
        line, col = _line_col(*_prefix(data[: data.index(b"\0")]))
        return None, Diagnostic(
            SourceLocation(file, line, col),
            "file is binary (contains a NUL byte), not a YAML manifest",
            "keep only manifests under the given paths, saved as UTF-8 text",
        )
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        # Position from the text before the bad byte, so the column counts characters.
        line, col = _line_col(*_prefix(data[: exc.start]))
        return None, Diagnostic(
            SourceLocation(file, line, col),
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        )


class _Builder:
    """Turns one composed document into plain values plus the position maps."""

    def __init__(self, file: str, loader: yaml.constructor.SafeConstructor) -> None:
        self.file = file
        self.loader = loader
        self.packed_values: dict[Path, int] = {}
        self.packed_keys: dict[Path, int] = {}
        self.raw: dict[Path, str] = {}
        self.diagnostics: list[Diagnostic] = []

    def error(self, mark: yaml.Mark, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(SourceLocation(self.file, *_pos(mark)), message, hint))

    def build(self, node: Node, path: Path) -> Any:
        self.packed_values[path] = _packed(node.start_mark)
        if len(path) > MAX_DEPTH:
            self.error(node.start_mark, f"value nested deeper than {MAX_DEPTH} levels")
            return None
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag not in (f"{_TAG}seq",):
                self.error(node.start_mark, f"unsupported YAML tag {node.tag}", "remove the tag")
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        if node.tag != f"{_TAG}map":
            self.error(node.start_mark, f"unsupported YAML tag {node.tag}", "remove the tag")
        result: dict[str, Any] = {}
        seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(key_node.start_mark, "mapping keys must be plain strings, not lists or mappings")
                continue
            key = sys.intern(self._text(key_node))  # a dozen names, written 10,000 times over
            key_pos = _pos(key_node.start_mark)
            if key in seen:
                line, col = seen[key]
                self.error(
                    key_node.start_mark,
                    f"duplicate key '{key}' (first written at {self.file}:{line}:{col})",
                    "YAML keeps only one of them; remove or merge the duplicate",
                )
                continue
            seen[key] = key_pos
            child = (*path, key)  # one tuple for both maps: at 10,000 identities they hold 400,000
            self.packed_keys[child] = _packed(key_node.start_mark)
            result[key] = self.build(value_node, child)
        return result

    def _text(self, node: ScalarNode) -> str:
        text = str(node.value)
        if not _SURROGATE.search(text):
            return text
        # "\ud83d\ude00" escapes (as JSON writes characters beyond U+FFFF) reach us as two
        # surrogates; join pairs into the character. A lone one is no character at all: it
        # could be neither sent to Azure nor printed in a message.
        try:
            return text.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            self.error(
                node.start_mark,
                "string contains an invalid \\u escape (a lone surrogate)",
                "escape the whole character, e.g. \\U0001F600",
            )
            return _SURROGATE.sub("\ufffd", text)

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        if node.tag not in _SCALAR_TAGS:
            self.error(node.start_mark, f"unsupported YAML tag {node.tag}", "remove the tag")
            return None
        if node.tag in (f"{_TAG}str", f"{_TAG}timestamp"):
            return self._text(node)
        self.raw[path] = str(node.value)
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception:
            # PyYAML's scalar constructors fail in assorted ways on odd input (ValueError for
            # an int longer than Python converts, IndexError for `!!int ''`, ...); any of them
            # only means this one value is unreadable.
            kind = node.tag.removeprefix(_TAG)
            preview = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            self.error(
                node.start_mark,
                f"cannot read '{preview}' as {'an' if kind == 'int' else 'a'} {kind}",
                "quote it if it is meant as text",
            )
            return None


# What PyYAML's pure-Python reader refuses (yaml.reader.Reader.NON_PRINTABLE).
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]")
# Every node starts at one of these indicators or line breaks, and each accounts for at most
# three nodes (`a: b` opening a block mapping: the mapping, its key, its value).
_NODE_INDICATORS = (":", "- ", "-\n", "-\r", "-\t", ",", "[", "{", "?", "\n", "\r")


class _Unusual(Exception):
    """Something the fast reader leaves to the careful one."""


class _FastBuilder(_Builder):
    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        if not node.value and node.style not in ("'", '"'):
            # An empty value (`key:` with nothing after it, an empty block scalar): libyaml places it elsewhere than
            # PyYAML does, and positions must not depend on the reader.
            raise _Unusual
        return super()._scalar(node, path)

    def _text(self, node: ScalarNode) -> str:
        # No surrogates to join: libyaml refuses `\ud83d`-style escapes (the careful reader
        # then reads the file), and decoded text holds none.
        return node.value  # type: ignore[no-any-return]


def _fast_parse(text: str, file: str) -> list[YamlDocument] | None:
    """The documents of an ordinary file, read with libyaml's C parser and composer; None when
    the file holds anything unusual (a syntax error, an alias, a character PyYAML refuses,
    more values or documents than allowed, an empty value or document, any diagnostic).

    Why: the pure-Python composer was two thirds of `validate` at 10,000 identities (profile
    in docs/BENCHMARKS.md). libyaml keeps the same line and column marks and resolves scalars
    with PyYAML's own resolver, but it cannot be hooked to refuse aliases before they are
    composed nor to count values as it goes. So this path is taken only when the text cannot
    hold an alias (no `*`), has no tab (libyaml accepts some that PyYAML refuses), cannot hold
    more than MAX_NODES values (counted from the indicators that start them) and has no
    character PyYAML refuses; it gives way to `_careful_parse` on anything else, so every
    diagnostic comes from one reader (tests/unit/test_manifest_fast.py compares the two).
    libyaml refuses nesting deeper than 1,000 levels itself, so it cannot exhaust the C stack."""
    if "*" in text or "\t" in text or _NON_PRINTABLE.search(text):
        return None
    if 3 * sum(text.count(c) for c in _NODE_INDICATORS) + 3 > MAX_NODES:
        return None
    documents: list[YamlDocument] = []
    loader = yaml.CSafeLoader(text)
    try:
        while loader.check_node():
            if len(documents) >= MAX_DOCUMENTS:
                return None
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said a node follows
                return None
            builder = _FastBuilder(file, loader)
            data = builder.build(node, ())
            if builder.diagnostics or data is None:
                return None
            documents.append(
                YamlDocument(file, len(documents), data, _pos(node.start_mark), Positions(builder.packed_values),
                             Positions(builder.packed_keys), builder.raw)
            )
    except Exception:
        return None
    finally:
        loader.dispose()
    return documents


def parse(text: str, file: str) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Every document of `text`; a syntax error ends the file (documents before it are kept)."""
    fast = _fast_parse(text, file)
    if fast is not None:
        return fast, []
    return _careful_parse(text, file)


def _careful_parse(text: str, file: str) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """`parse` with PyYAML's pure-Python composer, hooked to refuse aliases and to bound
    values, depth and documents as it goes; every diagnostic comes from here."""
    documents: list[YamlDocument] = []
    diagnostics: list[Diagnostic] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        while loader.check_node():
            if len(documents) >= MAX_DOCUMENTS:
                mark = loader.peek_event().start_mark  # type: ignore[no-untyped-call]
                diagnostics.append(Diagnostic(SourceLocation(file, *_pos(mark)),
                                              f"file has more than {MAX_DOCUMENTS:,} documents; the rest is not read",
                                              "split it into several files, or remove stray '---' lines"))
                break
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said a node follows
                break
            builder = _Builder(file, loader)
            data = builder.build(node, ())
            diagnostics.extend(builder.diagnostics)
            start = _pos(node.start_mark) if data is not None else loader.document_start
            documents.append(
                YamlDocument(file, len(documents), data, start, Positions(builder.packed_values),
                             Positions(builder.packed_keys), builder.raw)
            )
    except _Refused as exc:
        diagnostics.append(Diagnostic(SourceLocation(file, *_pos(exc.mark)), exc.message, exc.hint))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = SourceLocation(file, *_pos(mark)) if mark else SourceLocation(file, 1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        diagnostics.append(
            Diagnostic(where, f"YAML syntax error: {problem}{context}", "check indentation and quoting here")
        )
    except yaml.reader.ReaderError as exc:
        diagnostics.append(
            Diagnostic(
                SourceLocation(file, *_line_col(text, exc.position)),
                f"file contains a character YAML does not allow (U+{exc.character:04X})",
                "remove control characters; save the file as UTF-8 text",
            )
        )
    except yaml.YAMLError as exc:  # any other parser complaint; keep the message
        diagnostics.append(Diagnostic(SourceLocation(file, 1, 1), f"YAML error: {exc}"))
    except RecursionError:
        diagnostics.append(
            Diagnostic(SourceLocation(file, 1, 1), "YAML nested too deeply to read", "flatten the document")
        )
    finally:
        if loader is not None:
            loader.dispose()
    return documents, diagnostics


def read_file(path: str) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Read and parse one file; `path` is used as given in every location."""
    data, problem = read_bytes(path)
    if data is None:
        return [], [problem] if problem else []
    text, problem = decode(data, path)
    if text is None:
        return [], [problem] if problem else []
    return parse(text, path)
