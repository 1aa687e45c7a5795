"""A small client of Alertmanager's API v2: the alerts one receiver sees, and silences (get, create, expire).

One `AlertmanagerAPI` per app, on the app's aiohttp session. Every call is bounded: by `alertmanager.timeout`
(connect, send and answer together) and by the bytes it reads (`MAX_ALERTS_BYTES` for the alert list, which
can hold thousands of alerts; `MAX_SMALL_BYTES` for everything else). A failure raises `AlertmanagerError`
naming the peer and why in a few words (an HTTP status and Alertmanager's own short message, or an exception's
type): never the token or password, which travel only in the Authorization header and are masked from any
text that is shown, in case a peer echoes them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from .config import AlertmanagerConfig
from .model import clean_text
from .notify.http import read_at_most
from .timeutil import parse_rfc3339

MAX_ALERTS_BYTES = 64 * 1024 * 1024  # about 40,000 alerts of a usual size; more is refused as an error
MAX_SMALL_BYTES = 1024 * 1024  # a silence, a created silence's id, an error message
_PARSE_INLINE_BYTES = 256 * 1024  # larger answers are decoded in a thread (10 MB of JSON is ~100 ms of CPU)
_REASON_CHARS = 200
_CONVERT_SLICE = 1000  # alerts checked between two yields to the event loop


class AlertmanagerError(Exception):
    """A peer did not answer, or answered with an error. `str()` is safe to show: no secret is in it."""

    def __init__(self, peer: str, reason: str, status: int | None = None):
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason
        self.status = status  # the HTTP status, when the peer answered


@dataclass(frozen=True)
class APIAlert:
    """One alert as GET /api/v2/alerts lists it (a GettableAlert)."""

    fingerprint: str
    labels: Mapping[str, Any]  # as sent, unchecked: `raw()` goes through the webhook's parser before any use
    annotations: Mapping[str, Any]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    state: str  # active | suppressed | unprocessed
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    def raw(self) -> dict[str, Any]:
        """The alert as a firing webhook alert, for the same parser and ingest path a webhook takes."""
        return {
            "status": "firing",
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at.isoformat(),
            "endsAt": "",
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


@dataclass(frozen=True)
class Silence:
    """One silence as GET /api/v2/silences lists it (a GettableSilence)."""

    id: str
    state: str  # active | pending | expired
    matchers: tuple[Matcher, ...]
    starts_at: datetime | None
    ends_at: datetime | None
    created_by: str
    comment: str


class AlertmanagerAPI:
    """The configured peers of one Alertmanager cluster, each asked on its own."""

    def __init__(self, config: AlertmanagerConfig, session: aiohttp.ClientSession):
        self.config = config
        self.session = session
        self.peers: tuple[str, ...] = config.urls
        self.timeout = config.timeout.total_seconds()
        self._secrets: tuple[str, ...] = ()
        headers = {"Accept": "application/json"}
        if config.token is not None:
            headers["Authorization"] = f"Bearer {config.token.value}"
            self._secrets = (config.token.value,)
        elif config.basic_auth is not None:
            pair = f"{config.basic_auth.username}:{config.basic_auth.password.value}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            self._secrets = (config.basic_auth.password.value,)
        self._headers = headers

    def __repr__(self) -> str:  # the headers hold the secret
        return f"AlertmanagerAPI(peers={self.peers!r})"

    # --- alerts ----------------------------------------------------------------------------------

    async def alerts(self, peer: str, *, receiver: str | None = None) -> list[APIAlert]:
        """Every alert the peer holds for `receiver` (the configured one by default): active, silenced,
        inhibited and unprocessed alike, so that absence from the list means Alertmanager no longer has it."""
        params = {
            "active": "true",
            "silenced": "true",
            "inhibited": "true",
            "unprocessed": "true",
            "receiver": _regex_quote(receiver or self.config.receiver),
        }  # AM anchors it: ^(?:...)$
        data = await self._request("GET", peer, "/api/v2/alerts", params=params, limit=MAX_ALERTS_BYTES)
        if not isinstance(data, list):
            raise AlertmanagerError(peer, "the alert list is not a JSON list")
        alerts: list[APIAlert] = []
        for start in range(0, len(data), _CONVERT_SLICE):
            if start:
                # on the loop, in slices (~5 ms each): in a thread the conversion would take the GIL from the
                # loop in 5 ms turns for as long as it runs, and ingest would wait behind it
                await asyncio.sleep(0)
            alerts.extend(a for a in (_alert(raw) for raw in data[start : start + _CONVERT_SLICE]) if a is not None)
        return alerts

    # --- silences --------------------------------------------------------------------------------

    async def silence(self, peer: str, silence_id: str) -> Silence | None:
        """One silence by id; None when the peer does not know it."""
        try:
            data = await self._request("GET", peer, f"/api/v2/silence/{_path_id(silence_id)}")
        except AlertmanagerError as e:
            if e.status == 404:
                return None
            raise
        return _silence(data)

    async def create_silence(
        self,
        peer: str,
        *,
        matchers: Sequence[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """POST a silence; its id. Silences gossip, so one peer is enough."""
        body = {
            "matchers": [m.json() for m in matchers],
            "startsAt": starts_at.isoformat(),
            "endsAt": ends_at.isoformat(),
            "createdBy": created_by,
            "comment": comment,
        }
        data = await self._request("POST", peer, "/api/v2/silences", body=body)
        silence_id = data.get("silenceID") if isinstance(data, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise AlertmanagerError(peer, "the answer holds no silenceID")
        return silence_id

    async def expire_silence(self, peer: str, silence_id: str) -> bool:
        """DELETE (expire) a silence; False when the peer does not know it (already gone)."""
        try:
            await self._request("DELETE", peer, f"/api/v2/silence/{_path_id(silence_id)}")
        except AlertmanagerError as e:
            if e.status == 404:
                return False
            raise
        return True

    # --- transport -------------------------------------------------------------------------------

    async def _request(
        self, method: str, peer: str, path: str, *, params: Any = None, body: Any = None, limit: int = MAX_SMALL_BYTES
    ) -> Any:
        """The answer's JSON; a large answer is decoded in a thread (10,000 alerts: ~45 ms of CPU)."""
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status: int | None = None
        try:
            limits = aiohttp.ClientTimeout(total=self.timeout)
            # asyncio.timeout as well as aiohttp's: a peer trickling bytes must not hold a reconcile run
            async with (
                asyncio.timeout(self.timeout),
                self.session.request(
                    method,
                    peer + path,
                    params=params,
                    data=data,
                    headers=headers,
                    timeout=limits,
                    allow_redirects=False,
                ) as resp,
            ):
                status = resp.status
                raw = await _read_bounded(resp, limit)
        except _TooLarge:
            raise AlertmanagerError(peer, f"the answer is larger than {limit} bytes", status) from None
        except TimeoutError:
            raise AlertmanagerError(peer, f"no answer within {self.timeout:g}s", status) from None
        except (aiohttp.ClientError, OSError) as e:  # the type only: exception texts may quote the request
            raise AlertmanagerError(peer, type(e).__name__, status) from None
        if not 200 <= status < 300:
            raise AlertmanagerError(peer, f"HTTP {status}{self._reason(raw)}", status)
        if not raw.strip():
            return None
        try:
            if len(raw) > _PARSE_INLINE_BYTES:
                return await asyncio.to_thread(json.loads, raw)
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise AlertmanagerError(peer, "the answer is not valid JSON", status) from None

    def _reason(self, raw: bytes) -> str:
        """Alertmanager's short error text (a JSON string or plain text), masked and cut, or nothing."""
        text = raw[:4096].decode("utf-8", "replace").strip()
        try:
            decoded = json.loads(text)
            if isinstance(decoded, str):
                text = decoded
            elif isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
                text = decoded["message"]
        except ValueError:
            pass
        for secret in self._secrets:
            text = text.replace(secret, "********")
        text = " ".join(clean_text(text).split())[:_REASON_CHARS]
        return f": {text}" if text else ""


class _TooLarge(Exception):
    pass


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body; _TooLarge when it is longer than `limit` bytes (told by reading one byte past it)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise _TooLarge
    body = await read_at_most(resp, limit + 1)
    if len(body) > limit:
        raise _TooLarge
    return body


def _regex_quote(value: str) -> str:
    """Go's regexp.QuoteMeta: Alertmanager matches `receiver` as an anchored Go regular expression."""
    return "".join("\\" + c if c in r"\.+*?()|[]{}^$" else c for c in value)


def _path_id(silence_id: str) -> str:
    return urllib.parse.quote(silence_id, safe="")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def _ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(clean_text(v)[:128] for v in value if isinstance(v, str))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _alert(raw: Any) -> APIAlert | None:
    """A GettableAlert, or None when it lacks what identifies an instance (fingerprint, labels, startsAt)."""
    if not isinstance(raw, dict):
        return None
    # labels and annotations are kept as sent, unchecked (cleaning 10,000 label sets costs ~40 ms on every run):
    # only a lost firing's are used, and the webhook's parser checks and cleans them first (`raw()`)
    fingerprint, labels, starts_at = raw.get("fingerprint"), _mapping(raw.get("labels")), _time(raw.get("startsAt"))
    if not isinstance(fingerprint, str) or not fingerprint or len(fingerprint) > 128 or not labels or not starts_at:
        return None
    status = _mapping(raw.get("status"))
    generator_url = raw.get("generatorURL")
    return APIAlert(
        fingerprint=clean_text(fingerprint),
        labels=labels,
        annotations=_mapping(raw.get("annotations")),
        starts_at=starts_at,
        ends_at=_time(raw.get("endsAt")),
        generator_url=clean_text(generator_url) if isinstance(generator_url, str) else "",
        state=str(status.get("state") or "unprocessed"),
        silenced_by=_ids(status.get("silencedBy")),
        inhibited_by=_ids(status.get("inhibitedBy")),
    )


def _silence(raw: Any) -> Silence | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return None
    status = _mapping(raw.get("status"))
    matchers = []
    raw_matchers = raw.get("matchers")
    for m in raw_matchers if isinstance(raw_matchers, list) else []:
        if isinstance(m, dict) and isinstance(m.get("name"), str) and isinstance(m.get("value"), str):
            matchers.append(
                Matcher(
                    clean_text(m["name"]),
                    clean_text(m["value"]),
                    bool(m.get("isRegex")),
                    m.get("isEqual", True) is not False,
                )
            )
    return Silence(
        id=clean_text(raw["id"])[:128],
        state=str(status.get("state") or ""),
        matchers=tuple(matchers),
        starts_at=_time(raw.get("startsAt")),
        ends_at=_time(raw.get("endsAt")),
        created_by=clean_text(str(raw.get("createdBy") or ""))[:256],
        comment=clean_text(str(raw.get("comment") or ""))[:1024],
    )
