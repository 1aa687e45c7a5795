"""The domain model: what every layer talks about, declared once. It depends on nothing else in `receiver`.

Senders (`receiver/ingest/`) turn bytes into a `Notification` of `Alert`s; the planner, the store, the
escalation loop, the channels (`receiver/notify/`) and the web layer all speak these types. Each value set
(severities, statuses, outcomes, channel names) is a `StrEnum`: a member *is* its string, so it goes into SQL,
JSON, templates and metric labels unchanged, and a typo is an AttributeError instead of a silent miss.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar


class Severity(StrEnum):
    """Declared from least to most severe: `Severity.rank` orders them."""

    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(Severity)}


def severity_rank(severity: str) -> int:
    """A severity's rank from its plain string (a member hashes as its string); one stored before a rename ranks
    lowest instead of raising."""
    return _SEVERITY_RANK.get(severity, 0)


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
    """A notification channel. Each has one module in `receiver/notify/`, listed in `receiver/notify/registry.py`."""

    SLACK = "slack"
    WEBHOOK = "webhook"
    TEAMS = "teams"
    PAGERDUTY = "pagerduty"
    EMAIL = "email"


class DeliveryStatus(StrEnum):
    """Where an outbox item stands: pending (due now or later), delivered, or failed for good."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxItem:
    """One claimed outbox row: a notification to one target, with the incident as it is at the claim.

    `destination` is the target's address as its channel reads it (a URL, or a JSON document for channels that
    need more than a URL); it holds secrets, so it is left out of the repr. `attempts` counts this attempt: it
    is the lease's token, and an outcome is recorded only under it."""

    id: int
    incident_id: uuid.UUID
    notification_key: str  # c<cycle>:l<level>, or c<cycle>:resolve for a resolve notice
    level: int  # -1 for a resolve notice
    target: str  # the target's id, safe to show: <owner>/<channel>[-n]
    target_type: str  # a TargetType value (a row of a channel this version lacks is failed, not crashed on)
    destination: str = field(repr=False)
    attempts: int
    created_at: datetime
    incident_key: str
    route: str
    kind: str
    severity: str
    status: str  # the incident's IncidentStatus now
    first_seen: datetime
    resolved_at: datetime | None
    acknowledged_by: str | None
    owner_name: str
    metadata: Mapping[str, Any]
    firing_count: int
    alert_count: int

    @property
    def event(self) -> str:
        """What the notification announces: opened (level 0), escalated (level > 0) or resolved."""
        if self.notification_key.endswith(":resolve"):
            return "resolved"
        return "opened" if self.level == 0 else "escalated"


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one attempt at an outbox item came to, as the store records it (under the attempt's lease)."""

    id: int
    attempt: int
    status: DeliveryStatus
    next_attempt_at: datetime | None = None  # when a pending item is due again
    error: str | None = None


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


# --- what the store returns ------------------------------------------------------------------------
# Built from rows by `receiver/store/` (column names are field names), so no other layer reads a database row.


def as_dict(value: Any) -> dict[str, Any]:
    """A store type's fields as a shallow dict (for JSON), in declaration order; values are not copied."""
    return {f.name: getattr(value, f.name) for f in fields(value)}


@dataclass(frozen=True)
class Lifecycle:
    """The columns of an incident that people's actions change (`receiver/lifecycle.py`)."""

    status: str  # an IncidentStatus value
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    silenced_until: datetime | None
    silenced_at: datetime | None
    silenced_by: str | None
    silence_reason: str | None
    status_before_silence: str | None  # the IncidentStatus a silence ends in
    escalation_anchor_at: datetime | None
    next_escalation_at: datetime | None


@dataclass(frozen=True)
class Transition:
    """What one lifecycle action does: the incident's lifecycle columns after it, and its timeline event."""

    state: Lifecycle
    event: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Incident:
    """One incident as stored: every column of `incidents` (migrations/schema.sql)."""

    id: uuid.UUID
    incident_key: str
    route: str
    kind: str
    severity: str  # a Severity value
    status: str  # an IncidentStatus value
    first_seen: datetime
    last_seen: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    escalation_level: int
    escalated_at: datetime | None
    owner: dict[str, Any] | None  # the owner snapshot taken at opening: name and targets (with secret URLs)
    metadata: dict[str, Any]
    resolved_at: datetime | None
    resolved_by: str | None
    mapping_rule: str | None
    flap_count: int
    next_escalation_at: datetime | None
    escalation_anchor_at: datetime | None
    escalation_cycle: int
    silenced_until: datetime | None
    silenced_at: datetime | None
    silenced_by: str | None
    silence_reason: str | None
    status_before_silence: str | None

    @property
    def lifecycle(self) -> Lifecycle:
        return Lifecycle(**{f.name: getattr(self, f.name) for f in fields(Lifecycle)})


@dataclass(frozen=True)
class IncidentView(Incident):
    """An incident with its member counts, as the API and the incident page show it."""

    firing_count: int
    alert_count: int
    # every firing member is silenced or inhibited in Alertmanager (receiver/reconcile.py): since when, which
    # silences (id, created_by, comment, ends_at), which alerts inhibit them; None when not
    suppressed: dict[str, Any] | None = None


@dataclass(frozen=True)
class IncidentSummary:
    """One line of the status page's lists."""

    id: uuid.UUID
    incident_key: str
    route: str
    kind: str
    severity: str
    status: str
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    escalation_level: int
    owner_name: str | None
    acknowledged_by: str | None
    silenced_until: datetime | None
    summary: str | None  # the metadata's summary annotation
    firing_count: int
    alert_count: int
    resolved_by: str | None = None  # read for resolved incidents only


@dataclass(frozen=True)
class StatusCount:
    """How many active incidents have this severity and status."""

    severity: str
    status: str
    n: int


@dataclass(frozen=True)
class MemberAlert:
    """One member alert of an incident, as the incident's detail shows it."""

    fingerprint: str
    status: str  # an AlertStatus value
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str
    first_received_at: datetime
    last_received_at: datetime
    receive_count: int


@dataclass(frozen=True)
class TimelineEvent:
    """One event of an incident's timeline."""

    id: int
    at: datetime
    type: str
    actor: str
    detail: Any  # a JSON object; older lifecycle events hold it as a JSON string (see web/pages.event_detail)


T = TypeVar("T")


@dataclass(frozen=True)
class BoundedPage(Generic[T]):
    """One page of a list bounded in rows and in bytes: `more` says whether a next page follows, `bytes`
    is what the page's items weigh (labels, annotations, details), an estimate of the work to show it."""

    items: list[T]
    more: bool
    bytes: int


@dataclass(frozen=True)
class Target:
    """A place notifications go: one of an owner's targets. The URL holds secrets: never in a repr."""

    id: str  # <owner>/<channel>[-n], safe to show
    type: str  # a TargetType value
    url: str = field(repr=False)


@dataclass(frozen=True)
class DueIncident:
    """An open incident whose escalation timer has passed, claimed for this escalation pass."""

    id: uuid.UUID
    severity: str
    escalation_level: int
    escalation_anchor_at: datetime
    escalation_cycle: int
    owner_targets: tuple[Target, ...]  # from the owner snapshot taken at opening


@dataclass(frozen=True)
class Escalation:
    """What one due incident does now: the level it reaches, when the next is due, and whom it pages (one
    outbox item per target, keyed by `notification_key` and the target, so a page is sent exactly once)."""

    incident_id: uuid.UUID
    from_level: int
    level: int
    next_at: datetime | None
    notification_key: str  # c<cycle>:l<level>
    targets: tuple[Target, ...]

    @property
    def target_ids(self) -> list[str]:
        return [t.id for t in self.targets]


@dataclass(frozen=True)
class StaleResolved:
    """An incident resolved because no webhook touched it for `correlation.stale_after`."""

    kind: str
    severity: str
    age_seconds: float  # from opening to now


@dataclass(frozen=True)
class TimerPass:
    """What one pass over the timers did (expired silences, acknowledgement timeouts, stale incidents) and
    what is due after it."""

    unsilenced: int
    ack_timeouts: int
    stale_resolved: tuple[StaleResolved, ...]
    escalation_due: bool
    delivery_due: bool


@dataclass(frozen=True)
class ActiveCount:
    """How many active incidents have this status, severity and kind, read at scrape time."""

    status: str
    severity: str
    kind: str
    n: int
    oldest_open: float | None  # Unix time of the oldest open (unacknowledged) one's first_seen


@dataclass(frozen=True)
class ActiveIncidents:
    """The active incidents counted for the metrics: by state, and by route when asked for."""

    by_state: tuple[ActiveCount, ...]
    by_route: dict[str, int]


@dataclass(frozen=True)
class MirroredSilence:
    """An Alertmanager silence the receiver made for an incident's silence (receiver/silences.py)."""

    silence_id: str
    peer: str  # the peer that took it (silences gossip to the others)
    matchers: list[list[str]]  # [[name, value], ...]: equality matchers, "" for an absent label
    created_by: str
    created_at: datetime
    ends_at: datetime
    expired_at: datetime | None
    expire_error: str | None  # why the last attempt to expire it failed


@dataclass(frozen=True)
class SilenceToExpire:
    """An Alertmanager silence of ours that must end now, and why (for the timeline)."""

    silence_id: str
    incident_id: uuid.UUID
    peer: str
    why: str


@dataclass(frozen=True)
class HeartbeatState:
    """One heartbeat's shared state (receiver/heartbeats.py): its clock, its last ping, whether it was missed."""

    name: str
    clock_at: datetime  # when its clock last started without a ping
    last_ping_at: datetime | None
    last_sender: str | None
    last_labels: dict[str, str]
    pings: int
    missed_at: datetime | None  # the deadline it missed (NULL: not missed)
    missed_since: datetime | None  # its last sign of life when it was missed
    asserted_at: datetime | None
    checked_at: datetime | None

    @property
    def last_seen(self) -> datetime:
        """What its deadline counts from: the last ping, or the clock's start when that is later."""
        if self.last_ping_at is None:
            return self.clock_at
        return max(self.last_ping_at, self.clock_at)


@dataclass(frozen=True)
class ReconcileMember:
    """A firing member of an active incident, as reconciliation compares it (receiver/reconcile.py)."""

    incident_id: uuid.UUID
    fingerprint: str
    starts_at: datetime
    source: str | None  # '<sender>/<receiver>' of the webhooks that carried it; None before it was recorded
    absent_since: datetime | None  # the first check in which no peer listed it
    suppressed: dict[str, Any] | None  # the incident's suppression in Alertmanager
