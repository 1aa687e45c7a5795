"""Ingest rewrites an open incident's row and its members' rows on every webhook: PostgreSQL must be able to do
that in place (a HOT update: no indexed column changed, room on the page), or every duplicate webhook adds an
entry to each of the incidents table's indexes (migrations/0011_hot_updates.sql). A real PostgreSQL counts them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from receiver.config import parse_config
from receiver.database import _init_connection
from receiver.ingest.alertmanager import parse_notification
from receiver.ingest.service import Ingestor
from receiver.store import Store
from tests.helpers import alert, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

COUNTS = """
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
WHERE relname IN ('incidents', 'incident_alerts')
"""


@pytest.fixture
async def one_backend(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection: every statement of the ingest runs in one backend, whose table statistics we
    can then flush on demand (a backend sends them at most once a second otherwise)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, init=_init_connection)
    try:
        yield pool
    finally:
        await pool.close()


async def update_counts(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed when this statement ends
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(COUNTS)
    return {r["relname"]: (r["n_tup_upd"], r["n_tup_hot_upd"]) for r in rows}


async def test_duplicate_webhooks_update_incident_and_members_in_place(one_backend: asyncpg.Pool) -> None:
    ingestor = Ingestor(parse_config("", env={}), Store(one_backend))
    body = payload(alert(instance="a"), alert(instance="b"))
    await ingestor.ingest(parse_notification(body), T0)
    before = await update_counts(one_backend)

    # minutes apart: last_seen moves each time, and last_seen_minute with it on some of them
    for i in range(1, 7):
        plan = await ingestor.ingest(parse_notification(body), T0 + timedelta(seconds=25 * i))
        assert plan.outcomes["duplicate"] == 2
    after = await update_counts(one_backend)

    incident_updates = after["incidents"][0] - before["incidents"][0]
    incident_hot = after["incidents"][1] - before["incidents"][1]
    member_updates = after["incident_alerts"][0] - before["incident_alerts"][0]
    member_hot = after["incident_alerts"][1] - before["incident_alerts"][1]
    assert incident_updates == 6 and member_updates == 12
    assert member_hot == member_updates, f"{member_updates - member_hot} member updates were not HOT"
    # 150 s from 10:00:00: last_seen_minute (indexed) moves at 10:01 and 10:02, so two of the six updates must
    # write index entries; the other four stay within their minute and are HOT
    assert incident_hot == 4, f"{incident_hot} of 6 incident updates were HOT, expected 4"


async def test_the_stale_timer_still_finds_incidents_by_last_seen(one_backend: asyncpg.Pool, db: Any) -> None:
    """The timer's index is on last_seen_minute; its decision is on last_seen, to the microsecond."""
    ingestor = Ingestor(parse_config("", env={}), Store(one_backend))
    await ingestor.ingest(parse_notification(payload(alert(instance="a"))), T0 + timedelta(seconds=30))
    store = Store(one_backend)
    common: dict[str, Any] = {"ack_before": None, "stale_after_seconds": 60, "notice_severities": (), "batch": 10}
    # 10:00:30 last seen; stale before 10:00:29.999999 (same minute): not stale
    not_yet = await store.tick_timers(T0, stale_before=T0 + timedelta(seconds=30, microseconds=-1), **common)
    assert not_yet.stale_resolved == ()
    assert await db.fetchval("SELECT status FROM incidents") == "open"
    due = await store.tick_timers(T0, stale_before=T0 + timedelta(seconds=30), **common)
    assert [s.kind for s in due.stale_resolved] == ["latency"]
    assert await db.fetchval("SELECT status FROM incidents") == "resolved"
