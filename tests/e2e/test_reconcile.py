"""Reconciliation against real Alertmanagers (Debian's prometheus-alertmanager 0.25) on loopback, on the clock.

The receiver runs in-process with its loops (aiohttp_server) and an `alertmanager:` section with second-scale
interval and grace; Alertmanager gets alerts on /api/v2/alerts as from Prometheus. Waits are event-driven (the
receiver's API, its reconcile metrics, the fake Slack's requests), each with a generous deadline.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.app import create_app
from receiver.config import parse_config
from receiver.keys import METRICS
from tests.alertmanager import AM_BINARY, Alertmanager, Alertmanagers, webhook_config
from tests.fakes import FakeSlack
from tests.helpers import am_alert, deadline, eventually, free_port, rfc3339

pytestmark = [
    pytest.mark.alertmanager,
    pytest.mark.timeout(deadline(120)),
    pytest.mark.skipif(
        not os.path.exists(AM_BINARY), reason=f"{AM_BINARY} is missing: apt-get install -y prometheus-alertmanager"
    ),
]
LABELS = {
    "alertname": "HighLatency",
    "method": "GET",
    "path": "/api/items/{id}",
    "severity": "critical",
    "instance": "a",
}


def am_config(webhook_url: str, *, send_resolved: bool = True) -> str:
    return webhook_config(webhook_url, group_by=["alertname"], send_resolved=send_resolved)


def receiver_config(*peers: Alertmanager, grace: str = "2s", slack_url: str | None = None) -> Any:
    owners = "owners: [{name: default, slack_url_env: SLACK}]\n" if slack_url else ""
    return parse_config(
        f"""
alertmanager:
  urls: [{", ".join(p.url for p in peers)}]
  receiver: incidents
  timeout: 1s
  reconcile: {{interval: 1s, grace: {grace}}}
escalation:
  interval: 200ms
  policies:
    critical:
      steps: [{{after: 1s}}]
      repeat: {{every: 1s, max: 1000}}
{owners}""",
        env={"SLACK": slack_url or ""},
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def start_receiver(aiohttp_server: Any, config: Any, database_url: str, port: int | None = None) -> Any:
    app = create_app(config, database_url)
    return await aiohttp_server(app, host="127.0.0.1", port=port)


async def incidents(session: aiohttp.ClientSession, server: Any) -> list[dict[str, Any]]:
    async with session.get(
        f"http://127.0.0.1:{server.port}/api/incidents", params={"status": "open,acknowledged,silenced,resolved"}
    ) as r:
        assert r.status == 200
        return list((await r.json())["incidents"])


async def incident(session: aiohttp.ClientSession, server: Any, incident_id: str) -> dict[str, Any]:
    async with session.get(f"http://127.0.0.1:{server.port}/api/incidents/{incident_id}") as r:
        assert r.status == 200
        return dict(await r.json())


def runs(server: Any, result: str) -> float:
    return server.app[METRICS].registry.get_sample_value("receiver_reconcile_runs_total", {"result": result}) or 0.0


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_resolve_alertmanager_never_sent_resolves_by_reconciliation_but_not_while_a_peer_is_down(
    alertmanagers: Alertmanagers, aiohttp_server: Any, database_url: str, session: aiohttp.ClientSession, db: Any
) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhook"
    am_a = alertmanagers("am-a", am_config(hook, send_resolved=False))
    am_b = alertmanagers("am-b", am_config(hook, send_resolved=False))
    for am in (am_a, am_b):
        await am.wait_ready(session)
    server = await start_receiver(aiohttp_server, receiver_config(am_a, am_b), database_url, port)
    started = now() - timedelta(seconds=1)
    for am in (am_a, am_b):  # Prometheus sends to every peer
        await am.post_alerts(session, [am_alert(LABELS, started)])

    async def opened() -> dict[str, Any] | None:
        found = await incidents(session, server)
        return found[0] if found and found[0]["status"] == "open" else None

    inc = await eventually(opened, "the incident to open from Alertmanager's webhook")
    # one peer stops answering (SIGSTOP: its requests time out); the other forgets the alert
    am_b.proc.send_signal(signal.SIGSTOP)
    try:
        await am_a.post_alerts(session, [am_alert(LABELS, started, now())])
        failed_before = runs(server, "peer_error")

        async def failing_for_longer_than_the_grace() -> bool:
            return runs(server, "peer_error") >= failed_before + 4  # 4 runs of >= 1s each: past the 2s grace

        await eventually(failing_for_longer_than_the_grace, "reconcile runs to fail on the stopped peer", 60)
        assert (await incident(session, server, inc["id"]))["status"] == "open"
        assert await db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'alert_resolved'") == 0
    finally:
        am_b.proc.send_signal(signal.SIGCONT)
    await am_b.post_alerts(session, [am_alert(LABELS, started, now())])

    async def resolved() -> dict[str, Any] | None:
        found = await incident(session, server, inc["id"])
        return found if found["status"] == "resolved" else None

    done = await eventually(resolved, "reconciliation to resolve the incident", 60)
    assert done["resolved_by"] == "reconciler"
    [ev] = [e for e in done["events"] if e["type"] == "alert_resolved"]
    assert ev["actor"] == "reconciler"
    assert ev["detail"]["peers"] == [{"url": am_a.url, "alerts": 0}, {"url": am_b.url, "alerts": 0}]
    assert any(e["type"] == "resolved" and e["actor"] == "reconciler" for e in done["events"])
    # Alertmanager never sent the resolve (send_resolved: false): only reconciliation could know
    assert not any(e["actor"] == "alertmanager" and e["type"] == "alert_resolved" for e in done["events"])


async def test_a_firing_alertmanager_could_not_deliver_opens_an_incident_by_reconciliation(
    alertmanagers: Alertmanagers, aiohttp_server: Any, database_url: str, session: aiohttp.ClientSession
) -> None:
    # the webhook points at a port nobody listens on: Alertmanager fails to deliver, and keeps the alert
    am = alertmanagers("am", am_config(f"http://127.0.0.1:{free_port()}/webhook"))
    await am.wait_ready(session)
    await am.post_alerts(session, [am_alert(LABELS, now() - timedelta(minutes=1))])

    async def failed_delivery() -> bool:
        return await am.metric(session, "alertmanager_notifications_failed_total", integration="webhook") > 0

    await eventually(failed_delivery, "Alertmanager to fail delivering the webhook")
    # two replicas reconcile the same database: the incident opens once, with one reconciler event each
    config = receiver_config(am)
    one = await start_receiver(aiohttp_server, config, database_url)
    two = await start_receiver(aiohttp_server, config, database_url)

    async def opened() -> list[dict[str, Any]] | None:
        found = await incidents(session, one)
        return found or None

    [inc] = await eventually(opened, "reconciliation to open the incident")

    def reconciler_events(found: dict[str, Any]) -> list[dict[str, Any]]:
        return [e for e in found["events"] if e["actor"] == "reconciler"]

    events = reconciler_events(await incident(session, two, inc["id"]))
    assert [e["type"] for e in events] == ["opened", "alert_fired"]
    assert events[1]["detail"]["reason"] == "listed firing by Alertmanager but never received as a webhook"

    async def both_ran() -> bool:
        return runs(one, "ok") + runs(two, "ok") >= 4

    await eventually(both_ran, "more reconcile runs")
    assert len(reconciler_events(await incident(session, two, inc["id"]))) == 2  # each event once


async def test_an_incident_silenced_in_alertmanager_stops_paging_until_the_silence_ends(
    alertmanagers: Alertmanagers,
    aiohttp_server: Any,
    database_url: str,
    session: aiohttp.ClientSession,
    fake_slack: FakeSlack,
) -> None:
    port = free_port()
    am = alertmanagers("am", am_config(f"http://127.0.0.1:{port}/webhook"))
    await am.wait_ready(session)
    server = await start_receiver(aiohttp_server, receiver_config(am, slack_url=fake_slack.url), database_url, port)
    await am.post_alerts(session, [am_alert(LABELS, now() - timedelta(seconds=1))])

    async def paged(n: int) -> bool:
        return len(fake_slack.requests) >= n

    await eventually(lambda: paged(3), "the incident to open and escalate")
    silence_ends = now() + timedelta(seconds=8)
    async with session.post(
        f"{am.url}/api/v2/silences",
        json={
            "matchers": [{"name": "alertname", "value": "HighLatency", "isRegex": False, "isEqual": True}],
            "startsAt": rfc3339(now()),
            "endsAt": rfc3339(silence_ends),
            "createdBy": "alice",
            "comment": "maintenance window",
        },
    ) as r:
        assert r.status == 200
        silence_id = (await r.json())["silenceID"]

    async def suppressed() -> dict[str, Any] | None:
        [inc] = await incidents(session, server)
        return inc if inc["suppressed"] else None

    inc = await eventually(suppressed, "the incident to show Alertmanager's silence")
    [shown] = inc["suppressed"]["silences"]
    assert (shown["id"], shown["created_by"], shown["comment"]) == (silence_id, "alice", "maintenance window")
    assert shown["ends_at"] is not None
    pages_when_suppressed = len(fake_slack.requests)
    ok_before = runs(server, "ok")

    async def reconciled_thrice() -> bool:
        return runs(server, "ok") >= ok_before + 3 or now() >= silence_ends

    await eventually(reconciled_thrice, "three more reconcile runs while suppressed")
    if now() < silence_ends:  # (a very slow machine may have let the silence end already)
        # at most one page was already under way when the suppression was recorded
        assert len(fake_slack.requests) <= pages_when_suppressed + 1

    async def unsuppressed() -> bool:
        [inc] = await incidents(session, server)
        return inc["suppressed"] is None

    await eventually(unsuppressed, "the suppression to end with the silence", 60)
    resumed_from = len(fake_slack.requests)
    await eventually(lambda: paged(resumed_from + 2), "paging to resume")
