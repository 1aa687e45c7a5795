"""Authentication of the webhook, exactly as Alertmanager's `http_config` sends it.

`authorization: {credentials: T}` or `bearer_token` sends `Authorization: Bearer T`; `basic_auth`
sends `Authorization: Basic base64(user:password)`. Comparisons run in constant time. API tokens are
Bearer tokens too, and `unauthorized` is the 401 of every JSON endpoint that refuses a request without one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from aiohttp import web

from ..config import Config, WebhookConfig

# The WWW-Authenticate challenges (RFC 9110 section 11.6.1) for the two kinds of credentials we accept
BEARER_CHALLENGE = 'Bearer realm="receiver"'
BASIC_CHALLENGE = 'Basic realm="receiver", charset="UTF-8"'


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def webhook_authorized(config: WebhookConfig, header: str | None) -> bool:
    """True when no credential is configured, or the header carries a configured one."""
    if config.token is None and config.basic_auth is None:
        return True
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and config.token is not None:
        return _same(value.strip(), config.token.value)
    if config.basic_auth is None:
        return False
    credentials = parse_basic(header)
    if credentials is None:
        return False
    user, password = credentials
    user_ok = _same(user, config.basic_auth.username)
    password_ok = _same(password, config.basic_auth.password.value)
    return user_ok and password_ok


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(name, password) from `Authorization: Basic ...` (any case of the scheme), or None: the webhook's
    credentials and the page users' are read alike."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, password) if sep else None


def api_actor(config: Config, header: str | None) -> str | None:
    """The name of the API token in `Authorization: Bearer ...`, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    found = None
    for token in config.api_tokens:
        if _same(value.strip(), token.token.value):
            found = token.name
    return found


def unauthorized(
    reason: str = "a valid API token is required", challenge: str = BEARER_CHALLENGE
) -> web.HTTPUnauthorized:
    """401 (to raise) with the reason in JSON and a challenge for the credentials the endpoint accepts."""
    return web.HTTPUnauthorized(
        text=json.dumps({"error": reason}),
        content_type="application/json",
        headers={"WWW-Authenticate": challenge},
    )
