"""JWT bearer tokens signed with the sandbox's own key (HS256), and their validation.

Real ARM validates an Entra signature. The sandbox is its own token issuer: every token it mints
(`sandbox token`, the embedded sandbox, the managed-identity token endpoint) is signed with a
per-database HMAC key kept in the 0600 database, so nobody can forge an admin token from the
tenant id and the admin's object id. `alg: none` tokens are refused unless the server was started
with `--insecure-unsigned-tokens`. It also rejects what ARM rejects for reasons a client can get
wrong: a missing header, a malformed token, a wrong audience, another tenant, an expired token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .errors import ArmError
from .store import Store

AUDIENCES = ("https://management.azure.com/", "https://management.azure.com",
             "https://management.core.windows.net/", "https://management.core.windows.net")
GRAPH_AUDIENCES = ("https://graph.microsoft.com/", "https://graph.microsoft.com",
                   "00000003-0000-0000-c000-000000000000")
DEFAULT_LIFETIME_SECONDS = 24 * 3600
_KEY_META = "token_signing_key"


def signing_key(store: Store) -> bytes:
    """The database's HMAC key, created on first use (32 random bytes, stored hex in `meta`)."""
    with store.transaction():
        value = store.meta(_KEY_META)
        if value is None:
            value = secrets.token_hex(32)
            store.set_meta(_KEY_META, value)
    return bytes.fromhex(value)


@dataclass(frozen=True)
class Caller:
    object_id: str
    tenant_id: str
    app_id: str


def issue(object_id: str, tenant_id: str, app_id: str = "", lifetime: float = DEFAULT_LIFETIME_SECONDS,
          now: float | None = None, *, key: bytes | None, audience: str = AUDIENCES[0]) -> str:
    """A JWT for `object_id`; HS256-signed with `key`, or unsigned (`alg: none`) when key is None."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(lifetime),
        "oid": object_id,
        "tid": tenant_id,
        "sub": object_id,
    }
    if app_id:
        claims["appid"] = app_id
    if key is None:
        return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    signed = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}"
    return f"{signed}.{_sign(key, signed)}"


def _sign(key: bytes, signed: str) -> str:
    digest = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(part: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _www_authenticate(tenant_id: str, description: str) -> dict[str, str]:
    return {
        "WWW-Authenticate": f'Bearer authorization_uri="https://login.windows.net/{tenant_id}", '
        f'error="invalid_token", error_description="{description}"'
    }


def authenticate(authorization: str | None, tenant_id: str, now: float | None = None, *, key: bytes,
                 allow_unsigned: bool = False, audiences: tuple[str, ...] = AUDIENCES) -> Caller:
    """Turn an Authorization header into the calling principal, or raise ARM's 401.

    The token must carry a valid HS256 signature made with `key`; `alg: none` passes only with
    `allow_unsigned` (the server's --insecure-unsigned-tokens)."""
    if not authorization:
        raise ArmError(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
            _www_authenticate(tenant_id, "The authentication failed because of missing 'Authorization' header."),
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ArmError(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            _www_authenticate(tenant_id, "The authentication failed because of invalid 'Authorization' header."),
        )
    invalid = ArmError(
        401,
        "InvalidAuthenticationToken",
        "The access token is invalid.",
        _www_authenticate(tenant_id, "The access token is invalid."),
    )
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise invalid
    try:
        header, claims = _unb64(parts[0]), _unb64(parts[1])
    except (ValueError, RecursionError) as exc:
        raise invalid from exc
    alg = header.get("alg")
    if alg == "HS256":
        if not hmac.compare_digest(_sign(key, f"{parts[0]}.{parts[1]}"), parts[2]):
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid: its signature "
                           "does not verify.", _www_authenticate(tenant_id, "The access token is invalid."))
    elif not (allow_unsigned and isinstance(alg, str) and alg.lower() == "none" and parts[2] == ""):
        raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid: the sandbox accepts only "
                       "tokens it signed (HS256) unless it serves with --insecure-unsigned-tokens.",
                       _www_authenticate(tenant_id, "The access token is invalid."))
    oid, tid = claims.get("oid"), claims.get("tid")
    if not isinstance(oid, str) or not isinstance(tid, str):
        raise invalid
    if claims.get("aud") not in audiences:
        raise ArmError(
            401,
            "InvalidAuthenticationToken",
            f"The access token has been obtained for wrong audience or resource '{claims.get('aud')}'. "
            "It should exactly match with one of the allowed audiences 'https://management.core.windows.net/',"
            "'https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
            _www_authenticate(tenant_id, "The access token has been obtained for wrong audience."),
        )
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or (time.time() if now is None else now) >= exp:
        raise ArmError(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
            _www_authenticate(tenant_id, "The access token expiry UTC time is earlier than current UTC time."),
        )
    if tid.lower() != tenant_id.lower():
        raise ArmError(
            401,
            "InvalidAuthenticationTokenTenant",
            f"The access token is from the wrong issuer 'https://sts.windows.net/{tid}/'. It must match the "
            f"tenant 'https://sts.windows.net/{tenant_id}/' associated with this subscription. Please use the "
            "authority (URL) 'https://login.windows.net/" + tenant_id + "' to get the token.",
            _www_authenticate(tenant_id, "The access token is from the wrong issuer."),
        )
    app_id = claims.get("appid")
    return Caller(oid.lower(), tid.lower(), app_id if isinstance(app_id, str) else "")
