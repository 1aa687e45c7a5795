"""Break things on purpose and count: nothing that was accepted may be lost, nothing may page twice.

Every scenario runs the receiver as a real subprocess (`python -m receiver serve`) against its own
embedded PostgreSQL, with a fake Slack in the test's loop that records every POST and can answer 500.
Scenarios 1 and 3 put a real Alertmanager 0.25 in front (`apt-get install -y prometheus-alertmanager`).

1. PostgreSQL stopped for ~5 s and started again while Alertmanager keeps sending.
2. SIGTERM while big webhooks are in flight; restart on the same database.
3. Two receivers on one database behind two clustered Alertmanagers.
4. Slack answering 500 for ~5 s, then 200.
7. Soak: steady load with resolves and escalations; memory, connections and logs stay flat.
   `test_soak` (~60 s) runs in the normal suite; `test_soak_long` is marked `slow` and runs only when
   selected: `pytest -m slow tests/reliability` (length: RELIABILITY_SOAK_SECONDS, default 300).

Each test prints one `RELIABILITY ...` line with its figures (alerts sent vs reflected, notifications
expected vs delivered); run with `-s` (or see the captured output) to read them, or set
RELIABILITY_REPORT=<file> to collect them as JSON lines:

    /work/venv/bin/python -m pytest tests/reliability/test_faults.py -s -p no:cacheprovider

No ERROR line is tolerated in any scenario: faults are warnings, answered 503 or retried.

Expected notifications are derived from the escalation policy and what the test did, not read from the
receiver; the outbox (`notifications` table) is compared as well, as a second witness.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import psutil
import pytest

from tests.alertmanager import Alertmanagers, webhook_config
from tests.helpers import ZERO, alert, am_alert, deadline, eventually, fingerprint_of, rfc3339, sum_samples

from .conftest import TOKEN, receiver_config

ALL = "open,acknowledged,silenced,resolved"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NotificationKey = tuple[str | None, str, int]

# Critical and warning both page at open, then after 2 s and 4 s; no repeats.
POLICY_2_4 = """\
    critical:
      steps: [{after: 2s}, {after: 4s}]
    warning:
      steps: [{after: 2s}, {after: 4s}]
"""


# --- helpers -----------------------------------------------------------------------------------------


def drained_in_time(rx: Any) -> bool:
    """The receiver logged that its requests in flight finished, not that --shutdown-timeout cut them off: what
    the drain did, read from its log rather than from a wall-clock time that a loaded machine stretches."""
    log = rx.stderr()
    return "requests drained in" in log and "still running after" not in log


def report(scenario: str, **figures: Any) -> None:
    """One line of figures on stdout; also appended as JSON to $RELIABILITY_REPORT when set."""
    print(f"\nRELIABILITY {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    if os.environ.get("RELIABILITY_REPORT"):
        with open(os.environ["RELIABILITY_REPORT"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"scenario": scenario, **figures}, default=str) + "\n")


def route_labels(
    path: str, instance: str, *, alertname: str = "HighLatency", severity: str = "critical", **extra: str
) -> dict[str, str]:
    return {"alertname": alertname, "method": "GET", "path": path, "severity": severity, "instance": instance, **extra}


def incident_key(labels: dict[str, str]) -> str:
    kind = {"HighLatency": "latency", "HighErrorRate": "error_rate"}[labels["alertname"]]
    return f"{labels['method']} {labels['path']}::{kind}"


def wh_alert(
    labels: dict[str, str],
    starts_at: datetime,
    ends_at: datetime | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An alert as Alertmanager posts it to a webhook."""
    return alert(
        "resolved" if ends_at is not None else "firing",
        labels=labels,
        starts_at=rfc3339(starts_at),
        ends_at=rfc3339(ends_at) if ends_at is not None else ZERO,
        annotations=annotations or {"summary": f"p99 latency is high on {labels['instance']}"},
        generator_url="http://prometheus.test:9090/graph?g0.expr=up",
    )


def webhook_body(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "receiver": "incidents",
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test:9093",
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
    }


async def post_webhook(session: aiohttp.ClientSession, base: str, body: dict[str, Any]) -> int:
    async with session.post(f"{base}/webhook", json=body, headers=AUTH) as r:
        await r.read()
        return r.status


async def get_status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as r:
        await r.read()
        return r.status


async def list_incidents(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    """Every incident of every status, following next_cursor."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"status": ALL, "limit": "500", **({"cursor": cursor} if cursor else {})}
        async with session.get(f"{base}/api/incidents", params=params) as r:
            assert r.status == 200, await r.text()
            page = await r.json()
        found += page["incidents"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def incident_detail(session: aiohttp.ClientSession, base: str, incident_id: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/incidents/{incident_id}") as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


async def db_fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def member_fingerprints(url: str) -> set[str]:
    return {r["fingerprint"] for r in await db_fetch(url, "SELECT fingerprint FROM incident_alerts")}


async def outbox(url: str) -> list[asyncpg.Record]:
    return await db_fetch(url, "SELECT incident_id, notification_key, level, status, attempts FROM notifications")


def outbox_key(row: asyncpg.Record) -> NotificationKey:
    """The (incident, event, level) a Slack message shows for an outbox row (receiver.notify.delivery)."""
    key: str = row["notification_key"]
    event = "resolved" if key.endswith(":resolve") else ("opened" if row["level"] == 0 else "escalated")
    return (str(row["incident_id"]), event, max(row["level"], 0))


def outbox_counter(rows: list[asyncpg.Record]) -> collections.Counter[NotificationKey]:
    return collections.Counter(outbox_key(r) for r in rows)


def by_key(incidents: list[dict[str, Any]]) -> dict[str, str]:
    return {i["incident_key"]: i["id"] for i in incidents}


async def metrics_text(session: aiohttp.ClientSession, base: str) -> str | None:
    """The receiver's /metrics, or None while it does not exist."""
    async with session.get(f"{base}/metrics") as r:
        return await r.text() if r.status == 200 else None


# --- 1. database restart under load -----------------------------------------------------------------

S1_KEYS = [(name, f"/s1/svc-{j}") for name in ("HighLatency", "HighErrorRate") for j in range(5)]
POLICY_S1 = """\
    critical:
      steps: [{after: 3.5}, {after: 5}]
"""


@pytest.mark.alertmanager
@pytest.mark.timeout(deadline(150))
async def test_database_restart_under_load(
    own_postgres: Any,
    fresh_database: str,
    receiver_procs: Any,
    alertmanagers: Alertmanagers,
    fake_slack: Any,
    tmp_path: Any,
) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_S1)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        await rx.wait_ready(s)
        am = alertmanagers("am", webhook_config(f"{rx.url}/webhook", TOKEN, group_by=["alertname", "path"]))
        await am.wait_ready(s)

        sent: dict[str, dict[str, str]] = {}  # instance -> labels
        stop = asyncio.Event()

        async def load() -> None:
            """Five new alerts every 0.2 s across ten keys, as a busy Prometheus would post them."""
            n = 0
            while not stop.is_set():
                batch = []
                for _ in range(5):
                    alertname, path = S1_KEYS[n % len(S1_KEYS)]
                    labels = route_labels(path, f"i-{n:04d}", alertname=alertname)
                    sent[labels["instance"]] = labels
                    batch.append(am_alert(labels, datetime.now(UTC)))
                    n += 1
                await am.post_alerts(s, batch)
                await asyncio.sleep(0.2)

        loader = asyncio.create_task(load())

        # The ten incidents open with Alertmanager's first flush and page at once. Stop the database 1.2 s
        # after the last page: level 1 (3.5 s) and level 2 (5 s) both fall due while it is away.
        async def all_paged() -> list[float]:
            opened = [p.at for p in fake_slack.posts if p.event == "opened" and p.answered == 200]
            return opened if len(opened) >= len(S1_KEYS) else []

        paged_at = max(await eventually(all_paged, "the level-0 pages", timeout=20, interval=0.05))
        await asyncio.sleep(max(0.0, paged_at + 1.2 - time.monotonic()))

        stopping_at = time.monotonic()
        sent_before_outage = len(sent)
        await asyncio.to_thread(own_postgres.stop)
        # While the database is away: the webhook answers 503 (so Alertmanager retries) and is not ready.
        probe = route_labels("/s1/outage-probe", "probe")
        outage_statuses = [await post_webhook(s, rx.url, webhook_body([wh_alert(probe, datetime.now(UTC))]))]
        readyz_during = await get_status(s, f"{rx.url}/readyz")
        await asyncio.sleep(max(0.0, stopping_at + 5.0 - time.monotonic()))
        outage_statuses.append(await post_webhook(s, rx.url, webhook_body([wh_alert(probe, datetime.now(UTC))])))
        await asyncio.to_thread(own_postgres.start)
        outage = time.monotonic() - stopping_at
        readyz_after = None

        async def ready_again() -> bool:
            nonlocal readyz_after
            readyz_after = await get_status(s, f"{rx.url}/readyz")
            return readyz_after == 200

        await eventually(ready_again, "readyz to recover", timeout=15)
        await asyncio.sleep(3)  # still under load after the restart
        stop.set()
        await loader

        assert outage_statuses == [503, 503]
        assert readyz_during == 503

        # Alertmanager holds every alert that was posted; each must end up as a member of its key's incident.
        am_fps = {a["labels"]["instance"]: a["fingerprint"] for a in await am.alerts(s)}
        assert set(am_fps) == set(sent)
        expected_fps = set(am_fps.values())

        async def all_reflected() -> bool:
            return await member_fingerprints(fresh_database) >= expected_fps

        await eventually(all_reflected, "every alert to be reflected", timeout=45)

        incidents = await list_incidents(s, rx.url)
        keys = collections.Counter(i["incident_key"] for i in incidents)
        expected_keys = {incident_key(route_labels(path, "x", alertname=name)) for name, path in S1_KEYS}
        assert set(keys) == expected_keys  # nothing from the refused probe
        assert all(n == 1 for n in keys.values()), keys
        members: dict[str, dict[str, Any]] = {}
        for inc in incidents:
            detail = await incident_detail(s, rx.url, inc["id"])
            for m in detail["alerts"]:
                assert m["fingerprint"] not in members, "a fingerprint is a member of two incidents"
                members[m["fingerprint"]] = m
                assert incident_key(m["labels"]) == inc["incident_key"]
        assert set(members) == expected_fps
        for instance, fp in am_fps.items():
            assert members[fp]["labels"] == sent[instance]
            assert members[fp]["status"] == "firing"

        # Alertmanager's requests failed during the outage, and it retried them (no notification failed).
        am_failed = await am.metric(s, "alertmanager_notification_requests_failed_total", integration="webhook")
        am_sent = await am.metric(s, "alertmanager_notification_requests_total", integration="webhook")
        am_gave_up = await am.metric(s, "alertmanager_notifications_failed_total", integration="webhook")
        assert am_failed > 0

        # Escalation went on across the outage: the levels that fell due while the database was away
        # became one page for the level each incident should be at (2), with level 1 recorded as skipped.
        ids = set(by_key(incidents).values())

        async def escalated() -> bool:
            got = fake_slack.delivered()
            pending = [r for r in await outbox(fresh_database) if r["status"] != "delivered"]
            return not pending and all(got[(i, "escalated", 2)] for i in ids)

        await eventually(escalated, "every incident to reach level 2", timeout=30)
        await asyncio.sleep(deadline(1.5))  # let any duplicate arrive
        rows = await outbox(fresh_database)
        delivered = fake_slack.delivered()
        expected = collections.Counter(
            (i, event, level) for i in ids for event, level in (("opened", 0), ("escalated", 2))
        )
        assert delivered == expected
        assert outbox_counter(rows) == expected
        assert not fake_slack.failed()
        for i in ids:
            escalations = [
                e["detail"] for e in (await incident_detail(s, rx.url, i))["events"] if e["type"] == "escalated"
            ]
            assert [(d["from_level"], d["to_level"], d["skipped_levels"]) for d in escalations] == [(0, 2, 1)]

    report(
        "1 db-restart",
        alerts_sent=len(sent),
        sent_before_outage=sent_before_outage,
        alerts_reflected=len(members),
        incidents=len(incidents),
        keys=len(expected_keys),
        outage_s=round(outage, 1),
        webhook_during_outage=outage_statuses,
        readyz_during_outage=readyz_during,
        am_webhook_requests=int(am_sent),
        am_webhook_requests_failed=int(am_failed),
        am_notifications_given_up=int(am_gave_up),
        receiver_tracebacks=rx.stderr().count("Traceback"),
        notifications_expected=sum(expected.values()),
        notifications_delivered=sum(delivered.values()),
        level1_skipped_during_outage=len(ids),
    )
    # The outage is logged as one-line warnings, never as an error or a traceback: a webhook cut off
    # mid-COMMIT (asyncpg InternalClientError) answers 503 like any other transient fault.
    assert not rx.error_context(), rx.error_context()
    assert "Traceback" not in rx.stderr(), rx.stderr()[-3000:]


# --- 2. SIGTERM under load ----------------------------------------------------------------------------

# The sentinel (critical) reaches level 1 18 s after open and level 2 after 24 s: the stop (at most 10 s of
# drain plus the loops' stop) and the restart fit before level 1. The load (warning) escalates after 8 s,
# during the drain or after the restart.
POLICY_S2 = """\
    critical:
      steps: [{after: 18s}, {after: 24s}]
    warning:
      steps: [{after: 8s}]
"""
S2_KEYS = 20
S2_REQUESTS = 48  # big requests, 16 at a time
S2_ALERTS = 200  # alerts per request (~450 kB of JSON): each takes a while to parse and store


def s2_body(i: int, started: datetime) -> bytes:
    path = f"/s2/load-{i % S2_KEYS}"
    alerts = [
        wh_alert(
            route_labels(path, f"r{i}-a{j}", severity="warning"),
            started,
            annotations={"summary": "load", "description": "x" * 1500},
        )
        for j in range(S2_ALERTS)
    ]
    return json.dumps(webhook_body(alerts)).encode()


Outcome = tuple[int, float, float, int | str]  # (request, started, ended, status or exception name)


async def sigterm_under_load(
    rx: Any,
    bodies: list[bytes],
    *,
    workers: int,
    slow: int = 0,
    sigterm_after: float | None = None,
    sigterm_after_answers: int = 4,
) -> tuple[list[Outcome], float, float, int | None]:
    """POST `bodies` with `workers` concurrent clients (the last `slow` of them dribbled over ~2.5 s, all
    started at once), SIGTERM the receiver once `sigterm_after_answers` requests were answered (an event, so
    requests are surely in flight whatever the machine's speed) or, with `sigterm_after`, that many seconds
    in (for uploads that must be mid-body), and wait for it to exit.
    Returns the outcomes, the SIGTERM time, the seconds until exit, and the exit code."""
    results: list[Outcome] = []
    answered_enough = asyncio.Event()
    fast = iter(range(len(bodies) - slow))
    sigterm_at: float | None = None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True), timeout=aiohttp.ClientTimeout(total=60)
    )

    async def send(i: int, data: Any) -> None:
        t0 = time.monotonic()
        try:
            async with session.post(
                f"{rx.url}/webhook", data=data, headers={**AUTH, "Content-Type": "application/json"}
            ) as r:
                await r.read()
                status: int | str = r.status
        except (aiohttp.ClientError, OSError) as e:
            status = type(e).__name__
        results.append((i, t0, time.monotonic(), status))
        if len(results) >= sigterm_after_answers:
            answered_enough.set()

    async def dribble(body: bytes) -> Any:
        """The body in 64 KiB pieces over ~2.5 s, like a slow network."""
        pieces = [body[k : k + 65536] for k in range(0, len(body), 65536)]
        for piece in pieces:
            yield piece
            await asyncio.sleep(2.5 / len(pieces))

    async def worker() -> None:
        for i in fast:
            if sigterm_at is not None and not rx.alive():
                results.append((i, time.monotonic(), time.monotonic(), "not sent: receiver gone"))
                continue
            await send(i, bodies[i])

    try:
        tasks = [asyncio.create_task(send(i, dribble(bodies[i]))) for i in range(len(bodies) - slow, len(bodies))]
        tasks += [asyncio.create_task(worker()) for _ in range(workers)]
        if sigterm_after is not None:
            await asyncio.sleep(sigterm_after)
        else:
            await asyncio.wait_for(answered_enough.wait(), deadline(60))
        rx.terminate()
        sigterm_at = time.monotonic()
        code = await rx.wait_exit(timeout=40)
        exited_after = time.monotonic() - sigterm_at
        await asyncio.gather(*tasks)
    finally:
        await session.close()
    return results, sigterm_at, exited_after, code


@pytest.mark.timeout(deadline(150))
async def test_sigterm_under_load_drains_and_escalation_resumes(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any
) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_S2)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url, shutdown_timeout=10)
    started = datetime.now(UTC)
    bodies = [s2_body(i, started) for i in range(S2_REQUESTS)]
    fps_of = [{a["fingerprint"] for a in json.loads(b)["alerts"]} for b in bodies]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        await rx.wait_ready(s)
        # An incident opened before the stop: paged at level 0 now, level 1 is due after the restart.
        sentinel = route_labels("/s2/sentinel", "sentinel-1")
        assert await post_webhook(s, rx.url, webhook_body([wh_alert(sentinel, datetime.now(UTC))])) == 200
        sentinel_id = by_key(await list_incidents(s, rx.url))[incident_key(sentinel)]

        async def paged() -> bool:
            return bool(fake_slack.delivered()[(sentinel_id, "opened", 0)])

        await eventually(paged, "the level-0 page", timeout=10)

        results, sigterm_at, exited_after, code = await sigterm_under_load(rx, bodies, workers=16)
        assert code == 0, rx.stderr()[-3000:]

        # Restart on the same database and port.
        rx2 = receiver_procs("rx", cfg, fresh_database, fake_slack.url, port=rx.port)
        await rx2.wait_ready(s)
        restarted_at = time.monotonic()

        ok = [r for r in results if r[3] == 200]
        drained = [r for r in ok if r[1] < sigterm_at < r[2]]
        other = collections.Counter(str(r[3]) for r in results if r[3] != 200)
        ok_fps = set().union(*(fps_of[r[0]] for r in ok))
        not_ok_fps = set().union(*(fps_of[r[0]] for r in results if r[3] != 200))
        stored = await member_fingerprints(fresh_database)

        incidents = await list_incidents(s, rx2.url)
        ids = by_key(incidents)
        load_ids = {v for k, v in ids.items() if k != incident_key(sentinel)}

        async def escalated() -> bool:
            got = fake_slack.delivered()
            return bool(got[(sentinel_id, "escalated", 2)]) and all(got[(i, "escalated", 1)] for i in load_ids)

        await eventually(escalated, "levels due after the restart", timeout=40)
        await asyncio.sleep(deadline(1.5))  # let any duplicate arrive
        delivered = fake_slack.delivered()
        rows = await outbox(fresh_database)

    # Every request that got a 2xx is in the database; requests in flight at SIGTERM were answered.
    assert len(results) == S2_REQUESTS
    assert ok_fps <= stored, f"{len(ok_fps - stored)} alerts answered 2xx are missing"
    assert stored <= ok_fps | not_ok_fps | {fingerprint_of(sentinel)}
    assert len(drained) >= 1, "no request was in flight at SIGTERM: the load is too light"
    assert not [r for r in results if isinstance(r[3], int) and r[3] != 200], other
    # A connection still in the listen backlog at SIGTERM may be reset (ClientOSError): it got no answer,
    # so Alertmanager retries it, and it must have written nothing. Nothing in a handler is cut off.
    cut_off = [r for r in results if r[1] < sigterm_at and r[3] != 200]
    for r in cut_off:
        assert r[3] == "ClientOSError", r
        assert not fps_of[r[0]] & stored, "a request without 2xx left a partial write"
    # The drain waits for the requests in flight only, and they finished inside --shutdown-timeout (10 s).
    assert drained_in_time(rx), rx.stderr()[-3000:]
    assert not rx.error_lines(), rx.error_lines()

    # Escalation continued where it was: each level exactly once; levels 1 and 2 came from the new process.
    expected: collections.Counter[NotificationKey] = collections.Counter()
    expected.update([(sentinel_id, "opened", 0), (sentinel_id, "escalated", 1), (sentinel_id, "escalated", 2)])
    for i in load_ids:
        expected.update([(i, "opened", 0), (i, "escalated", 1)])
    assert delivered == expected
    assert outbox_counter(rows) == expected
    assert all(r["status"] == "delivered" for r in rows)
    posts = {p.key: p.at for p in fake_slack.posts if p.answered == 200}
    assert posts[(sentinel_id, "opened", 0)] < sigterm_at
    assert posts[(sentinel_id, "escalated", 1)] > sigterm_at + exited_after
    assert posts[(sentinel_id, "escalated", 2)] > restarted_at
    assert not fake_slack.failed()
    # one incident per key that received alerts (under a heavy machine some keys get none before SIGTERM)
    assert len({i["incident_key"] for i in incidents}) == len(incidents) <= S2_KEYS + 1

    report(
        "2 sigterm",
        requests=len(results),
        requests_2xx=len(ok),
        in_flight_at_sigterm_2xx=len(drained),
        cut_off_at_sigterm=len(cut_off),
        other_outcomes=dict(other),
        alerts_posted=len(set().union(*fps_of)) + 1,
        alerts_2xx=len(ok_fps) + 1,
        alerts_reflected=len(stored),
        answered_2xx_missing=len(ok_fps - stored),
        exit_after_sigterm_s=round(exited_after, 2),
        exit_code=code,
        notifications_expected=sum(expected.values()),
        notifications_delivered=sum(delivered.values()),
    )


@pytest.mark.timeout(deadline(90))
async def test_sigterm_while_bodies_are_still_uploading(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any
) -> None:
    """Webhooks whose body is still arriving at SIGTERM finish: the receiver keeps reading them (aiohttp's
    own shutdown would close the connections first and drop every byte arriving afterwards), stores them
    and answers 2xx, then exits well inside --shutdown-timeout."""
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_S2)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url, shutdown_timeout=8)
    started = datetime.now(UTC)
    bodies = [s2_body(i, started) for i in range(12)]
    fps_of = [{a["fingerprint"] for a in json.loads(b)["alerts"]} for b in bodies]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        await rx.wait_ready(s)
    results, sigterm_at, exited_after, code = await sigterm_under_load(rx, bodies, workers=4, slow=4, sigterm_after=1.0)
    stored = await member_fingerprints(fresh_database)
    ok_fps = set().union(*(fps_of[r[0]] for r in results if r[3] == 200))
    slow = [r for r in results if r[0] >= len(bodies) - 4]
    report(
        "2b sigterm-uploading",
        requests=len(results),
        requests_2xx=sum(1 for r in results if r[3] == 200),
        slow_outcomes=[r[3] for r in slow],
        slow_ended_after_sigterm_s=[round(r[2] - sigterm_at, 1) for r in slow],
        alerts_2xx=len(ok_fps),
        alerts_reflected=len(stored),
        exit_after_sigterm_s=round(exited_after, 2),
    )
    assert code == 0, rx.stderr()[-3000:]
    # the four uploads were in flight at SIGTERM (they take ~2.5 s from t=0; SIGTERM at t=1 s) and finished
    assert len(slow) == 4
    assert all(r[1] < sigterm_at < r[2] for r in slow), slow
    assert [r[3] for r in slow] == [200] * 4
    assert ok_fps <= stored
    assert set().union(*(fps_of[r[0]] for r in slow)) <= stored
    for r in results:
        if r[3] != 200:  # sent after SIGTERM: refused, never half-written
            assert r[1] >= sigterm_at or r[3] == "ClientOSError", r
            assert not fps_of[r[0]] & stored, "a request without 2xx left a partial write"
    assert drained_in_time(rx), "the drain ran into --shutdown-timeout"
    assert not rx.error_lines(), rx.error_lines()
    drained = re.search(r"stopped listening; letting (\d+) request\(s\) in flight finish", rx.stderr())
    assert drained and int(drained[1]) >= 4, rx.stderr()[-2000:]


@pytest.mark.timeout(deadline(60))
async def test_sigterm_drain_on_keep_alive_connections(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any
) -> None:
    """While draining, a request on an already open keep-alive connection (Alertmanager keeps them) is
    still answered, /readyz says 503 so a load balancer stops sending, every answer says
    `Connection: close`, and idle keep-alive connections do not hold the exit up."""
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_S2)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url, shutdown_timeout=20)
    started = datetime.now(UTC)
    body = s2_body(0, started)
    # limit=1: every request of a session reuses its one keep-alive connection
    keep = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30))
    idle = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30))
    try:
        await rx.wait_ready(keep)
        async with keep.get(f"{rx.url}/readyz") as r:
            assert r.status == 200 and r.headers.get("Connection", "").lower() != "close"
        async with idle.get(f"{rx.url}/healthz") as r:  # this connection stays idle until the end
            assert r.status == 200

        async def dribble() -> Any:
            for k in range(0, len(body), 65536):
                yield body[k : k + 65536]
                await asyncio.sleep(0.3)

        async def post_upload() -> tuple[int, str]:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.post(
                    f"{rx.url}/webhook", data=dribble(), headers={**AUTH, "Content-Type": "application/json"}
                ) as r,
            ):
                return r.status, r.headers.get("Connection", "").lower()

        upload = asyncio.create_task(post_upload())
        await asyncio.sleep(0.5)
        rx.terminate()
        sigterm_at = time.monotonic()
        await asyncio.sleep(0.3)
        assert rx.alive(), "exited while an upload was in flight"
        async with keep.get(f"{rx.url}/readyz") as r:  # over the open connection: the listener is closed
            readyz = (r.status, await r.json(), r.headers.get("Connection", "").lower())
        uploaded = await upload
        code = await rx.wait_exit(timeout=20)
        exited_after = time.monotonic() - sigterm_at
    finally:
        await keep.close()
        await idle.close()
    stored = await member_fingerprints(fresh_database)
    report(
        "2c sigterm-keep-alive",
        readyz_while_draining=readyz,
        upload_answer=uploaded,
        exit_after_sigterm_s=round(exited_after, 2),
    )
    assert readyz == (503, {"error": "shutting down"}, "close")
    assert uploaded == (200, "close")
    assert {a["fingerprint"] for a in json.loads(body)["alerts"]} <= stored
    assert code == 0
    assert drained_in_time(rx), "an idle keep-alive connection held the exit up to --shutdown-timeout"
    assert not rx.error_lines(), rx.error_lines()


# --- 3. two receivers behind two clustered Alertmanagers ---------------------------------------------

S3_KEYS = [(name, f"/s3/svc-{j}") for name in ("HighLatency", "HighErrorRate") for j in range(3)]


@pytest.mark.alertmanager
@pytest.mark.timeout(deadline(150))
async def test_two_receivers_two_clustered_alertmanagers(
    fresh_database: str, receiver_procs: Any, alertmanagers: Alertmanagers, fake_slack: Any, tmp_path: Any
) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_2_4)
    r1 = receiver_procs("r1", cfg, fresh_database, fake_slack.url)
    r2 = receiver_procs("r2", cfg, fresh_database, fake_slack.url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        await asyncio.gather(r1.wait_ready(s), r2.wait_ready(s))
        am1 = alertmanagers(
            "am1", webhook_config(f"{r1.url}/webhook", TOKEN, group_by=["alertname", "path"]), cluster=True
        )
        assert am1.cluster_port is not None
        await am1.wait_ready(s)
        am2 = alertmanagers(
            "am2",
            webhook_config(f"{r2.url}/webhook", TOKEN, group_by=["alertname", "path"]),
            cluster=True,
            peers=(am1.cluster_port,),
        )
        await asyncio.gather(am1.wait_ready(s, peers=2), am2.wait_ready(s, peers=2))

        # Prometheus posts every alert to every peer, with the same startsAt: two waves of new instances.
        starts = datetime.now(UTC)
        sent: list[dict[str, str]] = []
        for wave in range(2):
            batch = [route_labels(path, f"w{wave}-i{k}", alertname=name) for name, path in S3_KEYS for k in range(3)]
            sent += batch
            alerts = [am_alert(labels, starts) for labels in batch]
            await asyncio.gather(am1.post_alerts(s, alerts), am2.post_alerts(s, alerts))
            await asyncio.sleep(1.5)
        am_fps = {
            a["labels"]["instance"] + a["labels"]["path"] + a["labels"]["alertname"]: a["fingerprint"]
            for a in await am1.alerts(s)
        }
        assert len(am_fps) == len(sent)

        async def escalated_fully() -> list[dict[str, Any]] | None:
            incs = await list_incidents(s, r1.url)
            if len(incs) < len(S3_KEYS) or sum(i["alert_count"] for i in incs) < len(sent):
                return None
            got = fake_slack.delivered()
            return incs if all(got[(i["id"], "escalated", 2)] for i in incs) else None

        await eventually(escalated_fully, "every incident to hold every alert and reach level 2", timeout=40)

        # Everything resolves, on both peers.
        ends = datetime.now(UTC) - timedelta(seconds=1)
        resolving = [am_alert(labels, starts, ends) for labels in sent]
        await asyncio.gather(am1.post_alerts(s, resolving), am2.post_alerts(s, resolving))

        async def all_resolved() -> list[dict[str, Any]] | None:
            incs = await list_incidents(s, r2.url)
            got = fake_slack.delivered()
            done = all(i["status"] == "resolved" and got[(i["id"], "resolved", 0)] for i in incs)
            return incs if done else None

        incidents = await eventually(all_resolved, "every incident to resolve and its resolve notice", timeout=30)
        await asyncio.sleep(deadline(3))  # late copies from the second peer, a second replica's delivery...

        incidents = await list_incidents(s, r2.url)
        keys = collections.Counter(i["incident_key"] for i in incidents)
        assert keys == collections.Counter({incident_key(route_labels(p, "x", alertname=n)): 1 for n, p in S3_KEYS})
        members: dict[str, dict[str, Any]] = {}
        notified: collections.Counter[tuple[str, str]] = collections.Counter()
        for inc in incidents:
            detail = await incident_detail(s, r1.url, inc["id"])
            assert detail["status"] == "resolved"
            for m in detail["alerts"]:
                members[m["fingerprint"]] = m
            for e in detail["events"]:
                if e["type"] == "notified":
                    notified[(inc["id"], e["detail"]["notification"])] += 1
        assert set(members) == set(am_fps.values())
        assert all(m["status"] == "resolved" for m in members.values())
        assert set(notified.values()) == {1}, notified

        delivered = fake_slack.delivered()
        expected = collections.Counter(
            (i["id"], event, level)
            for i in incidents
            for event, level in (("opened", 0), ("escalated", 1), ("escalated", 2), ("resolved", 0))
        )
        assert delivered == expected
        assert outbox_counter(await outbox(fresh_database)) == expected
        assert not fake_slack.failed()
        copies = sum(m["receive_count"] for m in members.values())
        am_sent = [await am.metric(s, "alertmanager_notifications_total", integration="webhook") for am in (am1, am2)]
        r_errors = r1.error_lines() + r2.error_lines()
        assert not r_errors, r_errors

    report(
        "3 two-receivers",
        alerts_sent=len(sent),
        alerts_reflected=len(members),
        incidents=len(incidents),
        keys=len(S3_KEYS),
        alert_copies_received=copies,
        webhooks_sent_by_am1_am2=[int(n) for n in am_sent],
        notifications_expected=sum(expected.values()),
        notifications_delivered=sum(delivered.values()),
    )


# --- 4. Slack down, then back ----------------------------------------------------------------------


@pytest.mark.timeout(deadline(120))
async def test_slack_down_then_back(fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_2_4)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url)
    fake_slack.status = 500
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
        await rx.wait_ready(s)
        sent = [route_labels(f"/s4/svc-{k}", f"i-{k}") for k in range(4)]
        now = datetime.now(UTC)
        assert await post_webhook(s, rx.url, webhook_body([wh_alert(labels, now) for labels in sent])) == 200
        down_at = time.monotonic()
        ids = by_key(await list_incidents(s, rx.url))
        assert len(ids) == len(sent)
        expected = collections.Counter(
            (i, event, level)
            for i in ids.values()
            for event, level in (("opened", 0), ("escalated", 1), ("escalated", 2))
        )

        async def all_failed_once() -> bool:
            return {p.key for p in fake_slack.failed()} >= set(expected)

        # Slack stays down until every notification (levels 0, 1 at 2 s, 2 at 4 s) has failed at least once.
        await eventually(all_failed_once, "every notification to fail once while Slack is down", timeout=30)
        fake_slack.status = 200
        up_at = time.monotonic()

        async def recovered() -> bool:
            return set(fake_slack.delivered()) >= set(expected)

        await eventually(recovered, "every notification after Slack recovered", timeout=45)
        recovered_after = time.monotonic() - up_at
        await asyncio.sleep(deadline(2))  # let any duplicate arrive
        delivered = fake_slack.delivered()
        failures = collections.Counter(p.key for p in fake_slack.failed())
        assert delivered == expected
        # Every notification fell due while Slack was down, so each one failed at least once.
        assert set(failures) == set(expected), failures
        assert all(p.at < up_at for p in fake_slack.failed())

        # The failures are on the timeline: one notify_retry per failed attempt, one notified per success.
        retries: collections.Counter[NotificationKey] = collections.Counter()
        notified: collections.Counter[NotificationKey] = collections.Counter()
        for i in ids.values():
            detail = await incident_detail(s, rx.url, i)
            for e in detail["events"]:
                if e["type"] in ("notify_retry", "notified"):
                    key = e["detail"]["notification"]
                    level = int(key.rsplit(":l", 1)[1])
                    k = (i, "opened" if level == 0 else "escalated", level)
                    (retries if e["type"] == "notify_retry" else notified)[k] += 1
                    if e["type"] == "notify_retry":
                        assert e["detail"]["error"] == "HTTP 500"
        assert retries == failures
        assert notified == expected
        rows = await outbox(fresh_database)
        assert outbox_counter(rows) == expected
        assert {outbox_key(r): r["attempts"] for r in rows} == {k: failures[k] + 1 for k in expected}
        assert all(r["status"] == "delivered" for r in rows)

        metrics = await metrics_text(s, rx.url)
        metric_figures: dict[str, Any] = {"metrics": "absent (404)"}
        if metrics is not None:
            name = "receiver_notifications_total"
            retried = sum_samples(metrics, name, {"target_type": "slack", "result": "retried"})
            ok = sum_samples(metrics, name, {"target_type": "slack", "result": "delivered"})
            failed = sum_samples(metrics, name, {"target_type": "slack", "result": "failed"})
            assert (retried, ok, failed) == (sum(failures.values()), sum(expected.values()), 0)
            metric_figures = {"metrics_retried": int(retried), "metrics_delivered": int(ok)}
        assert not [line for line in rx.error_lines() if "Traceback" in line or " ERROR " in line]

    report(
        "4 slack-down",
        alerts_sent=len(sent),
        incidents=len(ids),
        slack_down_s=round(up_at - down_at, 1),
        failed_attempts=sum(failures.values()),
        notify_retry_events=sum(retries.values()),
        notifications_expected=sum(expected.values()),
        notifications_delivered=sum(delivered.values()),
        all_delivered_within_s_of_recovery=round(recovered_after, 1),
        **metric_figures,
    )


# --- 7. soak -----------------------------------------------------------------------------------------

S7_KEYS = 32
S7_FIRE_FOR = 7.0  # seconds an alert group fires: well past level 2 (4 s)
S7_TICK = 0.25  # one key fires each tick; a key fires again S7_KEYS * S7_TICK = 8 s later
POOL_MAX = 4


@pytest.mark.timeout(deadline(150))
async def test_soak(fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any) -> None:
    await _soak(60.0, fresh_database, receiver_procs, fake_slack, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(deadline(1800))
async def test_soak_long(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    expr = request.config.getoption("-m") or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip("long soak: select it with -m slow (RELIABILITY_SOAK_SECONDS sets its length)")
    await _soak(
        float(os.environ.get("RELIABILITY_SOAK_SECONDS", "300")), fresh_database, receiver_procs, fake_slack, tmp_path
    )


async def _soak(duration: float, database_url: str, receiver_procs: Any, fake_slack: Any, tmp_path: Any) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY_2_4, extra=f"database:\n  pool_max: {POOL_MAX}\n")
    rx = receiver_procs("rx", cfg, database_url, fake_slack.url)
    proc = psutil.Process(rx.pid)
    db_name = urlsplit(database_url).path.lstrip("/")
    samples: list[dict[str, float]] = []
    fired: dict[str, dict[str, Any]] = {}  # fingerprint -> alert as last sent
    cycles: collections.Counter[str] = collections.Counter()  # incident key -> times it fired
    requests: collections.Counter[int | str] = collections.Counter()

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=20)
    ) as s:
        await rx.wait_ready(s)
        admin = await asyncpg.connect(database_url)
        try:

            async def post(alerts: list[dict[str, Any]]) -> None:
                status = await post_webhook(s, rx.url, webhook_body(alerts))
                requests[status] += 1
                for a in alerts:
                    fired[a["fingerprint"]] = a

            active: dict[int, tuple[float, list[dict[str, str]], datetime]] = {}  # key -> (since, labels, startsAt)

            async def step(tick: int, now: float, fire: bool = True) -> None:
                # Resolve the groups that fired long enough, fire the next key, repeat what still fires.
                for k, (since, labels, starts) in list(active.items()):
                    if now - since >= S7_FIRE_FOR:
                        ends = datetime.now(UTC)
                        await post([wh_alert(lb, starts, ends) for lb in labels])
                        del active[k]
                k = tick % S7_KEYS
                if fire and k not in active:
                    starts = datetime.now(UTC)
                    labels = [
                        route_labels(
                            f"/s7/svc-{k}", f"t{tick}-i{j}", alertname="HighLatency" if k % 2 else "HighErrorRate"
                        )
                        for j in range(3)
                    ]
                    active[k] = (now, labels, starts)
                    cycles[incident_key(labels[0])] += 1
                repeat = [wh_alert(lb, starts) for _, labels, starts in active.values() for lb in labels]
                await post(repeat)  # Alertmanager re-sends whole groups: idempotent duplicates

            async def sample(started: float) -> None:
                rows = await admin.fetch(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'receiver' AND datname = $1",
                    db_name,
                )
                conns = proc.net_connections(kind="all")
                samples.append(
                    {
                        "t": time.monotonic() - started,
                        "rss": proc.memory_info().rss,
                        "fds": proc.num_fds(),
                        "tcp": sum(1 for c in conns if c.type == 1 and c.status == psutil.CONN_ESTABLISHED),
                        "pg": rows[0]["n"],
                    }
                )

            started = time.monotonic()
            tick = 0
            next_sample = started
            while time.monotonic() - started < duration:
                now = time.monotonic()
                await step(tick, now)
                tick += 1
                if now >= next_sample:
                    await sample(started)
                    next_sample += 1.0
                await asyncio.sleep(max(0.0, started + tick * S7_TICK - time.monotonic()))
            # No new fires: the groups still firing run their course (through level 2), then resolve.
            while active:
                await step(tick, time.monotonic(), fire=False)
                tick += 1
                await asyncio.sleep(max(0.0, started + tick * S7_TICK - time.monotonic()))
            await sample(started)
        finally:
            await admin.close()

        async def settled() -> bool:
            pending = [r for r in await outbox(database_url) if r["status"] != "delivered"]
            incs = await list_incidents(s, rx.url)
            return (
                not pending
                and all(i["status"] == "resolved" for i in incs)
                and sum(fake_slack.delivered()[(i["id"], "resolved", 0)] for i in incs) == sum(cycles.values())
            )

        await eventually(settled, "every incident to resolve and every notification to go out", timeout=30)
        await asyncio.sleep(deadline(1.5))  # let any duplicate arrive

        incidents = await list_incidents(s, rx.url)
        members: dict[str, dict[str, Any]] = {}
        for inc in incidents:
            for m in (await incident_detail(s, rx.url, inc["id"]))["alerts"]:
                members[m["fingerprint"]] = m
        delivered = fake_slack.delivered()
        rows = await outbox(database_url)

    # Alerts: every one sent is a member, resolved; one incident per key, reopened once per later cycle.
    assert set(members) == set(fired)
    assert all(m["status"] == "resolved" for m in members.values())
    ids = by_key(incidents)
    assert set(ids) == set(cycles) and len(incidents) == len(cycles)
    # Notifications: per incident and cycle, open + level 1 + level 2 + resolve, each exactly once.
    expected: collections.Counter[NotificationKey] = collections.Counter()
    for key, n in cycles.items():
        for event, level in (("opened", 0), ("escalated", 1), ("escalated", 2), ("resolved", 0)):
            expected[(ids[key], event, level)] = n
    assert delivered == expected
    assert outbox_counter(rows) == expected
    assert not fake_slack.failed()
    assert set(requests) == {200}, requests

    # Flat: memory, descriptors, connections.
    q = len(samples) // 4
    second, last = samples[q : 2 * q], samples[3 * q :]
    rss2, rss4 = statistics.mean(x["rss"] for x in second), statistics.mean(x["rss"] for x in last)
    fds2, fds4 = statistics.mean(x["fds"] for x in second), statistics.mean(x["fds"] for x in last)
    tcp2, tcp4 = statistics.mean(x["tcp"] for x in second), statistics.mean(x["tcp"] for x in last)
    max_pg = max(x["pg"] for x in samples)
    max_tcp = max(x["tcp"] for x in samples)
    errors = rx.error_lines()
    report(
        f"7 soak {duration:.0f}s",
        webhooks=sum(requests.values()),
        alerts_sent=len(fired),
        alerts_reflected=len(members),
        incidents=len(incidents),
        cycles=sum(cycles.values()),
        notifications_expected=sum(expected.values()),
        notifications_delivered=sum(delivered.values()),
        rss_mb_q2=round(rss2 / 2**20, 1),
        rss_mb_q4=round(rss4 / 2**20, 1),
        fds_q2=round(fds2, 1),
        fds_q4=round(fds4, 1),
        max_pg_connections=max_pg,
        pool_max=POOL_MAX,
        tcp_q2=round(tcp2, 1),
        tcp_q4=round(tcp4, 1),
        max_tcp_established=max_tcp,
        samples=len(samples),
        error_lines=len(errors),
    )
    assert rss4 <= rss2 * 1.2, f"RSS grew from {rss2 / 2**20:.1f} MiB to {rss4 / 2**20:.1f} MiB"
    assert fds4 <= fds2 + 10
    assert tcp4 <= tcp2 + 5 and max_tcp <= 40
    assert max_pg <= POOL_MAX
    assert not errors, errors
