"""People on the status page: who they are (Basic auth with scrypt hashes, or a trusted proxy's header)
and CSRF protection for what they do (a per-session token bound to a cookie, plus an Origin check).

The session cookie holds only a random id; the CSRF token is an HMAC of it, so no server-side
session store is needed and every replica agrees.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Config

SESSION_COOKIE = "receiver_session"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_verified: dict[str, float] = {}  # cache of successful checks: scrypt is slow on purpose
_CACHE_SECONDS = 300


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        _, n, r, p, salt, digest = encoded.split("$")
        expected = _unb64(digest)
        actual = hashlib.scrypt(password.encode("utf-8", "replace"), salt=_unb64(salt), n=int(n), r=int(r),
                                p=int(p), dklen=len(expected), maxmem=256 * 1024 * 1024)
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def _basic_user(config: Config, header: str | None) -> str | None:
    if not header or not config.ui.users:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep:
        return None
    user = next((u for u in config.ui.users if hmac.compare_digest(u.name.encode(), name.encode())), None)
    if user is None:
        return None
    cache_key = hashlib.sha256(f"{name}\0{password}\0{user.password_hash.value}".encode()).hexdigest()
    now = time.monotonic()
    if _verified.get(cache_key, 0) > now:
        return user.name
    if not verify_password(password, user.password_hash.value):
        return None
    if len(_verified) > 1000:
        _verified.clear()
    _verified[cache_key] = now + _CACHE_SECONDS
    return user.name


def _proxy_user(config: Config, request: web.Request) -> str | None:
    header = config.ui.proxy_header
    if not header or not request.remote:
        return None
    value = request.headers.get(header)
    if not value:
        return None
    try:
        remote = ipaddress.ip_address(request.remote)
    except ValueError:
        return None
    if not any(remote in ipaddress.ip_network(c, strict=False) for c in config.ui.trusted_proxies):
        return None
    return value.strip()[:128] or None


def current_user(config: Config, request: web.Request) -> str | None:
    return _proxy_user(config, request) or _basic_user(config, request.headers.get("Authorization"))


def challenge(message: str = "sign in to continue") -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=f"401: {message}", headers={"WWW-Authenticate": 'Basic realm="receiver", charset="UTF-8"'}
    )


def session_id(request: web.Request) -> str | None:
    value = request.cookies.get(SESSION_COOKIE, "")
    return value if 20 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() else None


def ensure_session(request: web.Request, response: web.StreamResponse, sid: str | None) -> str:
    if sid is None:
        sid = secrets.token_urlsafe(24)
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
    return sid


def csrf_token(secret: str, sid: str) -> str:
    return hmac.new(secret.encode(), f"csrf|{sid}".encode(), hashlib.sha256).hexdigest()


def check_csrf(secret: str, request: web.Request, submitted: str) -> str | None:
    """None when the request is safe, else why it is refused."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if origin == "null":
        # Browsers send "Origin: null" for a page's own POSTs under a no-referrer policy, and from sandboxed
        # or opaque contexts: believe it only when Fetch Metadata vouches for the same origin.
        if fetch_site != "same-origin":
            return "the request came from another site"
        origin = None
    origin = origin or request.headers.get("Referer")
    if origin:
        host = urlsplit(origin).netloc
        if host != request.host:
            return "the request came from another site"
    elif fetch_site not in (None, "same-origin", "none"):
        return "the request came from another site"
    sid = session_id(request)
    if sid is None:
        return "no session; reload the page and try again"
    if not submitted or not hmac.compare_digest(csrf_token(secret, sid), submitted):
        return "the form's security token is missing or wrong; reload the page and try again"
    return None
