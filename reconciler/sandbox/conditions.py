"""ABAC conditions (conditionVersion 2.0): the parser and evaluator Azure RBAC uses on role assignments.

The sandbox implements the part of the language that constrains delegated role assignment, which is
what Azure's "constrain roles" templates and docs/permissions.md use:

    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}))
      OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]
          ForAnyOfAnyValues:GuidEquals {acdd72a7-3385-48ef-bd42-f606fba81ae7, ...}))
    AND
    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'}))
      OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {...}))

Grammar (keywords and operator names are case-insensitive; AND binds tighter than OR):

    expr    := and (('OR' | '||') and)*
    and     := unary (('AND' | '&&') unary)*
    unary   := ('!' | 'NOT') unary | primary
    primary := '(' expr ')' | 'ActionMatches' '{' string '}' | 'SubOperationMatches' '{' string '}'
             | ('Exists' | 'NotExists') attribute | attribute operator value
    operator:= [('ForAnyOfAnyValues' | 'ForAllOfAnyValues' | 'ForAnyOfAllValues' | 'ForAllOfAllValues') ':'] base
    value   := literal | '{' literal (',' literal)* '}'       (a set only after a For...: quantifier)

An attribute the sandbox cannot supply for the action being checked (for example a storage blob
attribute, or @Resource on a create) is absent, and every comparison on an absent attribute is false,
so an unknown attribute can only deny, never allow.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

RA_NAMESPACE = "microsoft.authorization/roleassignments"
SOURCES = ("request", "resource", "principal", "environment", "context")
QUANTIFIERS = ("foranyofanyvalues", "forallofanyvalues", "foranyofallvalues", "forallofallvalues")


class ConditionError(ValueError):
    """The condition text does not parse."""


# --- comparison operators ------------------------------------------------------------------------
def _guid(value: str) -> str | None:
    text = value.strip().strip("{}").replace("-", "").lower()
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


def _guid_equals(a: str, b: str) -> bool:
    ga, gb = _guid(a), _guid(b)
    return ga is not None and ga == gb


def _like(pattern: str, value: str, flags: int = 0) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, flags | re.DOTALL) is not None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _numeric(test: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def compare(a: str, b: str) -> bool:
        x, y = _number(a), _number(b)
        return x is not None and y is not None and test(x, y)
    return compare


def _bool(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value.strip().lower())


OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "stringequals": lambda a, b: a == b,
    "stringnotequals": lambda a, b: a != b,
    "stringequalsignorecase": lambda a, b: a.lower() == b.lower(),
    "stringnotequalsignorecase": lambda a, b: a.lower() != b.lower(),
    "stringstartswith": lambda a, b: a.startswith(b),
    "stringnotstartswith": lambda a, b: not a.startswith(b),
    "stringstartswithignorecase": lambda a, b: a.lower().startswith(b.lower()),
    "stringnotstartswithignorecase": lambda a, b: not a.lower().startswith(b.lower()),
    "stringlike": lambda a, b: _like(b, a),
    "stringnotlike": lambda a, b: not _like(b, a),
    "stringlikeignorecase": lambda a, b: _like(b, a, re.IGNORECASE),
    "stringnotlikeignorecase": lambda a, b: not _like(b, a, re.IGNORECASE),
    "guidequals": _guid_equals,
    "guidnotequals": lambda a, b: _guid(a) is not None and _guid(b) is not None and not _guid_equals(a, b),
    "boolequals": lambda a, b: _bool(a) is not None and _bool(a) == _bool(b),
    "boolnotequals": lambda a, b: _bool(a) is not None and _bool(b) is not None and _bool(a) != _bool(b),
    "numericequals": _numeric(lambda x, y: x == y),
    "numericnotequals": _numeric(lambda x, y: x != y),
    "numericlessthan": _numeric(lambda x, y: x < y),
    "numericlessthanequals": _numeric(lambda x, y: x <= y),
    "numericgreaterthan": _numeric(lambda x, y: x > y),
    "numericgreaterthanequals": _numeric(lambda x, y: x >= y),
}


# --- syntax tree ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Attribute:
    source: str  # lower-case: request, resource, principal, environment, context
    name: str  # lower-case, e.g. "microsoft.authorization/roleassignments:roledefinitionid"


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class ActionMatches:
    pattern: str


@dataclass(frozen=True)
class SubOperationMatches:
    pattern: str


@dataclass(frozen=True)
class Exists:
    attribute: Attribute
    negated: bool


@dataclass(frozen=True)
class Compare:
    attribute: Attribute
    quantifier: str | None  # one of QUANTIFIERS, or None for a single-valued comparison
    operator: str  # a key of OPERATORS
    values: tuple[str, ...]


Node = Not | And | Or | ActionMatches | SubOperationMatches | Exists | Compare


# --- tokenizer -----------------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<attr>@(?P<source>[A-Za-z]+)\[(?P<name>[^\]]*)\])
  | (?P<string>'[^']*')
  | (?P<punct>&&|\|\||[(){},!])
  | (?P<word>[A-Za-z0-9_.:/*\-]+)
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # attr, string, punct, word
    text: str
    at: int


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConditionError(f"unexpected character {text[pos]!r} at offset {pos}")
        kind = "attr" if m.group("attr") is not None else str(m.lastgroup)
        if kind != "ws":
            out.append(_Tok(kind, m.group(0), pos))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def peek_text(self) -> str | None:
        tok = self.peek()
        return None if tok is None else tok.text

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise ConditionError("unexpected end of condition")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise ConditionError(f"expected {text!r} at offset {tok.at}, found {tok.text!r}")

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text.lower() in words

    def parse(self) -> Node:
        node = self.expr()
        if (tok := self.peek()) is not None:
            raise ConditionError(f"unexpected {tok.text!r} at offset {tok.at}")
        return node

    def expr(self) -> Node:
        parts = [self.conj()]
        while (tok := self.peek()) is not None and (tok.text == "||" or self.is_word("or")):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self) -> Node:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and (tok.text == "&&" or self.is_word("and")):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and (tok.text == "!" or self.is_word("not")):
            self.take()
            return Not(self.unary())
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.kind == "word" and tok.text.lower() in ("actionmatches", "suboperationmatches"):
            self.expect("{")
            pattern = self.take()
            if pattern.kind != "string":
                raise ConditionError(f"{tok.text} takes a quoted action at offset {pattern.at}")
            self.expect("}")
            text = pattern.text[1:-1]
            return ActionMatches(text) if tok.text.lower() == "actionmatches" else SubOperationMatches(text)
        if tok.kind == "word" and tok.text.lower() in ("exists", "notexists"):
            return Exists(self.attribute(self.take()), negated=tok.text.lower() == "notexists")
        if tok.kind == "attr":
            attribute = self.attribute(tok)
            op = self.take()
            if op.kind != "word":
                raise ConditionError(f"expected an operator at offset {op.at}, found {op.text!r}")
            quantifier, _, base = op.text.lower().rpartition(":")
            if quantifier and quantifier not in QUANTIFIERS:
                raise ConditionError(f"unknown quantifier {op.text!r} at offset {op.at}")
            if base not in OPERATORS:
                raise ConditionError(f"unknown operator {op.text!r} at offset {op.at}")
            values = self.values()
            if not quantifier and len(values) != 1:
                raise ConditionError(f"{op.text} compares with one value; use a For...: quantifier for a set")
            return Compare(attribute, quantifier or None, base, values)
        raise ConditionError(f"unexpected {tok.text!r} at offset {tok.at}")

    def attribute(self, tok: _Tok) -> Attribute:
        m = _TOKEN.match(tok.text)
        if tok.kind != "attr" or m is None:
            raise ConditionError(f"expected an attribute at offset {tok.at}, found {tok.text!r}")
        source, name = m.group("source").lower(), m.group("name").strip().lower()
        if source not in SOURCES or not name:
            raise ConditionError(f"unknown attribute {tok.text!r} at offset {tok.at}")
        return Attribute(source, name)

    def values(self) -> tuple[str, ...]:
        if self.peek_text() == "{":
            self.take()
            out = [self.literal()]
            while self.peek_text() == ",":
                self.take()
                out.append(self.literal())
            self.expect("}")
            return tuple(out)
        return (self.literal(),)

    def literal(self) -> str:
        tok = self.take()
        if tok.kind == "string":
            return tok.text[1:-1]
        if tok.kind == "word":
            return tok.text
        raise ConditionError(f"expected a value at offset {tok.at}, found {tok.text!r}")


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """The syntax tree of a condition; raises ConditionError."""
    if not text.strip():
        raise ConditionError("the condition is empty")
    return _Parser(text).parse()


# --- evaluation ----------------------------------------------------------------------------------
Attributes = Mapping[str, Mapping[str, str]]  # source -> attribute name (lower-case) -> value


def evaluate(node: Node, action: str, attributes: Attributes,
             action_matches: Callable[[str, str], bool]) -> bool:
    """Whether the condition holds for `action` with the given request/resource attributes."""
    if isinstance(node, Not):
        return not evaluate(node.operand, action, attributes, action_matches)
    if isinstance(node, And):
        return all(evaluate(n, action, attributes, action_matches) for n in node.operands)
    if isinstance(node, Or):
        return any(evaluate(n, action, attributes, action_matches) for n in node.operands)
    if isinstance(node, ActionMatches):
        return action_matches(node.pattern, action)
    if isinstance(node, SubOperationMatches):
        return False  # the sandbox's control-plane actions have no suboperations
    value = attributes.get(node.attribute.source, {}).get(node.attribute.name)
    if isinstance(node, Exists):
        return (value is not None) != node.negated
    if value is None:
        return False
    compare = OPERATORS[node.operator]
    left = (value,)
    if node.quantifier is None:
        return compare(value, node.values[0])
    outer = any if node.quantifier.startswith("forany") else all
    inner = any if node.quantifier.endswith("anyvalues") else all
    return outer(inner(compare(lv, rv) for rv in node.values) for lv in left)


def role_assignment_attributes(role_definition_id: str | None, principal_id: str | None,
                               principal_type: str | None) -> dict[str, str]:
    """The Microsoft.Authorization/roleAssignments attributes of one assignment (request or resource)."""
    out = {}
    if role_definition_id:
        out[f"{RA_NAMESPACE}:roledefinitionid"] = role_definition_id.rstrip("/").rsplit("/", 1)[-1]
    if principal_id:
        out[f"{RA_NAMESPACE}:principalid"] = principal_id
    if principal_type:
        out[f"{RA_NAMESPACE}:principaltype"] = principal_type
    return out
