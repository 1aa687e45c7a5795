"""Heartbeats (receiver/heartbeats.py): which alerts are pings, the clock and its start-up rule (pure), and on a
real PostgreSQL with a fake Slack over real HTTP: a missed heartbeat opens an incident that pages, the next ping
resolves it with the gap on its timeline, flapping reopens within the reopen window, two replicas checking at
once make one of each event, and the ping endpoint. Time is an argument: tests call the check, the escalation tick
and delivery with `now` themselves (the app runs without loops).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver import heartbeats
from receiver.app import create_app
from receiver.config import Config, ConfigError, Heartbeat, parse_config
from receiver.ingest.alertmanager import parse_notification
from receiver.keys import DELIVERER, ESCALATOR, HEARTBEATS, INGESTOR
from receiver.model import Alert, AlertStatus, HeartbeatState
from receiver.rules import parse_matchers
from tests.fakes import FakeSlack
from tests.helpers import alert, payload, sum_samples

# Near the real time: the API and the page judge health by the real clock, and the API's ping is stamped with it.
T0 = datetime.now(UTC).replace(microsecond=0)
API_TOKEN = "api-token-cron-0123456789"
EVERY, GRACE = timedelta(minutes=5), timedelta(minutes=2)
ALLOWED = EVERY + GRACE
WATCHDOG = {"alertname": "Watchdog", "prometheus": "prod", "severity": "none"}
KEY = "heartbeat prod-prometheus::heartbeat_missed"


def watchdog(status: str = "firing", **labels: str) -> dict[str, Any]:
    """The Watchdog alert as Alertmanager sends it: the default HighLatency labels replaced by Watchdog's."""
    a = alert(status, labels={**WATCHDOG, **labels})
    a["labels"] = {**WATCHDOG, **labels}
    return a


def make_config(slack: FakeSlack, extra: str = "") -> Config:
    text = f"""
external_url: https://receiver.example
owners:
  - name: default
  - name: sre
    slack_url_env: SLACK_URL
api_tokens:
  - name: cron
    token_env: CRON_TOKEN
heartbeats:
  - name: prod-prometheus
    match: ['alertname="Watchdog"', 'prometheus="prod"']
    every: 5m
    grace: 2m
    owner: sre
    severity: critical
  - name: nightly-backup
    every: 24h
    grace: 1h
    owner: sre
    severity: warning
{extra}
"""
    return parse_config(text, env={"SLACK_URL": slack.url, "CRON_TOKEN": API_TOKEN})


# --- pure: which alerts are pings, the clock -------------------------------------------------------------------


def hb(
    name: str = "prod-prometheus",
    match: tuple[str, ...] = ('alertname="Watchdog"', 'prometheus="prod"'),
    every: timedelta = EVERY,
    grace: timedelta = GRACE,
) -> Heartbeat:
    return Heartbeat(name, parse_matchers(list(match)), every, grace, "sre", "critical")


def an_alert(labels: dict[str, str], status: str = AlertStatus.FIRING) -> Alert:
    return Alert(0, "fp-" + "-".join(labels.values()), status, labels, {}, T0, None, "")


def state(
    clock_at: datetime = T0, last_ping_at: datetime | None = None, missed_at: datetime | None = None
) -> HeartbeatState:
    return HeartbeatState("prod-prometheus", clock_at, last_ping_at, None, {}, 0, missed_at, None, None, None)


def test_a_matching_firing_alert_is_a_ping_and_never_goes_on_to_correlation() -> None:
    other = an_alert({"alertname": "HighLatency", "prometheus": "prod"})
    ping = an_alert({"alertname": "Watchdog", "prometheus": "prod", "replica": "a"})
    staging = an_alert({"alertname": "Watchdog", "prometheus": "staging"})
    pings, rest = heartbeats.split_pings([hb()], [other, ping, staging], "alertmanager")
    assert rest == [other, staging]
    assert pings == {
        "prod-prometheus": {
            "name": "prod-prometheus",
            "sender": "alertmanager",
            "labels": {"alertname": "Watchdog", "prometheus": "prod", "replica": "a"},
        }
    }


def test_a_resolved_watchdog_is_neither_a_ping_nor_an_incident() -> None:
    resolved = an_alert({"alertname": "Watchdog", "prometheus": "prod"}, AlertStatus.RESOLVED)
    assert heartbeats.split_pings([hb()], [resolved], "alertmanager") == ({}, [])


def test_alerts_read_by_reconciliation_are_not_pings() -> None:
    ping = an_alert({"alertname": "Watchdog", "prometheus": "prod"})
    assert heartbeats.split_pings([hb()], [ping], "reconciler") == ({}, [])


def test_one_alert_pings_every_heartbeat_it_matches_and_a_heartbeat_without_matchers_none() -> None:
    ping = an_alert({"alertname": "Watchdog", "prometheus": "prod"})
    both = [hb("a", ('alertname="Watchdog"',)), hb("b", ('prometheus=~"prod|staging"',)), hb("api-only", ())]
    pings, rest = heartbeats.split_pings(both, [ping], "grafana")
    assert sorted(pings) == ["a", "b"] and rest == []
    assert all(p["sender"] == "grafana" for p in pings.values())


def test_the_index_matches_exactly_what_the_matchers_match() -> None:
    beats = [
        hb("eq", ('alertname="Watchdog"', 'prometheus="prod"')),
        hb("re", ('alertname=~"Watch.*"',)),
        hb("missing", ('alertname="Watchdog"', 'team=""')),
        hb("only-empty", ('team=""', 'x!="y"')),
        hb("neq", ('alertname!="Watchdog"', 'prometheus="prod"')),
        hb("api-only", ()),
    ]
    label_sets = [
        {},
        {"alertname": "Watchdog"},
        {"alertname": "Watchdog", "prometheus": "prod"},
        {"alertname": "Watchdog", "team": "a"},
        {"alertname": "WatchdogX", "prometheus": "prod"},
        {"prometheus": "prod"},
        {"alertname": "", "team": ""},
        {"x": "y"},
    ]
    for labels in label_sets:
        pings, _ = heartbeats.split_pings(beats, [an_alert(labels)], "alertmanager")
        assert sorted(pings) == sorted(b.name for b in beats if b.matches(labels)), labels


def test_a_pings_labels_are_bounded() -> None:
    labels = {f"l{i:03}": "v" * 1000 for i in range(100)}
    kept = heartbeats.bounded_labels(labels)
    assert len(kept) == heartbeats.MAX_LABELS and all(len(v) == heartbeats.MAX_LABEL_CHARS for v in kept.values())


def test_the_deadline_counts_from_the_later_of_the_last_ping_and_the_clocks_start() -> None:
    h = hb()
    assert heartbeats.deadline(state(), h) == T0 + ALLOWED  # never pinged: from the clock's start
    pinged = state(last_ping_at=T0 + timedelta(minutes=3))
    assert heartbeats.deadline(pinged, h) == T0 + timedelta(minutes=3) + ALLOWED
    # the clock restarted at a start-up after the last ping: the start counts
    restarted = state(clock_at=T0 + timedelta(hours=1), last_ping_at=T0)
    assert heartbeats.deadline(restarted, h) == T0 + timedelta(hours=1) + ALLOWED


def test_status_is_waiting_healthy_or_missed() -> None:
    h = hb()
    assert heartbeats.status(None, h, T0) == "waiting"
    assert heartbeats.status(state(), h, T0 + ALLOWED - timedelta(seconds=1)) == "waiting"
    assert heartbeats.status(state(), h, T0 + ALLOWED) == "missed"  # past the deadline before a check marks it
    assert heartbeats.status(state(last_ping_at=T0), h, T0 + timedelta(minutes=1)) == "healthy"
    assert heartbeats.status(state(last_ping_at=T0, missed_at=T0), h, T0 + timedelta(minutes=1)) == "missed"


def test_the_config_is_checked_with_every_error_and_its_line() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(
            "heartbeats:\n"
            "  - name: 'has space'\n"
            "    match: []\n"
            "    every: 0s\n"
            "    grace: soon\n"
            "    owner: nobody\n"
            "    severity: high\n"
            "    repeat: 1m\n"
            "  - {name: a, every: 1m}\n"
            "  - {name: a, every: 1m}\n"
            "  - {name: b}\n",
            source="r.yml",
            env={},
        )
    assert e.value.errors == [
        "r.yml:2: heartbeats[0].name: expected a name of letters, digits, '.', '_' or '-' (at most 63), such as "
        "prod-prometheus",
        "r.yml:3: heartbeats[0].match: an empty match would make every alert a ping; leave match out to ping only "
        "through the API",
        "r.yml:4: heartbeats[0].every: expected a duration above 0s",
        "r.yml:5: heartbeats[0].grace: 'soon' is not a duration such as 30s, 5m, 1h30m or 12h",
        "r.yml:6: heartbeats[0].owner: no owner named 'nobody' in owners",
        "r.yml:7: heartbeats[0].severity: expected one of warning, critical",
        "r.yml:8: heartbeats[0].repeat: unknown key",
        "r.yml:10: heartbeats[2].name: heartbeat 'a' is defined twice",
        "r.yml:11: heartbeats[3].every: a heartbeat needs every: how often it pings at least (a duration)",
    ]


def test_defaults_grace_1m_the_default_owner_critical() -> None:
    config = parse_config("heartbeats: [{name: cron, every: 1h}]", env={})
    assert config.heartbeats == (
        Heartbeat("cron", (), timedelta(hours=1), timedelta(minutes=1), "default", "critical"),
    )
    assert parse_config("", env={}).heartbeats == ()


# --- on a real database ---------------------------------------------------------------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


class Env:
    """One receiver app (no loops) on the test database; several share it as replicas."""

    def __init__(self, client: Any, slack: FakeSlack, config: Config):
        self.client, self.slack, self.config = client, slack, config
        self.app = client.server.app
        self.monitor = self.app[HEARTBEATS]

    async def webhook(self, body: dict[str, Any], now: datetime) -> Any:
        return await self.app[INGESTOR].ingest(parse_notification(body), now)

    async def tick(self, now: datetime) -> heartbeats.CheckResult:
        """What the app's loops do at `now`: check the heartbeats, escalate, deliver."""
        result = await self.monitor.tick(now)
        await self.app[ESCALATOR].tick(now)
        await self.app[DELIVERER].deliver(now)
        return result

    async def incidents(self) -> list[dict[str, Any]]:
        reply = await self.client.get("/api/incidents?status=open,acknowledged,silenced,resolved")
        return list((await reply.json())["incidents"])

    async def incident(self, incident_id: str) -> dict[str, Any]:
        return dict(await (await self.client.get(f"/api/incidents/{incident_id}")).json())

    async def heartbeat(self, name: str = "prod-prometheus") -> dict[str, Any]:
        reply = await self.client.get("/api/heartbeats")
        assert reply.status == 200
        return next(h for h in (await reply.json())["heartbeats"] if h["name"] == name)

    async def ping(self, name: str, token: str | None = API_TOKEN) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(f"/api/heartbeats/{name}/ping", headers=headers)


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str, slack: FakeSlack) -> Callable[..., Any]:
    async def make(extra: str = "") -> Env:
        config = make_config(slack, extra)
        client = await aiohttp_client(create_app(config, database_url, loops=False))
        return Env(client, slack, config)

    return make


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def events(inc: dict[str, Any], *types: str) -> list[dict[str, Any]]:
    return [e for e in inc["events"] if e["type"] in types]


async def test_missed_heartbeat_opens_an_incident_that_pages_and_the_next_ping_resolves_it(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    plan = await e.webhook(payload(watchdog(replica="a")), T0 + timedelta(minutes=1))
    assert plan.new_incidents == [] and plan.events == []  # a ping is never an incident
    seen = await e.heartbeat()
    assert seen["status"] == "healthy" and seen["healthy"] is True
    assert seen["last_sender"] == "alertmanager" and seen["pings"] == 1
    assert seen["last_labels"] == {**WATCHDOG, "replica": "a"}
    assert at(seen["last_ping_at"]) == T0 + timedelta(minutes=1)

    await e.tick(T0 + timedelta(minutes=8) - timedelta(seconds=1))  # one second before every + grace
    assert await e.incidents() == []
    result = await e.tick(T0 + timedelta(minutes=8))
    assert result.missed == ["prod-prometheus"]
    [inc] = await e.incidents()
    assert (inc["incident_key"], inc["route"], inc["kind"], inc["severity"], inc["status"]) == (
        KEY,
        "heartbeat prod-prometheus",
        "heartbeat_missed",
        "critical",
        "open",
    )
    assert inc["owner"]["name"] == "sre"
    assert e.slack.headlines() == [f"Incident opened: {KEY}"]
    missed = await e.heartbeat()
    assert missed["status"] == "missed" and missed["healthy"] is False
    assert at(missed["silent_since"]) == T0 + timedelta(minutes=1)
    detail = await e.incident(inc["id"])
    [opened] = events(detail, "opened")
    assert opened["actor"] == "heartbeat"
    [member] = detail["alerts"]
    assert member["fingerprint"] == "heartbeat:prod-prometheus"
    assert at(member["starts_at"]) == T0 + timedelta(minutes=8)  # the deadline it missed

    # still silent: later checks page nothing new, escalation goes on as for any incident
    await e.tick(T0 + timedelta(minutes=9))
    assert len(await e.incidents()) == 1 and len(e.slack.received) == 1
    await e.tick(T0 + timedelta(minutes=13))  # critical: level 1 five minutes after opening
    assert e.slack.headlines()[-1] == f"Escalated to level 1: {KEY}"

    await e.webhook(payload(watchdog(replica="b")), T0 + timedelta(minutes=15, seconds=30))
    result = await e.tick(T0 + timedelta(minutes=15, seconds=31))
    assert result.resumed == ["prod-prometheus"]
    detail = await e.incident(inc["id"])
    assert detail["status"] == "resolved"
    [resumed] = events(detail, "heartbeat_resumed")
    assert resumed["actor"] == "heartbeat"
    assert resumed["detail"]["gap"] == "14m" and resumed["detail"]["gap_seconds"] == 14 * 60 + 30
    assert resumed["detail"]["sender"] == "alertmanager"
    assert e.slack.headlines()[-1].startswith("Resolved after")
    healthy = await e.heartbeat()
    assert healthy["status"] == "healthy" and healthy["missed_at"] is None
    assert healthy["last_labels"]["replica"] == "b"
    # checks after the resolve change nothing
    await e.tick(T0 + timedelta(minutes=16))
    assert len(events(await e.incident(inc["id"]), "heartbeat_resumed")) == 1


async def test_a_webhook_of_pings_is_answered_after_they_are_committed(env: Any, db: Any) -> None:
    e = await env()
    reply = await e.client.post("/webhook", json=payload(watchdog(), alert(instance="x")))
    assert reply.status == 200
    body = await reply.json()
    assert [i["incident_key"] for i in body["incidents"]] == ["GET /notifications/recent::latency"]
    row = await db.fetchrow("SELECT last_ping_at, pings, last_sender FROM heartbeats WHERE name = 'prod-prometheus'")
    assert row is not None and row["pings"] == 1 and row["last_sender"] == "alertmanager"
    assert [i["incident_key"] for i in await e.incidents()] == ["GET /notifications/recent::latency"]


async def test_a_resolved_watchdog_is_not_a_ping(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.webhook(payload(watchdog("resolved", ends_at="2026-11-27T10:00:30Z")), T0 + timedelta(minutes=1))
    assert (await e.heartbeat())["last_ping_at"] is None
    assert await e.incidents() == []


async def test_flapping_reopens_within_the_reopen_window_and_opens_anew_after_it(env: Any) -> None:
    e = await env("correlation: {reopen_window: 10m}")
    await e.monitor.start(T0)
    await e.tick(T0 + ALLOWED)
    [first] = await e.incidents()
    await e.webhook(payload(watchdog()), T0 + timedelta(minutes=9))
    await e.tick(T0 + timedelta(minutes=9))
    assert (await e.incident(first["id"]))["status"] == "resolved"
    await e.tick(T0 + timedelta(minutes=9) + ALLOWED)  # missed again 7 minutes after resolving: reopens
    [again] = await e.incidents()
    assert again["id"] == first["id"] and again["status"] == "open" and again["flap_count"] == 1
    assert [h for h in e.slack.headlines() if h.startswith("Incident opened")] == [f"Incident opened: {KEY}"] * 2
    await e.webhook(payload(watchdog()), T0 + timedelta(minutes=17))
    await e.tick(T0 + timedelta(minutes=17))
    await e.tick(T0 + timedelta(minutes=40))  # 23 minutes after resolving: a new incident
    incidents = await e.incidents()
    assert len(incidents) == 2 and {i["status"] for i in incidents} == {"open", "resolved"}


async def test_two_replicas_checking_at_once_make_one_incident_one_page_one_gap_event(env: Any) -> None:
    a, b = await env(), await env()
    await a.monitor.start(T0)
    await b.monitor.start(T0)
    at = T0 + ALLOWED
    results = await asyncio.gather(a.monitor.tick(at), b.monitor.tick(at))
    assert sum(len(r.missed) for r in results) >= 1
    await asyncio.gather(a.tick(at), b.tick(at))
    [inc] = await a.incidents()
    assert len(events(await a.incident(inc["id"]), "opened")) == 1
    assert a.slack.headlines() == [f"Incident opened: {KEY}"]
    await a.webhook(payload(watchdog()), T0 + timedelta(minutes=10))
    later = T0 + timedelta(minutes=10, seconds=1)
    await asyncio.gather(a.monitor.tick(later), b.monitor.tick(later))
    detail = await a.incident(inc["id"])
    assert detail["status"] == "resolved"
    assert len(events(detail, "heartbeat_resumed")) == 1 and len(events(detail, "resolved")) == 1


async def test_a_fresh_install_starts_the_clock_at_start_up(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.tick(T0 + ALLOWED - timedelta(seconds=1))
    assert await e.incidents() == [] and (await e.heartbeat())["status"] == "waiting"
    await e.tick(T0 + ALLOWED)
    assert [i["incident_key"] for i in await e.incidents()] == [KEY]


async def test_a_restart_after_downtime_restarts_the_clock_and_a_watched_heartbeat_keeps_it(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.webhook(payload(watchdog()), T0)
    await e.tick(T0 + timedelta(minutes=1))  # the last check before the receiver went down
    back = T0 + timedelta(hours=1)
    await e.monitor.start(back)  # nobody checked for longer than the grace: the pings meanwhile were lost
    await e.tick(back + timedelta(seconds=1))
    assert await e.incidents() == []
    assert at((await e.heartbeat())["deadline"]) == back + ALLOWED
    await e.webhook(payload(watchdog()), back + timedelta(seconds=20))  # the sender, heard right after
    await e.tick(back + ALLOWED)
    assert await e.incidents() == []

    # a replica starting while another one watches changes nothing: the silence counts from the last ping
    later = back + timedelta(seconds=20) + ALLOWED - timedelta(seconds=10)
    await e.tick(later)
    await e.monitor.start(later + timedelta(seconds=5))
    await e.tick(later + timedelta(seconds=10))
    assert [i["incident_key"] for i in await e.incidents()] == [KEY]


async def test_a_missed_incident_stays_fresh_while_silent(env: Any, db: Any) -> None:
    e = await env("correlation: {stale_after: 20m}")
    await e.monitor.start(T0)
    await e.tick(T0 + ALLOWED)
    for minutes in range(10, 60, 4):  # the alert is asserted again every min(every, stale_after / 4)
        await e.tick(T0 + timedelta(minutes=minutes))
    [inc] = await e.incidents()
    assert inc["status"] == "open"  # never resolved as stale
    last_seen = await db.fetchval("SELECT last_seen FROM incidents")
    assert last_seen >= T0 + timedelta(minutes=50)


async def test_a_missed_heartbeat_resolved_by_hand_stays_resolved_until_it_resumes(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.tick(T0 + ALLOWED)
    [inc] = await e.incidents()
    reply = await e.client.post(f"/api/incidents/{inc['id']}/resolve", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert reply.status == 200
    await e.tick(T0 + timedelta(minutes=30))
    assert [i["status"] for i in await e.incidents()] == ["resolved"]
    assert (await e.heartbeat())["status"] == "missed"
    await e.webhook(payload(watchdog()), T0 + timedelta(minutes=40))
    await e.tick(T0 + timedelta(minutes=40))
    assert (await e.heartbeat())["missed_at"] is None
    [inc] = await e.incidents()
    assert events(await e.incident(inc["id"]), "heartbeat_resumed")  # the resolved incident says it came back


async def test_the_ping_endpoint_needs_an_api_token_and_a_known_name(env: Any) -> None:
    e = await env()
    for token in (None, "not-the-token"):
        reply = await e.ping("nightly-backup", token)
        assert reply.status == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in (await reply.json())["error"]
    reply = await e.ping("no-such-heartbeat")
    assert reply.status == 404 and (await reply.json())["error"] == "no such heartbeat"
    assert (await e.heartbeat("nightly-backup"))["pings"] == 0
    reply = await e.ping("nightly-backup")
    assert reply.status == 200
    body = await reply.json()
    assert body["name"] == "nightly-backup" and body["status"] == "healthy" and body["pings"] == 1
    assert body["last_sender"] == "api (cron)" and body["last_labels"] == {}
    assert API_TOKEN not in await (await e.client.get("/api/heartbeats")).text()


async def test_an_api_ping_of_a_missed_heartbeat_wakes_the_check(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.tick(T0 + timedelta(days=2))
    assert {i["incident_key"] for i in await e.incidents()} == {KEY, "heartbeat nightly-backup::heartbeat_missed"}
    assert not e.monitor.wakeup.is_set()
    assert (await e.ping("nightly-backup")).status == 200
    assert e.monitor.wakeup.is_set()


async def test_the_page_lists_each_heartbeat_with_its_last_ping_and_labels_escaped(env: Any) -> None:
    e = await env()
    await e.monitor.start(T0)
    await e.webhook(payload(watchdog(note="<script>x</script>")), T0)
    page = await e.client.get("/heartbeats")
    assert page.status == 200
    html = await page.text()
    assert "prod-prometheus" in html and "nightly-backup" in html and "5m + 2m" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
    index = await (await e.client.get("/")).text()
    assert 'href="/heartbeats"' in index


async def test_without_heartbeats_nothing_changes(aiohttp_client: Any, database_url: str, db: Any) -> None:
    client = await aiohttp_client(create_app(parse_config("", env={}), database_url, loops=False))
    reply = await client.post("/webhook", json=payload(watchdog()))
    assert reply.status == 200 and len((await reply.json())["incidents"]) == 1  # an alert like any other
    assert (await (await client.get("/api/heartbeats")).json()) == {"heartbeats": []}
    assert await db.fetchval("SELECT count(*) FROM heartbeats") == 0
    assert 'href="/heartbeats"' not in await (await client.get("/")).text()


async def test_the_gauges_are_read_from_the_database_at_scrape_time(env: Any) -> None:
    e = await env()
    now = datetime.now(UTC)
    await e.monitor.start(now - timedelta(minutes=10))
    await e.webhook(payload(watchdog()), now - timedelta(minutes=1))

    async def scrape() -> str:
        reply = await e.client.get("/metrics")
        assert reply.status == 200
        return str(await reply.text())

    text = await scrape()
    labels = {"heartbeat": "prod-prometheus"}
    age = sum_samples(text, "receiver_heartbeat_last_ping_age_seconds", labels)
    assert 60 <= age < 600  # a minute since the ping, whatever this machine's speed
    assert sum_samples(text, "receiver_heartbeat_allowed_seconds", labels) == ALLOWED.total_seconds()
    assert sum_samples(text, "receiver_heartbeat_up", labels) == 1
    # never pinged: counted from its clock's start, ten minutes ago
    backup = {"heartbeat": "nightly-backup"}
    assert 600 <= sum_samples(text, "receiver_heartbeat_last_ping_age_seconds", backup) < 3600
    assert sum_samples(text, "receiver_heartbeat_up", backup) == 1
    await e.monitor.tick(now - timedelta(minutes=1) + ALLOWED)
    assert sum_samples(await scrape(), "receiver_heartbeat_up", labels) == 0


async def test_the_gauges_are_unknown_not_stale_while_the_database_cannot_be_read(env: Any, db: Any) -> None:
    e = await env()
    await e.monitor.start(datetime.now(UTC))
    labels = {"heartbeat": "prod-prometheus"}
    assert sum_samples(await (await e.client.get("/metrics")).text(), "receiver_heartbeat_up", labels) == 1
    await db.execute("ALTER TABLE heartbeats RENAME TO heartbeats_away")  # the scrape's read fails
    reply = await e.client.get("/metrics")
    assert reply.status == 200
    text = await reply.text()
    assert sum_samples(text, "receiver_database_errors_total", {"operation": "metrics"}) == 1
    # neither the last age nor the last "up": the heartbeat may have stopped since
    assert math.isnan(sum_samples(text, "receiver_heartbeat_last_ping_age_seconds", labels))
    assert math.isnan(sum_samples(text, "receiver_heartbeat_up", labels))
    await db.execute("ALTER TABLE heartbeats_away RENAME TO heartbeats")
    assert sum_samples(await (await e.client.get("/metrics")).text(), "receiver_heartbeat_up", labels) == 1


async def test_a_webhook_whose_pings_cannot_be_written_is_answered_503_and_retried_whole(env: Any, db: Any) -> None:
    e = await env()
    await db.execute("ALTER TABLE heartbeats RENAME TO heartbeats_away")  # the pings' write fails
    reply = await e.client.post("/webhook", json=payload(watchdog(), alert(instance="x")))
    assert reply.status == 503 and "retry" in (await reply.json())["error"]
    assert await e.incidents() == []  # nothing of it was committed: Alertmanager sends it all again
    await db.execute("ALTER TABLE heartbeats_away RENAME TO heartbeats")
    reply = await e.client.post("/webhook", json=payload(watchdog(), alert(instance="x")))
    assert reply.status == 200 and len(await e.incidents()) == 1
    assert (await e.heartbeat())["pings"] == 1
