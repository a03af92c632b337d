"""The manifest's structure, checked against `schemas/manifest.schema.json`.

The JSON Schema is the single declaration of the format (editors use it through the
yaml-language-server modeline); it ships inside the package as `reconciler/data/
manifest.schema.json`. This module turns jsonschema's errors into Diagnostics placed at the
offending key or value and worded for the person editing the file: which fields are
allowed, the closest one to a typo, expected versus actual type, a pattern's rule in words
(the `description` next to the pattern in the schema).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from reconciler.errors import Diagnostic
from reconciler.manifest.schema_check import surely_valid
from reconciler.manifest.yaml_source import Path, YamlDocument

SCHEMA_RESOURCE = "manifest.schema.json"


@lru_cache(maxsize=1)
def schema() -> Mapping[str, Any]:
    """The manifest JSON Schema, read from the installed package."""
    text = resources.files("reconciler.data").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _pattern(
    validator: Validator, pattern: str, instance: object, subschema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`pattern`, except that `$` does not accept a trailing line break: Python's `$` matches
    before a final newline (JavaScript's does not), so a block scalar such as `name: |` would
    otherwise smuggle "payments-api\\n" past `^...$`."""
    if not isinstance(instance, str):
        return
    if re.search(pattern, instance) is None or (pattern.endswith("$") and instance.endswith("\n")):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_ManifestValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _pattern}
)


@lru_cache(maxsize=1)
def _validator() -> Validator:
    built: Validator = _ManifestValidator(schema())
    return built


def dotted(path: Iterable[str | int]) -> str:
    """`spec.identities[0].name` form of a path, for messages."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "document"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_TYPE_WORDS = {
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "empty",
}


def _show(value: object, limit: int | None = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def _resolve(subschema: object) -> Mapping[str, Any]:
    """The definition a `{"$ref": "#/$defs/x"}` points at (or the subschema itself)."""
    if not isinstance(subschema, Mapping):
        return {}
    ref = subschema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = schema()["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return subschema


def _title(subschema: object, fallback: str) -> str:
    title = _resolve(subschema).get("title")
    return title if isinstance(title, str) else fallback


def _description(subschema: object) -> str | None:
    description = _resolve(subschema).get("description")
    if not isinstance(description, str):
        return None
    # The first sentence states the rule; the rest explains why, for editors' tooltips.
    return _FIRST_SENTENCE.split(description, maxsplit=1)[0]


_FIRST_SENTENCE = re.compile(r"(?<!e\.g\.)(?<=\.)\s+(?=[A-Z])")


def _closest(word: str, choices: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return lowered[word.lower()]
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return match[0] if match else None


@dataclass(frozen=True)
class _Error:
    """One jsonschema error and what every wording of it reads."""

    err: ValidationError
    path: Path
    where: str  # the path, dotted
    sub: Mapping[str, Any]  # the failing subschema
    value: Any  # the instance
    rule: Any  # the keyword's value in the schema


class _Mapper:
    """Rewrites the errors of one document."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.out: list[tuple[Path, Diagnostic]] = []

    def add(self, path: Path, message: str, hint: str | None = None, *, key: bool = False) -> None:
        found = (path, Diagnostic(self.doc.location(path, key=key), message, hint))
        # jsonschema repeats some errors (one `required` error per missing field, each
        # listing them all); say each thing once.
        if found not in self.out:
            self.out.append(found)

    def error(self, err: ValidationError) -> None:
        path: Path = tuple(err.absolute_path)
        if "propertyNames" in err.schema_path:
            self._property_name(err, path)
            return
        found = _Error(
            err,
            path,
            dotted(path),
            err.schema if isinstance(err.schema, Mapping) else {},
            err.instance,
            err.validator_value,
        )
        handler = _KEYWORDS.get(str(err.validator))
        # A handler returns False when the value is not what its wording assumes.
        if handler is None or not handler(self, found):
            # A keyword this mapper does not word specially; jsonschema's text is still exact.
            self.add(path, f"{found.where}: {err.message}", _description(found.sub))

    def _additional(self, e: _Error) -> bool:
        if not isinstance(e.value, dict):
            return False
        allowed = list(e.sub.get("properties", {}))
        title = _title(e.sub, e.where)
        for extra in [k for k in e.value if k not in allowed]:
            guess = _closest(extra, allowed)
            advice = f"did you mean '{guess}'? " if guess else ""
            advice += f"{title} allows: {', '.join(allowed)}"
            self.add((*e.path, extra), f"unknown field '{extra}' in {title}", advice, key=True)
        return True

    def _required(self, e: _Error) -> bool:
        if not isinstance(e.value, dict):
            return False
        missing = re.findall(r"^'(.*)' is a required property$", e.err.message)
        for name in missing or [n for n in e.rule if n not in e.value]:
            if name not in e.value:
                field_schema = e.sub.get("properties", {}).get(name)
                title = _title(e.sub, e.where)
                what = e.where if title == e.where else f"{title} {e.where}"
                self.add(
                    e.path,
                    f"{what} is missing required field '{name}'",
                    _description(field_schema),
                    key=True,
                )
        return True

    def _const(self, e: _Error) -> bool:
        self.add(e.path, f"{e.where} must be '{e.rule}', got {_show(e.value)}", _description(e.sub))
        return True

    def _enum(self, e: _Error) -> bool:
        value = e.value
        choices = [str(c) for c in e.rule]
        guess = _closest(str(value), choices) if isinstance(value, str) else None
        hint = f"did you mean '{guess}'?" if guess else _description(e.sub)
        if value not in choices and not isinstance(value, str) and "2.0" in choices:
            hint = 'quote it: "2.0" (YAML reads 2.0 as a number)'
        listed = ", ".join(json.dumps(c) for c in e.rule)
        self.add(e.path, f"{e.where} must be one of {listed}; got {_type_name(value)} {_show(value)}", hint)
        return True

    def _mismatch(self, e: _Error) -> bool:
        self.add(
            e.path,
            # Whole: the mistake in a long ARM scope is often at its end.
            f"{e.where} {_show(e.value, limit=None)} is not a valid {_title(e.sub, 'value')}",
            _description(e.sub),
        )
        return True

    def _length(self, e: _Error) -> bool:
        if not isinstance(e.value, str):
            return False
        bound = "at least" if e.err.validator == "minLength" else "at most"
        self.add(
            e.path,
            f"{e.where} is {len(e.value)} characters long; {bound} {e.rule} allowed",
            _description(e.sub),
        )
        return True

    def _items(self, e: _Error) -> bool:
        if not isinstance(e.value, list):
            return False
        bound = "at least" if e.err.validator == "minItems" else "at most"
        self.add(e.path, f"{e.where} has {len(e.value)} entries; {bound} {e.rule} allowed", _description(e.sub))
        return True

    def _max_properties(self, e: _Error) -> bool:
        if not isinstance(e.value, dict):
            return False
        self.add(e.path, f"{e.where} has {len(e.value)} entries; at most {e.rule} allowed", _description(e.sub))
        return True

    def _dependent_required(self, e: _Error) -> bool:
        if not isinstance(e.value, dict):
            return False
        for name, needs in e.rule.items():
            missing = [n for n in needs if name in e.value and n not in e.value]
            for other in missing:
                self.add(
                    (*e.path, name),
                    f"{name} needs {other} in the same entry",
                    f"add {other}, or remove {name}",
                    key=True,
                )
        return True

    def _property_name(self, err: ValidationError, path: Path) -> None:
        name = err.instance
        rule = _description(schema()["$defs"]["tags"]["propertyNames"])
        self.add(
            (*path, str(name)),
            f"{dotted(path)} has an invalid tag name {_show(name)}",
            rule,
            key=True,
        )

    def _type(self, e: _Error) -> bool:
        err, path, where = e.err, e.path, e.where
        expected: Any = err.validator_value
        words = (
            " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in expected)
            if isinstance(expected, list)
            else _TYPE_WORDS.get(str(expected), str(expected))
        )
        value = err.instance
        hint: str | None = None
        raw = self.doc.raw.get(path)
        if expected == "string" and raw is not None and value is not None:
            hint = f'quote it: "{raw}" (YAML reads {raw} as a {_type_name(value)})'
            rule = _description(err.schema) if isinstance(err.schema, Mapping) and "pattern" in err.schema else None
            hint += f"; {rule}" if rule else ""
        elif expected == "boolean" and isinstance(value, str):
            hint = "write true or false, without quotes"
        elif value is None:
            hint = "the value is empty; write it after the colon or remove the key"
        else:
            hint = _description(err.schema)
        shown = "" if value is None else f" {_show(value)}"
        self.add(path, f"{where} must be {words}, got {_type_name(value)}{shown}", hint)
        return True

    def _one_of(self, e: _Error) -> bool:
        """Report the errors of the alternative the author evidently meant: the one whose
        type matches and whose field names overlap most with what was written."""
        err, path, where = e.err, e.path, e.where
        branches: dict[int, list[ValidationError]] = {}
        for sub_err in err.context or []:
            branches.setdefault(int(sub_err.relative_schema_path[0]), []).append(sub_err)
        options: list[Mapping[str, Any]] = []
        option_list: Any = err.validator_value
        for option in option_list:
            options.append(_resolve(option))
        value = err.instance
        titles = ", ".join(_title(o, "?") for o in options)
        wanted = "object" if isinstance(value, dict) else "string" if isinstance(value, str) else None
        candidates = []
        for index, option in enumerate(options):
            if wanted is None or option.get("type") != wanted:
                continue
            overlap = len(set(value) & set(option.get("properties", {}))) if isinstance(value, dict) else 1
            if overlap:
                # Missing required fields say most clearly which alternative was not meant.
                errors = branches.get(index, [])
                missing = sum(1 for e in errors if e.validator == "required")
                candidates.append((missing, len(errors) - overlap, index))
        if not candidates:
            self.add(
                path,
                f"{where} must be one of: {titles}; got {_type_name(value)} {_show(value)}",
                _description(err.schema),
            )
            return True
        *_, chosen = min(candidates)
        for sub_err in branches.get(chosen, []):
            self.error(sub_err)
        return True


# How each validator keyword's error is worded; any other keyword keeps jsonschema's text.
_KEYWORDS: dict[str, Callable[[_Mapper, _Error], bool]] = {
    "additionalProperties": _Mapper._additional,
    "required": _Mapper._required,
    "type": _Mapper._type,
    "oneOf": _Mapper._one_of,
    "anyOf": _Mapper._one_of,
    "const": _Mapper._const,
    "enum": _Mapper._enum,
    "pattern": _Mapper._mismatch,
    "minLength": _Mapper._length,
    "maxLength": _Mapper._length,
    "minItems": _Mapper._items,
    "maxItems": _Mapper._items,
    "maxProperties": _Mapper._max_properties,
    "dependentRequired": _Mapper._dependent_required,
}


def validate(doc: YamlDocument) -> list[tuple[Path, Diagnostic]]:
    """Schema diagnostics of one document, each with the path it is about."""
    if surely_valid(schema(), doc.data):
        return []
    mapper = _Mapper(doc)
    for err in sorted(_validator().iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        mapper.error(err)
    return mapper.out
