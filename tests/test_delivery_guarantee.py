"""The delivery guarantee, as the README states it: at-least-once, with repeats only for attempts whose outcome
is unknown (the target answered after `delivery.timeout`, or dropped the connection after the request went out).

Two replicas (two apps, one database) tick concurrently against a fake Slack that is a real HTTP server. The
fake answers late by holding a request until the test releases it, so "late" never depends on machine speed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.ingest.alertmanager import parse_notification
from receiver.keys import DELIVERER, ESCALATOR, INGESTOR
from receiver.notify.delivery import lease_for
from receiver.notify.http import post_json
from tests.fakes import FakeSlack, Received
from tests.helpers import alert, deadline, eventually, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
INCIDENTS = 30
LEVEL_TIMES = (0, 5, 15, 45)  # minutes: open, then levels 1-3 of the policy below
CRIT = {"severity": "critical"}


class LateSlack(FakeSlack):
    """Records every POST when it arrives; holds the ones `hold(headline, nth arrival)` picks until released."""

    def __init__(self) -> None:
        super().__init__(path="/services/T0/B0/secret")
        self.hold: Callable[[str, int], bool] = lambda headline, nth: False
        self.answer: Callable[[str, int], int] = lambda headline, nth: 200

    @property
    def arrivals(self) -> list[str]:
        return self.headlines()

    async def reply(self, received: Received) -> int:
        headline = received.json()["blocks"][0]["text"]["text"]
        nth = self.arrivals.count(headline) - 1  # this request is already recorded
        if self.hold(headline, nth):
            await self.hold_until_released()
        return self.answer(headline, nth)


@pytest.fixture
async def slack() -> AsyncIterator[LateSlack]:
    async with LateSlack() as fake:  # stopping releases held handlers, which would keep the server open
        yield fake


def make_config(slack: LateSlack, timeout: float) -> Config:
    text = f"""
owners:
  - name: default
    slack_url_env: SLACK_URL
delivery:
  timeout: {timeout}s
  initial_backoff: 2s
escalation:
  policies:
    critical:
      steps: [{{after: 5m}}, {{after: 15m}}]
      repeat: {{every: 30m, max: 1}}
"""
    return parse_config(text, env={"SLACK_URL": slack.url})


class Replica:
    def __init__(self, client: Any):
        self.client = client
        self.app = client.server.app

    async def tick(self, now: datetime) -> None:
        await self.app[ESCALATOR].tick(now)
        await self.app[DELIVERER].deliver(now)

    async def unknown_count(self) -> float:
        text = await (await self.client.get("/metrics")).text()
        return sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "receiver_notifications_total" and s.labels.get("result") == "unknown"
        )


async def replicas(aiohttp_client: Any, database_url: str, config: Config) -> tuple[Replica, Replica]:
    one = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    two = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    await one.app[INGESTOR].ingest(
        parse_notification(payload(*(alert(path=f"/p{i}", instance="a", labels=CRIT) for i in range(INCIDENTS)))), T0
    )
    return one, two


async def run_rounds(one: Replica, two: Replica, slack: LateSlack, db: Any) -> None:
    """Each escalation time: both replicas tick twice at once; then late answers come, after every attempt
    gave up on them. Then more rounds until the outbox is drained (a retry needs a later tick)."""
    times = [T0 + timedelta(minutes=m) for m in LEVEL_TIMES]
    extra = 0
    while True:
        now = times.pop(0) if times else T0 + timedelta(minutes=LEVEL_TIMES[-1] + 1 + extra)
        await asyncio.gather(one.tick(now), two.tick(now), one.tick(now), two.tick(now))
        slack.release()
        if not times:
            extra += 1
            if not await db.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'"):
                return
            assert extra < 20, "the outbox never drained"


def expected_headlines() -> set[str]:
    heads = set()
    for i in range(INCIDENTS):
        key = f"GET /p{i}::latency"
        heads.add(f"Incident opened: {key}")
        heads.update(f"Escalated to level {level}: {key}" for level in range(1, len(LEVEL_TIMES)))
    return heads


def notification_of(headline: str) -> tuple[str, str]:
    """(incident key, outbox notification key) of a Slack headline."""
    m = re.fullmatch(r"(?:Incident opened|Escalated to level (\d+)): (.+)", headline)
    assert m, headline
    return m[2], f"c1:l{m[1] or 0}"


async def test_late_answers_repeat_a_page_only_for_attempts_counted_unknown(
    aiohttp_client: Any, database_url: str, slack: LateSlack, db: Any
) -> None:
    # every third incident's first attempt at each level is answered only after the 1 s timeout
    slack.hold = lambda headline, nth: nth == 0 and int(headline.split("/p")[1].split(":")[0]) % 3 == 0
    config = make_config(slack, timeout=1)
    one, two = await replicas(aiohttp_client, database_url, config)

    await run_rounds(one, two, slack, db)

    posts = collections.Counter(slack.arrivals)
    unknown = await one.unknown_count() + await two.unknown_count()
    # at least once: every (incident, level, target) reached Slack
    assert set(posts) == expected_headlines()
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE status <> 'delivered'") == 0
    # repeats only for attempts counted unknown, each of which reached the fake
    assert len(slack.arrivals) == len(posts) + unknown
    assert unknown >= INCIDENTS // 3 * len(LEVEL_TIMES)  # the held ones, at least
    unknown_events = collections.Counter(
        (r["incident_key"], r["notification"])
        for r in await db.fetch(
            "SELECT i.incident_key, e.detail ->> 'notification' AS notification FROM incident_events AS e "
            "JOIN incidents AS i ON i.id = e.incident_id WHERE e.type = 'notify_unknown'"
        )
    )
    assert sum(unknown_events.values()) == unknown
    for headline, n in posts.items():
        assert n == 1 + unknown_events[notification_of(headline)], headline
    # exactly one success recorded per outbox row
    assert await db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'notified'") == len(
        expected_headlines()
    )
    event = await db.fetchrow("SELECT detail FROM incident_events WHERE type = 'notify_unknown' LIMIT 1")
    assert event["detail"]["error"] == "no answer within 1s"
    assert event["detail"]["outcome"] == "unknown: the target may have received it"
    assert event["detail"]["retry_in_seconds"] >= 1


async def test_answers_in_time_deliver_each_page_exactly_once(
    aiohttp_client: Any, database_url: str, slack: LateSlack, db: Any
) -> None:
    config = make_config(slack, timeout=deadline(20))  # a ceiling nothing reaches; costs nothing when fast
    one, two = await replicas(aiohttp_client, database_url, config)

    await run_rounds(one, two, slack, db)

    assert sorted(slack.arrivals) == sorted(expected_headlines())
    assert await one.unknown_count() + await two.unknown_count() == 0
    assert await db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'notify_unknown'") == 0


async def test_no_replica_sends_while_an_attempt_is_in_flight(
    aiohttp_client: Any, database_url: str, slack: LateSlack, db: Any
) -> None:
    slack.hold = lambda headline, nth: nth == 0
    config = make_config(slack, timeout=deadline(10))
    lease = lease_for(config)
    assert lease >= config.delivery.timeout * 2 + timedelta(seconds=30)  # claim budget + attempt + margin
    client = await aiohttp_client(create_app(config, database_url, loops=False))
    one, two = Replica(client), Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    await one.app[INGESTOR].ingest(parse_notification(payload(alert(instance="a", labels=CRIT))), T0)
    await one.app[ESCALATOR].tick(T0)

    attempt = asyncio.ensure_future(one.app[DELIVERER].deliver(T0))
    await slack.wait_held()
    # the other replica, however late its clock within the lease, leaves the row alone
    for later in (timedelta(0), config.delivery.timeout, lease - timedelta(seconds=1)):
        assert await two.app[DELIVERER].deliver(T0 + later) == []
    slack.release()
    [delivery] = await attempt
    assert delivery.status == "delivered"
    assert await two.app[DELIVERER].deliver(T0 + lease + timedelta(minutes=1)) == []
    assert slack.arrivals == ["Incident opened: GET /notifications/recent::latency"]


async def test_an_outcome_recorded_after_its_lease_never_overwrites_a_newer_attempt(
    aiohttp_client: Any, database_url: str, slack: LateSlack, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    slack.hold = lambda headline, nth: nth == 0
    slack.answer = lambda headline, nth: 500 if nth == 0 else 200
    config = make_config(slack, timeout=deadline(10))
    one = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    two = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    await one.app[INGESTOR].ingest(parse_notification(payload(alert(instance="a", labels=CRIT))), T0)
    await one.app[ESCALATOR].tick(T0)

    stale = asyncio.ensure_future(one.app[DELIVERER].deliver(T0))
    await slack.wait_held()
    # as if the first replica's clock or database had stalled past its lease: the second one takes over
    [fresh] = await two.app[DELIVERER].deliver(T0 + lease_for(config) + timedelta(seconds=1))
    assert fresh.status == "delivered"
    slack.release()
    [late] = await stale
    assert late.status == "pending"  # a 500 (or no answer in time): it would retry, were it still its row
    row = await db.fetchrow("SELECT status, attempts, last_error FROM notifications")
    assert dict(row) == {"status": "delivered", "attempts": 2, "last_error": None}
    assert "arrived after their lease and were not recorded" in caplog.text
    types = [r["type"] for r in await db.fetch("SELECT type FROM incident_events WHERE type LIKE 'notif%' ORDER BY id")]
    assert types[0] == "notified" and types[1] in ("notify_retry", "notify_unknown")


async def test_send_knows_which_failures_may_have_reached_the_target(slack: LateSlack) -> None:
    now = datetime.now(UTC)
    async with aiohttp.ClientSession() as session:
        # nothing listens: never connected, so certainly not sent
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        refused = await post_json(session, f"http://127.0.0.1:{port}/x", {"text": "t"}, timeout=deadline(10), now=now)
        assert (refused.retry, refused.unknown) == (True, False)

        # the request went out and the connection dropped without an answer: unknown
        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.close()

        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        async with server:
            dropped_port = server.sockets[0].getsockname()[1]
            dropped = await post_json(
                session, f"http://127.0.0.1:{dropped_port}/x", {"text": "t"}, timeout=deadline(10), now=now
            )
        assert (dropped.delivered, dropped.retry, dropped.unknown) == (False, True, True)

        # no answer within the timeout: unknown
        slack.hold = lambda headline, nth: True
        late = await post_json(session, slack.url, {"blocks": [{"text": {"text": "h"}}]}, timeout=0.5, now=now)
        assert (late.retry, late.unknown, late.error) == (True, True, "no answer within 0.5s")
        slack.release()
        assert slack.arrivals == ["h"]


async def test_unknown_attempts_are_logged_without_the_url(
    aiohttp_client: Any, database_url: str, slack: LateSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack.hold = lambda headline, nth: nth == 0
    config = make_config(slack, timeout=1)
    one = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    await one.app[INGESTOR].ingest(parse_notification(payload(alert(instance="a", labels=CRIT))), T0)
    await one.tick(T0)
    assert "outcome unknown, the target may have it" in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "secret" not in ours and slack.url not in ours
    assert await one.unknown_count() == 1


async def test_a_claim_slower_than_its_budget_sends_nothing(
    aiohttp_client: Any, database_url: str, slack: LateSlack, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim held up in the database past its budget could let the attempt outlast the lease: the rows go
    back untried, and the next pass sends them."""
    from receiver.notify import delivery

    monkeypatch.setattr(delivery, "LEASE_MARGIN", timedelta(0))  # budget = the timeout, 0.2 s
    config = make_config(slack, timeout=0.2)
    one = Replica(await aiohttp_client(create_app(config, database_url, loops=False)))
    await one.app[INGESTOR].ingest(parse_notification(payload(alert(instance="a", labels=CRIT))), T0)
    await one.app[ESCALATOR].tick(T0)
    budget = delivery.claim_budget(config).total_seconds()

    async with db.transaction():
        await db.execute("LOCK TABLE notifications IN ACCESS EXCLUSIVE MODE")
        claim = asyncio.ensure_future(one.app[DELIVERER].deliver(T0))

        async def claim_waits() -> bool:
            await db.execute("SELECT pg_stat_clear_snapshot()")  # inside a transaction, the view is a snapshot
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%FOR NO KEY UPDATE SKIP LOCKED%'"
                )
            )

        await eventually(claim_waits, "the claim to wait for the lock")
        await asyncio.sleep(budget * 2)  # a lower bound: a slower machine only makes the claim later
    assert await claim == []
    assert slack.arrivals == []
    row = await db.fetchrow("SELECT status, last_error, next_attempt_at FROM notifications")
    assert dict(row) == {"status": "pending", "last_error": "not sent: slow claim", "next_attempt_at": T0}
    [sent] = await one.app[DELIVERER].deliver(T0)
    assert sent.status == "delivered" and len(slack.arrivals) == 1
