"""Reconciliation with Alertmanager (receiver/reconcile.py) and its API client, on a real PostgreSQL, against fake
Alertmanager peers over real HTTP; and "a resolve we inferred is not a fact" through the store.

Time is passed in (`now`), so grace periods and intervals are exact here; tests/e2e/test_reconcile.py runs the
same behaviours against real Alertmanagers on the clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from receiver import alertmanager_api
from receiver.alertmanager_api import AlertmanagerAPI, AlertmanagerError
from receiver.app import create_app
from receiver.config import Config, ConfigError, parse_config
from receiver.database import _init_connection
from receiver.escalation import Escalator
from receiver.ingest.alertmanager import parse_notification
from receiver.ingest.service import Ingestor
from receiver.metrics import Metrics
from receiver.model import Escalation
from receiver.reconcile import Reconciler
from receiver.store import Store
from tests.helpers import alert, fingerprint_of, payload, rfc3339

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
STARTS = "2026-11-27T10:00:00Z"
TOKEN = "am-secret-token-0123456789"
GRACE = timedelta(minutes=5)
INTERVAL = timedelta(minutes=1)


# --- a fake Alertmanager peer over real HTTP ------------------------------------------------------------------


@dataclass
class FakePeer:
    """GET /api/v2/alerts answers `alerts` (or `status` when it is not 200, or `body`, `chunked` without a
    Content-Length; `delay` seconds late); GET /api/v2/silence/{id} answers from `silences`. Records the query
    strings and Authorization headers."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    silences: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int = 200
    body: bytes | None = None
    chunked: bool = False
    delay: float = 0.0
    queries: list[dict[str, str]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)
    url: str = ""
    runner: web.AppRunner | None = None

    async def start(self) -> FakePeer:
        app = web.Application()
        app.router.add_get("/api/v2/alerts", self._alerts)
        app.router.add_get("/api/v2/silence/{id}", self._silence)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def _alerts(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        self.auth.append(request.headers.get("Authorization"))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.body is not None and self.chunked:
            resp = web.StreamResponse(status=self.status)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for start in range(0, len(self.body), 100):
                await resp.write(self.body[start : start + 100])
            await resp.write_eof()
            return resp
        if self.body is not None:
            return web.Response(status=self.status, body=self.body)
        if self.status != 200:
            return web.json_response(f"failed; you sent {request.headers.get('Authorization')}", status=self.status)
        return web.json_response(self.alerts)

    async def _silence(self, request: web.Request) -> web.Response:
        silence = self.silences.get(request.match_info["id"])
        if silence is None:
            return web.json_response("silence not found", status=404)
        return web.json_response(silence)


def listed(
    labels: dict[str, str],
    *,
    starts_at: str = STARTS,
    state: str = "active",
    silenced_by: tuple[str, ...] = (),
    inhibited_by: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One GettableAlert as Alertmanager 0.25 lists it."""
    return {
        "labels": labels,
        "annotations": {"summary": "from the API"},
        "startsAt": starts_at,
        "endsAt": "2026-11-27T12:00:00Z",
        "updatedAt": starts_at,
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint_of(labels),
        "receivers": [{"name": "receiver"}],
        "status": {"state": state, "silencedBy": list(silenced_by), "inhibitedBy": list(inhibited_by)},
    }


LABELS = {"alertname": "HighLatency", "method": "GET", "path": "/notifications/recent", "instance": "a"}


def am_config(*urls: str, grace: timedelta = GRACE, extra: str = "") -> Config:
    peers = ", ".join(urls)
    return parse_config(
        f"""
alertmanager:
  urls: [{peers}]
  receiver: receiver
  token_env: AM_TOKEN
  timeout: 2s
  reconcile: {{interval: {int(INTERVAL.total_seconds())}s, grace: {int(grace.total_seconds())}s}}
{extra}""",
        env={"AM_TOKEN": TOKEN},
    )


@dataclass
class Env:
    config: Config
    store: Store
    ingestor: Ingestor
    session: aiohttp.ClientSession
    metrics: Metrics
    peers: list[FakePeer]

    def reconciler(self, **kwargs: Any) -> Reconciler:
        return Reconciler(
            self.config,
            self.store,
            self.ingestor,
            AlertmanagerAPI(
                self.config.alertmanager,  # type: ignore[arg-type]
                self.session,
            ),
            metrics=self.metrics,
            **kwargs,
        )

    async def post(self, body: dict[str, Any], now: datetime = T0) -> Any:
        return await self.ingestor.ingest(parse_notification(body), now)


@pytest.fixture
async def make_env(database_url: str) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8, init=_init_connection)
    session = aiohttp.ClientSession()
    peers: list[FakePeer] = []

    async def make(n_peers: int = 1, **kwargs: Any) -> Env:
        for _ in range(n_peers):
            peers.append(await FakePeer().start())
        config = am_config(*(p.url for p in peers), **kwargs)
        store = Store(pool)
        return Env(config, store, Ingestor(config, store), session, Metrics(process_metrics=False), peers)

    try:
        yield make
    finally:
        for p in peers:
            assert p.runner is not None
            await p.runner.cleanup()
        await session.close()
        await pool.close()


async def events(db: Any, *types: str) -> list[Any]:
    return await db.fetch(
        "SELECT incident_id, type, actor, detail FROM incident_events WHERE type = any($1::text[]) ORDER BY id",
        list(types),
    )


async def only_incident(db: Any) -> Any:
    [inc] = await db.fetch("SELECT * FROM incidents")
    return inc


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# --- config and API client -------------------------------------------------------------------------------------


def test_the_alertmanager_section_is_validated_with_every_error_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(
            """alertmanager:
  urls: [http://user:pw@am:9093]
  token_env: AM_TOKEN
  basic_auth: {username: u, password_env: AM_PASSWORD}
  timeout: 0s
  reconcile: {interval: 1m, graze: 10m}
""",
            env={"AM_TOKEN": "t", "AM_PASSWORD": "p"},
        )
    lines = e.value.errors
    assert (
        "<string>:1: alertmanager.receiver: name the Alertmanager receiver whose webhook points at this "
        "receiver" in lines
    )
    assert any("alertmanager.urls: put credentials in token_env" in line and "pw" not in line for line in lines)
    assert any("alertmanager.token_env: set a token or basic_auth, not both" in line for line in lines)
    assert any(line.startswith("<string>:5: alertmanager.timeout") for line in lines)
    assert "<string>:6: alertmanager.reconcile.graze: unknown key; did you mean grace?" in lines
    assert parse_config("", env={}).alertmanager is None  # no section: nothing of this runs


async def test_the_client_asks_for_every_alert_of_the_receiver_with_its_token(make_env: Any) -> None:
    env = await make_env()
    env.peers[0].alerts = [listed(LABELS, state="suppressed", silenced_by=("s1",)), {"not": "an alert"}]
    api = AlertmanagerAPI(env.config.alertmanager, env.session)
    [a] = await api.alerts(env.peers[0].url)
    assert (a.fingerprint, a.state, a.silenced_by, a.labels) == (fingerprint_of(LABELS), "suppressed", ("s1",), LABELS)
    assert env.peers[0].queries == [
        {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true", "receiver": "receiver"}
    ]
    assert env.peers[0].auth == [f"Bearer {TOKEN}"]
    assert TOKEN not in repr(api)


async def test_client_errors_say_why_and_never_hold_the_token(make_env: Any, monkeypatch: Any) -> None:
    env = await make_env()
    peer = env.peers[0]
    api = AlertmanagerAPI(env.config.alertmanager, env.session)
    peer.status = 401  # the fake echoes the Authorization header in its error text
    with pytest.raises(AlertmanagerError) as e:
        await api.alerts(peer.url)
    assert e.value.status == 401 and str(e.value).startswith(f"{peer.url}: HTTP 401: failed; you sent Bearer ****")
    assert TOKEN not in str(e.value)
    peer.status, peer.body = 200, b"[" * 10
    with pytest.raises(AlertmanagerError, match="not valid JSON"):
        await api.alerts(peer.url)
    monkeypatch.setattr(alertmanager_api, "MAX_ALERTS_BYTES", 1000)
    peer.body = None
    peer.alerts = [listed({**LABELS, "instance": str(i)}) for i in range(20)]
    with pytest.raises(AlertmanagerError, match="larger than 1000 bytes"):
        await api.alerts(peer.url)
    peer.delay = 5.0  # the config's timeout is 2s
    with pytest.raises(AlertmanagerError, match="no answer within 2s"):
        await api.alerts(peer.url)
    with pytest.raises(AlertmanagerError, match="ClientConnectorError"):
        await api.alerts("http://127.0.0.1:9")


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_up_to_the_limit_is_read_and_a_byte_more_refused(
    make_env: Any, monkeypatch: Any, chunked: bool
) -> None:
    """With a Content-Length (refused before reading) or without one (chunked: refused while reading)."""
    env = await make_env()
    peer = env.peers[0]
    api = AlertmanagerAPI(env.config.alertmanager, env.session)
    monkeypatch.setattr(alertmanager_api, "MAX_ALERTS_BYTES", 1000)
    peer.chunked = chunked
    peer.body = b"[" + b" " * 998 + b"]"
    assert await api.alerts(peer.url) == []
    peer.body = b"[" + b" " * 999 + b"]"
    with pytest.raises(AlertmanagerError, match="larger than 1000 bytes"):
        await api.alerts(peer.url)


# --- lost resolves ---------------------------------------------------------------------------------------------


async def test_a_member_no_peer_lists_for_the_grace_period_is_resolved_with_its_own_event(
    make_env: Any, db: Any
) -> None:
    env = await make_env(2)
    await env.post(payload(alert(labels=LABELS), alert(labels={**LABELS, "instance": "b"})))
    for p in env.peers:  # both peers list b; neither lists a any more (its resolve was lost)
        p.alerts = [listed({**LABELS, "instance": "b"})]
    r = env.reconciler()
    assert (await r.run(T0)).resolved == 0  # absent from here on
    assert (await r.run(T0 + GRACE - INTERVAL)).resolved == 0
    assert await events(db, "alert_resolved") == []
    # a restart (a new reconciler, another holder) keeps the clock: absent_since is in the database
    result = await env.reconciler().run(T0 + GRACE)
    assert (result.result, result.resolved) == ("ok", 1)
    [ev] = await events(db, "alert_resolved")
    assert ev["actor"] == "reconciler"
    assert ev["detail"]["fingerprint"] == fingerprint_of(LABELS)
    assert ev["detail"]["grace_seconds"] == 300
    assert ev["detail"]["absent_since"] == T0.isoformat()
    assert ev["detail"]["peers"] == [{"url": p.url, "alerts": 1} for p in env.peers]
    row = await db.fetchrow(
        "SELECT status, resolved_by, ends_at FROM incident_alerts WHERE fingerprint = $1", fingerprint_of(LABELS)
    )
    assert (row["status"], row["resolved_by"], row["ends_at"]) == ("resolved", "reconciler", T0 + GRACE)
    assert (await only_incident(db))["status"] == "open"  # b still fires
    # b goes the same way: the incident resolves, as when the last resolve arrives
    for p in env.peers:
        p.alerts = []
    await r.run(T0 + GRACE + INTERVAL)
    await r.run(T0 + 2 * GRACE + INTERVAL)
    inc = await only_incident(db)
    assert (inc["status"], inc["resolved_by"]) == ("resolved", "reconciler")
    [resolved] = await events(db, "resolved")
    assert resolved["actor"] == "reconciler"
    assert counter(env.metrics, "receiver_reconcile_alerts_total", outcome="resolved") == 2


async def test_a_member_listed_again_starts_its_grace_over(make_env: Any, db: Any) -> None:
    env = await make_env()
    await env.post(payload(alert(labels=LABELS)))
    r = env.reconciler()
    await r.run(T0)  # absent
    env.peers[0].alerts = [listed(LABELS)]
    await r.run(T0 + INTERVAL)  # listed: no longer absent
    env.peers[0].alerts = []
    await r.run(T0 + 2 * INTERVAL)  # absent again, from here
    assert (await r.run(T0 + GRACE + INTERVAL)).resolved == 0
    assert (await r.run(T0 + GRACE + 2 * INTERVAL)).resolved == 1


async def test_nothing_is_resolved_while_a_peer_fails_and_the_failure_is_counted(
    make_env: Any, db: Any, caplog: Any
) -> None:
    env = await make_env(2)
    await env.post(payload(alert(labels=LABELS)))
    r = env.reconciler()
    await r.run(T0)
    env.peers[1].status = 503
    for k in range(1, 4):
        result = await r.run(T0 + GRACE + k * INTERVAL)
        assert (result.result, result.resolved) == ("peer_error", 0)
    assert (await only_incident(db))["status"] == "open"
    assert counter(env.metrics, "receiver_reconcile_runs_total", result="peer_error") == 3
    warnings = [rec for rec in caplog.records if "Alertmanager peer fails" in rec.getMessage()]
    assert len(warnings) == 1  # once per change, not once per run
    assert env.peers[1].url in warnings[0].getMessage() and TOKEN not in warnings[0].getMessage()
    env.peers[1].status = 200
    assert (await r.run(T0 + GRACE + 4 * INTERVAL)).resolved == 1


async def test_members_of_other_senders_and_receivers_are_never_resolved(make_env: Any, db: Any) -> None:
    env = await make_env(grace=timedelta(0))
    await env.post(payload(alert(labels=LABELS), receiver="another-receiver"))
    r = env.reconciler()
    await r.run(T0)
    await r.run(T0 + INTERVAL)
    assert (await only_incident(db))["status"] == "open"
    assert await events(db, "alert_resolved") == []


# --- lost firings ----------------------------------------------------------------------------------------------


async def test_an_active_alert_never_received_is_ingested_through_the_webhook_path(make_env: Any, db: Any) -> None:
    env = await make_env()
    old = rfc3339(T0 - GRACE)
    env.peers[0].alerts = [
        listed(LABELS, starts_at=old),
        listed({**LABELS, "instance": "young"}, starts_at=rfc3339(T0 - timedelta(seconds=10))),
        listed({**LABELS, "instance": "silenced"}, starts_at=old, state="suppressed"),
    ]
    r = env.reconciler()
    result = await r.run(T0)
    assert result.ingested == 1  # the young one may still be in Alertmanager's group_wait; the silenced is right
    inc = await only_incident(db)
    assert (inc["incident_key"], inc["status"]) == ("GET /notifications/recent::latency", "open")
    evs = await db.fetch("SELECT type, actor, detail FROM incident_events ORDER BY id")
    assert [(e["type"], e["actor"]) for e in evs] == [("opened", "reconciler"), ("alert_fired", "reconciler")]
    assert evs[1]["detail"]["reason"] == "listed firing by Alertmanager but never received as a webhook"
    assert evs[1]["detail"]["peers"] == [{"url": env.peers[0].url, "listed": True}]
    member = await db.fetchrow("SELECT * FROM incident_alerts")
    assert (member["source"], member["starts_at"], member["annotations"]) == (
        "alertmanager/receiver",
        T0 - GRACE,
        {"summary": "from the API"},
    )
    # the next run, and the webhook when it finally arrives, are duplicates
    assert (await r.run(T0 + INTERVAL)).ingested == 0
    plan = await env.post(payload(alert(labels=LABELS, starts_at=old)), T0 + 2 * INTERVAL)
    assert plan.outcomes["duplicate"] == 1
    assert counter(env.metrics, "receiver_reconcile_alerts_total", outcome="ingested") == 1


# --- suppressed in Alertmanager --------------------------------------------------------------------------------


async def test_an_incident_alertmanager_silences_shows_why_and_does_not_escalate_until_it_ends(
    make_env: Any, db: Any
) -> None:
    env = await make_env()
    await env.post(payload(alert(labels=LABELS)))
    peer = env.peers[0]
    peer.silences["s-1"] = {
        "id": "s-1",
        "status": {"state": "active"},
        "matchers": [{"name": "alertname", "value": "HighLatency", "isRegex": False, "isEqual": True}],
        "startsAt": STARTS,
        "endsAt": "2026-11-27T12:00:00Z",
        "createdBy": "bob",
        "comment": "deploying",
    }
    peer.alerts = [listed(LABELS, state="suppressed", silenced_by=("s-1",))]
    r = env.reconciler()
    before = await only_incident(db)
    assert (await r.run(T0 + INTERVAL)).suppressed == 1
    inc = await only_incident(db)
    assert inc["suppressed"] == {
        "since": (T0 + INTERVAL).isoformat(),
        "alerts": 1,
        "inhibited_by": [],
        "silences": [
            {
                "id": "s-1",
                "created_by": "bob",
                "comment": "deploying",
                "ends_at": "2026-11-27T12:00:00+00:00",
                "state": "active",
            }
        ],
    }
    [ev] = await events(db, "suppressed")
    assert ev["actor"] == "reconciler" and ev["detail"]["silences"][0]["created_by"] == "bob"
    # escalation's claim passes it by while suppressed, however late it is
    claimed: list[Any] = []

    def decide(rows: Any) -> list[Escalation]:
        claimed.extend(rows)
        return []

    await env.store.escalate(T0 + timedelta(hours=2), decide, batch=10)
    assert claimed == []
    assert (await r.run(T0 + 2 * INTERVAL)).suppressed == 0  # unchanged: no new event
    assert len(await events(db, "suppressed")) == 1
    # the silence ends: the incident escalates again, its timers moved on by the pause
    peer.alerts = [listed(LABELS)]
    assert (await r.run(T0 + 11 * INTERVAL)).unsuppressed == 1
    inc = await only_incident(db)
    assert inc["suppressed"] is None
    assert inc["next_escalation_at"] == before["next_escalation_at"] + 10 * INTERVAL
    assert [e["type"] for e in await events(db, "suppressed", "unsuppressed")] == ["suppressed", "unsuppressed"]
    await env.store.escalate(T0 + timedelta(hours=2), decide, batch=10)
    assert [row.id for row in claimed] == [inc["id"]]


async def test_an_incident_with_one_unsuppressed_member_is_not_suppressed(make_env: Any, db: Any) -> None:
    env = await make_env()
    b = {**LABELS, "instance": "b"}
    await env.post(payload(alert(labels=LABELS), alert(labels=b)))
    env.peers[0].alerts = [listed(LABELS, state="suppressed", inhibited_by=("f00",)), listed(b)]
    await env.reconciler().run(T0)
    assert (await only_incident(db))["suppressed"] is None
    env.peers[0].alerts = [
        listed(LABELS, state="suppressed", inhibited_by=("f00",)),
        listed(b, state="suppressed", silenced_by=("gone",)),
    ]
    await env.reconciler().run(T0 + INTERVAL)
    suppressed = (await only_incident(db))["suppressed"]
    assert (suppressed["inhibited_by"], suppressed["silences"]) == (["f00"], [{"id": "gone"}])  # unknown: by id


async def test_the_api_and_the_page_show_the_suppression(
    make_env: Any, aiohttp_client: Any, database_url: str, db: Any
) -> None:
    env = await make_env()
    await env.post(payload(alert(labels=LABELS)))
    env.peers[0].alerts = [listed(LABELS, state="suppressed", silenced_by=("s-9",))]
    await env.reconciler().run(T0)
    client = await aiohttp_client(create_app(parse_config("", env={}), database_url, loops=False))  # T0 is long ago
    inc = await only_incident(db)
    data = await (await client.get(f"/api/incidents/{inc['id']}")).json()
    assert data["suppressed"]["silences"] == [{"id": "s-9"}]
    page = await (await client.get(f"/incidents/{inc['id']}")).text()
    assert "Suppressed in Alertmanager" in page and "s-9" in page


# --- two replicas ----------------------------------------------------------------------------------------------


async def test_two_replicas_reconciling_at_once_write_each_event_once(make_env: Any, db: Any) -> None:
    env = await make_env(grace=timedelta(0))
    gone, silenced = {**LABELS, "instance": "gone"}, {**LABELS, "path": "/other"}
    await env.post(payload(alert(labels=gone), alert(labels=silenced)))
    env.peers[0].alerts = [
        listed({**LABELS, "path": "/lost"}, starts_at=rfc3339(T0 - GRACE)),
        listed(silenced, state="suppressed", silenced_by=("s",)),
    ]
    one, two = env.reconciler(), env.reconciler()
    # through the lease: one runs, the other skips
    results = await asyncio.gather(one.run(T0), two.run(T0))
    assert sorted(r.result for r in results) == ["ok", "skipped"]
    # and without it (what the lease guards against anyway): every write is idempotent
    await asyncio.gather(*(r._reconcile(T0 + INTERVAL) for r in (one, two, one, two)))
    rows = await db.fetch("SELECT type, count(*) AS n FROM incident_events WHERE actor = 'reconciler' GROUP BY type")
    assert {r["type"]: r["n"] for r in rows} == {
        "opened": 1,
        "alert_fired": 1,
        "alert_resolved": 1,
        "resolved": 1,
        "suppressed": 1,
    }


# --- a resolve we inferred is not a fact -----------------------------------------------------------------------


@pytest.mark.parametrize("with_alertmanager", [False, True])
async def test_an_instance_resolved_as_stale_that_fires_again_opens_an_incident_and_pages(
    database_url: str, db: Any, with_alertmanager: bool
) -> None:
    text = "alertmanager: {urls: [http://127.0.0.1:9], receiver: receiver}\n" if with_alertmanager else ""
    config = parse_config(text, env={})
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4, init=_init_connection)
    try:
        store = Store(pool)
        ingestor, escalator = Ingestor(config, store), Escalator(config, store)
        firing = payload(alert(labels=LABELS))
        await ingestor.ingest(parse_notification(firing), T0)
        await escalator.tick(T0 + timedelta(hours=13))  # stale: no webhook for 12h
        first = await only_incident(db)
        assert (first["status"], first["resolved_by"]) == ("resolved", "receiver")
        # Alertmanager re-sends the same instance (say a silence longer than stale_after expired)
        later = T0 + timedelta(hours=14)
        plan = await ingestor.ingest(parse_notification(firing), later)
        assert plan.outcomes["stale"] == 0 and plan.outcomes["updated"] == 1
        [opened] = await db.fetch("SELECT * FROM incidents WHERE status = 'open'")
        assert opened["id"] != first["id"] and opened["next_escalation_at"] == later  # it pages at once
        [fired] = await db.fetch(
            "SELECT detail FROM incident_events WHERE incident_id = $1 AND type = 'alert_fired'", opened["id"]
        )
        assert fired["detail"]["after_inferred_resolve"] == "stale"
        # within the reopen window the same incident reopens instead
        await escalator.tick(later + timedelta(hours=13))
        plan = await ingestor.ingest(parse_notification(firing), later + timedelta(hours=13, minutes=1))
        assert plan.summary()[0]["action"] == "reopened"
        # a resolve Alertmanager sent stays final: its late firing copy is stale
        await ingestor.ingest(
            parse_notification(payload(alert("resolved", labels=LABELS, ends_at=STARTS))),
            later + timedelta(hours=13, minutes=2),
        )
        plan = await ingestor.ingest(parse_notification(firing), later + timedelta(hours=13, minutes=3))
        assert plan.outcomes["stale"] == 1
    finally:
        await pool.close()
