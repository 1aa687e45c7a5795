"""Correlation rules on a real PostgreSQL: one test per rule of the ingest issue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from receiver import store as store_module
from receiver.config import parse_config
from receiver.database import _init_connection, create_pool
from receiver.ingest.alertmanager import parse_notification
from receiver.ingest.service import Ingestor
from receiver.store import Store
from tests.helpers import alert, deadline, eventually, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.fixture
async def ingestor(database_url: str) -> AsyncIterator[Ingestor]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8, init=_init_connection)
    try:
        yield Ingestor(parse_config("", env={}), Store(pool))
    finally:
        await pool.close()


async def post(ingestor: Ingestor, body: dict[str, Any], now: datetime = T0) -> Any:
    return await ingestor.ingest(parse_notification(body), now)


async def incidents(db: Any, status: str | None = None) -> list[Any]:
    if status:
        return await db.fetch("SELECT * FROM incidents WHERE status = $1 ORDER BY first_seen", status)
    return await db.fetch("SELECT * FROM incidents ORDER BY first_seen")


async def event_types(db: Any, incident_id: Any) -> list[str]:
    rows = await db.fetch("SELECT type FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id)
    return [r["type"] for r in rows]


async def test_firing_opens_one_incident_with_owner_metadata_and_timeline(ingestor: Ingestor, db: Any) -> None:
    plan = await post(
        ingestor,
        payload(
            alert(
                instance="a",
                annotations={"summary": "p99 over 2s", "description": "slow", "runbook_url": "https://runbooks/x"},
            )
        ),
    )
    assert plan.outcomes["new"] == 1
    [inc] = await incidents(db)
    assert inc["incident_key"] == "GET /notifications/recent::latency"
    assert (inc["route"], inc["kind"], inc["severity"], inc["status"]) == (
        "GET /notifications/recent",
        "latency",
        "warning",
        "open",
    )
    assert inc["owner"] == {"name": "default", "targets": []}
    assert inc["mapping_rule"] == "default"
    assert inc["metadata"]["summary"] == "p99 over 2s"
    assert inc["metadata"]["runbook_url"] == "https://runbooks/x"
    assert inc["metadata"]["generator_url"].startswith("http://prometheus")
    assert inc["metadata"]["external_url"] == "http://am-1:9093"
    assert await event_types(db, inc["id"]) == ["opened", "alert_fired"]
    [member] = await db.fetch("SELECT * FROM incident_alerts")
    assert member["status"] == "firing" and member["ends_at"] is None and member["receive_count"] == 1


async def test_duplicates_change_only_counts_and_last_seen(ingestor: Ingestor, db: Any) -> None:
    body = payload(alert(instance="a"), alert(instance="b"))
    await post(ingestor, body)
    [before] = await incidents(db)
    # an HA peer's copy differs only in externalURL; a retry is byte-identical
    copy = payload(alert(instance="a"), alert(instance="b"), external_url="http://am-2:9093")
    plan = await post(ingestor, copy, T0 + timedelta(seconds=1))
    plan2 = await post(ingestor, body, T0 + timedelta(seconds=2))
    assert plan.outcomes["duplicate"] == 2 and plan2.outcomes["duplicate"] == 2
    [after] = await incidents(db)
    assert after["id"] == before["id"]
    assert after["last_seen"] == T0 + timedelta(seconds=2)
    assert after["first_seen"] == before["first_seen"]
    assert await event_types(db, after["id"]) == ["opened", "alert_fired", "alert_fired"]
    counts = await db.fetch("SELECT receive_count FROM incident_alerts ORDER BY fingerprint")
    assert [r["receive_count"] for r in counts] == [3, 3]


async def test_a_member_no_webhook_names_keeps_its_incident_open(ingestor: Ingestor, db: Any) -> None:
    """The store reads only the webhook's own members and whether another fires: one that fires, named by an
    earlier webhook only, keeps the incident open until it resolves too."""
    await post(ingestor, payload(alert(instance="a")))
    await post(ingestor, payload(alert(instance="b")), T0 + timedelta(seconds=1))
    ends = "2026-11-27T10:05:00Z"
    await post(ingestor, payload(alert("resolved", instance="a", ends_at=ends)), T0 + timedelta(minutes=5))
    [inc] = await incidents(db)
    assert inc["status"] == "open"
    plan = await post(ingestor, payload(alert("resolved", instance="b", ends_at=ends)), T0 + timedelta(minutes=6))
    assert plan.summary()[0]["action"] == "resolved"
    [inc] = await incidents(db)
    assert inc["status"] == "resolved"


async def test_resolves_when_every_member_has_resolved(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a"), alert(instance="b")))
    # a notification marked "firing" may carry a resolved alert: act per alert
    await post(
        ingestor,
        payload(alert(instance="a"), alert("resolved", instance="b", ends_at="2026-11-27T10:05:00Z"), status="firing"),
        T0 + timedelta(minutes=5),
    )
    [inc] = await incidents(db)
    assert inc["status"] == "open"
    members = {r["labels"]["instance"]: r for r in await db.fetch("SELECT * FROM incident_alerts")}
    assert members["b"]["status"] == "resolved"
    assert members["b"]["ends_at"] == datetime(2026, 11, 27, 10, 5, tzinfo=UTC)
    plan = await post(
        ingestor, payload(alert("resolved", instance="a", ends_at="2026-11-27T10:06:00Z")), T0 + timedelta(minutes=6)
    )
    assert plan.summary()[0]["action"] == "resolved"
    [inc] = await incidents(db)
    assert inc["status"] == "resolved"
    assert inc["resolved_at"] == T0 + timedelta(minutes=6)
    assert await event_types(db, inc["id"]) == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]


async def test_group_status_is_ignored(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a"), status="resolved"))
    [inc] = await incidents(db)
    assert inc["status"] == "open"


async def test_absence_is_never_a_resolve(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a"), alert(instance="b")))
    await post(ingestor, payload(alert(instance="a"), truncatedAlerts=1), T0 + timedelta(minutes=1))
    await post(ingestor, payload(alert(instance="b"), status="firing"), T0 + timedelta(minutes=2))
    [inc] = await incidents(db)
    assert inc["status"] == "open"
    firing = await db.fetchval("SELECT count(*) FROM incident_alerts WHERE status = 'firing'")
    assert firing == 2


async def test_stale_firing_after_resolved_never_reopens(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a")))
    await post(
        ingestor, payload(alert("resolved", instance="a", ends_at="2026-11-27T10:01:00Z")), T0 + timedelta(minutes=1)
    )
    # the slower HA peer sends "firing" with the same startsAt after the first peer's "resolved"
    plan = await post(
        ingestor, payload(alert(instance="a"), external_url="http://am-2:9093"), T0 + timedelta(minutes=1, seconds=1)
    )
    assert plan.outcomes["stale"] == 1
    [inc] = await incidents(db)
    assert inc["status"] == "resolved"
    assert await event_types(db, inc["id"]) == ["opened", "alert_fired", "alert_resolved", "resolved"]
    # and a stale, older resolve changes nothing either
    await post(
        ingestor, payload(alert("resolved", instance="a", starts_at="2026-11-27T09:00:00Z")), T0 + timedelta(minutes=2)
    )
    assert len(await incidents(db)) == 1


async def test_refire_within_window_reopens_after_window_opens_new(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a")))
    await post(
        ingestor, payload(alert("resolved", instance="a", ends_at="2026-11-27T10:01:00Z")), T0 + timedelta(minutes=1)
    )
    # a genuine re-fire carries a new startsAt; 3 minutes after resolving is within the 5-minute window
    plan = await post(
        ingestor, payload(alert(instance="a", starts_at="2026-11-27T10:04:00Z")), T0 + timedelta(minutes=4)
    )
    assert plan.summary()[0]["action"] == "reopened"
    [inc] = await incidents(db)
    assert inc["status"] == "open" and inc["flap_count"] == 1 and inc["resolved_at"] is None
    assert (await event_types(db, inc["id"]))[-2:] == ["reopened", "alert_fired"]

    await post(
        ingestor,
        payload(alert("resolved", instance="a", starts_at="2026-11-27T10:04:00Z", ends_at="2026-11-27T10:05:00Z")),
        T0 + timedelta(minutes=5),
    )
    plan = await post(
        ingestor, payload(alert(instance="a", starts_at="2026-11-27T10:20:00Z")), T0 + timedelta(minutes=20)
    )
    assert plan.summary()[0]["action"] == "opened"
    rows = await incidents(db)
    assert [r["status"] for r in rows] == ["resolved", "open"]
    assert rows[1]["id"] != inc["id"]


async def test_severity_rises_and_never_drops(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a", severity="warning")))
    await post(ingestor, payload(alert(instance="b", severity="page")), T0 + timedelta(seconds=1))
    [inc] = await incidents(db)
    assert inc["severity"] == "critical"
    assert "severity_raised" in await event_types(db, inc["id"])
    await post(
        ingestor,
        payload(
            alert("resolved", instance="b", severity="page", ends_at="2026-11-27T10:02:00Z"),
            alert(instance="c", severity="info"),
        ),
        T0 + timedelta(minutes=2),
    )
    [inc] = await incidents(db)
    assert inc["severity"] == "critical" and inc["status"] == "open"


async def test_one_payload_resolving_one_and_firing_another_does_not_flap(ingestor: Ingestor, db: Any) -> None:
    await post(ingestor, payload(alert(instance="a")))
    await post(
        ingestor,
        payload(
            alert("resolved", instance="a", ends_at="2026-11-27T10:01:00Z"),
            alert(instance="b", starts_at="2026-11-27T10:01:00Z"),
        ),
        T0 + timedelta(minutes=1),
    )
    [inc] = await incidents(db)
    assert inc["status"] == "open"
    assert "resolved" not in await event_types(db, inc["id"])


async def test_resolve_of_an_unknown_alert_writes_nothing(ingestor: Ingestor, db: Any) -> None:
    plan = await post(ingestor, payload(alert("resolved", instance="z", ends_at="2026-11-27T10:01:00Z")))
    assert plan.outcomes["stale"] == 1
    assert await db.fetchval("SELECT count(*) FROM incidents") == 0
    assert await db.fetchval("SELECT count(*) FROM incident_events") == 0


async def test_duplicate_fingerprints_inside_one_payload(ingestor: Ingestor, db: Any) -> None:
    a = alert(instance="a")
    resolved = alert("resolved", instance="a", ends_at="2026-11-27T10:01:00Z")
    await post(ingestor, payload(a, a, a))
    assert await db.fetchval("SELECT receive_count FROM incident_alerts") == 1
    await post(ingestor, payload(a, resolved, a), T0 + timedelta(minutes=1))
    [inc] = await incidents(db)
    assert inc["status"] == "resolved"


async def test_keys_are_separate_incidents(ingestor: Ingestor, db: Any) -> None:
    await post(
        ingestor,
        payload(
            alert(instance="a"), alert(alertname="HighErrorRate", instance="a"), alert(path="/api/items", instance="a")
        ),
    )
    keys = sorted(r["incident_key"] for r in await incidents(db))
    assert keys == [
        "GET /api/items::latency",
        "GET /notifications/recent::error_rate",
        "GET /notifications/recent::latency",
    ]


async def test_concurrent_webhooks_for_one_key_make_one_incident(ingestor: Ingestor, db: Any) -> None:
    bodies = [payload(alert(instance=f"i{n}"), alert(instance="shared")) for n in range(40)]
    results = await asyncio.gather(*(post(ingestor, b) for b in bodies))
    assert sum(r.outcomes["new"] for r in results) == 41  # every instance once, "shared" once
    active = await incidents(db, "open")
    assert len(active) == 1
    assert await db.fetchval("SELECT count(*) FROM incident_alerts") == 41
    assert await event_types(db, active[0]["id"]) == ["opened"] + ["alert_fired"] * 41


async def test_concurrent_webhooks_through_two_app_instances(
    make_client: Any, config: Any, db: Any, database_url: str
) -> None:
    one, two = await make_client(config), await make_client(config)
    bodies = [payload(alert(instance=f"i{n % 7}"), alert(path=f"/p{n % 3}", instance="x")) for n in range(30)]
    replies = await asyncio.gather(*((one if n % 2 else two).post("/webhook", json=b) for n, b in enumerate(bodies)))
    assert [r.status for r in replies] == [200] * 30
    per_key = await db.fetch("SELECT incident_key, count(*) AS n FROM incidents GROUP BY 1")
    assert len(per_key) == 4 and all(r["n"] == 1 for r in per_key)


async def test_round_trips_do_not_grow_with_alerts(database_url: str) -> None:
    """A webhook costs a constant number of statements, whatever its size."""
    statements: list[str] = []

    async def init(conn: asyncpg.Connection) -> None:
        await _init_connection(conn)
        conn.add_query_logger(lambda record: statements.append(record.query))

    pool = await create_pool(database_url, min_size=1, max_size=1)
    ingestor = Ingestor(parse_config("", env={}), Store(pool))
    async with pool.acquire() as conn:
        await init(conn)
    try:
        await post(ingestor, payload(alert(instance="warm-up")))  # type introspection happens once per connection
        counts = []
        for size in (1, 10, 200):
            statements.clear()
            body = payload(*(alert(instance=f"s{size}-{i}", path=f"/p{i % 5}") for i in range(size)))
            await post(ingestor, body)
            counts.append(len(statements))
    finally:
        await pool.close()
    assert counts[0] == counts[1] == counts[2], statements
    assert counts[0] == 4, [s[:40] for s in statements]  # BEGIN, lock keys and read state, apply, COMMIT


async def test_manually_resolved_incident_ignores_resent_firing(ingestor: Ingestor, db: Any) -> None:
    """Alertmanager keeps re-sending the firing alerts of an incident someone resolved by hand:
    the same instances (fingerprint, startsAt) never reopen it; a new instance opens a new incident."""
    await post(ingestor, payload(alert(instance="a")))
    [inc] = await incidents(db)
    await db.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = $1, resolved_by = 'alice' WHERE id = $2",
        T0 + timedelta(minutes=1),
        inc["id"],
    )
    plan = await post(ingestor, payload(alert(instance="a")), T0 + timedelta(minutes=2))
    assert plan.outcomes["stale"] == 1
    assert [r["status"] for r in await incidents(db)] == ["resolved"]


async def test_webhook_with_20000_incident_keys_is_stored_and_a_bystander_succeeds(client: Any, db: Any) -> None:
    """One advisory lock per key ran PostgreSQL out of lock memory (default max_locks_per_transaction):
    503 for ever (Alertmanager retries it for ever) and a failed bystander. Locks per transaction are bounded."""
    n = 20_000
    many = payload(*(alert(path=f"/many/{i}", instance="a") for i in range(n)))
    big = asyncio.ensure_future(client.post("/webhook", json=many))

    async def ingest_under_way() -> bool:
        # a bystander sent while the big webhook holds its locks (or as soon as it is done, if that is first)
        held = await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return big.done() or held > 0

    await eventually(ingest_under_way, "the big webhook's transaction to take its locks", timeout=60, interval=0.01)
    bystander = await client.post("/webhook", json=payload(alert(path="/bystander")))
    assert bystander.status == 200, await bystander.text()
    resp = await asyncio.wait_for(big, deadline(300))
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["alerts"]["new"] == n and len(data["incidents"]) == n
    assert await db.fetchval("SELECT count(DISTINCT incident_key) FROM incidents WHERE status = 'open'") == n + 1
    assert await db.fetchval("SELECT count(*) FROM incident_alerts") == n + 1
    assert await db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'opened'") == n + 1


async def _chunked_history(database_url: str) -> list[Any]:
    """Webhooks across many keys, one of whose members has moved to another key; the state they leave."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2, init=_init_connection)
    try:
        ing = Ingestor(parse_config("", env={}), Store(pool))
        moved = alert(path="/p1", instance="b")
        plans = [
            await post(
                ing,
                payload(
                    *(alert(path=f"/p{i}", instance="ab"[i % 2]) for i in range(4)),
                    moved,
                    alert(path="/p1", instance="c"),
                ),
            )
        ]
        later = "2026-11-27T10:05:00Z"
        # the moved member (same fingerprint, now labelled /p9) is resolved from another key's chunk, after
        # the other member of its incident (/p1) was resolved in its own; /p0 resolves one member and fires
        # another in one payload (no flap); /p2 is a duplicate
        resolved_moved = {
            **alert("resolved", path="/p9", instance="b", ends_at=later),
            "fingerprint": moved["fingerprint"],
        }
        plans.append(
            await post(
                ing,
                payload(
                    alert("resolved", path="/p0", instance="a", ends_at=later),
                    alert(path="/p0", instance="new"),
                    alert(path="/p2", instance="a"),
                    resolved_moved,
                    alert(path="/p5", instance="a"),
                    alert("resolved", path="/p3", instance="b", ends_at=later),
                    alert("resolved", path="/p1", instance="c", ends_at=later),
                ),
                T0 + timedelta(minutes=5),
            )
        )
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT i.incident_key, i.status, i.severity, i.flap_count, i.metadata->>'alerts_received' AS n,"
                " (SELECT array_agg(e.type ORDER BY e.id) FROM incident_events AS e WHERE e.incident_id = i.id)"
                " AS events,"
                " (SELECT array_agg(a.status || ':' || a.receive_count ORDER BY a.fingerprint)"
                "  FROM incident_alerts AS a WHERE a.incident_id = i.id) AS members"
                " FROM incidents AS i ORDER BY i.incident_key"
            )
        summaries = [sorted((s["incident_key"], s["action"]) for s in p.summary()) for p in plans]
        return [
            [dict(r) for r in rows],
            summaries,
            [p.outcomes for p in plans],
            [sorted((c.status, c.resolved) for c in p.changes.values()) for p in plans],
        ]
    finally:
        await pool.close()


async def test_webhook_cut_into_transactions_by_key_ends_as_one_transaction_would(
    make_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook with more keys than one transaction locks is written in chunks of keys: the incidents,
    members, timeline and reply are those of one transaction, a moved member resolved from another chunk
    included."""
    whole = await _chunked_history(make_database())
    monkeypatch.setattr(store_module, "MAX_KEYS_PER_TRANSACTION", 1)
    chunked = await _chunked_history(make_database())
    assert chunked == whole
    rows = {r["incident_key"]: r for r in whole[0]}
    assert rows["GET /p1::latency"]["status"] == "resolved"  # via the moved member, from the /p9 chunk
    assert rows["GET /p0::latency"]["status"] == "open" and rows["GET /p0::latency"]["flap_count"] == 0
    assert rows["GET /p3::latency"]["status"] == "resolved" and "GET /p5::latency" in rows


async def test_locks_per_ingest_transaction_are_bounded(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each transaction locks at most MAX_KEYS_PER_TRANSACTION keys (ingest_state() takes one advisory lock per
    key it is given): 10 keys, 3 per transaction, are 4 transactions of the usual 4 statements."""
    monkeypatch.setattr(store_module, "MAX_KEYS_PER_TRANSACTION", 3)
    logged: list[Any] = []
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        ingestor = Ingestor(parse_config("", env={}), Store(pool))
        await post(ingestor, payload(alert(path="/warm-up")))  # type introspection happens once per connection
        async with pool.acquire() as conn:
            conn.add_query_logger(logged.append)
        plan = await post(
            ingestor, payload(*(alert(path=f"/k{i}", instance=f"i{j}") for i in range(10) for j in range(3)))
        )
    finally:
        await pool.close()
    assert plan.outcomes["new"] == 30 and len(plan.summary()) == 10
    locked = [r.args[0] for r in logged if "ingest_state" in r.query]
    assert [len(keys) for keys in locked] == [3, 3, 3, 1]
    assert sorted(k for keys in locked for k in keys) == sorted(f"GET /k{i}::latency" for i in range(10))
    assert len(logged) == 16, [r.query[:40] for r in logged]
