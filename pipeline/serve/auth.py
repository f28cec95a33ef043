"""Rasa's HTTP API authentication: a plain token, or a JWT (HS256) with roles.

As in Rasa: the token comes as the ``token`` query parameter (its name is
configurable, like ``token_name`` in Rasa's ``endpoints.yml``) -- deltatrain
also takes it as ``Authorization: Bearer <token>``. With a JWT secret, a
Bearer JWT signed with it authenticates; its ``user.role`` ``admin`` may do
everything, ``user`` only touch the conversation named ``user.username``.
Missing or wrong credentials are 401 (NotAuthenticated); a valid JWT without
the scope is 403 (NotAuthorized). Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from enum import Enum
from typing import Any, Mapping


class AuthOutcome(Enum):
    """The result of checking a request's credentials."""

    ALLOWED = "allowed"
    NOT_AUTHENTICATED = "not_authenticated"  # 401
    NOT_AUTHORIZED = "not_authorized"  # 403


def check_request(
    *,
    query: Mapping[str, str],
    authorization: str | None,
    token: str | None,
    token_name: str,
    jwt_secret: str | None,
    conversation_id: str | None,
    now: float | None = None,
) -> AuthOutcome:
    """Whether a request with this query string and Authorization header may proceed."""
    if token is None and jwt_secret is None:
        return AuthOutcome.ALLOWED
    bearer = _bearer(authorization)
    if token is not None:
        for provided in (query.get(token_name), bearer):
            if provided is not None and hmac.compare_digest(provided.encode(), token.encode()):
                return AuthOutcome.ALLOWED
    if jwt_secret is not None and bearer is not None:
        payload = decode_jwt(bearer, jwt_secret, now=time.time() if now is None else now)
        if payload is not None:
            return AuthOutcome.ALLOWED if has_scope(payload, conversation_id) else AuthOutcome.NOT_AUTHORIZED
    return AuthOutcome.NOT_AUTHENTICATED


def has_scope(payload: Mapping[str, Any], conversation_id: str | None) -> bool:
    """Rasa's scope rule: ``admin`` everything, ``user`` only its own conversation."""
    raw = payload.get("user")
    user: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    role = user.get("role")
    if role == "admin":
        return True
    return role == "user" and conversation_id is not None and user.get("username") == conversation_id


def decode_jwt(token: str, secret: str, *, now: float) -> dict[str, Any] | None:
    """The payload of an HS256 JWT signed with ``secret`` and not expired; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_unb64(parts[0]))
        payload = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, binascii.Error):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(payload, dict):
        return None
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return None
    exp = payload.get("exp")
    if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now:
        return None
    return payload


def encode_jwt(payload: Mapping[str, Any], secret: str) -> str:
    """An HS256 JWT of ``payload`` (for tests and scripts)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(dict(payload), separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
