"""Notifiers: Slack incoming webhooks and generic JSON webhooks, behind one contract.

`send` posts a message and classifies the answer the way Alertmanager's own notifiers do: 2xx is
delivered; 429 waits for Retry-After; 5xx, timeouts and network errors are worth retrying; any other
4xx fails at once. Errors are described by status code or exception type only: a webhook URL is a
secret, and exception texts can contain it.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    retry: bool
    error: str | None = None
    retry_after: timedelta | None = None


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


async def send(session: aiohttp.ClientSession, url: str, message: dict[str, Any], timeout: float,
               now: datetime) -> SendResult:
    try:
        async with session.post(url, json=message, timeout=aiohttp.ClientTimeout(total=timeout),
                                allow_redirects=False) as resp:
            await resp.read()
            if 200 <= resp.status < 300:
                return SendResult(True, False)
            error = f"HTTP {resp.status}"
            if resp.status == 429:
                return SendResult(False, True, error, parse_retry_after(resp.headers.get("Retry-After"), now))
            return SendResult(False, resp.status >= 500, error)
    except TimeoutError:
        return SendResult(False, True, f"no answer within {timeout:g}s")
    except aiohttp.InvalidURL:
        return SendResult(False, False, "invalid URL")
    except (aiohttp.ClientError, OSError) as e:
        return SendResult(False, True, type(e).__name__)
