"""Unsigned JWT bearer tokens: the sandbox trusts the oid/tid claims and checks shape and expiry.

Real ARM validates an Entra signature; the sandbox has no identity provider, so it accepts
`alg: none` tokens it can decode. It still rejects what ARM rejects for reasons a client can get
wrong: a missing header, a malformed token, a wrong audience, another tenant, an expired token.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from .errors import ArmError

AUDIENCES = ("https://management.azure.com/", "https://management.azure.com",
             "https://management.core.windows.net/", "https://management.core.windows.net")
DEFAULT_LIFETIME_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Caller:
    object_id: str
    tenant_id: str
    app_id: str

    @property
    def client_name(self) -> str:
        # ARM's AuthorizationFailed names the client by appid for applications and by oid otherwise.
        return self.app_id or self.object_id


def issue(object_id: str, tenant_id: str, app_id: str = "", lifetime: float = DEFAULT_LIFETIME_SECONDS,
          now: float | None = None, audience: str = AUDIENCES[0]) -> str:
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
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64(header)}.{_b64(claims)}."


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


def authenticate(authorization: str | None, tenant_id: str, now: float | None = None,
                 audiences: tuple[str, ...] = AUDIENCES) -> Caller:
    """Turn an Authorization header into the calling principal, or raise ARM's 401 (the Graph API
    passes its own `audiences` and rewrites the error into Graph's envelope)."""
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
        claims = _unb64(parts[1])
    except ValueError as exc:
        raise invalid from exc
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
