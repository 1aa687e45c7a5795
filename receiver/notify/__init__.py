"""Channels out: the `Notifier` contract every channel implements, and how an attempt's outcome is told.

A channel is one module (slack.py, webhook.py, teams.py, pagerduty.py, mail.py) with one `Notifier` subclass,
listed in registry.py; the deliverer (delivery.py) picks it by the outbox item's `target_type`. A notifier
renders a `Context` (messages.py) into its own message and sends it to a destination (a URL, or a JSON document
for channels that need more), classifying the outcome the way Alertmanager's notifiers do (`notify/util.go`,
`Retrier.Check`): delivered; retry after a time the target asked for (429 Retry-After); retry (5xx, network
errors, SMTP 4xx); failed for good (other 4xx, SMTP 5xx); or *unknown*: the request may have reached the target
without an answer coming back (a timeout, a connection dropped after sending), so a retry may repeat the page.
Only a failure to connect is known not to have been sent. Errors are described by status code or exception type
only: destinations hold secrets, and exception texts can contain them.
"""

from __future__ import annotations

import email.utils
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from ..model import TargetType

if TYPE_CHECKING:
    import aiohttp

    from ..config import Config
    from .messages import Context

NOBODY_PAGED = (
    "no notification target is configured, so incidents will page nobody: set RECEIVER_SLACK_WEBHOOK_URL "
    "(the default owner's Slack incoming webhook), or give an owner a target in the config file (slack_url_env, "
    "webhooks, or any channel under Channels in the README)"
)

CONNECT_TIMEOUT = 10.0  # seconds; a connection not made by then is a known failure, retried safely

M = TypeVar("M")


@dataclass(frozen=True)
class SendResult:
    """One attempt's outcome. Build it with the class methods, which name the five outcomes."""

    delivered: bool
    retry: bool
    error: str | None = None
    retry_after: timedelta | None = None
    unknown: bool = False  # no answer, but the request may have reached the target

    @classmethod
    def ok(cls) -> SendResult:
        return cls(True, False)

    @classmethod
    def retry_later(cls, error: str, after: timedelta | None = None) -> SendResult:
        """Known not delivered, worth retrying: after `after` if the target said when, else after a backoff."""
        return cls(False, True, error, after)

    @classmethod
    def failed(cls, error: str) -> SendResult:
        """Known not delivered, and retrying cannot help (the target refused the message or the destination)."""
        return cls(False, False, error)

    @classmethod
    def maybe_sent(cls, error: str) -> SendResult:
        """Unknown: the request went out and no answer came; retried, and the retry may repeat the page."""
        return cls(False, True, error, unknown=True)


class Notifier(ABC, Generic[M]):
    """One channel: `render` a context into the channel's message (pure), `send` it to a destination.

    `send` ends within `timeout` seconds whatever the target does (the delivery lease relies on this bound
    being hard) and never raises for anything the target or the network does: it returns a SendResult.
    A notifier is made once per deliverer with the shared HTTP session (channels that are not HTTP ignore it)."""

    type: ClassVar[TargetType]

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @abstractmethod
    def render(self, ctx: Context) -> M:
        """The message for `ctx`; untrusted values (labels, annotations, links) made inert for the channel."""

    @abstractmethod
    async def send(self, destination: str, message: M, *, timeout: float, now: datetime) -> SendResult:
        """Deliver `message` to `destination` (a secret: never put it in an error or a log line)."""


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


def nobody_paged(config: Config) -> bool:
    """True when no owner has any target: escalation would run and notify no one."""
    return not any(owner.targets for owner in config.owners.values())
