"""People on the status page: who they are (Basic auth with scrypt hashes, or a trusted proxy's header)
and CSRF protection for what they do (a per-session token bound to a cookie and the user, plus an Origin check).

Password checks run off the event loop in a small thread pool with a bounded queue: scrypt is slow on
purpose (about 60 ms and 16 MB each), and on the loop a few clients sending wrong passwords would stall
webhooks. Unknown names are checked against a dummy hash, so timing does not tell which names exist.
Successes are remembered briefly; attempts are rate-limited per client address and per user name
(429 with Retry-After). All of this state is per process and bounded in size.

The session cookie holds a random id signed by the server (so only ids the server issued are accepted);
the CSRF token is an HMAC of that id and the user's name, so no server-side session store is needed and
every replica agrees.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Config
from ..keys import CONFIG, LINK_SECRET, SIGN_IN
from ..model import clean_text
from .auth import BASIC_CHALLENGE, parse_basic

SESSION_COOKIE = "receiver_session"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_USER: web.RequestKey[str | None] = web.RequestKey("user")  # the request's signed-in user, once found


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Blocking (tens of milliseconds): call it through SignIn, never on the event loop."""
    try:
        _, n, r, p, salt, digest = encoded.split("$")
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8", "replace"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(actual, expected)


def _dummy_hash(like: str | None) -> str:
    """A hash no password matches, with the cost parameters of `like` (a real user's), so that checking a
    name that does not exist takes as long as checking one that does."""
    n, r, p = _SCRYPT_N, _SCRYPT_R, _SCRYPT_P
    if like:
        try:
            _, n_s, r_s, p_s, _, _ = like.split("$")
            n, r, p = int(n_s), int(r_s), int(p_s)
        except ValueError:
            pass
    return f"scrypt${n}${r}${p}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(32))}"


BucketKey = tuple[str, str | bytes]


@dataclass(frozen=True)
class Limit:
    """A token bucket: `burst` attempts at once, refilled at `burst` per `per` seconds."""

    burst: int
    per: float


class RateLimiter:
    """Token buckets for many keys, bounded to `max_keys` (the least recently used is forgotten: a forgotten
    bucket is a full one, so the bound costs at most a fresh burst for an evicted key)."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic):
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: collections.OrderedDict[BucketKey, list[float]] = collections.OrderedDict()

    def take(self, keys: Sequence[tuple[BucketKey, Limit]]) -> float:
        """Spend one attempt from every key's bucket and return 0, or, when any bucket is empty, spend
        nothing and return the seconds until all have an attempt again."""
        now = self.clock()
        levels = [(key, limit, self._level(key, limit, now)) for key, limit in keys]
        wait = max(((1 - level) * limit.per / limit.burst for _, limit, level in levels if level < 1), default=0.0)
        if wait > 0:
            return wait
        for key, _, level in levels:
            self._store(key, level - 1, now)
        return 0.0

    def give_back(self, keys: Sequence[tuple[BucketKey, Limit]]) -> None:
        now = self.clock()
        for key, limit in keys:
            level = self._level(key, limit, now) + 1
            if level >= limit.burst:
                self._buckets.pop(key, None)  # a full bucket is the same as none
            else:
                self._store(key, level, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: BucketKey, limit: Limit, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(limit.burst)
        level, at = bucket
        return min(float(limit.burst), level + (now - at) * limit.burst / limit.per)

    def _store(self, key: BucketKey, level: float, now: float) -> None:
        self._buckets[key] = [level, now]
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)


class SignIn:
    """Checks page users' Basic credentials without blocking the event loop (see the module docstring)."""

    PER_ADDRESS = Limit(burst=10, per=60.0)  # attempts per client address: 10 at once, then 10 a minute
    PER_USER = Limit(burst=20, per=60.0)  # attempts per user name, whatever the address
    MAX_PENDING = 32  # checks queued or running; past this, answer 429 at once (16 MB of scrypt each, running)
    REMEMBER = 300.0  # seconds a successful check is remembered (browsers send the password with every request)

    def __init__(
        self, config: Config, *, workers: int = 2, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ):
        self.config = config
        self.clock = clock
        self._hashes = {u.name: u.password_hash.value for u in config.ui.users}
        self._dummy = _dummy_hash(next(iter(self._hashes.values()), None))
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="receiver-scrypt")
        self._pending = 0
        self._inflight: dict[bytes, asyncio.Future[bool]] = {}  # the same credentials checked once at a time
        self._remembered: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._max_remembered = 1024
        self.limiter = RateLimiter(max_keys, clock)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def user(self, request: web.Request) -> str | None:
        """The user named by the request's Basic credentials, or None; raises 429 when throttled."""
        credentials = parse_basic(request.headers.get("Authorization"))
        if credentials is None or not self._hashes:
            return None
        name, password = credentials
        stored = next((h for n, h in self._hashes.items() if hmac.compare_digest(n.encode(), name.encode())), None)
        encoded = stored or self._dummy
        key = hashlib.sha256(b"\0".join(s.encode("utf-8", "replace") for s in (name, password, encoded))).digest()
        now = self.clock()
        if stored is not None and self._remembered.get(key, 0.0) > now:
            return name
        buckets: list[tuple[BucketKey, Limit]] = [
            (("address", client_address(self.config, request)), self.PER_ADDRESS),
            (("user", hashlib.sha256(name.encode("utf-8", "replace")).digest()[:16]), self.PER_USER),
        ]
        wait = self.limiter.take(buckets)
        if wait > 0:
            raise too_many_attempts(request, wait)
        try:
            ok = await self._check(key, password, encoded)
        except _Busy:
            self.limiter.give_back(buckets)
            raise too_many_attempts(request, 1.0) from None
        if not ok or stored is None:
            return None  # the attempt stays spent: failures are what the limit counts
        self.limiter.give_back(buckets)
        self._remembered[key] = self.clock() + self.REMEMBER
        self._remembered.move_to_end(key)
        while len(self._remembered) > self._max_remembered:
            self._remembered.popitem(last=False)
        return name

    async def _check(self, key: bytes, password: str, encoded: str) -> bool:
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        if self._pending >= self.MAX_PENDING:
            raise _Busy
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, verify_password, password, encoded)
        self._inflight[key] = future

        def done(_: object) -> None:
            self._pending -= 1
            self._inflight.pop(key, None)

        future.add_done_callback(done)
        # shielded: a client that goes away does not cancel a check that others may be waiting for
        return await asyncio.shield(future)


class _Busy(Exception):
    """The password-check queue is full."""


async def sign_in_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the password checker and its threads."""
    sign_in = SignIn(app[CONFIG])
    app[SIGN_IN] = sign_in
    try:
        yield
    finally:
        sign_in.close()


def too_many_attempts(request: web.Request, wait: float) -> web.HTTPTooManyRequests:
    retry = str(max(1, int(wait + 0.999)))
    message = "too many sign-in attempts; try again later"
    if request.path.startswith("/api/"):
        return web.HTTPTooManyRequests(
            text=f'{{"error": "{message}"}}', content_type="application/json", headers={"Retry-After": retry}
        )
    return web.HTTPTooManyRequests(text=f"429: {message}", headers={"Retry-After": retry})


def _trusted(config: Config, address: str | None) -> bool:
    if not address or not config.ui.trusted_proxies:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in config.ui.trusted_proxies)


def client_address(config: Config, request: web.Request) -> str:
    """The client's address: the peer, or behind a trusted proxy the nearest untrusted X-Forwarded-For hop."""
    remote = request.remote or ""
    if _trusted(config, remote):
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        for hop in reversed(hops):
            if not _trusted(config, hop):
                return hop[:64]
    return remote[:64]


def _proxy_user(config: Config, request: web.Request) -> str | None:
    header = config.ui.proxy_header
    if not header or not request.remote:
        return None
    value = request.headers.get(header)
    if not value or not _trusted(config, request.remote):
        return None
    # header bytes that are not UTF-8 arrive as lone surrogates, which the database refuses
    return clean_text(value.strip()[:128]) or None


async def current_user(request: web.Request) -> str | None:
    """The signed-in user (trusted proxy header, or Basic credentials), or None; raises 429 when throttled."""
    if _USER in request:
        return request[_USER]
    config = request.app[CONFIG]
    user = _proxy_user(config, request) or await request.app[SIGN_IN].user(request)
    request[_USER] = user
    return user


def known_user(request: web.Request) -> str | None:
    """The user `current_user` found for this request earlier, without checking again."""
    return request.get(_USER)


def challenge(message: str = "sign in to continue") -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=f"401: {message}", headers={"WWW-Authenticate": BASIC_CHALLENGE})


# --- sessions and CSRF ---------------------------------------------------------------------------------

_SID = re.compile(r"[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{22}", re.ASCII)


def _sid_mac(secret: str, raw: str) -> str:
    mac = hmac.new(secret.encode(), f"session|{raw}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:22]


def new_session_id(secret: str) -> str:
    raw = secrets.token_urlsafe(18)
    return f"{raw}.{_sid_mac(secret, raw)}"


def session_id(request: web.Request) -> str | None:
    """The session cookie's id when this server issued it, else None."""
    value = request.cookies.get(SESSION_COOKIE, "")
    if not _SID.fullmatch(value):
        return None
    raw, _, mac = value.partition(".")
    return value if hmac.compare_digest(_sid_mac(request.app[LINK_SECRET], raw), mac) else None


def ensure_session(request: web.Request, response: web.StreamResponse) -> str:
    """The request's session id, or a new one set on `response`."""
    sid = session_id(request)
    if sid is None:
        sid = new_session_id(request.app[LINK_SECRET])
        response.set_cookie(
            SESSION_COOKIE,
            sid,
            httponly=True,
            samesite="Strict",
            path="/",
            secure=_scheme(request.app[CONFIG], request) == "https",
        )
    return sid


def csrf_token(secret: str, sid: str, user: str) -> str:
    message = b"csrf|" + sid.encode() + b"|" + user.encode("utf-8", "replace")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _scheme(config: Config, request: web.Request) -> str:
    """http or https as the browser sees it: a trusted proxy's X-Forwarded-Proto, else our own transport's."""
    if _trusted(config, request.remote):
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return "https" if request.secure else "http"


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL, default ports made explicit; None otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def our_origins(config: Config, request: web.Request) -> set[tuple[str, str, int]]:
    """The origins our own pages are served from: this request's (scheme included) and external_url's."""
    origins = set()
    own = _origin(f"{_scheme(config, request)}://{request.host}")
    if own:
        origins.add(own)
    if config.external_url:
        configured = _origin(config.external_url)
        if configured:
            origins.add(configured)
    return origins


def check_csrf(request: web.Request, submitted: str, user: str) -> str | None:
    """None when the request is safe, else why it is refused."""
    config = request.app[CONFIG]
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
        if _origin(origin) not in our_origins(config, request):
            return "the request came from another site"
    elif fetch_site not in (None, "same-origin", "none"):
        return "the request came from another site"
    sid = session_id(request)
    if sid is None:
        return "no session; reload the page and try again"
    expected = csrf_token(request.app[LINK_SECRET], sid, user)
    if not submitted or not hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace")):
        return "the form's security token is missing or wrong; reload the page and try again"
    return None
