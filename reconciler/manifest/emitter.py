"""A small YAML emitter for manifests people will read and review (used by `export`).

PyYAML's dumper cannot place comments and quotes more than a person would, so manifests are
written here from plain values: mappings (in their order), lists, strings and booleans, plus
`Flow` for a short inline mapping (`{identity: payments-api}`) and `Commented` for a value
with a trailing comment. A string is written plain only when PyYAML's safe loader, which the
manifest loader uses (YAML 1.1: `yes`, `0777`, `2026-01-01` are not strings there), reads it
back as the same string; otherwise it is double-quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import yaml

# Characters a plain scalar may hold here: enough for names, ids, URLs, GUIDs and OIDC subjects.
# Flow indicators, quotes, `#`, `&`, `*`, `!`, `|`, `>`, `%`, `@` and backquote are left out
# rather than reasoned about.
_PLAIN = re.compile(r"^[A-Za-z0-9/_.][A-Za-z0-9 _./:=+()-]*$")


# Certainly a string when plain: what YAML 1.1 resolves to another type starts with a digit, a
# sign, `.`, `~`, `<` or `=`, or is one of these words.
_SIMPLE = re.compile(r"^[A-Za-z/][A-Za-z0-9_./-]*$")
_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})


@dataclass(frozen=True)
class Flow:
    """A short mapping written on one line: `{objectId: ..., type: Group}`."""

    items: Mapping[str, str]


@dataclass(frozen=True)
class Commented:
    """A value followed by `# comment` (on the line of a scalar, or the first line of an item)."""

    value: object
    comment: str


@lru_cache(maxsize=65536)
def scalar(text: str) -> str:
    """`text` as a YAML scalar that the manifest loader reads back as exactly `text`."""
    if _SIMPLE.match(text) and text.lower() not in _WORDS:
        return text  # no YAML 1.1 resolver but bool/null matches a word starting with a letter or `/`
    if (_PLAIN.match(text) and not text.endswith((" ", ":")) and ": " not in text and " #" not in text
            and _reads_back(text, text)):
        return text
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted if _reads_back(quoted, text) else json.dumps(text)


def _reads_back(written: str, text: str) -> bool:
    try:
        return bool(yaml.safe_load(f"k: {written}\n") == {"k": text})
    except yaml.YAMLError:
        return False


def _inline(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return scalar(value)
    if isinstance(value, Flow):
        return "{" + ", ".join(f"{scalar(k)}: {scalar(v)}" for k, v in value.items.items()) + "}"
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, list | tuple) and not value:
        return "[]"
    raise TypeError(f"cannot write {type(value).__name__} inline")


def _is_inline(value: object) -> bool:
    return (isinstance(value, bool | str | Flow) or (isinstance(value, Mapping) and not value)
            or (isinstance(value, list | tuple) and not value))


def _comment(text: str) -> str:
    return "  # " + " ".join(text.split())


def _mapping(data: Mapping[str, object], indent: int, out: list[str], first_prefix: str | None = None) -> None:
    """Write `data` at `indent`; the first line starts with `first_prefix` (a list dash) if given."""
    for i, (key, raw) in enumerate(data.items()):
        prefix = first_prefix if i == 0 and first_prefix is not None else " " * indent
        value, comment = (raw.value, _comment(raw.comment)) if isinstance(raw, Commented) else (raw, "")
        head = f"{prefix}{scalar(key)}:"
        if _is_inline(value):
            out.append(f"{head} {_inline(value)}{comment}")
        elif isinstance(value, Mapping):
            out.append(head + comment)
            _mapping(value, indent + 2, out)
        elif isinstance(value, list | tuple):
            out.append(head + comment)
            _sequence(value, indent + 2, out)
        else:
            raise TypeError(f"cannot write {type(value).__name__} at {key}")


def _sequence(items: Sequence[object], indent: int, out: list[str]) -> None:
    for raw in items:
        value, comment = (raw.value, raw.comment) if isinstance(raw, Commented) else (raw, None)
        if _is_inline(value):
            out.append(f"{' ' * indent}- {_inline(value)}" + (_comment(comment) if comment else ""))
        elif isinstance(value, Mapping):
            start = len(out)
            _mapping(value, indent + 2, out, first_prefix=f"{' ' * indent}- ")
            if comment:
                out[start] += _comment(comment)
        else:
            raise TypeError(f"cannot write {type(value).__name__} in a list")


def emit(data: Mapping[str, object], header: Sequence[str] = ()) -> str:
    """One YAML document: `header` lines as comments first, then `data`."""
    out = [f"# {line}".rstrip() for line in header]
    _mapping(data, 0, out)
    return "\n".join(out) + "\n"
