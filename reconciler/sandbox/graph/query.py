"""OData query options for directory collections: `$filter` (the default-supported subset), `$select`,
`$top` and `@odata.nextLink` paging with an opaque `$skiptoken`.

`$filter` understands what the tool and the Azure CLI send (GRAPH-FACTS §2-§4, §16): `prop eq 'v'`,
`startswith(prop,'v')`, `prop in ('a','b')`, `servicePrincipalNames/any(c:c eq 'v')`, boolean `eq true`,
joined with `and`/`or` and parentheses. Operators Graph serves only as advanced queries (`ne`, `not`,
`endswith`, `eq null`) and unindexed properties are refused as Graph refuses them. String comparisons
ignore case (UNVERIFIED, §0).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from .errors import GraphError, bad_request, unsupported_query

Predicate = Callable[[dict[str, Any]], bool]
DEFAULT_PAGE = 100
MAX_PAGE = 999

# Properties each collection filters by without advanced query parameters, and how.
FILTERABLE: dict[str, dict[str, frozenset[str]]] = {
    "User": {p: frozenset({"eq", "in", "startswith"}) for p in
             ("userPrincipalName", "displayName", "mail", "mailNickname", "givenName", "surname")}
    | {"id": frozenset({"eq", "in"}), "accountEnabled": frozenset({"eq"})},
    "Group": {p: frozenset({"eq", "in", "startswith"}) for p in ("displayName", "mailNickname", "mail")}
    | {"id": frozenset({"eq", "in"}), "mailEnabled": frozenset({"eq"}), "securityEnabled": frozenset({"eq"})},
    "ServicePrincipal": {"displayName": frozenset({"eq", "in", "startswith"}), "id": frozenset({"eq", "in"}),
                         "appId": frozenset({"eq", "in"}), "accountEnabled": frozenset({"eq"}),
                         "servicePrincipalType": frozenset({"eq"}), "servicePrincipalNames": frozenset({"any"})},
    "Application": {"displayName": frozenset({"eq", "in", "startswith"}), "id": frozenset({"eq", "in"}),
                    "appId": frozenset({"eq", "in"}), "identifierUris": frozenset({"any"})},
}
ADVANCED = ("ne", "not", "endswith", "gt", "ge", "lt", "le", "has")

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),:])|(?P<word>[A-Za-z_$][A-Za-z0-9_./$-]*))")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise _invalid(text)
        out.append(found.group().strip())
        pos = found.end()
    return out


def _invalid(text: str) -> GraphError:
    # UNVERIFIED wording for a filter Graph cannot parse.
    return bad_request(f"Invalid filter clause: syntax error in '{text}'.")


class _Parser:
    def __init__(self, text: str, kind: str):
        self.text, self.kind = text, kind
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self) -> str:
        return self.toks[self.pos] if self.pos < len(self.toks) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if not tok or (expected is not None and tok.lower() != expected):
            raise _invalid(self.text)
        self.pos += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.disjunction()
        if self.peek():
            raise _invalid(self.text)
        return pred

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.peek().lower() == "or":
            self.take()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda o: any(p(o) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.term()]
        while self.peek().lower() == "and":
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda o: all(p(o) for p in parts))

    def term(self) -> Predicate:
        tok = self.take()
        low = tok.lower()
        if tok == "(":
            inner = self.disjunction()
            self.take(")")
            return inner
        if low in ADVANCED:
            raise self.advanced(low)
        if low == "startswith":
            self.take("(")
            prop = self.prop(self.take(), low)
            self.take(",")
            value = self.string()
            self.take(")")
            return lambda o: str(o.get(prop) or "").lower().startswith(value.lower())
        if low.endswith("/any"):
            prop = self.prop(tok[: -len("/any")], "any")
            self.take("(")
            var = self.take()
            self.take(":")
            if self.take().lower() != var.lower():
                raise _invalid(self.text)
            self.take("eq")
            value = self.string()
            self.take(")")
            return lambda o: any(str(v).lower() == value.lower() for v in o.get(prop) or [])
        op = self.peek().lower()
        if op in ADVANCED:
            raise self.advanced(op)
        prop = self.prop(tok, op)
        self.take()
        if op == "eq":
            want = self.literal()
            if want is None:
                raise self.advanced("null")
            return lambda o: _same(o.get(prop), want)
        if op == "in":
            self.take("(")
            wanted = [self.literal()]
            while self.peek() == ",":
                self.take()
                wanted.append(self.literal())
            self.take(")")
            return lambda o: any(_same(o.get(prop), w) for w in wanted)
        raise _invalid(self.text)

    def prop(self, name: str, op: str) -> str:
        allowed = FILTERABLE[self.kind]
        match = next((p for p in allowed if p.lower() == name.lower()), None)
        if match is None or op not in allowed[match]:
            # Wording: GRAPH-FACTS §2 (MicrosoftDocs/azure-docs issue 38560).
            raise unsupported_query(f"Unsupported or invalid query filter clause specified for property "
                                    f"'{name}' of resource '{self.kind}'.")
        return match

    def string(self) -> str:
        tok = self.take()
        if not (len(tok) >= 2 and tok[0] == tok[-1] == "'"):
            raise _invalid(self.text)
        return tok[1:-1].replace("''", "'")

    def literal(self) -> Any:
        tok = self.peek()
        if tok.lower() in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[tok.lower()]
        return self.string()

    def advanced(self, op: str) -> GraphError:
        # GRAPH-FACTS §5: the text for endsWith without ConsistencyLevel; same shape for the others.
        return unsupported_query(
            f"Operator '{op}' is not supported because the required parameters might be missing. Try adding "
            "$count=true query parameter and ConsistencyLevel:eventual header. Refer to "
            "https://aka.ms/graph-docs/advanced-queries for more information")


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, bool) or not isinstance(have, str):
        return bool(have == want)
    return have.lower() == str(want).lower()


def parse_filter(text: str | None, kind: str) -> Predicate | None:
    if text is None or not text.strip():
        return None
    return _Parser(text, kind).parse()


def parse_select(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


def page_size(query: dict[str, str], default: int) -> int:
    top = query.get("$top")
    if top is None:
        return default
    if not top.strip().isdigit() or not 1 <= int(top) <= MAX_PAGE:
        # Message from GRAPH-FACTS §0; the status and code are UNVERIFIED.
        raise bad_request(f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_PAGE} inclusive.")
    return int(top)


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"graph:{offset}".encode()).decode().rstrip("=")


def _decode(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "graph" or not number.isdigit():
            raise ValueError(token)
        return int(number)
    except ValueError as exc:
        # UNVERIFIED code and wording for a corrupted skip token.
        raise bad_request(f"The specified page token value '{token}' is not valid.") from exc


def page(items: list[Any], query: dict[str, str], query_items: list[tuple[str, str]], url: str,
         default_size: int) -> tuple[list[Any], str | None]:
    """One page of `items` and the absolute nextLink (all original query options kept) or None."""
    size = page_size(query, default_size)
    token = query.get("$skiptoken", "")
    offset = _decode(token) if token else 0
    chunk = items[offset: offset + size]
    if offset + size >= len(items):
        return chunk, None
    kept = [(k, v) for k, v in query_items if k.lower() != "$skiptoken"]
    kept.append(("$skiptoken", _encode(offset + size)))
    return chunk, f"{url}?{urlencode(kept, quote_via=quote, safe='$(),')}"
