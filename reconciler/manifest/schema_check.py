"""A yes/no answer to "does this value satisfy the manifest schema?", compiled once into
nested closures.

Why: jsonschema's generic validator was the largest cost of `validate` at 10,000 identities
once YAML reading moved to libyaml (profile in docs/BENCHMARKS.md): it builds a validator
object per subschema, resolves every `$ref` through the registry and walks every `oneOf`
branch for every value. Nearly every document is valid, so the question asked first is only
whether it is; jsonschema still runs on any document this check does not pass, and produces
every diagnostic exactly as before. The check is exact for the keywords it knows; a schema
with any other keyword (or a value whose comparison it cannot decide, such as a non-string
in `uniqueItems`) makes it answer "not known", which also sends the document to jsonschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]

# Keywords that only annotate: they never make a value invalid.
_ANNOTATIONS = {"title", "description", "examples", "default", "$schema", "$defs", "$comment"}


class Unknown(Exception):
    """The check cannot decide; ask jsonschema."""


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    raise Unknown(name)


def _same(a: Any, b: Any) -> bool:
    """JSON Schema equality for the plain values a schema's `const` and `enum` hold."""
    if isinstance(b, str | type(None)) or isinstance(a, str | type(None)):
        return type(a) is type(b) and a == b
    raise Unknown("const/enum of a non-string")


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        if not ref.startswith("#/$defs/"):
            raise Unknown(ref)
        if ref not in self.refs:
            slot: list[Check] = []
            self.refs[ref] = lambda value: slot[0](value)  # recursive definitions
            slot.append(self.compile(self.root["$defs"][ref.removeprefix("#/$defs/")]))
        return self.refs[ref]

    def compile(self, schema: Any) -> Check:
        if schema is True:
            return lambda value: True
        if schema is False:
            return lambda value: False
        if not isinstance(schema, Mapping):
            raise Unknown(repr(schema))
        if schema.get("type") == "object" and "patternProperties" not in schema:
            return self.mapping(schema)
        checks: list[Check] = []
        for keyword, arg in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            checks.append(self.keyword(keyword, arg, schema))
        if len(checks) == 1:
            return checks[0]
        return lambda value: all(check(value) for check in checks)

    def mapping(self, schema: Mapping[str, Any]) -> Check:
        """An object schema as one loop over the mapping's items: most of a manifest's values
        sit in mappings, and this is where the time of the check goes."""
        props = {name: self.compile(sub) for name, sub in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        extra = None if extra_schema is True else self.compile(extra_schema)
        required = tuple(schema.get("required", ()))
        handled = {"type", "properties", "additionalProperties", "required"}
        others = [self.keyword(k, v, schema) for k, v in schema.items() if k not in handled | _ANNOTATIONS]

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            for name in required:
                if name not in value:
                    return False
            for key, item in value.items():
                sub = props.get(key, extra)
                if sub is not None and not sub(item):
                    return False
            return all(other(value) for other in others)
        return check

    def keyword(self, keyword: str, arg: Any, schema: Mapping[str, Any]) -> Check:
        plain = _PLAIN.get(keyword)
        if plain is not None:
            return plain(arg)
        nested = _NESTED.get(keyword)
        if nested is None:
            raise Unknown(keyword)
        return nested(self, arg, schema)

    def _ref(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        return self.ref(arg)

    def _items(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        item = self.compile(arg)
        return lambda value: not isinstance(value, list) or all(item(v) for v in value)

    def _property_names(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        name_check = self.compile(arg)
        return lambda value: not isinstance(value, dict) or all(name_check(k) for k in value)

    def _properties(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        props = {name: self.compile(sub) for name, sub in arg.items()}
        return lambda value: not isinstance(value, dict) or all(
            props[k](v) for k, v in value.items() if k in props)

    def _additional_properties(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        if "patternProperties" in schema:
            raise Unknown("patternProperties")
        known = set(schema.get("properties", {}))
        extra = self.compile(arg)
        return lambda value: not isinstance(value, dict) or all(
            extra(v) for k, v in value.items() if k not in known)

    def _one_of(self, arg: Any, schema: Mapping[str, Any]) -> Check:
        branches = [self.compile(sub) for sub in arg]
        return lambda value: sum(1 for branch in branches if branch(value)) == 1


# Keywords whose check needs only the keyword's value: value -> check.


def _type(arg: Any) -> Check:
    names = arg if isinstance(arg, list) else [arg]
    for name in names:
        _is_type(None, name)  # unknown type names fail now, not per value
    return lambda value: any(_is_type(value, name) for name in names)


def _pattern(arg: Any) -> Check:
    # As schema._pattern: `$` does not accept a trailing line break.
    compiled = re.compile(arg)
    strict_end = arg.endswith("$")
    return lambda value: not isinstance(value, str) or (
        compiled.search(value) is not None and not (strict_end and value.endswith("\n")))


def _unique_items(arg: Any) -> Check:
    if not arg:
        return lambda value: True

    def unique(value: Any) -> bool:
        if not isinstance(value, list):
            return True
        if not all(isinstance(item, str) for item in value):
            raise Unknown("uniqueItems of non-strings")
        return len(set(value)) == len(value)
    return unique


_PLAIN: dict[str, Callable[[Any], Check]] = {
    "type": _type,
    "const": lambda arg: lambda value: _same(value, arg),
    "enum": lambda arg: lambda value: any(_same(value, option) for option in arg),
    "pattern": _pattern,
    "minLength": lambda arg: lambda value: not isinstance(value, str) or len(value) >= arg,
    "maxLength": lambda arg: lambda value: not isinstance(value, str) or len(value) <= arg,
    "minItems": lambda arg: lambda value: not isinstance(value, list) or len(value) >= arg,
    "maxItems": lambda arg: lambda value: not isinstance(value, list) or len(value) <= arg,
    "maxProperties": lambda arg: lambda value: not isinstance(value, dict) or len(value) <= arg,
    "required": lambda arg: lambda value: not isinstance(value, dict) or all(name in value for name in arg),
    "dependentRequired": lambda arg: lambda value: not isinstance(value, dict) or all(
        name in value for key, names in arg.items() if key in value for name in names),
    "uniqueItems": _unique_items,
}

# Keywords whose check compiles subschemas (or reads the schema beside them).
_NESTED: dict[str, Callable[[_Compiler, Any, Mapping[str, Any]], Check]] = {
    "$ref": _Compiler._ref,
    "items": _Compiler._items,
    "propertyNames": _Compiler._property_names,
    "properties": _Compiler._properties,
    "additionalProperties": _Compiler._additional_properties,
    "oneOf": _Compiler._one_of,
}


_cache: dict[int, tuple[Mapping[str, Any], Check | None]] = {}


def _compiled(schema: Mapping[str, Any]) -> Check | None:
    cached = _cache.get(id(schema))
    if cached is None or cached[0] is not schema:
        try:
            check: Check | None = _Compiler(schema).compile(schema)
        except Unknown:
            check = None
        cached = _cache[id(schema)] = (schema, check)
    return cached[1]


def surely_valid(schema: Mapping[str, Any], value: Any) -> bool:
    """True only when `value` satisfies `schema`; False when it does not or when this check
    cannot tell (the caller then asks jsonschema)."""
    check = _compiled(schema)
    if check is None:
        return False
    try:
        return check(value)
    except Unknown:
        return False
