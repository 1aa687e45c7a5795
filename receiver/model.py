"""The domain model: what every layer talks about, declared once. It depends on nothing else in `receiver`.

Senders (`receiver/ingest/`) turn bytes into a `Notification` of `Alert`s; the planner, the store, the
escalation loop, the channels (`receiver/notify/`) and the web layer all speak these types. Each value set
(severities, statuses, outcomes, channel names) is a `StrEnum`: a member *is* its string, so it goes into SQL,
JSON, templates and metric labels unchanged, and a typo is an AttributeError instead of a silent miss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Declared from least to most severe: `Severity.rank` orders them."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {s: i for i, s in enumerate(Severity)}
_REPLACEMENT = "\ufffd"


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


ACTIVE_STATUSES: tuple[IncidentStatus, ...] = (
    IncidentStatus.OPEN,
    IncidentStatus.ACKNOWLEDGED,
    IncidentStatus.SILENCED,
)


class Outcome(StrEnum):
    """What one webhook did to one alert (the reply's `alerts` counts and the metric's label)."""

    NEW = "new"
    UPDATED = "updated"
    DUPLICATE = "duplicate"
    STALE = "stale"
    INVALID = "invalid"


class TargetType(StrEnum):
    """A notification channel. Each has one module in `receiver/notify/`."""

    SLACK = "slack"
    WEBHOOK = "webhook"


@dataclass(frozen=True)
class Alert:
    """One alert instance as a sender reported it: `(fingerprint, starts_at)` identifies the instance."""

    index: int  # position in the sender's payload, for error reports
    fingerprint: str
    status: str  # an AlertStatus value
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str


@dataclass(frozen=True)
class InvalidAlert:
    """An alert the sender's payload held but that can never be valid; the others are kept."""

    index: int
    fingerprint: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "fingerprint": self.fingerprint, "reason": self.reason}


@dataclass(frozen=True)
class Notification:
    """What one sender's request says, sender-neutral.

    `truncated` counts alerts the sender left out (absence is never a resolve). `details` keeps what only
    that sender knows (Alertmanager's receiver, group key and group labels, ...) for logs and evidence;
    nothing downstream decides on it."""

    sender: str
    alerts: list[Alert]
    invalid: list[InvalidAlert] = field(default_factory=list)
    external_url: str = ""
    truncated: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)


def clean_text(value: str) -> str:
    """Make a string storable: PostgreSQL refuses NUL in text and jsonb, and UTF-8 refuses lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", _REPLACEMENT)
    if value.isascii():  # the usual case, and cheap to tell: no surrogate possible
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value
