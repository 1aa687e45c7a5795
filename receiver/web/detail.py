"""One incident's detail, paged: its member alerts (firing first) and its timeline, for the API and the page.

An incident can hold tens of thousands of members and events. Every request reads one bounded page of each
(in rows and in bytes) with the totals and a cursor for the next page, so answering one costs the same
whatever the incident holds. A page that is still large (a few huge label sets) is rendered or encoded in
a worker thread, so the event loop keeps answering webhooks and health checks meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from ..model import MemberAlert, TimelineEvent
from ..store import Store

MAX_PAGE = 500  # alerts or events per request: the API's default and its maximum
ALERTS_PAGE_BYTES = 2 * 2**20  # labels, annotations and links per page of alerts (one alert always comes)
EVENTS_PAGE_BYTES = 2**20  # event details per page of the timeline (one event always comes)
# Above this estimate a page is rendered or encoded in a worker thread: ~10 ms of work on the loop at most.
OFF_LOOP_WEIGHT = 128 * 2**10
ROW_WEIGHT = 512  # what a row costs to render, in bytes of label text, over and above its own bytes
MAX_EVENT_ID = 2**63 - 1

T = TypeVar("T")


class BadPageRequest(ValueError):
    """A page parameter (limit, cursor, order) that can never be valid."""


@dataclass
class DetailPage:
    alerts: list[MemberAlert]
    alerts_next: str | None  # cursor of the next page of alerts, None on the last
    events: list[TimelineEvent]
    events_next: str | None
    event_count: int
    weight: int  # an estimate of the work to render or encode the page, in bytes

    @property
    def large(self) -> bool:
        return self.weight > OFF_LOOP_WEIGHT


def encode_alert_cursor(alert: MemberAlert) -> str:
    raw = json.dumps([alert.status, alert.starts_at.isoformat(), alert.fingerprint], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_alert_cursor(text: str) -> tuple[str, datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        status, stamp, fingerprint = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if not isinstance(status, str) or not isinstance(fingerprint, str) or when.tzinfo is None:
            raise ValueError("not a cursor")
        if "\x00" in status or "\x00" in fingerprint:  # PostgreSQL refuses NUL: a 503 otherwise
            raise ValueError("not a cursor")
        return status, when.astimezone(UTC), fingerprint
    except (binascii.Error, UnicodeError, ValueError, TypeError, OverflowError):
        raise BadPageRequest("alerts_cursor is not valid") from None


def decode_event_cursor(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_EVENT_ID:
        raise BadPageRequest("events_cursor is not valid")
    return int(text)


def page_limit(query: Any, name: str, default: int) -> int:
    """`?name=N`, 1 <= N <= MAX_PAGE, or `default`."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadPageRequest(f"{name} must be an integer") from None
    if not 1 <= value <= MAX_PAGE:
        raise BadPageRequest(f"{name} must be between 1 and {MAX_PAGE}")
    return value


async def read_page(
    store: Store,
    incident_id: uuid.UUID,
    *,
    alerts_cursor: str | None,
    alerts_limit: int,
    events_cursor: str | None,
    events_limit: int,
    newest_first: bool = False,
) -> DetailPage:
    """One page of members and one of events, with the cursors of the next pages."""
    alerts_after = decode_alert_cursor(alerts_cursor) if alerts_cursor else None
    events_after = decode_event_cursor(events_cursor) if events_cursor else None
    alerts = await store.incident_alerts_page(
        incident_id, after=alerts_after, limit=alerts_limit, max_bytes=ALERTS_PAGE_BYTES
    )
    events = await store.incident_events_page(
        incident_id, after=events_after, limit=events_limit, max_bytes=EVENTS_PAGE_BYTES, newest_first=newest_first
    )
    weight = alerts.bytes + events.bytes + ROW_WEIGHT * (len(alerts.items) + len(events.items))
    return DetailPage(
        alerts=alerts.items,
        alerts_next=encode_alert_cursor(alerts.items[-1]) if alerts.more else None,
        events=events.items,
        events_next=str(events.items[-1].id) if events.more else None,
        event_count=await store.incident_event_count(incident_id),
        weight=weight,
    )


async def off_loop_if(large: bool, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, in the default executor when the work is large: Python code in a thread still holds the
    GIL, but gives it up every few milliseconds (sys.getswitchinterval), so the loop keeps running."""
    if not large:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def json_text_response(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")
