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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Diagnostic, SourceLocation

Path = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based (line, col)

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}


@dataclass(frozen=True)
class YamlDocument:
    """One `---` document of a file: its value plus where each part of it was written."""

    file: str  # as the user gave it
    index: int  # 0-based position of the document in its file
    data: Any  # plain JSON-like value
    start: Position
    values: Mapping[Path, Position] = field(default_factory=dict)
    keys: Mapping[Path, Position] = field(default_factory=dict)
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
        return super().compose_node(parent, index)


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
        # Count in characters, not bytes: the bytes of "Å" (C3 85) read as latin-1 end in NEL, a break.
        before = data[: data.index(b"\0")].decode("utf-8", "replace")
        line, col = _line_col(before, len(before))
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

    def __init__(self, file: str, loader: _Loader) -> None:
        self.file = file
        self.loader = loader
        self.values: dict[Path, Position] = {}
        self.keys: dict[Path, Position] = {}
        self.raw: dict[Path, str] = {}
        self.diagnostics: list[Diagnostic] = []

    def error(self, mark: yaml.Mark, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(SourceLocation(self.file, *_pos(mark)), message, hint))

    def build(self, node: Node, path: Path) -> Any:
        self.values[path] = _pos(node.start_mark)
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
            key = self._text(key_node)
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
            self.keys[(*path, key)] = key_pos
            result[key] = self.build(value_node, (*path, key))
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


def parse(text: str, file: str) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Every document of `text`; a syntax error ends the file (documents before it are kept)."""
    documents: list[YamlDocument] = []
    diagnostics: list[Diagnostic] = []
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said a node follows
                break
            builder = _Builder(file, loader)
            data = builder.build(node, ())
            diagnostics.extend(builder.diagnostics)
            start = _pos(node.start_mark) if data is not None else loader.document_start
            documents.append(
                YamlDocument(file, len(documents), data, start, builder.values, builder.keys, builder.raw)
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
    where = SourceLocation(path, 1, 1)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return [], [Diagnostic(where, f"cannot read file: {exc.strerror or exc}")]
    if len(data) > MAX_FILE_BYTES:
        return [], [
            Diagnostic(where, f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB", "split it")
        ]
    text, problem = decode(data, path)
    if text is None:
        return [], [problem] if problem else []
    return parse(text, path)
