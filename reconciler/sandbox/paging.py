"""ARM list pages: `{"value": [...], "nextLink": ...}` with an opaque `$skiptoken`.

The nextLink is absolute and points at the host:port the client used, because azure-core follows it
with urljoin. It keeps every query parameter of the request (including `$filter`) except the token.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote, urlencode

from .calls import Call
from .errors import ArmError

_TOKEN_NAMES = ("$skiptoken",)


def _decode(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "offset" or not number.isdigit():
            raise ValueError(token)
        return int(number)
    except ValueError as exc:
        # UNVERIFIED code: ARM RPs disagree on how they reject a corrupted skip token.
        raise ArmError(400, "InvalidSkipToken", f"The skip token '{token}' is not valid.") from exc


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def page(call: Call, items: list[Any]) -> dict[str, Any]:
    size = call.backend.config.page_size
    top = call.query.get("$top")
    if top:
        if not top.isdigit() or int(top) < 1:
            raise ArmError(400, "InvalidParameter", f"The value '{top}' of parameter '$top' is not valid.")
        size = min(size, int(top))
    token = call.query.get("$skiptoken", "")
    offset = _decode(token) if token else 0
    body: dict[str, Any] = {"value": items[offset : offset + size]}
    if offset + size < len(items):
        kept = [(k, v) for k, v in call.query_items if k.lower() not in _TOKEN_NAMES]
        kept.append(("$skiptoken", _encode(offset + size)))
        path = call.path.split("?", 1)[0]
        query = urlencode(kept, quote_via=quote, safe="$()'")
        body["nextLink"] = f"{call.base_url}{path}?{query}"
    return body
