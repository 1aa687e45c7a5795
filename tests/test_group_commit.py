"""Group commit (receiver/ingest/batcher.py, Store.ingest_batch): a batch writes exactly what one-by-one ingest
in arrival order writes, and one bad webhook or a lost database costs what it should, on a real PostgreSQL.

The property test feeds random webhook sequences (duplicates, stale firings, resolves, re-fires, inferred
resolves, acknowledgements, many and overlapping keys, reopen windows that pass) both ways, into two
databases, and compares every row but the ids.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver import correlation
from receiver.config import parse_config
from receiver.database import _init_connection, create_pool
from receiver.ingest.alertmanager import parse_notification
from receiver.ingest.batcher import PARALLEL_BATCH_ALERTS, Batcher
from receiver.ingest.service import Ingestor
from receiver.model import Alert
from receiver.store import MAX_KEYS_PER_TRANSACTION, Store, StoreRejected, StoreUnavailable, key_chunks
from tests.helpers import alert, deadline, eventually, payload, rfc3339

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CONFIG = parse_config("", env={})
PATHS = ("/a", "/b", "/c")
INSTANCES = ("i1", "i2")
SEVERITIES = ("warning", "critical")
STARTS = (T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))
ACTORS = ("alertmanager", "alertmanager", correlation.RECONCILER)  # reconciliation's resolves are inferred
TABLES = "incidents, incident_alerts, incident_events, notifications"


def _alerts_st(paths: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str, str, str, datetime]]]:
    alert_st = st.tuples(
        paths,
        st.sampled_from(INSTANCES),
        st.sampled_from(SEVERITIES),
        st.sampled_from(("firing", "firing", "resolved")),
        st.sampled_from(STARTS),
    )
    return st.lists(alert_st, min_size=1, max_size=6)


# alerts of any paths, or all of one path: webhooks of one path often share a batch with others that touch
# none of their keys, and the store then writes them in one statement
alerts_st = st.one_of(
    _alerts_st(st.sampled_from(PATHS)), st.sampled_from(PATHS).flatmap(lambda p: _alerts_st(st.just(p)))
)
# a step is a webhook (its alerts, its sender, seconds since the step before) or an acknowledgement of a key
step_st = st.one_of(
    st.tuples(st.just("webhook"), alerts_st, st.sampled_from(ACTORS), st.sampled_from((1, 20, 200, 400))),
    st.tuples(st.just("ack"), st.sampled_from(PATHS)),
)
# with each step, whether a batch ends after it
steps_st = st.lists(st.tuples(step_st, st.sampled_from((False, False, True))), min_size=1, max_size=16)
M1 = T0 + timedelta(minutes=1)
# open, resolve, and a new instance within the reopen window, in one batch: the batch reopens what it resolved
REOPEN = [
    (("webhook", [("/a", "i1", "warning", "firing", T0)], "alertmanager", 1), False),
    (("webhook", [("/a", "i1", "warning", "resolved", T0)], "alertmanager", 20), False),
    (
        (
            "webhook",
            [("/a", "i1", "critical", "firing", M1), ("/a", "i1", "warning", "firing", M1)],
            "alertmanager",
            20,
        ),
        False,
    ),
]
# an inferred resolve, the same instance firing again, an acknowledgement, severity rising on it
REFIRE = [
    (
        ("webhook", [("/b", "i1", "warning", "firing", T0), ("/b", "i2", "warning", "firing", T0)], "alertmanager", 1),
        True,
    ),
    (("webhook", [("/b", "i1", "warning", "resolved", T0)], correlation.RECONCILER, 20), False),
    (("webhook", [("/b", "i1", "warning", "firing", T0)], "alertmanager", 20), False),
    (("ack", "/b"), False),
    (("webhook", [("/b", "i1", "critical", "firing", M1)], "alertmanager", 20), False),
    (("webhook", [("/b", "i1", "critical", "firing", M1)], "alertmanager", 400), False),
]


# three webhooks on disjoint keys in one batch, written by one statement: one opens an incident, one resolves
# one, one opens a second at another time
DISJOINT = [
    (("webhook", [("/b", "i1", "critical", "firing", T0)], "alertmanager", 1), True),
    (("webhook", [("/a", "i1", "warning", "firing", T0)], "alertmanager", 1), False),
    (("webhook", [("/b", "i1", "critical", "resolved", T0)], "alertmanager", 1), False),
    (("webhook", [("/c", "i2", "critical", "firing", M1)], "alertmanager", 20), True),
]

# duplicates in one batch, as a storm or a resend sends them (one from the reconciler's source), then a
# resolve and a re-fire: each a statement of its own, as they share their rows
TWO = [("/a", "i1", "warning", "firing", T0), ("/a", "i2", "warning", "firing", T0)]
DUPLICATES = [
    (("webhook", TWO, "alertmanager", 1), True),
    (("webhook", TWO, "alertmanager", 1), False),
    (("webhook", TWO, correlation.RECONCILER, 20), False),
    (("webhook", [("/a", "i1", "warning", "firing", T0)], "alertmanager", 20), False),
    (("webhook", [("/a", "i1", "warning", "resolved", T0)], "alertmanager", 20), False),
    (("webhook", [("/a", "i2", "warning", "firing", T0)], "alertmanager", 1), False),
]


def _alerts(spec: list[tuple[str, str, str, str, datetime]]) -> list[Alert]:
    body = payload(
        *(
            alert(
                status,
                path=path,
                instance=instance,
                severity=severity,
                starts_at=rfc3339(starts),
                ends_at=rfc3339(starts + timedelta(minutes=5)) if status == "resolved" else "0001-01-01T00:00:00Z",
                annotations={"summary": f"{path} {instance} {status}"},
            )
            for path, instance, severity, status, starts in spec
        )
    )
    return parse_notification(body).alerts


def _webhook(ingestor: Ingestor, spec: Any, actor: str, now: datetime) -> correlation.Webhook:
    alerts = correlation.dedupe(_alerts(spec))
    mappings = {a.fingerprint: ingestor.map(a.labels) for a in alerts}
    # in the order of its keys, as the Ingestor queues it (and Store.ingest plans it)
    [(alerts, _keys)] = key_chunks(alerts, mappings, MAX_KEYS_PER_TRANSACTION)
    return correlation.Webhook(
        alerts,
        mappings,
        now,
        now - CONFIG.correlation.reopen_window,
        external_url="http://am-1:9093",
        owner_snapshot=ingestor.owner_snapshot,
        actor=actor,
    )


async def _one_by_one(store: Store, w: correlation.Webhook) -> correlation.Plan:
    return await store.ingest(
        w.alerts,
        w.mappings,
        w.now,
        reopen_window_start=w.reopen_window_start,
        external_url=w.external_url,
        owner_snapshot=w.owner_snapshot,
        actor=w.actor,
        resolve_notice_severities=frozenset({"critical"}),
        source=f"{w.actor}/r",
    )


async def _ack(conn: asyncpg.Connection, path: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE incidents SET status = 'acknowledged', acknowledged_by = 'u', acknowledged_at = $2 "
        "WHERE status = 'open' AND incident_key = $1",
        f"GET {path}::latency",
        now,
    )


async def _contents(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every row that ingest writes, with each incident named by (key, first_seen) instead of its id."""
    incidents = [dict(r) for r in await conn.fetch("SELECT * FROM incidents ORDER BY incident_key, first_seen")]
    name = {r["id"]: (r["incident_key"], r["first_seen"]) for r in incidents}
    for r in incidents:
        del r["id"]
    members = sorted(
        (name[r["incident_id"]], *(v for k, v in r.items() if k != "incident_id"))
        for r in await conn.fetch("SELECT * FROM incident_alerts")
    )
    events: dict[Any, list[Any]] = {}
    for r in await conn.fetch("SELECT * FROM incident_events ORDER BY id"):
        events.setdefault(name[r["incident_id"]], []).append((r["at"], r["type"], r["actor"], r["detail"]))
    outbox = sorted(
        (name[r["incident_id"]], r["notification_key"], r["target"], r["status"])
        for r in await conn.fetch("SELECT * FROM notifications")
    )
    return {"incidents": incidents, "members": members, "events": events, "outbox": outbox}


def _reply(plan: correlation.Plan, names: dict[uuid.UUID, Any]) -> Any:
    return (
        dict(plan.outcomes),
        [(a.fingerprint, o) for a, o in plan.alert_outcomes],
        sorted((names.get(i, plan.keys[i]), a) for i, a in plan.actions.items()),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps_st)
@example(steps=REOPEN)
@example(steps=REFIRE)
@example(steps=DISJOINT)
@example(steps=DUPLICATES)
def test_a_batch_writes_what_one_by_one_ingest_writes(
    make_database: Callable[[], str], steps: list[tuple[Any, bool]]
) -> None:
    urls = _databases(make_database)
    asyncio.run(_compare(urls, steps))


_urls: dict[int, tuple[str, str]] = {}


def _databases(make_database: Callable[[], str]) -> tuple[str, str]:
    # two databases per test (not per example: creating one takes longer than an example), emptied per example
    key = id(make_database)
    if key not in _urls:
        _urls.clear()
        _urls[key] = (make_database(), make_database())
    return _urls[key]


async def _compare(urls: tuple[str, str], steps: list[tuple[Any, bool]]) -> None:
    pools = [await create_pool(u, min_size=1, max_size=2) for u in urls]
    try:
        for p in pools:
            await p.execute(f"TRUNCATE {TABLES} CASCADE")
        one, batched = Store(pools[0]), Store(pools[1])
        ingestor = Ingestor(CONFIG, one)
        now = T0 + timedelta(minutes=3)
        replies: tuple[list[correlation.Plan], list[correlation.Plan]] = ([], [])
        batch: list[correlation.Webhook] = []

        async def flush() -> None:
            if batch:
                replies[1].extend(
                    await batched.ingest_batch(batch, frozenset({"critical"}), [f"{w.actor}/r" for w in batch])
                )
                batch.clear()

        for step, ends_batch in steps:
            if step[0] == "ack":
                await flush()
                for p in pools:
                    async with p.acquire() as conn:
                        await _ack(conn, step[1], now)
                continue
            _, spec, actor, seconds = step
            now += timedelta(seconds=seconds)
            w = _webhook(ingestor, spec, actor, now)
            replies[0].append(await _one_by_one(one, w))
            batch.append(w)
            if ends_batch:
                await flush()
        await flush()
        contents = []
        names: list[dict[uuid.UUID, Any]] = []
        for p in pools:
            async with p.acquire() as conn:
                contents.append(await _contents(conn))
                names.append(
                    {
                        r["id"]: (r["incident_key"], r["first_seen"])
                        for r in await conn.fetch("SELECT id, incident_key, first_seen FROM incidents")
                    }
                )
        assert contents[1] == contents[0]
        assert [_reply(p, names[1]) for p in replies[1]] == [_reply(p, names[0]) for p in replies[0]]
    finally:
        for p in pools:
            await p.close()


# --- the batcher on a real database -----------------------------------------------------------------------


@pytest.fixture
async def pool(database_url: str) -> Any:
    p = await asyncpg.create_pool(database_url, min_size=1, max_size=8, init=_init_connection)
    try:
        yield p
    finally:
        await p.close()


def _held(ingestor: Ingestor) -> tuple[asyncio.Event, asyncio.Event, Callable[[], None]]:
    """Make the batcher's next transaction wait (after it began) until released: what queues meanwhile forms
    the next batch. Returns (entered, release, restore)."""
    entered, release = asyncio.Event(), asyncio.Event()
    real = ingestor.store.ingest_batch

    async def held(webhooks: Any, *args: Any) -> Any:
        entered.set()
        await release.wait()
        setattr(ingestor.store, "ingest_batch", real)  # noqa: B010 (a method replaced on one instance)
        return await real(webhooks, *args)

    setattr(ingestor.store, "ingest_batch", held)  # noqa: B010
    return entered, release, lambda: setattr(ingestor.store, "ingest_batch", real)


def _queued(ingestor: Ingestor, n: int) -> Callable[[], Any]:
    async def probe() -> bool:
        return ingestor.batcher.queued == n

    return probe


async def _submit(ingestor: Ingestor, *alerts: dict[str, Any], now: datetime = T0) -> Any:
    return await ingestor.ingest(parse_notification(payload(*alerts)), now)


async def test_webhooks_queued_while_a_transaction_runs_are_written_as_one_batch(pool: Any, db: Any) -> None:
    batches: list[tuple[int, int]] = []
    ingestor = Ingestor(CONFIG, Store(pool))
    ingestor.batcher.on_batch = lambda webhooks, alerts: batches.append((webhooks, alerts))
    entered, release, _ = _held(ingestor)
    first = asyncio.ensure_future(_submit(ingestor, alert(path="/same", instance="i9")))
    await asyncio.wait_for(entered.wait(), deadline(10))
    # ten webhooks on its key while the first one's transaction runs: they wait, holding no connection
    later = [asyncio.ensure_future(_submit(ingestor, alert(path="/same", instance=f"i{i % 4}"))) for i in range(10)]
    await eventually(_queued(ingestor, 10), "ten webhooks queued", 10)
    assert pool.get_size() - pool.get_idle_size() <= 1
    release.set()
    plans = await asyncio.gather(first, *later)
    assert batches == [(1, 1), (10, 10)]
    assert [p.outcomes["new"] for p in plans] == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert [p.outcomes["duplicate"] for p in plans[5:]] == [1] * 6
    [inc] = await db.fetch("SELECT * FROM incidents WHERE incident_key = 'GET /same::latency'")
    assert inc["metadata"]["alerts_received"] == 11
    counts = await db.fetch(
        "SELECT receive_count FROM incident_alerts WHERE incident_id = $1 ORDER BY fingerprint", inc["id"]
    )
    assert sorted(r["receive_count"] for r in counts) == [1, 2, 2, 3, 3]


async def test_a_lone_webhook_is_written_at_once_and_disjoint_batches_run_together(pool: Any) -> None:
    ingestor = Ingestor(CONFIG, Store(pool))
    batches: list[tuple[int, int]] = []
    ingestor.batcher.on_batch = lambda webhooks, alerts: batches.append((webhooks, alerts))
    # idle: written at once, alone
    await _submit(ingestor, alert(path="/alone"))
    assert batches == [(1, 1)]
    # one batch held on /x: a batch worth a transaction of its own on /y needs no other batch to end
    entered, release, restore = _held(ingestor)
    held = asyncio.ensure_future(_submit(ingestor, alert(path="/x")))
    await asyncio.wait_for(entered.wait(), deadline(10))
    restore()
    big = [alert(path="/y", instance=f"y{i}") for i in range(PARALLEL_BATCH_ALERTS)]
    await asyncio.wait_for(_submit(ingestor, *big), deadline(10))
    assert batches[-1] == (1, PARALLEL_BATCH_ALERTS)
    # a small one on /z waits for the running writer (cheaper than a transaction of its own); one on /x must
    waiting = asyncio.ensure_future(_submit(ingestor, alert(path="/x", instance="other")))
    small = asyncio.ensure_future(_submit(ingestor, alert(path="/z")))
    await eventually(_queued(ingestor, 2), "the /x and /z webhooks waiting", 10)
    assert not waiting.done() and not small.done()
    release.set()
    await asyncio.gather(held, waiting, small)
    # the held batch, then both waiting ones together, once it is done
    assert batches[2:] == [(1, 1), (2, 2)]


async def test_a_small_webhook_never_waits_for_a_big_batch_on_other_keys(pool: Any) -> None:
    """Beside a batch of PARALLEL_BATCH_ALERTS alerts or more (which takes long), a one-alert webhook on another
    key gets a writer of its own at once: the bystander of a huge webhook is answered while it is written."""
    ingestor = Ingestor(CONFIG, Store(pool))
    batches: list[tuple[int, int]] = []
    ingestor.batcher.on_batch = lambda webhooks, alerts: batches.append((webhooks, alerts))
    entered, release, restore = _held(ingestor)
    big = [alert(path="/big", instance=f"b{i}") for i in range(PARALLEL_BATCH_ALERTS)]
    held = asyncio.ensure_future(_submit(ingestor, *big))
    await asyncio.wait_for(entered.wait(), deadline(10))
    restore()
    await asyncio.wait_for(_submit(ingestor, alert(path="/tiny")), deadline(10))
    assert batches == [(1, 1)] and not held.done()
    release.set()
    await held
    assert batches == [(1, 1), (1, PARALLEL_BATCH_ALERTS)]


async def test_a_refused_webhook_fails_alone_and_the_rest_of_its_batch_is_committed(pool: Any, db: Any) -> None:
    """A trigger (installed by this test only) refuses one payload's member: only that webhook fails."""
    await db.execute("""
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.labels->>'poison' = 'yes' THEN RAISE EXCEPTION 'poisoned alert'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON incident_alerts
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
    """)
    ingestor = Ingestor(CONFIG, Store(pool))
    batches: list[tuple[int, int]] = []
    ingestor.batcher.on_batch = lambda webhooks, alerts: batches.append((webhooks, alerts))
    entered, release, _ = _held(ingestor)
    first = asyncio.ensure_future(_submit(ingestor, alert(path="/p", instance="i1")))
    await asyncio.wait_for(entered.wait(), deadline(10))
    good = [asyncio.ensure_future(_submit(ingestor, alert(path="/p", instance=f"g{i}"))) for i in range(3)]
    bad = asyncio.ensure_future(_submit(ingestor, alert(path="/p", instance="bad", poison="yes")))
    good.append(asyncio.ensure_future(_submit(ingestor, alert(path="/p", instance="g3"))))
    await eventually(_queued(ingestor, 5), "five webhooks queued", 10)
    release.set()
    plans = await asyncio.gather(first, *good)
    assert [p.outcomes["new"] for p in plans] == [1] * 5
    with pytest.raises(StoreRejected):
        await bad
    # the batch of five was refused, then each was written alone: four committed
    assert batches == [(1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]
    rows = await db.fetch("SELECT labels->>'instance' AS i FROM incident_alerts ORDER BY 1")
    assert [r["i"] for r in rows] == ["g0", "g1", "g2", "g3", "i1"]


async def test_a_transient_failure_of_a_batch_answers_all_its_webhooks_and_retries_none(pool: Any, db: Any) -> None:
    """The backend of a batch's transaction is terminated while it writes: every webhook of the batch gets
    StoreUnavailable (503, Alertmanager retries), none is retried alone, and nothing of the batch is written."""
    ingestor = Ingestor(CONFIG, Store(pool))
    entered, release, _ = _held(ingestor)
    first = asyncio.ensure_future(_submit(ingestor, alert(path="/t")))
    await asyncio.wait_for(entered.wait(), deadline(10))
    queued = [asyncio.ensure_future(_submit(ingestor, alert(path="/t", instance=f"q{i}"))) for i in range(4)]
    await eventually(_queued(ingestor, 4), "four webhooks queued", 10)
    real_executemany = asyncpg.Connection.executemany
    calls: list[int] = []

    async def executemany(conn: Any, query: str, args: Any, **kw: Any) -> Any:
        calls.append(len(args))
        if len(args) > 1:  # the batch of four: its backend is terminated while it writes
            await db.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        return await real_executemany(conn, query, args, **kw)

    asyncpg.Connection.executemany = executemany
    try:
        release.set()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)
    finally:
        asyncpg.Connection.executemany = real_executemany
    # the lone first webhook's one statement goes with execute; the four share a key: four statements, pipelined
    assert calls == [4]
    assert all(isinstance(r, StoreUnavailable) and not isinstance(r, StoreRejected) for r in results), results
    assert await db.fetchval("SELECT count(*) FROM incident_alerts") == 1


async def test_the_batch_bound_counts_alerts(pool: Any) -> None:
    ingestor = Ingestor(CONFIG, Store(pool))
    ingestor.batcher = Batcher(ingestor.store, writers=1, max_alerts=5)
    batches: list[tuple[int, int]] = []
    ingestor.batcher.on_batch = lambda webhooks, alerts: batches.append((webhooks, alerts))
    entered, release, _ = _held(ingestor)
    first = asyncio.ensure_future(_submit(ingestor, alert(path="/z")))
    await asyncio.wait_for(entered.wait(), deadline(10))
    later = [
        asyncio.ensure_future(_submit(ingestor, *(alert(path=f"/b{i}", instance=f"{j}") for j in range(2))))
        for i in range(5)
    ]
    await eventually(_queued(ingestor, 5), "five webhooks queued", 10)
    release.set()
    await asyncio.gather(first, *later)
    assert batches == [(1, 1), (2, 4), (2, 4), (1, 2)]
