"""The channels out (receiver/notify/): the registry, and each channel end to end on a real PostgreSQL against a
fake target that is a real server (HTTP, or SMTP for email): what it is sent through an incident's lifecycle, how
its answers are classified, and that its secret (URL, routing key, SMTP password) is never in an error, a log line or
a page (as Alertmanager's AssertNotifyLeaksNoSecret checks its notifiers).

Time is controlled: tests call `tick(now)` and `deliver(now)` themselves (the app runs without loops).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.ingest.alertmanager import parse_notification
from receiver.keys import DELIVERER, ESCALATOR, INGESTOR
from receiver.model import TargetType
from receiver.notify import SendResult, delivery
from receiver.notify.http import MAX_ANSWER_BYTES, post_json
from receiver.notify.registry import NOTIFIERS
from tests.fakes import FakePagerDuty, FakeSMTP, FakeTarget, FakeTeams
from tests.helpers import alert, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
API_TOKEN = "api-token-for-channels"
ROUTING_KEY = "R0UTINGKEY0SECRET0000000000000000"
POLICY = """
api_tokens:
  - name: alice
    token_env: ALICE_TOKEN
delivery:
  timeout: 2s
  initial_backoff: 2s
escalation:
  policies:
    critical:
      steps: [{after: 5m}]
"""


def test_every_channel_has_one_notifier_and_the_deliverer_names_none() -> None:
    assert set(NOTIFIERS) == set(TargetType)
    assert all(cls.type == name for name, cls in NOTIFIERS.items())
    source = inspect.getsource(delivery)
    for channel in TargetType:
        assert f'"{channel}"' not in source and f"'{channel}'" not in source


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("size", [10, MAX_ANSWER_BYTES, MAX_ANSWER_BYTES + 1, 100_000])
async def test_a_channel_reads_an_answer_up_to_its_first_64_kib(aiohttp_server: Any, size: int, chunked: bool) -> None:
    """What `check` sees of an answer: all of it up to MAX_ANSWER_BYTES, then only those first bytes; with a
    Content-Length or without one (chunked: the size is learned by reading)."""
    answer = bytes(range(256)) * (size // 256) + bytes(size % 256)

    async def reply(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not chunked:
            return web.Response(body=answer)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, size, 10_000):
            await resp.write(answer[start : start + 10_000])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/", reply)
    server = await aiohttp_server(app)
    seen: list[tuple[int, bytes]] = []

    def check(status: int, headers: Any, body: bytes, now: datetime) -> SendResult:
        seen.append((status, body))
        return SendResult.ok()

    async with aiohttp.ClientSession() as session:
        result = await post_json(session, str(server.make_url("/")), {"a": 1}, timeout=5, now=T0, check=check)
    assert result == SendResult.ok()
    assert seen == [(200, answer[:MAX_ANSWER_BYTES])]


class Env:
    def __init__(self, client: Any, config: Config):
        self.client, self.config = client, config
        self.app = client.server.app

    async def post(self, body: dict[str, Any], now: datetime) -> None:
        await self.app[INGESTOR].ingest(parse_notification(body), now)

    async def tick(self, now: datetime) -> list[Any]:
        await self.app[ESCALATOR].tick(now)
        return list(await self.app[DELIVERER].deliver(now))

    async def incident(self) -> dict[str, Any]:
        reply = await self.client.get("/api/incidents?status=open,acknowledged,silenced,resolved")
        [inc] = (await reply.json())["incidents"]
        return dict(await (await self.client.get(f"/api/incidents/{inc['id']}")).json())

    async def act(self, incident_id: str, action: str) -> None:
        reply = await self.client.post(
            f"/api/incidents/{incident_id}/{action}", json={}, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert reply.status == 200, await reply.text()


@pytest.fixture
def env(aiohttp_client: Any, database_url: str) -> Any:
    async def make(owner: str, secrets: dict[str, str]) -> Env:
        text = f"external_url: https://receiver.example\nowners:\n  - name: default\n{owner}{POLICY}"
        config = parse_config(text, env={**secrets, "ALICE_TOKEN": API_TOKEN})
        return Env(await aiohttp_client(create_app(config, database_url, loops=False)), config)

    return make


async def lifecycle(e: Env) -> str:
    """Open (with hostile labels), escalate to level 1, resolve; returns the incident id."""
    await e.post(
        payload(
            alert(
                instance="a",
                team="**bold** [x](http://evil.example) <at>everyone</at> @here",
                annotations={"summary": "# heading\n<b>p99</b> is _high_"},
                severity="critical",
            )
        ),
        T0,
    )
    await e.tick(T0)
    await e.tick(T0 + timedelta(minutes=5))
    await e.post(
        payload(
            alert(
                "resolved",
                instance="a",
                ends_at="2026-11-27T10:07:00Z",
                team="**bold** [x](http://evil.example) <at>everyone</at> @here",
                severity="critical",
            )
        ),
        T0 + timedelta(minutes=7),
    )
    await e.tick(T0 + timedelta(minutes=7))
    return str((await e.incident())["id"])


def assert_no_secret(
    fake: FakeTarget | FakeSMTP,
    secret: str,
    e: Env,
    inc: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    listing: str,
) -> None:
    ours = "\n".join(r.getMessage() for r in caplog.records)
    everything = "\n".join([ours, str(inc), listing, repr(e.config)])
    assert secret not in everything
    assert "notify_failed" in str(inc) or "notify_retry" in str(inc)


# --- Microsoft Teams ------------------------------------------------------------------------------------------


@pytest.fixture
async def teams() -> AsyncIterator[FakeTeams]:
    async with FakeTeams() as fake:
        yield fake


TEAMS_OWNER = "    teams_url_env: TEAMS_URL\n"


def text_blocks(value: Any) -> list[str]:
    """Every TextBlock text of a card: where Teams parses Markdown."""
    if isinstance(value, dict):
        own = [value["text"]] if value.get("type") == "TextBlock" else []
        return own + [t for v in value.values() for t in text_blocks(v)]
    if isinstance(value, list):
        return [t for v in value for t in text_blocks(v)]
    return []


async def test_teams_follows_the_lifecycle_with_untrusted_text_only_in_text_runs(env: Any, teams: FakeTeams) -> None:
    e = await env(TEAMS_OWNER, {"TEAMS_URL": teams.url})
    incident_id = await lifecycle(e)
    assert [(p.event, p.level) for p in teams.posts] == [("opened", 0), ("escalated", 1), ("resolved", 0)]
    assert {p.incident_id for p in teams.posts} == {incident_id}
    assert all(r.headers["Content-Type"] == "application/json" for r in teams.requests)
    card = FakeTeams.card(teams.received[0])
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    runs = [i["text"] for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert "# heading\n<b>p99</b> is _high_" in runs  # as it is: a TextRun parses nothing
    for text in text_blocks(card):
        assert not any(c in text for c in "*[]<>_#@"), text
    actions = {a["title"]: a["url"] for a in card["actions"]}
    assert actions["Incident"] == f"https://receiver.example/incidents/{incident_id}"
    assert actions["Acknowledge"].startswith("https://receiver.example/incidents/")
    assert "Acknowledge" not in {a["title"] for a in FakeTeams.card(teams.received[2]).get("actions", [])}


async def test_teams_answers_are_classified(env: Any, teams: FakeTeams, db: Any) -> None:
    e = await env(TEAMS_OWNER, {"TEAMS_URL": teams.url})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    teams.status, teams.body_text = (
        200,
        "Webhook message delivery failed with error: Microsoft Teams endpoint "
        "returned HTTP error 429 with ContextId tcid=0",
    )
    [first] = await e.tick(T0)
    assert (first.status, first.result.error) == ("pending", "HTTP 429 in a 200")
    teams.status, teams.body_text = 400, ""
    [second] = await e.tick(T0 + timedelta(minutes=1))
    assert (second.status, second.result.error) == ("failed", "HTTP 400")
    teams.status = 202
    [third] = await e.tick(T0 + timedelta(minutes=5))
    assert third.status == "delivered" and third.key == "c1:l1"


async def test_teams_url_never_leaks(env: Any, teams: FakeTeams, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    e = await env(TEAMS_OWNER, {"TEAMS_URL": teams.url})
    teams.script = [500, 404]
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(minutes=1))
    inc = await e.incident()
    assert inc["owner"]["targets"] == [{"id": "default/teams", "type": "teams"}]
    listing = await (await e.client.get("/api/incidents")).text()
    assert_no_secret(teams, "teams-secret-sig", e, inc, caplog, listing)


# --- PagerDuty ------------------------------------------------------------------------------------------------


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    async with FakePagerDuty() as fake:
        yield fake


def pd_owner(fake: FakePagerDuty) -> str:
    return f"    pagerduty:\n      routing_key_env: PD_KEY\n      url: {fake.url}\n"


async def test_pagerduty_triggers_and_resolves_one_alert_per_incident(env: Any, pagerduty: FakePagerDuty) -> None:
    e = await env(pd_owner(pagerduty), {"PD_KEY": ROUTING_KEY})
    incident_id = await lifecycle(e)
    events = pagerduty.received
    assert [(ev["event_action"], ev["dedup_key"]) for ev in events] == [
        ("trigger", incident_id),
        ("trigger", incident_id),
        ("resolve", incident_id),
    ]
    assert all(ev["routing_key"] == ROUTING_KEY for ev in events)
    trigger = events[0]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == (
        "Incident opened: GET /notifications/recent::latency: # heading <b>p99</b> is _high_"
    )
    assert trigger["payload"]["source"] == "GET /notifications/recent"
    assert trigger["client_url"] == f"https://receiver.example/incidents/{incident_id}"
    assert events[1]["payload"]["custom_details"]["level"] == 1
    assert events[2] == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": incident_id}


async def test_pagerduty_acknowledging_here_sends_nothing(env: Any, pagerduty: FakePagerDuty) -> None:
    """Documented in the README: an acknowledgement writes no outbox item; escalation stops, the alert stays."""
    e = await env(pd_owner(pagerduty), {"PD_KEY": ROUTING_KEY})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    await e.tick(T0)
    await e.act((await e.incident())["id"], "ack")
    await e.tick(T0 + timedelta(minutes=6))
    assert [ev["event_action"] for ev in pagerduty.received] == ["trigger"]


async def test_pagerduty_answers_are_classified(env: Any, pagerduty: FakePagerDuty) -> None:
    e = await env(pd_owner(pagerduty), {"PD_KEY": ROUTING_KEY})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    pagerduty.script = [429, 500, 400]
    [throttled] = await e.tick(T0)
    assert (throttled.status, throttled.result.retry_after) == ("pending", timedelta(seconds=7))
    [unavailable] = await e.tick(T0 + timedelta(seconds=10))
    assert (unavailable.status, unavailable.result.error) == ("pending", "HTTP 500")
    [invalid] = await e.tick(T0 + timedelta(seconds=30))
    assert (invalid.status, invalid.result.error) == ("failed", "HTTP 400")


async def test_pagerduty_routing_key_never_leaks(
    env: Any, pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    e = await env(pd_owner(pagerduty), {"PD_KEY": ROUTING_KEY})
    pagerduty.script = [500, 400]
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    await e.tick(T0)
    await e.tick(T0 + timedelta(minutes=1))
    inc = await e.incident()
    assert inc["owner"]["targets"] == [{"id": "default/pagerduty", "type": "pagerduty"}]
    listing = await (await e.client.get("/api/incidents")).text()
    assert_no_secret(pagerduty, ROUTING_KEY, e, inc, caplog, listing)


def test_pagerduty_config_refuses_inline_keys_and_bad_urls() -> None:
    from receiver.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config(
            "owners:\n  - name: a\n    pagerduty: {routing_key: abc, url: ftp://x}\n"
            "  - name: b\n    pagerduty: {url: https://events.eu.pagerduty.com/v2/enqueue}\n",
            env={},
        )
    assert e.value.errors == [
        "<string>:3: owners[0].pagerduty.routing_key: secrets are not written in the config; use routing_key_env "
        "or routing_key_file",
        "<string>:3: owners[0].pagerduty.url: expected a URL starting with http:// or https://",
        "<string>:5: owners[1].pagerduty.routing_key_env: pagerduty needs routing_key_env or routing_key_file",
    ]
    assert "abc" not in str(e.value)


# --- email ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def smtp() -> AsyncIterator[FakeSMTP]:
    async with FakeSMTP() as fake:
        yield fake


def email_owner(fake: FakeSMTP, to: str = "[oncall@example.com, lead@example.com]") -> str:
    return f"""    email:
      to: {to}
      from: receiver@example.com
      smtp:
        host: 127.0.0.1
        port: {fake.port}
        starttls: false
        username: receiver
        password_env: SMTP_PASSWORD
"""


async def test_email_follows_the_lifecycle_as_plain_text(env: Any, smtp: FakeSMTP) -> None:
    e = await env(email_owner(smtp), {"SMTP_PASSWORD": smtp.password})
    incident_id = await lifecycle(e)
    assert [(p.event, p.level) for p in smtp.posts] == [("opened", 0), ("escalated", 1), ("resolved", 0)]
    assert {p.incident_id for p in smtp.posts} == {incident_id}
    assert smtp.logins == [("receiver", True)] * 3
    first = smtp.mails[0]
    assert (first.mail_from, first.rcpt_tos) == ("receiver@example.com", ["oncall@example.com", "lead@example.com"])
    assert first.subject == "[CRITICAL] Incident opened: GET /notifications/recent::latency"
    assert first.message["Auto-Submitted"] == "auto-generated" and first.message.get_content_type() == "text/plain"
    assert "# heading\n<b>p99</b> is _high_" in first.body  # as it is: plain text parses nothing
    assert f"Incident: https://receiver.example/incidents/{incident_id}" in first.body
    assert "Acknowledge: https://receiver.example/incidents/" in first.body
    assert smtp.mails[2].subject.startswith("[RESOLVED] Resolved after 7m")
    assert "Acknowledge" not in smtp.mails[2].body


async def test_email_answers_are_classified(env: Any, smtp: FakeSMTP) -> None:
    e = await env(email_owner(smtp), {"SMTP_PASSWORD": smtp.password})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    smtp.script = ["451 4.3.0 try again later", "554 5.6.0 message refused"]
    [transient] = await e.tick(T0)
    assert (transient.status, transient.result.error) == ("pending", "SMTP 451 (data refused)")
    [permanent] = await e.tick(T0 + timedelta(minutes=1))
    assert (permanent.status, permanent.result.error) == ("failed", "SMTP 554 (data refused)")
    # one recipient refused, the other takes it: delivered (a retry would repeat it to the one who has it)
    smtp.refuse = {"lead@example.com": "550 5.1.1 no such user"}
    [partly] = await e.tick(T0 + timedelta(minutes=5))
    assert partly.status == "delivered" and smtp.mails[-1].rcpt_tos == ["oncall@example.com"]


async def test_email_every_recipient_refused_and_no_answer_to_the_data(env: Any, smtp: FakeSMTP) -> None:
    e = await env(email_owner(smtp, to="[oncall@example.com]"), {"SMTP_PASSWORD": smtp.password})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    smtp.refuse = {"oncall@example.com": "450 4.2.1 mailbox busy"}
    [busy] = await e.tick(T0)
    assert (busy.status, busy.result.error, busy.result.unknown) == (
        "pending",
        "SMTP 450 (every recipient refused)",
        False,
    )
    assert smtp.mails == []  # refused before the data: nothing was sent
    smtp.refuse, smtp.script = {}, ["hang"]
    [late] = await e.tick(T0 + timedelta(minutes=1))  # the data went out, the answer did not come in time
    assert (late.status, late.result.unknown, late.metric_result) == ("pending", True, "unknown")
    assert len(smtp.mails) == 1


async def test_email_password_never_leaks(env: Any, smtp: FakeSMTP, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-smtp-password-9876"
    e = await env(email_owner(smtp), {"SMTP_PASSWORD": wrong})
    await e.post(payload(alert(instance="a", severity="critical")), T0)
    [refused] = await e.tick(T0)
    assert (refused.status, refused.result.error) == ("failed", "SMTP 535 (login refused)")
    assert smtp.logins and not any(ok for _, ok in smtp.logins)  # aiosmtplib tries each mechanism offered
    inc = await e.incident()
    assert inc["owner"]["targets"] == [{"id": "default/email", "type": "email"}]
    listing = await (await e.client.get("/api/incidents")).text()
    assert_no_secret(smtp, wrong, e, inc, caplog, listing)


def test_email_config_is_checked() -> None:
    from receiver.config import ConfigError

    with pytest.raises(ConfigError) as e:
        parse_config(
            "owners:\n  - name: a\n    email: {to: [not an address], smtp: {username: u, password: p}}\n", env={}
        )
    assert e.value.errors == [
        "<string>:3: owners[0].email.to: expected an email address such as oncall@example.com",
        "<string>:3: owners[0].email.smtp.password: secrets are not written in the config; use password_env or "
        "password_file",
        "<string>:3: owners[0].email.from: email needs from: the sender's address",
        "<string>:3: owners[0].email.smtp.host: email needs the SMTP server's host",
    ]
