"""ABAC conditions (version 2.0) on role assignments, evaluated in three values: True, False, or
None when the outcome depends on something preflight cannot know.

What preflight knows: the action being checked, and for role assignment writes and deletes the
`Microsoft.Authorization/roleAssignments` attributes RoleDefinitionId, PrincipalId and
PrincipalType of the request (`@Request`) or of the existing assignment (`@Resource`). A
roleAssignments attribute that is absent for this action (`@Resource` on a write, `@Request` on a
delete) makes its comparison false, as ARM does; any other attribute (storage tags, `@Principal`,
`@Environment`…) is unknown, and so is a comparison of a new identity's principal id with
anything but a GUID test. Unknown propagates: `false AND unknown` is false, `true OR unknown` is
true, anything else with an unknown is unknown.

Grammar, case-insensitive keywords, AND binding tighter than OR:
    expr := term (OR term)* ; term := factor (AND factor)* ; factor := (NOT | '!') factor | atom
    atom := '(' expr ')' | ActionMatches{'…'} | SubOperationMatches{'…'} | Exists @X[…] | NotExists @X[…]
          | @X[…] [Quantifier:]Operator value-or-{set}
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from reconciler.preflight import actions

Tri = bool | None


class ConditionSyntaxError(ValueError):
    """The condition does not parse."""


_LEX = re.compile(
    r"\s*(?:(?P<attr>@\w+\[[^\]]*\])|(?P<quoted>'[^']*')|(?P<op>&&|\|\||[(){},!])|(?P<word>[^\s(){},!'@]+))"
)


def _lex(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _LEX.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionSyntaxError(f"cannot read the condition at offset {pos}: {text[pos:pos + 20]!r}")
        kind = m.lastgroup or "word"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Term:
    kind: Literal["and", "or", "not", "action", "subop", "exists", "notexists", "compare"]
    children: tuple[Term, ...] = ()
    source: str = ""  # request, resource, principal, environment, context
    attribute: str = ""  # lower-case
    text: str = ""  # pattern, or operator name (lower-case)
    quantifier: str = ""  # lower-case, "" for single-valued
    values: tuple[str, ...] = ()


_QUANTIFIERS = {"foranyofanyvalues", "forallofanyvalues", "foranyofallvalues", "forallofallvalues"}


def _guid(text: str) -> str | None:
    t = text.strip().lstrip("{").rstrip("}").lower()
    return t if re.fullmatch(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", t) and t else None


def _guid_norm(text: str) -> str | None:
    g = _guid(text)
    return None if g is None else g.replace("-", "")


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _wild(pattern: str, value: str, fold: bool) -> bool:
    rx = "".join({"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if fold else 0)) is not None


def _cmp_num(a: str, b: str, test: Callable[[float, float], bool]) -> bool:
    x, y = _num(a), _num(b)
    return x is not None and y is not None and test(x, y)


def _guid_eq(a: str, b: str) -> bool:
    x, y = _guid_norm(a), _guid_norm(b)
    return x is not None and x == y


# operator -> (a, b) -> bool, `a` the attribute's value, `b` the condition's literal
_OPS: dict[str, Callable[[str, str], bool]] = {
    "stringequals": lambda a, b: a == b,
    "stringnotequals": lambda a, b: a != b,
    "stringequalsignorecase": lambda a, b: a.casefold() == b.casefold(),
    "stringnotequalsignorecase": lambda a, b: a.casefold() != b.casefold(),
    "stringstartswith": lambda a, b: a.startswith(b),
    "stringnotstartswith": lambda a, b: not a.startswith(b),
    "stringstartswithignorecase": lambda a, b: a.casefold().startswith(b.casefold()),
    "stringnotstartswithignorecase": lambda a, b: not a.casefold().startswith(b.casefold()),
    "stringlike": lambda a, b: _wild(b, a, False),
    "stringnotlike": lambda a, b: not _wild(b, a, False),
    "stringlikeignorecase": lambda a, b: _wild(b, a, True),
    "stringnotlikeignorecase": lambda a, b: not _wild(b, a, True),
    "guidequals": _guid_eq,
    "guidnotequals": lambda a, b: _guid_norm(a) is not None and _guid_norm(b) is not None and not _guid_eq(a, b),
    "boolequals": lambda a, b: a.strip().lower() in ("true", "false") and a.strip().lower() == b.strip().lower(),
    "boolnotequals": lambda a, b: {a.strip().lower(), b.strip().lower()} == {"true", "false"},
    "numericequals": lambda a, b: _cmp_num(a, b, lambda x, y: x == y),
    "numericnotequals": lambda a, b: _cmp_num(a, b, lambda x, y: x != y),
    "numericlessthan": lambda a, b: _cmp_num(a, b, lambda x, y: x < y),
    "numericlessthanequals": lambda a, b: _cmp_num(a, b, lambda x, y: x <= y),
    "numericgreaterthan": lambda a, b: _cmp_num(a, b, lambda x, y: x > y),
    "numericgreaterthanequals": lambda a, b: _cmp_num(a, b, lambda x, y: x >= y),
}


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _lex(text)
        self.pos = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _next(self) -> tuple[str, str]:
        tok = self._peek()
        if tok is None:
            raise ConditionSyntaxError("the condition ends too early")
        self.pos += 1
        return tok

    def _keyword(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and (tok[1] in words or (tok[0] == "word" and tok[1].lower() in words))

    def _want(self, text: str) -> None:
        _, value = self._next()
        if value != text:
            raise ConditionSyntaxError(f"expected {text!r}, found {value!r}")

    def read(self) -> Term:
        term = self._expr()
        if self._peek() is not None:
            raise ConditionSyntaxError(f"unexpected {self._peek()!r} after the condition")
        return term

    def _expr(self) -> Term:
        terms = [self._term()]
        while self._keyword("or", "||"):
            self.pos += 1
            terms.append(self._term())
        return terms[0] if len(terms) == 1 else Term("or", tuple(terms))

    def _term(self) -> Term:
        factors = [self._factor()]
        while self._keyword("and", "&&"):
            self.pos += 1
            factors.append(self._factor())
        return factors[0] if len(factors) == 1 else Term("and", tuple(factors))

    def _factor(self) -> Term:
        if self._keyword("not", "!"):
            self.pos += 1
            return Term("not", (self._factor(),))
        return self._atom()

    def _attr(self, token: tuple[str, str]) -> tuple[str, str]:
        if token[0] != "attr":
            raise ConditionSyntaxError(f"expected an @Source[attribute], found {token[1]!r}")
        source, _, rest = token[1][1:].partition("[")
        source, name = source.lower(), rest[:-1].strip().lower()
        if source not in ("request", "resource", "principal", "environment", "context") or not name:
            raise ConditionSyntaxError(f"unknown attribute {token[1]!r}")
        return source, name

    def _atom(self) -> Term:
        kind, value = self._next()
        if value == "(":
            inner = self._expr()
            self._want(")")
            return inner
        low = value.lower()
        if kind == "word" and low in ("actionmatches", "suboperationmatches"):
            self._want("{")
            pkind, pattern = self._next()
            if pkind != "quoted":
                raise ConditionSyntaxError(f"{value} needs a quoted action")
            self._want("}")
            return Term("action" if low == "actionmatches" else "subop", text=pattern[1:-1])
        if kind == "word" and low in ("exists", "notexists"):
            source, name = self._attr(self._next())
            return Term("exists" if low == "exists" else "notexists", source=source, attribute=name)
        if kind == "attr":
            source, name = self._attr((kind, value))
            okind, op = self._next()
            if okind != "word":
                raise ConditionSyntaxError(f"expected an operator after {value}, found {op!r}")
            quantifier, _, base = op.lower().rpartition(":")
            if (quantifier and quantifier not in _QUANTIFIERS) or base not in _OPS:
                raise ConditionSyntaxError(f"unknown operator {op!r}")
            values = self._values()
            if not quantifier and len(values) > 1:
                raise ConditionSyntaxError(f"{op} takes one value; a set needs a For…: quantifier")
            return Term("compare", source=source, attribute=name, text=base, quantifier=quantifier,
                        values=tuple(values))
        raise ConditionSyntaxError(f"unexpected {value!r}")

    def _literal(self) -> str:
        kind, value = self._next()
        if kind == "quoted":
            return value[1:-1]
        if kind == "word":
            return value
        raise ConditionSyntaxError(f"expected a value, found {value!r}")

    def _values(self) -> list[str]:
        if not self._keyword("{"):
            return [self._literal()]
        self.pos += 1
        out = [self._literal()]
        while self._keyword(","):
            self.pos += 1
            out.append(self._literal())
        self._want("}")
        return out


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Term:
    if not text.strip():
        raise ConditionSyntaxError("the condition is empty")
    return _Reader(text).read()


Attributes = Mapping[str, Mapping[str, str]]  # "request"/"resource" -> lower-case name -> value


def _and(values: list[Tri]) -> Tri:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def _or(values: list[Tri]) -> Tri:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def _known(source: str, attribute: str) -> bool:
    return source in ("request", "resource") and attribute.startswith(actions.ROLE_ASSIGNMENTS.lower() + ":")


def _compare(term: Term, value: str) -> Tri:
    op = _OPS[term.text]
    if value == actions.FRESH:
        # A principal id not known yet: a fresh GUID, equal to none of the literals.
        if term.text == "guidequals":
            return False
        if term.text == "guidnotequals":
            return all(_guid(v) is not None for v in term.values)
        return None
    if not term.quantifier:
        return op(value, term.values[0])
    inner = any if term.quantifier.endswith("anyvalues") else all
    # A single-valued attribute: "for any of" and "for all of" one value are the same test.
    return inner(op(value, v) for v in term.values)


def holds(term: Term, action: str, attributes: Attributes) -> Tri:
    """Whether the condition holds for `action` with these attributes (None: cannot tell)."""
    if term.kind == "and":
        return _and([holds(t, action, attributes) for t in term.children])
    if term.kind == "or":
        return _or([holds(t, action, attributes) for t in term.children])
    if term.kind == "not":
        inner = holds(term.children[0], action, attributes)
        return None if inner is None else not inner
    if term.kind == "action":
        return actions.matches(term.text, action)
    if term.kind == "subop":
        return False  # control-plane actions carry no suboperation
    if not _known(term.source, term.attribute):
        return None
    value = attributes.get(term.source, {}).get(term.attribute)
    if term.kind in ("exists", "notexists"):
        return (value is not None) == (term.kind == "exists")
    if value is None:
        return False
    return _compare(term, value)
