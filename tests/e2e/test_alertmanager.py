"""End to end with a real Alertmanager (Debian's prometheus-alertmanager 0.25) on loopback.

Alertmanager runs as a subprocess with its own storage in tmp_path, posts webhooks to the receiver
served by `aiohttp_server`, and the tests watch the receiver's JSON API. Alerts are posted to
Alertmanager's /api/v2/alerts with an explicit startsAt, as Prometheus does: HA peers then carry the
same alert instance. Every wait has a deadline and every subprocess is killed in teardown.

CI: `apt-get install -y prometheus-alertmanager`; the tests skip only when the binary is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.app import create_app
from receiver.config import parse_config
from tests.alertmanager import AM_BINARY, Alertmanager, Alertmanagers
from tests.helpers import am_alert, deadline, eventually, rfc3339
from tests.readme import code_blocks

pytestmark = [
    pytest.mark.alertmanager,
    pytest.mark.timeout(deadline(90)),
    pytest.mark.skipif(
        not os.path.exists(AM_BINARY), reason=f"{AM_BINARY} is missing: apt-get install -y prometheus-alertmanager"
    ),
]
ROUTE = "GET /api/items/{id}"
KEY = f"{ROUTE}::latency"
ALL_STATUSES = "open,acknowledged,silenced,resolved"


# --- small helpers ---------------------------------------------------------------------------------


def api_alert(instance: str, starts_at: datetime, ends_at: datetime | None = None) -> dict[str, Any]:
    """HighLatency on GET /api/items/{id} from one instance, as Prometheus posts it to Alertmanager."""
    labels = {
        "alertname": "HighLatency",
        "method": "GET",
        "path": "/api/items/{id}",
        "severity": "critical",
        "instance": instance,
    }
    return am_alert(labels, starts_at, ends_at)


@dataclass
class Delivery:
    """One request to /webhook as the receiver saw it."""

    at: float
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


DELIVERY = web.RequestKey("delivery", Delivery)


async def start_receiver(
    aiohttp_server: Any, aiohttp_client: Any, database_url: str, token: str, reply_delay: float = 0.0
) -> tuple[Any, Any, list[Delivery]]:
    """The real receiver app with a bearer token on a loopback port, recording every webhook request.

    `reply_delay` holds each webhook reply after the handler has committed, as a slower network would.
    """
    deliveries: list[Delivery] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/webhook":
            return await handler(request)
        delivery = Delivery(time.monotonic(), dict(request.headers), b"")
        deliveries.append(delivery)
        request[DELIVERY] = delivery  # the state is copied by reference into the app's cloned request
        response = await handler(request)
        delivery.status = response.status
        if reply_delay:
            await asyncio.sleep(reply_delay)
        return response

    @web.middleware
    async def record_body(request: web.Request, handler: Any) -> web.StreamResponse:
        delivery = request.get(DELIVERY)
        if delivery is not None:  # read here, once the app's body limits have admitted it
            delivery.body = await request.read()
        return await handler(request)

    config = parse_config("webhook:\n  token_env: TOK\n", env={"TOK": token})
    app = create_app(config, database_url)
    # `record` is outermost (the app is not frozen yet), so it also sees the 401s that the app's body-limit
    # middleware answers before any handler; `record_body` runs inside the app's middlewares.
    app.middlewares.insert(0, record)
    app.middlewares.append(record_body)
    server = await aiohttp_server(app, host="127.0.0.1")
    client = await aiohttp_client(server)
    return server, client, deliveries


# --- Alertmanager processes --------------------------------------------------------------------------


# The README's snippet as written ("Point Alertmanager at it"), with only the receiver's address and the
# token file replaced, and the two group timers shortened: with the README's 10 s and 1 m, a resolve
# would arrive a minute after it happened. Each replaced text must be in the snippet exactly once.
README_SNIPPET_REPLACEMENTS = {
    "url: http://receiver:9095/webhook": "url: {url}",
    "credentials_file: /etc/alertmanager/receiver.token": "credentials_file: {credentials_file}",
    "group_wait: 10s": "group_wait: 1s",
    "group_interval: 1m": "group_interval: 1s",
}


def alertmanager_config(receiver_url: str, credentials_file: Path) -> str:
    (snippet,) = code_blocks("Point Alertmanager at it", "yaml")
    for old, new in README_SNIPPET_REPLACEMENTS.items():
        assert snippet.count(old) == 1, f"the README's Alertmanager snippet no longer has {old!r}"
        snippet = snippet.replace(old, new.format(url=receiver_url, credentials_file=credentials_file))
    return snippet


def start_alertmanager(
    alertmanagers: Alertmanagers,
    name: str,
    receiver_url: str,
    token: str,
    *,
    cluster: bool = False,
    peers: tuple[int, ...] = (),
) -> Alertmanager:
    """An Alertmanager configured by the README's snippet, reading the token from a file as the README does."""
    token_file = alertmanagers.workdir(name) / "receiver.token"
    token_file.write_text(token + "\n")
    return alertmanagers(name, alertmanager_config(receiver_url, token_file), cluster=cluster, peers=peers)


# --- receiver API ------------------------------------------------------------------------------------


async def incidents(client: Any, statuses: str = ALL_STATUSES) -> list[dict[str, Any]]:
    r = await client.get("/api/incidents", params={"status": statuses})
    assert r.status == 200, await r.text()
    return (await r.json())["incidents"]


async def incident(client: Any, incident_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/incidents/{incident_id}")
    assert r.status == 200, await r.text()
    return await r.json()


def expected_receive_count(deliveries: list[Delivery], fingerprint: str) -> int:
    """Copies that count: firings until the first resolve, then resolves (a late firing is stale)."""
    count, resolved = 0, False
    for d in deliveries:
        for a in d.json["alerts"]:
            if a["fingerprint"] != fingerprint:
                continue
            if a["status"] == "resolved":
                count, resolved = count + 1, True
            elif not resolved:
                count += 1
    return count


# What ingest writes. The app's background loops (escalation, delivery) may add their own events to the
# same timeline (a level-0 page, notify results): those are not what these tests are about.
INGEST_EVENTS = frozenset(
    {"opened", "alert_fired", "alert_resolved", "resolved", "reopened", "severity_raised", "stale_resolved"}
)


def event_types(detail: dict[str, Any]) -> list[str]:
    """The ingest events of an incident's timeline, in order."""
    return [e["type"] for e in detail["events"] if e["type"] in INGEST_EVENTS]


def members(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["fingerprint"]: a for a in detail["alerts"]}


# --- tests -------------------------------------------------------------------------------------------


async def test_single_alertmanager_opens_and_resolves_an_incident(
    database_url: str, aiohttp_server: Any, aiohttp_client: Any, alertmanagers: Alertmanagers
) -> None:
    token = "e2e-" + secrets.token_hex(12)
    server, client, deliveries = await start_receiver(aiohttp_server, aiohttp_client, database_url, token)
    receiver_url = str(server.make_url("/webhook"))

    # Without the token, or with a wrong one, the receiver refuses and stores nothing.
    intruder = {
        "version": "4",
        "status": "firing",
        "receiver": "x",
        "externalURL": "http://intruder",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "method": "POST", "path": "/intrusion"},
                "annotations": {},
                "startsAt": rfc3339(datetime.now(UTC)),
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }
    for headers in ({}, {"Authorization": "Bearer wrong-" + token}, {"Authorization": token}):
        r = await client.post("/webhook", json=intruder, headers=headers)
        assert r.status == 401, await r.text()
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await r.json())["error"]
    assert await incidents(client) == []

    am = start_alertmanager(alertmanagers, "am-single", receiver_url, token)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline(30))) as session:
        await am.wait_ready(session)
        # startsAt is now, as for a new alert: Alertmanager waits group_wait and sends both together. (An
        # alert older than group_wait flushes a new group at once, maybe before the POST's next alert.)
        starts = datetime.now(UTC)
        await am.post_alerts(session, [api_alert("a:9100", starts), api_alert("b:9100", starts)])
        fps = await am.fingerprints(session)
        assert set(fps) == {"a:9100", "b:9100"}

        # Firing: one incident for both alerts (same route and kind), opened by one notification.
        async def opened() -> list[dict[str, Any]]:
            return [i for i in await incidents(client) if i["alert_count"] == 2]

        (inc,) = await eventually(opened, "the incident to open with both alerts")
        assert inc["incident_key"] == KEY
        assert (inc["route"], inc["kind"], inc["severity"], inc["status"]) == (ROUTE, "latency", "critical", "open")
        assert inc["firing_count"] == 2
        detail = await incident(client, inc["id"])
        assert set(members(detail)) == set(fps.values())
        for instance, fingerprint in fps.items():
            member = members(detail)[fingerprint]
            assert member["status"] == "firing"
            assert member["labels"]["instance"] == instance
            assert member["annotations"] == {"summary": f"p99 latency is high on {instance}"}
            assert datetime.fromisoformat(member["starts_at"]) == starts
            assert member["ends_at"] is None  # Alertmanager sends Go's zero time for firing alerts
            assert member["generator_url"] == "http://prometheus.test:9090/graph?g0.expr=up"
        assert event_types(detail) == ["opened", "alert_fired", "alert_fired"]
        assert detail["metadata"]["external_url"] == am.external_url

        # One alert resolves: the notification is marked firing and carries the resolved alert.
        b_ends = datetime.now(UTC) - timedelta(milliseconds=10)  # in the past, after startsAt
        await am.post_alerts(session, [api_alert("b:9100", starts, b_ends)])

        async def b_resolved() -> dict[str, Any] | None:
            d = await incident(client, inc["id"])
            return d if members(d)[fps["b:9100"]]["status"] == "resolved" else None

        detail = await eventually(b_resolved, "b:9100 to resolve")
        assert detail["status"] == "open"
        assert detail["firing_count"] == 1
        assert datetime.fromisoformat(members(detail)[fps["b:9100"]]["ends_at"]) == b_ends
        assert event_types(detail) == ["opened", "alert_fired", "alert_fired", "alert_resolved"]

        # The last alert resolves: the incident resolves.
        a_ends = datetime.now(UTC) - timedelta(milliseconds=10)
        await am.post_alerts(session, [api_alert("a:9100", starts, a_ends)])

        async def resolved() -> dict[str, Any] | None:
            d = await incident(client, inc["id"])
            return d if d["status"] == "resolved" else None

        detail = await eventually(resolved, "the incident to resolve")

    assert detail["resolved_at"] is not None
    assert detail["firing_count"] == 0
    assert {fp: m["status"] for fp, m in members(detail).items()} == dict.fromkeys(fps.values(), "resolved")
    assert datetime.fromisoformat(members(detail)[fps["a:9100"]]["ends_at"]) == a_ends
    print("timeline:", [(e["type"], e["actor"]) for e in detail["events"]])
    events = [e for e in detail["events"] if e["type"] in INGEST_EVENTS]
    assert event_types(detail) == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]
    assert {e["detail"]["fingerprint"] for e in events if e["type"] == "alert_fired"} == set(fps.values())
    assert [e["detail"]["fingerprint"] for e in events if e["type"] == "alert_resolved"] == [
        fps["b:9100"],
        fps["a:9100"],
    ]
    assert all(e["actor"] == "alertmanager" for e in events)
    assert events[0]["detail"]["severity"] == "critical"
    assert await incidents(client, "open,acknowledged,silenced") == []
    assert [i["id"] for i in await incidents(client)] == [inc["id"]]  # nothing from the refused requests

    # What Alertmanager sent: three notifications (firing; firing carrying b resolved; resolved), each
    # with the bearer token and accepted. Only the three hand-made requests were refused.
    refused = [d for d in deliveries if d.status == 401]
    sent = [d for d in deliveries if d.headers.get("User-Agent", "").startswith("Alertmanager/")]
    assert len(refused) == 3 and not set(map(id, refused)) & set(map(id, sent))
    assert [d.status for d in sent] == [200, 200, 200]
    assert len({d.headers["User-Agent"] for d in sent}) == 1  # Alertmanager/0.25.0 with Debian's package
    assert all(d.headers["Authorization"] == f"Bearer {token}" for d in sent)
    bodies = [d.json for d in sent]
    assert [b["status"] for b in bodies] == ["firing", "firing", "resolved"]
    assert [sorted(a["status"] for a in b["alerts"]) for b in bodies] == [
        ["firing", "firing"],
        ["firing", "resolved"],
        ["resolved"],
    ]
    assert {b["groupKey"] for b in bodies} == {'{}:{alertname="HighLatency", method="GET", path="/api/items/{id}"}'}
    assert {b["externalURL"] for b in bodies} == {am.external_url}


async def test_clustered_alertmanagers_deliver_duplicates_that_make_one_incident(
    database_url: str, aiohttp_server: Any, aiohttp_client: Any, alertmanagers: Alertmanagers
) -> None:
    token = "e2e-" + secrets.token_hex(12)
    # A peer logs a notification (and gossips the log entry, at the next 200 ms gossip tick) only once
    # the receiver has answered. The second peer checks the log --cluster.peer-timeout (50 ms) after the
    # first sent. Answering in ~30 ms, the receiver let the entry reach the second peer in time in about
    # one run in ten, which then sent nothing; holding replies 200 ms makes the duplicate certain.
    server, client, deliveries = await start_receiver(
        aiohttp_server, aiohttp_client, database_url, token, reply_delay=0.2
    )
    receiver_url = str(server.make_url("/webhook"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline(30))) as session:
        am1 = start_alertmanager(alertmanagers, "am-1", receiver_url, token, cluster=True)
        assert am1.cluster_port is not None
        # The gossip listener is up before the web server: once am-1 answers, am-2 can join at once
        # (a refused join is retried only after --cluster.reconnect-interval, 10 s).
        await am1.wait_ready(session)
        am2 = start_alertmanager(alertmanagers, "am-2", receiver_url, token, cluster=True, peers=(am1.cluster_port,))
        await asyncio.gather(am1.wait_ready(session, peers=2), am2.wait_ready(session, peers=2))

        # Prometheus posts every alert to every peer, with the same startsAt (now: see the first test).
        starts = datetime.now(UTC)
        firing = [api_alert("a:9100", starts), api_alert("b:9100", starts)]
        await asyncio.gather(am1.post_alerts(session, firing), am2.post_alerts(session, firing))
        fps = await am1.fingerprints(session)
        assert fps == await am2.fingerprints(session)

        # Both peers notify: the second 50 ms after the first, which has not logged its notification yet.
        async def duplicated() -> dict[str, Any] | None:
            found = await incidents(client)
            if len(found) != 1 or found[0]["alert_count"] != 2:
                return None
            d = await incident(client, found[0]["id"])
            return d if all(m["receive_count"] >= 2 for m in d["alerts"]) else None

        detail = await eventually(duplicated, "both peers' firing notifications")
        assert (detail["incident_key"], detail["status"], detail["severity"]) == (KEY, "open", "critical")
        assert event_types(detail) == ["opened", "alert_fired", "alert_fired"]
        firing_sent = [d for d in deliveries if d.json["status"] == "firing"]
        assert {d.json["externalURL"] for d in firing_sent} == {am1.external_url, am2.external_url}
        # The copies are identical but for externalURL.
        first, second = (dict(d.json, externalURL="") for d in firing_sent[:2])
        assert first == second

        resolved_at = datetime.now(UTC) - timedelta(milliseconds=10)
        resolving = [api_alert("a:9100", starts, resolved_at), api_alert("b:9100", starts, resolved_at)]
        await asyncio.gather(am1.post_alerts(session, resolving), am2.post_alerts(session, resolving))

        async def resolved() -> dict[str, Any] | None:
            d = await incident(client, detail["id"])
            return d if d["status"] == "resolved" else None

        await eventually(resolved, "the incident to resolve")

        # Each peer sends its resolve at its own next group_interval tick. Both send, unless the resolve
        # reached one peer just before its tick and the other just after its own (then the second sees
        # the first's log entry a tick later and stays silent): allow that rare case, then let late
        # copies land.
        async def both_resolved_sent() -> bool:
            urls = {d.json["externalURL"] for d in deliveries if d.json["status"] == "resolved" and d.status}
            return urls == {am1.external_url, am2.external_url}

        try:
            both_resolved = await eventually(both_resolved_sent, "both peers' resolve", timeout=5)
        except AssertionError:  # the rare case above: one peer stayed silent
            both_resolved = False
        await asyncio.sleep(deadline(0.5))  # late copies

    # Exactly one incident, resolved, with one event of each kind per fingerprint: duplicates change
    # receive counts only.
    print(
        "deliveries:",
        [(d.json["externalURL"], d.json["status"], round(d.at - deliveries[0].at, 3)) for d in deliveries],
        "both peers resolved:",
        both_resolved,
    )
    (only,) = await incidents(client)
    assert only["id"] == detail["id"]
    detail = await incident(client, detail["id"])
    print("timeline:", [(e["type"], e["actor"]) for e in detail["events"]])
    assert detail["status"] == "resolved"
    assert event_types(detail) == [
        "opened",
        "alert_fired",
        "alert_fired",
        "alert_resolved",
        "alert_resolved",
        "resolved",
    ]
    for kind in ("alert_fired", "alert_resolved"):
        assert sorted(e["detail"]["fingerprint"] for e in detail["events"] if e["type"] == kind) == sorted(fps.values())
    for m in detail["alerts"]:
        assert m["status"] == "resolved"
        assert m["receive_count"] == expected_receive_count(deliveries, m["fingerprint"])
    assert all(d.status == 200 for d in deliveries)
    assert all(d.headers["Authorization"] == f"Bearer {token}" for d in deliveries)
