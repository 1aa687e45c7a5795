"""Posting a message over HTTP, for every channel that is an HTTP endpoint, and the status rule they share.

`post` makes one request under a hard time bound and tells apart what failed before the request went out
(certainly not sent) from what failed after (unknown). `check_status` is Alertmanager's `Retrier.Check`:
2xx delivered, 429 retry after the target's Retry-After, 5xx retry, any other status failed for good. A
channel whose target answers differently passes its own `check`. `read_at_most` reads an answer no further than
a byte limit (the Alertmanager client reads its answers with it too).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import aiohttp

from . import CONNECT_TIMEOUT, SendResult, parse_retry_after

MAX_ANSWER_BYTES = 64 * 1024  # read this much of an answer (for `check`, and so the connection can be reused)

# (status, headers, the first MAX_ANSWER_BYTES of the body, now) -> the outcome
Check = Callable[[int, Mapping[str, str], bytes, datetime], SendResult]


def check_status(status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> SendResult:
    if 200 <= status < 300:
        return SendResult.ok()
    error = f"HTTP {status}"
    if status == 429:
        return SendResult.retry_later(error, parse_retry_after(headers.get("Retry-After"), now))
    if status >= 500:
        return SendResult.retry_later(error)
    return SendResult.failed(error)


async def read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The first `limit` bytes of an answer's body (all of it when shorter); the rest is left unread."""
    chunks = []
    remaining = limit
    while remaining > 0 and (chunk := await resp.content.read(remaining)):
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    message: Any,
    *,
    timeout: float,
    now: datetime,
    check: Check = check_status,
) -> SendResult:
    """POST `message` as JSON to `url`; the whole attempt (connect, send, answer) ends within `timeout` s."""
    status: int | None = None
    headers: Mapping[str, str] = {}
    body = b""
    try:
        # asyncio.timeout as well as aiohttp's: the delivery lease relies on this bound being hard
        # (and a connect phase of its own, so that a target that cannot be reached is known not to have it)
        limits = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT))
        async with (
            asyncio.timeout(timeout),
            session.post(
                url,
                data=json.dumps(message).encode(),
                headers={"Content-Type": "application/json"},
                timeout=limits,
                allow_redirects=False,
            ) as resp,
        ):
            status, headers = resp.status, resp.headers
            body = await read_at_most(resp, MAX_ANSWER_BYTES)
    except aiohttp.InvalidURL:
        return SendResult.failed("invalid URL")
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
        return SendResult.retry_later(type(e).__name__)  # never connected: certainly not sent
    except TimeoutError:
        if status is None:
            return SendResult.maybe_sent(f"no answer within {timeout:g}s")
    except (aiohttp.ClientError, OSError) as e:
        if status is None:
            return SendResult.maybe_sent(type(e).__name__)
    assert status is not None
    return check(status, headers, body, now)
