"""Silence in both places, end to end with a real Alertmanager (Debian's prometheus-alertmanager 0.25).

Alertmanager sends its webhooks to the real receiver app (loopback, its loops running); the tests silence
through the receiver's API and page, and read Alertmanager's own API: the silence is there with the right matchers
and creator, suppresses exactly the incident's alerts, and is expired by unsilencing, re-silencing or resolving;
a silence someone else made is never touched; when Alertmanager refuses, the page's retry works once it answers.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.app import create_app
from receiver.config import parse_config
from receiver.web.users import hash_password
from tests.alertmanager import AM_BINARY, Alertmanager, Alertmanagers, webhook_config
from tests.helpers import am_alert, deadline, eventually, free_port

pytestmark = [
    pytest.mark.alertmanager,
    pytest.mark.timeout(deadline(90)),
    pytest.mark.skipif(
        not os.path.exists(AM_BINARY), reason=f"{AM_BINARY} is missing: apt-get install -y prometheus-alertmanager"
    ),
]

WEBHOOK_TOKEN = "e2e-webhook-token"
API_TOKEN = "e2e-api-token"
PASSWORD = "correct horse battery"
EXTERNAL = "https://receiver.example.com"
API = {"Authorization": f"Bearer {API_TOKEN}"}
ALICE = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()}
HASH = hash_password(PASSWORD)


def items_alert(instance: str, path: str = "/api/items/{id}") -> dict[str, Any]:
    labels = {"alertname": "HighLatency", "method": "GET", "path": path, "severity": "critical", "instance": instance}
    return am_alert(labels, datetime.now(UTC))


async def start(
    aiohttp_server: Any,
    aiohttp_client: Any,
    database_url: str,
    alertmanagers: Alertmanagers,
    session: aiohttp.ClientSession,
    *,
    via: str | None = None,
) -> tuple[Any, Alertmanager]:
    """An Alertmanager sending to the receiver, and the receiver (alertmanager.silences on, its loops running,
    the sweep every second) asking that Alertmanager, or the proxy `via` in front of it."""
    port = free_port()
    config = webhook_config(f"http://127.0.0.1:{port}/webhook", WEBHOOK_TOKEN, group_by=["alertname", "path"])
    am = alertmanagers("am", config)
    await am.wait_ready(session)
    doc = {
        "external_url": EXTERNAL,
        "webhook": {"token_env": "WT"},
        "api_tokens": [{"name": "alice", "token_env": "AT"}],
        "ui": {"users": [{"name": "alice", "password_hash": HASH}]},
        "alertmanager": {
            "urls": [via or am.url],
            "receiver": "incidents",
            "timeout": "3s",
            "reconcile": {"interval": "1s", "grace": "1h"},
            "silences": True,
        },
    }
    receiver = parse_config(json.dumps(doc), env={"WT": WEBHOOK_TOKEN, "AT": API_TOKEN})
    server = await aiohttp_server(create_app(receiver, database_url), host="127.0.0.1", port=port)
    return await aiohttp_client(server), am


async def incidents_by_path(client: Any, firing: dict[str, int]) -> dict[str, str]:
    """Wait until the incidents of these paths have these many firing alerts; their ids by path."""

    async def probe() -> dict[str, str] | None:
        r = await client.get("/api/incidents", headers=API, params={"status": "open,acknowledged,silenced"})
        found = {i["route"].split(" ", 1)[1]: i for i in (await r.json())["incidents"]}
        if all(p in found and found[p]["firing_count"] == n for p, n in firing.items()):
            return {p: found[p]["id"] for p in firing}
        return None

    return await eventually(probe, f"incidents firing {firing}", deadline(30))


async def silences(am: Alertmanager, session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    async with session.get(f"{am.url}/api/v2/silences") as r:
        assert r.status == 200
        return {s["id"]: s for s in await r.json()}


async def alert_states(am: Alertmanager, session: aiohttp.ClientSession) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, instance) -> the alert's status in Alertmanager (state, silencedBy)."""
    return {(a["labels"]["path"], a["labels"]["instance"]): a["status"] for a in await am.alerts(session)}


async def events(db: Any, incident_id: str) -> list[Any]:
    return list(
        await db.fetch(
            "SELECT type, actor, detail FROM incident_events WHERE incident_id = $1::text::uuid "
            "AND type LIKE 'alertmanager%' ORDER BY id",
            incident_id,
        )
    )


def matcher_pairs(silence: dict[str, Any]) -> set[tuple[str, str]]:
    assert all(m["isEqual"] and not m["isRegex"] for m in silence["matchers"]), silence
    return {(m["name"], m["value"]) for m in silence["matchers"]}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def test_a_silence_from_our_api_is_alertmanagers_until_unsilenced(
    database_url: str,
    db: Any,
    aiohttp_server: Any,
    aiohttp_client: Any,
    alertmanagers: Alertmanagers,
    session: aiohttp.ClientSession,
) -> None:
    client, am = await start(aiohttp_server, aiohttp_client, database_url, alertmanagers, session)
    # two incidents whose alerts share alertname, method, severity and instances: only the path differs
    await am.post_alerts(session, [items_alert("i1"), items_alert("i2"), items_alert("i1", "/api/other")])
    ids = await incidents_by_path(client, {"/api/items/{id}": 2, "/api/other": 1})
    # someone's own silence in Alertmanager, for the same alerts: shown there, never touched by us
    now = datetime.now(UTC)
    theirs = {
        "matchers": [{"name": "instance", "value": "i2", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=2)).isoformat(),
        "createdBy": "bob",
        "comment": "bob's own",
    }
    async with session.post(f"{am.url}/api/v2/silences", json=theirs) as r:
        assert r.status == 200, await r.text()
        bobs = (await r.json())["silenceID"]

    incident_id = ids["/api/items/{id}"]
    r = await client.post(
        f"/api/incidents/{incident_id}/silence", headers=API, json={"reason": "deploy of items", "duration": "1h"}
    )
    assert r.status == 200, await r.text()
    until = (await r.json())["silenced_until"]
    [created] = await events(db, incident_id)
    assert created["type"] == "alertmanager_silenced", created
    [ours] = created["detail"]["silences"]
    found = await silences(am, session)
    assert found[ours]["status"]["state"] == "active"
    assert found[ours]["createdBy"] == "alice"
    assert found[ours]["comment"] == f"deploy of items (silenced in receiver: {EXTERNAL}/incidents/{incident_id})"
    assert abs(datetime.fromisoformat(found[ours]["endsAt"]) - datetime.fromisoformat(until)) < timedelta(seconds=1)
    # the labels both of its alerts share; /api/other's alert differs in path
    assert matcher_pairs(found[ours]) == {
        ("alertname", "HighLatency"),
        ("method", "GET"),
        ("path", "/api/items/{id}"),
        ("severity", "critical"),
    }
    # the JSON detail lists ours (never bob's), with the matchers Alertmanager took
    detail = await (await client.get(f"/api/incidents/{incident_id}", headers=API)).json()
    [listed] = detail["alertmanager_silences"]
    assert listed["silence_id"] == ours and listed["created_by"] == "alice" and listed["expired_at"] is None
    assert {tuple(m) for m in listed["matchers"]} == matcher_pairs(found[ours])
    states = await alert_states(am, session)
    assert states["/api/items/{id}", "i1"] == {"state": "suppressed", "silencedBy": [ours], "inhibitedBy": []}
    assert sorted(states["/api/items/{id}", "i2"]["silencedBy"]) == sorted([ours, bobs])
    assert states["/api/other", "i1"]["state"] == "active"  # the other incident's alert is not silenced

    # silencing again (longer) replaces ours: the new one is made, the old one expired
    r = await client.post(
        f"/api/incidents/{incident_id}/silence", headers=API, json={"reason": "deploy takes longer", "duration": "2h"}
    )
    assert r.status == 200, await r.text()
    kinds = [e["type"] for e in await events(db, incident_id)]
    assert kinds == ["alertmanager_silenced", "alertmanager_silenced", "alertmanager_silence_expired"], kinds
    newer = (await events(db, incident_id))[1]["detail"]["silences"][0]
    found = await silences(am, session)
    assert found[ours]["status"]["state"] == "expired"
    assert found[newer]["status"]["state"] == "active"
    assert found[newer]["comment"].startswith("deploy takes longer")

    # unsilencing expires ours; bob's stays
    r = await client.post(f"/api/incidents/{incident_id}/unsilence", headers=API)
    assert r.status == 200, await r.text()
    last = (await events(db, incident_id))[-1]
    assert last["type"] == "alertmanager_silence_expired"
    assert last["detail"] == {"silences": [newer], "reason": "the incident was unsilenced"}
    found = await silences(am, session)
    assert found[newer]["status"]["state"] == "expired"
    assert found[bobs]["status"]["state"] == "active"
    states = await alert_states(am, session)
    assert states["/api/items/{id}", "i1"]["state"] == "active"
    assert states["/api/items/{id}", "i2"]["silencedBy"] == [bobs]
    # the page lists both of ours, and still links to Alertmanager's own silence form
    html = await (await client.get(f"/incidents/{incident_id}", headers=ALICE)).text()
    assert ours in html and newer in html and bobs not in html
    assert "new silence for them" in html
    metrics = await (await client.get("/metrics")).text()
    assert 'receiver_alertmanager_silences_total{outcome="created"} 2.0' in metrics
    assert 'receiver_alertmanager_silences_total{outcome="expired"} 2.0' in metrics


async def test_resolving_without_an_action_expires_the_silence(
    database_url: str,
    db: Any,
    aiohttp_server: Any,
    aiohttp_client: Any,
    alertmanagers: Alertmanagers,
    session: aiohttp.ClientSession,
) -> None:
    """A webhook resolves the silenced incident (here posted straight to the receiver, since Alertmanager sends
    no resolve for a silenced alert): the sweep expires our silence."""
    client, am = await start(aiohttp_server, aiohttp_client, database_url, alertmanagers, session)
    firing = items_alert("i1")
    await am.post_alerts(session, [firing])
    incident_id = (await incidents_by_path(client, {"/api/items/{id}": 1}))["/api/items/{id}"]
    r = await client.post(f"/api/incidents/{incident_id}/silence", headers=API, json={"reason": "r", "duration": "1h"})
    assert r.status == 200
    [ours] = (await events(db, incident_id))[0]["detail"]["silences"]
    [member] = await db.fetch("SELECT fingerprint, labels, starts_at FROM incident_alerts")
    resolved = {
        "status": "resolved",
        "labels": member["labels"],
        "annotations": {},
        "startsAt": member["starts_at"].isoformat(),
        "endsAt": datetime.now(UTC).isoformat(),
        "generatorURL": "",
        "fingerprint": member["fingerprint"],
    }
    r = await client.post(
        "/webhook",
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        json={
            "version": "4",
            "status": "resolved",
            "receiver": "incidents",
            "alerts": [resolved],
            "externalURL": am.external_url,
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "groupKey": "{}",
            "truncatedAlerts": 0,
        },
    )
    assert r.status == 200, await r.text()

    async def expired() -> bool:
        return (await silences(am, session))[ours]["status"]["state"] == "expired"

    await eventually(expired, "the sweep to expire our silence", deadline(20))
    last = (await events(db, incident_id))[-1]
    assert (last["type"], last["actor"], last["detail"]["reason"]) == (
        "alertmanager_silence_expired",
        "receiver",
        "the incident resolved",
    )


class FlakyProxy:
    """A real HTTP proxy in front of Alertmanager that answers 503 until `up` is set: Alertmanager refusing."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.up = False
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if not self.up:
            return web.json_response("cluster not ready", status=503)
        async with (
            aiohttp.ClientSession() as s,
            s.request(
                request.method,
                self.target + request.path_qs,
                data=await request.read(),
                headers={"Content-Type": "application/json"},
            ) as r,
        ):
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    async def __aenter__(self) -> FlakyProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_when_alertmanager_refuses_the_page_says_why_and_its_retry_works(
    database_url: str,
    db: Any,
    aiohttp_server: Any,
    aiohttp_client: Any,
    alertmanagers: Alertmanagers,
    session: aiohttp.ClientSession,
) -> None:
    async with FlakyProxy("") as proxy:
        client, am = await start(aiohttp_server, aiohttp_client, database_url, alertmanagers, session, via=proxy.url)
        proxy.target = am.url
        await am.post_alerts(session, [items_alert("i1")])
        incident_id = (await incidents_by_path(client, {"/api/items/{id}": 1}))["/api/items/{id}"]
        page = await (await client.get(f"/incidents/{incident_id}", headers=ALICE)).text()
        csrf = re.findall(r'name="csrf" value="([0-9a-f]+)"', page)[0]
        origin = {"Origin": f"http://{client.host}:{client.port}"}
        r = await client.post(
            f"/incidents/{incident_id}/actions/silence",
            headers={**ALICE, **origin},
            data={"csrf": csrf, "duration": "1h", "reason": "maintenance"},
            allow_redirects=False,
        )
        assert r.status == 303, await r.text()
        [failed] = await events(db, incident_id)
        assert failed["type"] == "alertmanager_silence_failed"
        assert failed["detail"]["reason"] == f"{proxy.url}: HTTP 503: cluster not ready"
        assert (await api_status(client, incident_id)) == "silenced"  # the local silence happened
        assert await silences(am, session) == {}
        page = await (await client.get(f"/incidents/{incident_id}", headers=ALICE)).text()
        assert "The Alertmanager silence failed" in page and "cluster not ready" in page

        proxy.up = True
        r = await client.post(
            f"/incidents/{incident_id}/alertmanager-silence",
            headers={**ALICE, **origin},
            data={"csrf": csrf},
            allow_redirects=False,
        )
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == f"/incidents/{incident_id}?done=am-silence"
        retried = (await events(db, incident_id))[-1]
        assert (retried["type"], retried["actor"]) == ("alertmanager_silenced", "alice")
        [ours] = retried["detail"]["silences"]
        found = await silences(am, session)
        assert found[ours]["createdBy"] == "alice" and found[ours]["status"]["state"] == "active"
        page = await (await client.get(f"/incidents/{incident_id}", headers=ALICE)).text()
        assert "alertmanager-silence" not in page  # no retry offered once it worked
        assert ours in page


async def api_status(client: Any, incident_id: str) -> str:
    r = await client.get(f"/api/incidents/{incident_id}", headers=API)
    return str((await r.json())["status"])
