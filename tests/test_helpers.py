"""The suite's own helpers (tests/helpers.py, tests/fakes.py) do what the tests rely on them for."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fakes import FakeSlack, FakeWebhook
from tests.helpers import alert, fingerprint_of, payload


def test_alert_takes_a_label_named_status() -> None:
    a = alert("resolved", labels={"status": "500", "path": "/x"}, instance="a")
    assert a["status"] == "resolved"
    assert a["labels"] == {"alertname": "HighLatency", "method": "GET", "path": "/x", "status": "500", "instance": "a"}
    assert a["fingerprint"] == fingerprint_of(a["labels"])
    assert a["fingerprint"] != alert("resolved", labels={"status": "404", "path": "/x"}, instance="a")["fingerprint"]


def test_keyword_labels_win_over_the_mapping_and_the_defaults() -> None:
    a = alert(labels={"path": "/from-mapping", "team": "x"}, path="/from-keyword")
    assert a["labels"]["path"] == "/from-keyword" and a["labels"]["team"] == "x"
    assert a["status"] == "firing"


async def test_a_label_named_status_reaches_the_incident_as_a_label(client: Any) -> None:
    r = await client.post("/webhook", json=payload(alert(labels={"status": "503"}, instance="a")))
    assert r.status == 200, await r.text()
    (incident,) = (await r.json())["incidents"]
    detail = await (await client.get(f"/api/incidents/{incident['id']}")).json()
    (member,) = detail["alerts"]
    assert member["status"] == "firing"
    assert member["labels"]["status"] == "503"


async def test_fakes_record_on_arrival_and_answer_from_the_script(
    fake_slack: FakeSlack, fake_webhook: FakeWebhook
) -> None:
    fake_slack.script = [500, 429]
    message = {"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "Escalated to x"}}]}
    async with aiohttp.ClientSession() as session:
        for expected in (500, 429, 200):
            async with session.post(fake_slack.url, json=message) as r:
                assert r.status == expected
                assert (r.headers.get("Retry-After") == "7") == (expected == 429)
        async with session.post(
            fake_webhook.url, json={"event": "resolved", "level": 2, "incident": {"id": "i-1", "incident_key": "k"}}
        ) as r:
            assert r.status == 200
    assert fake_slack.headlines() == ["Escalated to x"] * 3
    assert [p.answered for p in fake_slack.posts] == [500, 429, 200]
    assert fake_slack.delivered() == {(None, "escalated", -1): 1}
    assert len(fake_slack.failed()) == 2
    assert fake_webhook.delivered() == {("i-1", "resolved", 2): 1}
    assert fake_webhook.requests[0].path == fake_webhook.path
