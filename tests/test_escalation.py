"""Escalation, delivery and the lifecycle on a real PostgreSQL, with a fake Slack that is a real HTTP server.

Time is controlled: tests call `tick(now)` and `deliver(now)` themselves (the app runs without loops).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.escalation import plan_escalation
from receiver.ingest.alertmanager import parse_notification
from receiver.keys import DELIVERER, ESCALATOR, INGESTOR, LINK_SECRET
from receiver.links import link_path
from receiver.model import DueIncident, Target
from tests.fakes import FakeSlack
from tests.helpers import alert, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SLACK_SECRET = "T0SECRET/B0SECRET/xoxb-very-secret-path"
API_TOKEN = "api-token-alice-123"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(path=f"/services/{SLACK_SECRET}") as fake:
        yield fake


def make_config(slack: FakeSlack, extra: str = "") -> Config:
    text = f"""
external_url: https://receiver.example
owners:
  - name: default
    slack_url_env: SLACK_URL
api_tokens:
  - name: alice
    token_env: ALICE_TOKEN
delivery:
  timeout: 1s
  initial_backoff: 2s
  max_age: 1h
escalation:
  policies:
    critical:
      steps:
        - after: 5m
        - after: 15m
      repeat: {{every: 30m, max: 2}}
    warning:
      steps:
        - after: 30m
{extra}
"""
    return parse_config(text, env={"SLACK_URL": slack.url, "ALICE_TOKEN": API_TOKEN})


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str, slack: FakeSlack) -> Callable[..., Any]:
    async def make(extra: str = "") -> Env:
        config = make_config(slack, extra)
        client = await aiohttp_client(create_app(config, database_url, loops=False))
        return Env(client, slack, config)

    return make


class Env:
    def __init__(self, client: Any, slack: FakeSlack, config: Config):
        self.client, self.slack, self.config = client, slack, config
        self.app = client.server.app

    async def post(self, body: dict[str, Any], now: datetime) -> Any:
        return await self.app[INGESTOR].ingest(parse_notification(body), now)

    async def tick(self, now: datetime) -> Any:
        result = await self.app[ESCALATOR].tick(now)
        await self.app[DELIVERER].deliver(now)
        return result

    async def incident(self) -> dict[str, Any]:
        reply = await self.client.get("/api/incidents?status=open,acknowledged,silenced,resolved")
        [inc] = (await reply.json())["incidents"]
        detail = await self.client.get(f"/api/incidents/{inc['id']}")
        return dict(await detail.json())

    async def act(self, incident_id: str, action: str, token: str = API_TOKEN, **body: Any) -> Any:
        return await self.client.post(
            f"/api/incidents/{incident_id}/{action}", json=body, headers={"Authorization": f"Bearer {token}"}
        )


def events(inc: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    return [e for e in inc["events"] if not types or e["type"] in types]


CRIT = {"severity": "critical"}


async def test_open_pages_once(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(seconds=2))
    await e.post(payload(alert(instance="a", labels=CRIT)), T0 + timedelta(seconds=3))  # a duplicate
    await e.tick(T0 + timedelta(seconds=4))
    assert e.slack.headlines() == ["Incident opened: GET /notifications/recent::latency"]
    inc = await e.incident()
    assert [x["type"] for x in events(inc, "paged", "notified")] == ["paged", "notified"]
    message = e.slack.received[0]
    links = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    assert links[0]["text"]["text"] == "Acknowledge"
    assert links[0]["url"].startswith(f"https://receiver.example/incidents/{inc['id']}/ack-link?exp=")
    assert {"Incident", "Graph"} <= {b["text"]["text"] for b in links}


async def test_escalates_level_by_level_then_repeats_up_to_the_cap(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    for minutes in (0, 4, 5, 10, 15, 44, 45, 75, 105, 200):
        await e.tick(T0 + timedelta(minutes=minutes))
    assert e.slack.headlines() == [
        "Incident opened: GET /notifications/recent::latency",
        "Escalated to level 1: GET /notifications/recent::latency",
        "Escalated to level 2: GET /notifications/recent::latency",
        "Escalated to level 3: GET /notifications/recent::latency",
        "Escalated to level 4: GET /notifications/recent::latency",
    ]
    inc = await e.incident()
    assert inc["escalation_level"] == 4
    assert inc["escalated_at"].startswith("2026-11-27T11:15:00")


async def test_acknowledgement_stops_escalation_and_unack_resumes(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    inc = await e.incident()
    reply = await e.act(inc["id"], "ack")
    assert reply.status == 200
    assert (await reply.json())["acknowledged_by"] == "alice"
    await e.tick(T0 + timedelta(minutes=30))
    assert len(e.slack.received) == 1
    # a real clock drives the API; the pause is measured from the acknowledgement, so escalation
    # continues with the time that was left
    reply = await e.act(inc["id"], "unack")
    assert (await reply.json())["status"] == "open"
    inc = await e.incident()
    assert [x["actor"] for x in events(inc, "acknowledged", "unacknowledged")] == ["alice", "alice"]


async def test_ack_timeout_returns_to_open_and_pages_again(env: Any, db: Any) -> None:
    e = await env("  ack_timeout: 10m")
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    inc = await e.incident()
    await db.execute(
        "UPDATE incidents SET status = 'acknowledged', acknowledged_by = 'bob', acknowledged_at = $1",
        T0 + timedelta(minutes=1),
    )
    await e.tick(T0 + timedelta(minutes=10))
    assert len(e.slack.received) == 1
    await e.tick(T0 + timedelta(minutes=11))
    inc = await e.incident()
    assert inc["status"] == "open" and inc["acknowledged_by"] is None
    assert events(inc, "ack_timeout")
    assert e.slack.headlines()[-1] == "Incident opened: GET /notifications/recent::latency"
    assert len(e.slack.received) == 2


async def test_silence_mutes_until_it_expires_then_escalation_continues(env: Any, db: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    # silenced at +2m for 10m: level 1 (due at +5m) moves to +15m
    await db.execute(
        "UPDATE incidents SET status = 'silenced', status_before_silence = 'open', silenced_at = $1, "
        "silenced_until = $2, silenced_by = 'carol', silence_reason = 'deploy'",
        T0 + timedelta(minutes=2),
        T0 + timedelta(minutes=12),
    )
    await e.tick(T0 + timedelta(minutes=6))
    assert len(e.slack.received) == 1
    await e.tick(T0 + timedelta(minutes=12))
    inc = await e.incident()
    assert inc["status"] == "open" and events(inc, "unsilenced")
    await e.tick(T0 + timedelta(minutes=14))
    assert len(e.slack.received) == 1
    await e.tick(T0 + timedelta(minutes=15))
    assert e.slack.headlines()[-1].startswith("Escalated to level 1")


async def test_silenced_incident_still_tracks_alerts_and_resolves(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    inc = await e.incident()
    reply = await e.act(inc["id"], "silence", duration="2h", reason="known issue")
    assert reply.status == 200
    silenced = await reply.json()
    assert silenced["status"] == "silenced" and silenced["silence_reason"] == "known issue"
    await e.post(
        payload(alert("resolved", instance="a", ends_at="2026-11-27T10:30:00Z", labels=CRIT)),
        T0 + timedelta(minutes=30),
    )
    inc = await e.incident()
    assert inc["status"] == "resolved"


async def test_severity_raised_while_acknowledged_rearms_on_critical(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", severity="warning")), T0)
    await e.tick(T0)
    inc = await e.incident()
    await e.act(inc["id"], "ack")
    await e.post(payload(alert(instance="b", labels=CRIT)), T0 + timedelta(minutes=3))
    inc = await e.incident()
    assert inc["status"] == "open" and inc["severity"] == "critical"
    assert inc["escalation_cycle"] == 2 and inc["escalation_level"] == 0
    await e.tick(T0 + timedelta(minutes=3))
    await e.tick(T0 + timedelta(minutes=8))  # critical level 1 is 5 minutes after the re-arm
    assert len(e.slack.received) == 3
    assert e.slack.headlines()[-1].startswith("Escalated to level 1")


async def test_catch_up_after_downtime_is_one_notification(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    result = await e.tick(T0 + timedelta(minutes=50))  # levels 1, 2 and 3 all became due
    assert [x.level for x in result.escalations] == [3]
    assert e.slack.headlines()[-1].startswith("Escalated to level 3")
    assert len(e.slack.received) == 2
    inc = await e.incident()
    [esc] = events(inc, "escalated")
    assert esc["detail"] == {"from_level": 0, "to_level": 3, "targets": ["default/slack"], "skipped_levels": 2}


async def test_stale_incident_resolves_and_tells_who_was_paged(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.post(payload(alert(instance="a", labels=CRIT)), T0 + timedelta(hours=1))
    await e.tick(T0 + timedelta(hours=12, minutes=59))
    assert (await e.incident())["status"] != "resolved"
    await e.tick(T0 + timedelta(hours=13, seconds=1))
    inc = await e.incident()
    assert inc["status"] == "resolved" and inc["resolved_by"] == "receiver"
    assert events(inc, "stale_resolved")
    assert e.slack.headlines()[-1].startswith("Resolved after 13h")


async def test_resolve_notification_carries_the_duration(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.post(
        payload(alert("resolved", instance="a", ends_at="2026-11-27T10:42:00Z", labels=CRIT)),
        T0 + timedelta(minutes=42),
    )
    await e.tick(T0 + timedelta(minutes=42))
    await e.tick(T0 + timedelta(minutes=43))
    assert e.slack.headlines() == [
        "Incident opened: GET /notifications/recent::latency",
        "Resolved after 42m: GET /notifications/recent::latency",
    ]


async def test_nobody_paged_means_no_resolve_notice(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.post(
        payload(alert("resolved", instance="a", ends_at="2026-11-27T10:00:01Z", labels=CRIT)), T0 + timedelta(seconds=1)
    )
    await e.tick(T0 + timedelta(seconds=2))
    assert e.slack.received == []


async def test_slack_500_then_200_is_retried_and_delivered_once(env: Any, db: Any) -> None:
    e = await env()
    e.slack.script = [500, 503]
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(seconds=1))  # backoff has not elapsed: nothing sent
    assert len(e.slack.received) == 1
    await e.tick(T0 + timedelta(seconds=4))
    await e.tick(T0 + timedelta(seconds=20))
    await e.tick(T0 + timedelta(seconds=60))
    assert len(e.slack.received) == 3  # 500, 503, then 200: delivered, and never again
    row = await db.fetchrow("SELECT status, attempts FROM notifications")
    assert (row["status"], row["attempts"]) == ("delivered", 3)
    inc = await e.incident()
    assert [x["type"] for x in events(inc, "notify_retry", "notified")] == ["notify_retry", "notify_retry", "notified"]


async def test_slack_429_waits_for_retry_after(env: Any, db: Any) -> None:
    e = await env()
    e.slack.script = [429]
    e.slack.retry_after = "120"
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    row = await db.fetchrow("SELECT status, next_attempt_at FROM notifications")
    assert row["status"] == "pending" and row["next_attempt_at"] == T0 + timedelta(seconds=120)
    await e.tick(T0 + timedelta(seconds=119))
    assert len(e.slack.received) == 1
    await e.tick(T0 + timedelta(seconds=120))
    assert len(e.slack.received) == 2
    assert (await db.fetchval("SELECT status FROM notifications")) == "delivered"


async def test_slack_404_fails_at_once_and_is_visible(env: Any, db: Any) -> None:
    e = await env()
    e.slack.script = [404]
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(minutes=1))
    assert len(e.slack.received) == 1
    assert await db.fetchval("SELECT status FROM notifications") == "failed"
    inc = await e.incident()
    [failed] = events(inc, "notify_failed")
    assert failed["detail"]["error"] == "HTTP 404"


async def test_slack_hanging_past_the_timeout_is_retried(env: Any, db: Any) -> None:
    e = await env()
    e.slack.script = ["hang"]
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    row = await db.fetchrow("SELECT status, last_error FROM notifications")
    assert row["status"] == "pending" and row["last_error"] == "no answer within 1s"
    await e.tick(T0 + timedelta(seconds=10))
    assert await db.fetchval("SELECT status FROM notifications") == "delivered"
    # the first attempt may have reached Slack: its outcome is unknown, not a plain failure
    inc = await e.incident()
    assert [x["type"] for x in events(inc, "notify_retry", "notify_unknown", "notified")] == [
        "notify_unknown",
        "notified",
    ]


async def test_retries_stop_at_max_age(env: Any, db: Any) -> None:
    e = await env()
    e.slack.script = [500] * 50
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    now = T0
    for _ in range(30):
        await e.tick(now)
        now += timedelta(minutes=5)
    assert await db.fetchval("SELECT status FROM notifications") == "failed"
    inc = await e.incident()
    assert events(inc, "notify_failed")


async def test_two_instances_ticking_concurrently_deliver_each_page_once(
    aiohttp_client: Any, database_url: str, slack: FakeSlack
) -> None:
    config = make_config(slack)
    one = await aiohttp_client(create_app(config, database_url, loops=False))
    two = await aiohttp_client(create_app(config, database_url, loops=False))
    e1, e2 = Env(one, slack, config), Env(two, slack, config)
    await e1.post(payload(*(alert(path=f"/p{i}", instance="a", labels=CRIT) for i in range(40))), T0)
    for minutes in (0, 5, 15, 45):
        now = T0 + timedelta(minutes=minutes)
        await asyncio.gather(e1.tick(now), e2.tick(now), e1.tick(now), e2.tick(now))
    assert len(slack.received) == 40 * 4
    per_incident: dict[str, int] = {}
    for h in slack.headlines():
        key = h.split(": ", 1)[1]
        per_incident[key] = per_incident.get(key, 0) + 1
    assert set(per_incident.values()) == {4}


async def test_lifecycle_api_auth_and_transitions(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a")), T0)
    inc = await e.incident()
    assert (await e.act(inc["id"], "ack", token="wrong")).status == 401
    assert (await e.client.post(f"/api/incidents/{inc['id']}/ack")).status == 401
    assert (await e.act("00000000-0000-0000-0000-000000000000", "ack")).status == 404
    assert (await e.act("not-a-uuid", "ack")).status == 404
    assert (await e.act(inc["id"], "unack")).status == 409
    assert (await e.act(inc["id"], "silence", duration="1h")).status == 400  # a reason is required
    assert (await e.act(inc["id"], "ack")).status == 200
    second = await e.act(inc["id"], "ack")
    assert second.status == 409 and "already acknowledged by alice" in (await second.json())["error"]
    assert (await e.act(inc["id"], "silence", duration="1h", reason="deploy")).status == 200
    inc = await e.incident()
    assert events(inc, "silenced")[0]["detail"]["reason"] == "deploy"  # stored as an object, not a string
    assert (await e.act(inc["id"], "unsilence")).status == 200
    assert (await e.act(inc["id"], "resolve")).status == 200
    again = await e.act(inc["id"], "ack")
    assert again.status == 409 and (await again.json())["error"] == "the incident is resolved"
    inc = await e.incident()
    assert inc["resolved_by"] == "alice"
    assert [(x["type"], x["actor"]) for x in events(inc, "acknowledged", "resolved")] == [
        ("acknowledged", "alice"),
        ("resolved", "alice"),
    ]


async def test_signed_links(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a")), T0)
    inc = await e.incident()
    secret = e.app[LINK_SECRET]
    now = datetime.now(UTC)
    path = link_path(secret, inc["id"], "ack", now, timedelta(hours=24))
    # GET only shows a confirmation form
    page = await e.client.get(path)
    assert page.status == 200 and '<form method="post">' in await page.text()
    assert (await e.incident())["status"] == "open"
    query = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))
    form_url = path.split("?", 1)[0]
    # tampered signature, wrong incident, expired
    bad = await e.client.post(form_url, data={"exp": query["exp"], "sig": query["sig"][:-2] + "AA"})
    assert bad.status == 403
    other = await e.client.post("/incidents/00000000-0000-0000-0000-000000000000/ack-link", data=query)
    assert other.status == 403
    old = link_path(secret, inc["id"], "ack", now - timedelta(hours=25), timedelta(hours=24))
    old_query = dict(p.split("=", 1) for p in old.split("?", 1)[1].split("&"))
    assert (await e.client.post(form_url, data=old_query)).status == 403
    assert (await e.incident())["status"] == "open"
    # the valid link works once
    ok = await e.client.post(form_url, data={**query, "name": "dave"})
    assert ok.status == 200
    inc = await e.incident()
    assert inc["status"] == "acknowledged" and inc["acknowledged_by"] == "link:dave"
    await e.act(inc["id"], "unack")
    reuse = await e.client.post(form_url, data=query)
    assert reuse.status == 409
    assert (await e.incident())["status"] == "open"


async def test_secrets_never_leak(env: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    e = await env()
    e.slack.script = [500, 404]
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(minutes=1))
    inc = await e.incident()
    listing = await (await e.client.get("/api/incidents")).text()
    bad_token = await (await e.act(inc["id"], "ack", token=API_TOKEN + "x")).text()
    secret = e.app[LINK_SECRET]
    # the fake Slack's own access log shows its URL; `receiver serve` runs without access logs
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    everything = "\n".join([ours, str(inc), listing, bad_token, repr(e.config)])
    assert inc["owner"] == {"name": "default", "targets": [{"id": "default/slack", "type": "slack"}]}
    assert "notify_failed" in str(inc) and "notification" in caplog.text
    for leaked in (SLACK_SECRET, "xoxb", API_TOKEN, secret):
        assert leaked not in everything


async def test_metrics_count_webhooks_escalations_and_deliveries(env: Any) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    e = await env()
    e.slack.script = [500]
    reply = await e.client.post("/webhook", json=payload(alert(instance="a", labels=CRIT)))
    assert reply.status == 200
    assert (await e.client.post("/webhook", data=b"{not json")).status == 400
    now = datetime.now(UTC)  # the webhook went through HTTP, stamped with the real clock
    await e.tick(now)
    await e.tick(now + timedelta(minutes=1))
    inc = await e.incident()
    await e.act(inc["id"], "ack")
    text = await (await e.client.get("/metrics")).text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("receiver_webhook_requests_total", code="200") == 1
    assert value("receiver_webhook_requests_total", code="400") == 1
    assert value("receiver_alerts_received_total", outcome="new") == 1
    assert value("receiver_incidents_total", transition="opened", kind="latency", severity="critical") == 1
    assert value("receiver_notifications_total", target_type="slack", result="retried") == 1
    assert value("receiver_notifications_total", target_type="slack", result="delivered") == 1
    assert value("receiver_time_to_acknowledge_seconds_count", kind="latency", severity="critical") == 1
    assert value("receiver_active_incidents", status="acknowledged", severity="critical", kind="latency") == 1


async def test_pages_survive_a_restart_exactly_once(aiohttp_client: Any, database_url: str, slack: FakeSlack) -> None:
    """The outbox row written before a restart is sent by the next process, once."""
    config = make_config(slack)
    first = await aiohttp_client(create_app(config, database_url, loops=False))
    e1 = Env(first, slack, config)
    await e1.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e1.app[ESCALATOR].tick(T0)  # decided and written, not yet delivered
    await first.close()
    assert slack.received == []

    second = await aiohttp_client(create_app(config, database_url, loops=False))
    e2 = Env(second, slack, config)
    for seconds in (1, 2, 3):
        await e2.tick(T0 + timedelta(seconds=seconds))
    await e2.tick(T0 + timedelta(minutes=5))
    assert slack.headlines() == [
        "Incident opened: GET /notifications/recent::latency",
        "Escalated to level 1: GET /notifications/recent::latency",
    ]


async def test_resolved_by_hand_tells_who_was_paged(env: Any) -> None:
    e = await env()
    await e.post(payload(alert(instance="a", labels=CRIT)), T0)
    await e.tick(T0)
    inc = await e.incident()
    assert (await e.act(inc["id"], "resolve")).status == 200
    await e.tick(datetime.now(UTC))
    assert e.slack.headlines()[-1].startswith("Resolved after")
    assert len(e.slack.received) == 2


def _introspection(query: str) -> bool:
    """asyncpg looks up a type it meets for the first time on a connection: jit off, the lookup, jit back."""
    return "typeinfo_tree" in query or "set_config('jit'" in query


async def test_tick_costs_one_query_idle_and_five_with_any_number_due(env: Any) -> None:
    e = await env()
    statements: list[str] = []
    pool = e.app[ESCALATOR].store.pool
    conns = [await pool.acquire() for _ in range(pool.get_max_size())]  # log on every pooled connection
    for conn in conns:  # (asyncpg's own one-off type introspection on a connection is not the tick's)
        conn.add_query_logger(lambda record: None if _introspection(record.query) else statements.append(record.query))
        await pool.release(conn)
    counts = {}
    for n in (1, 30):
        await e.post(payload(*(alert(path=f"/n{n}/{i}", instance="a", labels=CRIT) for i in range(n))), T0)
        statements.clear()
        result = await e.app[ESCALATOR].tick(T0)
        assert len(result.escalations) == n
        counts[n] = len(statements)
    statements.clear()
    await e.app[ESCALATOR].tick(T0 + timedelta(seconds=1))
    assert len(statements) == 1
    assert counts == {1: 5, 30: 5}  # timers, then BEGIN, claim, apply, COMMIT


async def test_no_target_anywhere_is_said_at_start_and_on_the_page(
    aiohttp_client: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="receiver.app")
    config = parse_config("owners: [{name: default}]\n", env={})
    client = await aiohttp_client(create_app(config, database_url, loops=False))
    [line] = [r.getMessage() for r in caplog.records if "page nobody" in r.getMessage()]
    assert line == (
        "no notification target is configured, so incidents will page nobody: set "
        "RECEIVER_SLACK_WEBHOOK_URL (the default owner's Slack incoming webhook), or give an owner a "
        "target in the config file (slack_url_env, webhooks, or any channel under Channels in the README)"
    )
    html = await (await client.get("/")).text()
    assert '<p class="card error" role="alert"><strong>Nobody will be paged</strong>: no notification target' in html
    assert "RECEIVER_SLACK_WEBHOOK_URL" in html and "slack_url_env" in html


async def test_a_target_anywhere_means_no_warning(
    aiohttp_client: Any, database_url: str, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="receiver.app")
    for config in (
        make_config(slack),  # an owner with slack_url_env
        parse_config("", env={"RECEIVER_SLACK_WEBHOOK_URL": slack.url}),
    ):
        client = await aiohttp_client(create_app(config, database_url, loops=False))
        html = await (await client.get("/")).text()
        assert "Nobody will be paged" not in html and "<h2" in html
    assert "page nobody" not in caplog.text


def test_plan_escalation_is_a_function_of_the_due_incident_and_now() -> None:
    """The planner takes `now` as an argument (no clock inside): the same due incident planned at two times
    reaches the level each time says, pages the owner's targets once each, and says when the next is due."""
    config = parse_config("", env={})
    policy = config.escalation.policies["critical"]  # levels at 0, 5 m, 15 m, then every 30 m
    hook = Target("default/webhook", "webhook", "https://hooks.example/secret")
    due = DueIncident(
        id=uuid.uuid4(),
        severity="critical",
        escalation_level=0,
        escalation_anchor_at=T0,
        escalation_cycle=2,
        owner_targets=(hook, hook),
    )
    early = plan_escalation(due, policy, config, T0 + timedelta(minutes=4))
    assert (early.level, early.next_at, early.notification_key) == (0, T0 + timedelta(minutes=5), "c2:l0")
    late = plan_escalation(due, policy, config, T0 + timedelta(minutes=16))
    assert (late.from_level, late.level, late.next_at) == (0, 2, T0 + timedelta(minutes=45))
    assert late.notification_key == "c2:l2" and late.targets == (hook,)
