"""Notifiers: Slack incoming webhooks and generic JSON webhooks, behind one contract.

`send` posts a message and classifies the answer the way Alertmanager's own notifiers do: 2xx is
delivered; 429 waits for Retry-After; 5xx, timeouts and network errors are worth retrying; any other
4xx fails at once. A request that may have reached the target without an answer coming back (a timeout,
a connection dropped after sending) has an *unknown* outcome: the target may have posted it, so a retry
may repeat the page. Only a failure to connect is known not to have been sent. Errors are described by
status code or exception type only: a webhook URL is a secret, and exception texts can contain it.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

if TYPE_CHECKING:
    from ..config import Config

NOBODY_PAGED = (
    "no notification target is configured, so incidents will page nobody: set RECEIVER_SLACK_WEBHOOK_URL "
    "(the default owner's Slack incoming webhook), or give an owner slack_url_env, slack_url_file or webhooks "
    "in the config file"
)

CONNECT_TIMEOUT = 10.0  # seconds; a connection not made by then is a known failure, retried safely


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    retry: bool
    error: str | None = None
    retry_after: timedelta | None = None
    unknown: bool = False  # no answer, but the request may have reached the target


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
    """Post `message`; the whole attempt (connect, send, answer) ends within `timeout` seconds."""
    status: int | None = None
    retry_after: str | None = None
    try:
        # asyncio.timeout as well as aiohttp's: the delivery lease relies on this bound being hard
        # (and a connect phase of its own, so that a target that cannot be reached is known not to have it)
        limits = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT))
        async with asyncio.timeout(timeout), session.post(url, json=message, timeout=limits,
                                                          allow_redirects=False) as resp:
            status, retry_after = resp.status, resp.headers.get("Retry-After")
            # the status is the answer; read a bounded part of the body so the connection can be reused
            remaining = 64 * 1024
            while remaining > 0 and (chunk := await resp.content.read(remaining)):
                remaining -= len(chunk)
    except aiohttp.InvalidURL:
        return SendResult(False, False, "invalid URL")
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
        return SendResult(False, True, type(e).__name__)  # never connected: certainly not sent
    except TimeoutError:
        if status is None:
            return SendResult(False, True, f"no answer within {timeout:g}s", unknown=True)
    except (aiohttp.ClientError, OSError) as e:
        if status is None:
            return SendResult(False, True, type(e).__name__, unknown=True)
    assert status is not None
    if 200 <= status < 300:
        return SendResult(True, False)
    error = f"HTTP {status}"
    if status == 429:
        return SendResult(False, True, error, parse_retry_after(retry_after, now))
    return SendResult(False, status >= 500, error)


def nobody_paged(config: Config) -> bool:
    """True when no owner has any target: escalation would run and notify no one."""
    return not any(owner.targets for owner in config.owners.values())
