"""POST /webhook/grafana over real HTTP on a real PostgreSQL: a Grafana alert opens, joins and resolves incidents
exactly as the same alert from Alertmanager does; the webhook's credentials and body limit guard this route
too; a body that can never be valid is a 400 with a JSON reason; the page shows Grafana's links, escaped.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import re
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import parse_config
from tests.conftest import DATA
from tests.fakes import FakeSlack
from tests.helpers import alert, eventually, payload

ROUTE = "/webhook/grafana"
KEY = "GET /api/items/{id}::latency"
TABLES = ("incidents", "incident_alerts", "incident_events")
TOKEN_CONFIG = "webhook:\n  token_env: T\n"
BASIC_CONFIG = "webhook:\n  basic_auth:\n    username: grafana\n    password_env: P\n"


def grafana(status: str = "firing", **alert_fields: Any) -> dict[str, Any]:
    """The recorded Grafana 11 payload (one alert with dashboard, panel, silence and image links)."""
    data: dict[str, Any] = json.loads((DATA / "grafana-11-firing-links.json").read_text())
    a = data["alerts"][0]
    if status == "resolved":
        a.update(status="resolved", endsAt="2026-11-27T22:03:00Z")
        data.update(status="resolved", state="ok", title="[RESOLVED] HighLatency api (GET /api/items/{id} critical)")
    a.update(alert_fields)
    return data


async def counts(db: Any) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


async def post(client: Any, path: str, body: Any, **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, data=data, headers={"Content-Type": "application/json", **headers})


async def ok(resp: Any) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == 200, text
    result: dict[str, Any] = json.loads(text)
    return result


async def test_a_grafana_alert_opens_the_incident_an_alertmanager_alert_with_its_labels_joins(
    client: Any, db: Any
) -> None:
    reply = await ok(await post(client, ROUTE, grafana()))
    (opened,) = reply["incidents"]
    assert opened["incident_key"] == KEY and opened["action"] == "opened"
    assert reply["alerts"]["new"] == 1 and reply["alerts"]["invalid"] == 0

    labels = grafana()["alerts"][0]["labels"]
    same = alert(labels=labels, fingerprint="f00dfeedf00dfeed")  # the same rule's alert through Alertmanager
    (joined,) = (await ok(await post(client, "/webhook", payload(same))))["incidents"]
    assert joined == {"id": opened["id"], "incident_key": KEY, "action": "updated"}

    events = [(r["type"], r["actor"]) for r in await db.fetch("SELECT type, actor FROM incident_events ORDER BY id")]
    assert events == [("opened", "grafana"), ("alert_fired", "grafana"), ("alert_fired", "alertmanager")]
    row = await db.fetchrow("SELECT route, kind, severity, status FROM incidents")
    assert dict(row) == {"route": "GET /api/items/{id}", "kind": "latency", "severity": "critical", "status": "open"}
    members = {r["fingerprint"]: r for r in await db.fetch("SELECT * FROM incident_alerts")}
    assert set(members) == {"e6349a25f5ef0e9e", "f00dfeedf00dfeed"}
    stored = members["e6349a25f5ef0e9e"]
    assert stored["annotations"]["panel_url"].endswith("&viewPanel=2")
    assert stored["annotations"]["value"] == "A=0.7315, B=0.7315, C=1"
    assert stored["generator_url"].startswith("https://grafana.example/alerting/grafana/")


async def test_the_same_key_as_alertmanager_on_a_database_of_its_own(
    make_database: Any, aiohttp_client: Any, config: Any
) -> None:
    """Each sender alone, on its own database, names the incident the same."""
    labels = grafana()["alerts"][0]["labels"]
    # (make_database first: its databases are dropped after the apps have stopped)
    from_grafana = await aiohttp_client(create_app(config, make_database(), loops=False))
    from_am = await aiohttp_client(create_app(config, make_database(), loops=False))
    (g,) = (await ok(await post(from_grafana, ROUTE, grafana())))["incidents"]
    (a,) = (await ok(await post(from_am, "/webhook", payload(alert(labels=labels)))))["incidents"]
    assert g["incident_key"] == a["incident_key"] == KEY


async def test_grafanas_resolve_resolves_the_incident_and_repeats_are_duplicates(client: Any, db: Any) -> None:
    (opened,) = (await ok(await post(client, ROUTE, grafana())))["incidents"]
    again = await ok(await post(client, ROUTE, grafana()))  # Grafana re-sends the group at its repeat interval
    assert again["alerts"]["duplicate"] == 1 and again["alerts"]["new"] == 0

    (resolved,) = (await ok(await post(client, ROUTE, grafana("resolved"))))["incidents"]
    assert resolved == {"id": opened["id"], "incident_key": KEY, "action": "resolved"}
    row = await db.fetchrow("SELECT status, resolved_at FROM incidents")
    assert row["status"] == "resolved" and row["resolved_at"] is not None
    member = await db.fetchrow("SELECT status, ends_at FROM incident_alerts")
    assert member["status"] == "resolved" and member["ends_at"].isoformat() == "2026-11-27T22:03:00+00:00"
    types = [r["type"] for r in await db.fetch("SELECT type FROM incident_events ORDER BY id")]
    assert types[0] == "opened" and types[-2:] == ["alert_resolved", "resolved"]


async def test_a_firing_with_resolved_grafana_9_payload_acts_per_alert(client: Any, db: Any) -> None:
    body = (DATA / "grafana-9-firing-with-resolved.json").read_bytes()
    reply = await ok(await post(client, ROUTE, body))
    assert reply["alerts"]["received"] == 3
    # the firing alert opens its incident; the two resolves of alerts never seen open nothing
    assert [i["incident_key"] for i in reply["incidents"]] == ["worker::error_rate"]
    assert (await counts(db))["incidents"] == 1


# --- authentication and limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-credentials"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-token"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"grafana:tok").decode()}, id="basic-not-configured"
        ),
    ],
)
async def test_a_token_is_required_on_the_grafana_route(make_client: Any, db: Any, headers: dict[str, str]) -> None:
    client = await make_client(parse_config(TOKEN_CONFIG, env={"T": "tok"}))
    resp = await post(client, ROUTE, grafana(), **headers)
    assert resp.status == 401
    assert (await resp.json()) == {"error": "missing or wrong credentials"}
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="receiver"'
    assert await counts(db) == dict.fromkeys(TABLES, 0)
    # Grafana's "Authorization header" setting (scheme Bearer) sends exactly this
    await ok(await post(client, ROUTE, grafana(), Authorization="Bearer tok"))


async def test_basic_auth_as_grafanas_contact_point_sends_it(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config(BASIC_CONFIG, env={"P": "s3cret"}))
    assert (await post(client, ROUTE, grafana())).status == 401
    wrong = base64.b64encode(b"grafana:nope").decode()
    assert (await post(client, ROUTE, grafana(), Authorization=f"Basic {wrong}")).status == 401
    right = base64.b64encode(b"grafana:s3cret").decode()
    await ok(await post(client, ROUTE, grafana(), Authorization=f"Basic {right}"))
    assert (await counts(db))["incidents"] == 1


async def test_the_webhook_body_limit_guards_the_grafana_route(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config("webhook:\n  max_body_bytes: 1000\n", env={}))
    resp = await post(client, ROUTE, grafana())  # ~3 KB
    assert resp.status == 413
    assert "at most 1000" in (await resp.json())["error"]
    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def test_a_stranger_on_the_grafana_route_gets_401_before_100_continue(make_client: Any, db: Any) -> None:
    client = await make_client(parse_config(TOKEN_CONFIG, env={"T": "tok"}))
    resp = await client.post(
        ROUTE, data=json.dumps(grafana()).encode(), expect100=True, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    assert await counts(db) == dict.fromkeys(TABLES, 0)


# --- bad bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"{not json", "not valid JSON", id="not-json"),
        pytest.param(
            json.dumps(payload(alert())).encode(), 'unsupported "version" \'4\'; expected "1"', id="alertmanager-body"
        ),
        pytest.param(
            json.dumps({k: v for k, v in grafana().items() if k != "version"}).encode(),
            'missing "version"',
            id="no-version",
        ),
        pytest.param(json.dumps(grafana() | {"orgId": "one"}).encode(), '"orgId" must be an integer', id="org-id"),
        pytest.param(json.dumps(grafana(panelURL=7)).encode(), '"panelURL" must be a string', id="panel-url-type"),
        pytest.param(
            json.dumps(grafana(values={"A": "high"})).encode(),
            '"values" must be an object of numbers',
            id="values-type",
        ),
    ],
)
async def test_a_bad_body_is_400_with_a_json_reason_and_writes_nothing(
    client: Any, db: Any, body: bytes, reason: str
) -> None:
    resp = await post(client, ROUTE, body)
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert reason in (await resp.json())["error"]
    assert await counts(db) == dict.fromkeys(TABLES, 0)


async def test_one_bad_alert_among_good_ones_is_reported_and_the_rest_stored(client: Any, db: Any) -> None:
    data = grafana()
    bad = copy.deepcopy(data["alerts"][0]) | {"fingerprint": "badbadbadbadbad0", "imageURL": ["x"]}
    data["alerts"].append(bad)
    reply = await ok(await post(client, ROUTE, data))
    assert reply["alerts"]["invalid"] == 1 and reply["alerts"]["new"] == 1
    reason = '"imageURL" must be a string'
    assert reply["invalid"] == [{"index": 1, "fingerprint": "badbadbadbadbad0", "reason": reason}]


# --- the page --------------------------------------------------------------------------------------------


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]


async def test_the_page_shows_grafanas_links_escaped(client: Any, db: Any) -> None:
    hostile_panel = 'https://grafana.example/d/x?orgId=1&viewPanel=2&q="><script>alert(1)</script>'
    body = grafana(panelURL=hostile_panel, annotations={"summary": "<b>p99</b> & more"})
    (opened,) = (await ok(await post(client, ROUTE, body)))["incidents"]
    resp = await client.get(f"/incidents/{opened['id']}")
    page = await resp.text()
    assert resp.status == 200, page[:300]
    evidence = page[page.index('id="ev-h"') : page.index('id="al-h"')]

    dashboard = (
        "https://grafana.example/d/ece9fb32-7f71-4be9-bd94-2f23608ae5b9?from=1795812480000&orgId=1&to=1795816200000"
    )
    links = hrefs(evidence)
    assert dashboard in links  # the link works: & in the href is &amp; in the source
    assert dashboard.replace("&", "&amp;") in evidence
    assert hostile_panel in links
    assert "<script>alert(1)</script>" not in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in evidence
    assert "https://grafana.example/public/img/attachments/9BOpEsbcQmfXcVOtPWni.png" in links
    silence = "https://grafana.example/alerting/silence/new?alertmanager=grafana&matcher=alertname%3DHighLatency"
    assert any(h.startswith(silence) for h in links)
    assert "the alert&#39;s panel" in evidence and "panel screenshot" in evidence
    assert "&lt;b&gt;p99&lt;/b&gt; &amp; more" in evidence
    # Grafana's root URL is not an Alertmanager: no "these alerts · new silence" links into it
    assert "/#/silences/new" not in page and "/#/alerts" not in page


async def test_a_javascript_link_from_an_annotation_stays_text(client: Any, db: Any) -> None:
    """Grafana's own fields are checked when parsed; an annotation of the same name is checked when shown."""
    body = grafana(
        annotations={"panel_url": "javascript:alert('panel')", "image_url": "data:text/html,x"},
        panelURL="",
        imageURL="",
    )
    (opened,) = (await ok(await post(client, ROUTE, body)))["incidents"]
    page = await (await client.get(f"/incidents/{opened['id']}")).text()
    assert not [h for h in hrefs(page) if h.lower().startswith(("javascript:", "data:"))]
    assert "javascript:alert(&#39;panel&#39;)" in page  # shown, as text


# --- Slack -----------------------------------------------------------------------------------------------


async def test_slack_offers_grafanas_panel_as_the_dashboard_button(
    fake_slack: FakeSlack, aiohttp_client: Any, database_url: str
) -> None:
    config = parse_config("", env={"RECEIVER_SLACK_WEBHOOK_URL": fake_slack.url})
    client = await aiohttp_client(create_app(config, database_url))
    await ok(await post(client, ROUTE, grafana(annotations={"summary": "p99 <!here> high"})))

    async def message() -> dict[str, Any] | None:
        return fake_slack.received[0] if fake_slack.received else None

    sent = await eventually(message, "the opened incident's Slack message")
    buttons = {e["text"]["text"]: e["url"] for b in sent["blocks"] if b["type"] == "actions" for e in b["elements"]}
    panel = grafana()["alerts"][0]["panelURL"]
    assert buttons["Dashboard"] == panel
    assert buttons["Graph"] == grafana()["alerts"][0]["generatorURL"]
    assert "<!here>" not in json.dumps(sent)  # the summary is escaped as any annotation is


async def test_grafana_requests_are_counted_as_webhook_requests(client: Any, db: Any) -> None:
    await ok(await post(client, ROUTE, grafana()))
    assert (await post(client, ROUTE, b"{not json")).status == 400
    text = await (await client.get("/metrics")).text()
    counted = dict(re.findall(r'^receiver_webhook_requests_total\{code="(\d+)"\} (\S+)$', text, re.MULTILINE))
    assert float(counted["200"]) == 1 and float(counted["400"]) == 1
