"""Scenario 6 of issue 7: security.

- the webhook without a token, with a wrong token or a wrong scheme: 401 and nothing written;
- lifecycle actions without a user (JSON API and status page): 401; signed links with a forged signature: 403;
- page actions with a missing or wrong CSRF token, or from a foreign Origin/Referer: 403, nothing changes;
- SQL-injection strings in labels are stored verbatim (read back through the API) and every table survives;
- markup in labels is escaped on every page (list, detail, link, error) and is plain data in the JSON API;
- no secret (webhook token, API token, Slack and webhook URL paths, the user's password and its hash, the
  link-signing secret) appears in any log line (DEBUG and up, except the fake Slack's own access log),
  page, API reply or error reply produced by any of the above, including failed Slack deliveries (500,
  404, refused connection, timeout) run by hand with `tick(now)` and `deliver(now)`.

Every test runs on its own app and database; the `env` fixture records every reply and checks the
secrets after the test.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web

from receiver.app import create_app
from receiver.config import parse_config
from receiver.keys import DELIVERER, ESCALATOR, LINK_SECRET
from receiver.links import link_path, sign
from receiver.model import clean_text
from receiver.web.users import SESSION_COOKIE, csrf_token, hash_password
from tests.fakes import FakeSlack, Received
from tests.helpers import alert, deadline, payload
from tests.reliability.conftest import TOKEN

TABLES = ("incidents", "incident_alerts", "incident_events", "notifications")


def _hex() -> str:
    return secrets.token_hex(12)


# --- the environment: app, fake Slack, recorded replies, captured logs -------------------------------------


@dataclass
class Reply:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Env:
    client: Any
    app: web.Application
    db: Any
    secrets: dict[str, str]
    slack: FakeSlack
    replies: list[Reply] = field(default_factory=list)

    @property
    def slack_received(self) -> list[dict[str, Any]]:
        return [{"path": r.path, "body": r.json()} for r in self.slack.requests]

    @property
    def host(self) -> str:
        return f"{self.client.host}:{self.client.port}"

    async def request(self, method: str, path: str, *, cookie: str | None = None, **kwargs: Any) -> Reply:
        """One request with no cookie but the one given; the reply is recorded for the secrets check."""
        self.client.session.cookie_jar.clear()
        headers = dict(kwargs.pop("headers", None) or {})
        if cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
        resp = await self.client.request(method, path, headers=headers, allow_redirects=False, **kwargs)
        body = (await resp.read()).decode("utf-8", "replace")
        reply = Reply(method, path, resp.status, {k: v for k, v in resp.headers.items()}, body)
        self.replies.append(reply)
        return reply

    def webhook_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets['webhook token']}"}

    def api_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets['API token']}"}

    def user_auth(self, user: str = "alice", password: str | None = None) -> dict[str, str]:
        pw = self.secrets["user password"] if password is None else password
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}

    async def ingest(self, *alerts: dict[str, Any], **extra: Any) -> dict[str, Any]:
        reply = await self.request("POST", "/webhook", json=payload(*alerts, **extra), headers=self.webhook_auth())
        assert reply.status == 200, reply.body
        return json.loads(reply.body)

    async def incident_id(self, *alerts: dict[str, Any], **extra: Any) -> str:
        data = await self.ingest(*alerts, **extra)
        return data["incidents"][0]["id"]

    async def counts(self) -> dict[str, int]:
        return {t: await self.db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}

    async def status_of(self, incident_id: str) -> str:
        return await self.db.fetchval("SELECT status FROM incidents WHERE id = $1", uuid.UUID(incident_id))

    async def session(self, incident_id: str, user: str = "alice", cookie: str | None = None) -> tuple[str, str]:
        """Open the incident page as `user` (presenting `cookie` as the session, if given): (the session
        cookie the page set, or the one presented when it set none; the form's CSRF token)."""
        self.client.session.cookie_jar.clear()
        headers = self.user_auth(user)
        if cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
        resp = await self.client.get(f"/incidents/{incident_id}", headers=headers)
        body = await resp.text()
        self.replies.append(Reply("GET", f"/incidents/{incident_id}", resp.status, dict(resp.headers), body))
        assert resp.status == 200, body[:300]
        sid = resp.cookies[SESSION_COOKIE].value if SESSION_COOKIE in resp.cookies else cookie
        assert sid
        m = re.search(r'name="csrf" value="([^"]+)"', body)
        assert m, "the incident page has no CSRF field"
        return sid, m.group(1)


SLACK_STATUS = {"B500": 500, "B404": 404}


class StatusSlack(FakeSlack):
    """Answers by the URL's workspace part: /services/T0/B500/... 500, B404 404, Bslow 200 after 3 s."""

    async def reply(self, received: Received) -> int:
        kind = received.path.split("/")[3]
        if kind == "Bslow":
            await self.wait_stopping(3)
            return 200
        return SLACK_STATUS.get(kind, 500)


@pytest.fixture
async def env(aiohttp_client: Any, database_url: str, db: Any, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Env]:
    caplog.set_level(logging.DEBUG)
    slack = await StatusSlack().start()
    base = slack.base_url
    password = "pw-" + _hex()
    values = {
        "webhook token": "wh-" + _hex(),
        "API token": "api-" + _hex(),
        "user password": password,
        "user password hash": hash_password(password),
        "Slack URL path (500)": f"/services/T0/B500/{_hex()}",
        "Slack URL path (404)": f"/services/T0/B404/{_hex()}",
        "Slack URL path (slow)": f"/services/T0/Bslow/{_hex()}",
        "webhook URL path (refused)": f"/hooks/{_hex()}",
    }
    environ = {
        "WH": values["webhook token"],
        "API": values["API token"],
        "SLACK_500": base + values["Slack URL path (500)"],
        "SLACK_404": base + values["Slack URL path (404)"],
        "SLACK_SLOW": base + values["Slack URL path (slow)"],
        "HOOK_DOWN": "http://127.0.0.1:9" + values["webhook URL path (refused)"],  # discard port: refused
    }
    config = parse_config(
        f"""
external_url: http://receiver.test
webhook:
  token_env: WH
api_tokens:
  - name: robot
    token_env: API
ui:
  users:
    - name: alice
      password_hash: "{values["user password hash"]}"
    - name: bob
      password_hash: "{values["user password hash"]}"
owners:
  - name: default
    slack_url_env: SLACK_500
  - name: team404
    slack_url_env: SLACK_404
    match: {{team: "404"}}
  - name: teamdown
    webhooks:
      - url_env: HOOK_DOWN
    match: {{team: "down"}}
  - name: teamslow
    slack_url_env: SLACK_SLOW
    match: {{team: "slow"}}
delivery:
  timeout: 500ms
""",
        env=environ,
    )
    app = create_app(config, database_url, loops=False)
    client = await aiohttp_client(app)
    values["link-signing secret"] = app[LINK_SECRET]
    e = Env(client, app, db, values, slack)
    try:
        yield e
    finally:
        await slack.stop()
    # caplog.records is the current phase's (teardown) only: look at all three
    _assert_no_secret(e, [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records])


def _assert_no_secret(e: Env, records: list[logging.LogRecord]) -> None:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = [formatter.format(r) for r in records]
    found = []
    for name, value in e.secrets.items():
        for line in lines:
            if value in line:
                found.append(f"{name} in a log line: {line[:300]}")
        for r in e.replies:
            where = f"{r.method} {r.path} -> {r.status}"
            if value in r.body:
                found.append(f"{name} in the reply to {where}")
            for k, v in r.headers.items():
                if value in v:
                    found.append(f"{name} in header {k} of the reply to {where}")
        if name != "link-signing secret" and not name.startswith(("Slack URL", "webhook URL")):
            for m in e.slack_received:
                if value in json.dumps(m):
                    found.append(f"{name} in a message sent to Slack")
    assert e.replies, "no reply was recorded"
    assert not found, "\n".join(found)


# --- the webhook ---------------------------------------------------------------------------------------------


async def test_webhook_requires_the_token(env: Env) -> None:
    s = env.secrets
    wrong = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {s['webhook token']}x"},
        {"Authorization": f"Bearer {s['webhook token'][:-1]}"},
        {"Authorization": f"Bearer {s['webhook token'].upper()}"},
        {"Authorization": f"Bearer {s['API token']}"},  # an API token is not the webhook's
        {"Authorization": s["webhook token"]},  # no scheme
        {"Authorization": f"Token {s['webhook token']}"},  # wrong scheme
        {"Authorization": f"Bearer{s['webhook token']}"},
        {"Authorization": "Basic " + base64.b64encode(f"x:{s['webhook token']}".encode()).decode()},
        env.user_auth(),  # a status-page user is not the webhook
        {"Authorization": "Bearer " + "A" * 4000},
    ]
    for headers in wrong:
        reply = await env.request("POST", "/webhook", json=payload(alert()), headers=headers)
        assert reply.status == 401, (headers, reply.status, reply.body)
        assert json.loads(reply.body)["error"]
        assert reply.headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert await env.counts() == dict.fromkeys(TABLES, 0), headers
    # a body that would be refused anyway is still a 401 first: nothing is parsed without the token
    reply = await env.request("POST", "/webhook", data=b"[" * 50_000, headers={"Authorization": "Bearer x"})
    assert reply.status == 401
    assert (await env.request("POST", "/webhook", json=payload(alert()), headers=env.webhook_auth())).status == 200
    assert (await env.counts())["incidents"] == 1


# --- actions without a user ----------------------------------------------------------------------------------


async def test_actions_need_a_user(env: Env) -> None:
    incident = await env.incident_id(alert(path="/auth"))
    s = env.secrets
    not_api_users = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {s['webhook token']}"},  # the webhook token cannot act
        {"Authorization": f"Basic {s['API token']}"},
        {"Authorization": s["API token"]},
        env.user_auth(),  # the JSON API takes API tokens, not passwords
    ]
    for headers in not_api_users:
        for action in ("ack", "resolve", "silence", "unack", "unsilence"):
            reply = await env.request(
                "POST", f"/api/incidents/{incident}/{action}", headers=headers, json={"duration": "1h", "reason": "r"}
            )
            assert reply.status == 401, (headers, action, reply.body)
    not_page_users = [
        {},
        env.user_auth(password="wrong"),
        env.user_auth(user="mallory"),
        env.user_auth(password=""),
        {"Authorization": f"Bearer {s['API token']}"},
        {"Authorization": "Basic !!!"},
    ]
    for headers in not_page_users:
        reply = await env.request("POST", f"/incidents/{incident}/actions/ack", headers=headers, data={"csrf": "x"})
        assert reply.status == 401, (headers, reply.status)
        assert reply.headers.get("WWW-Authenticate", "").startswith("Basic")
        for path in ("/", f"/incidents/{incident}"):  # viewing needs sign-in once users exist
            assert (await env.request("GET", path, headers=headers)).status == 401
    # a signed link with a forged signature, an expired one, or one for another action does nothing
    now = datetime.now(UTC)
    exp, good_sig = sign(s["link-signing secret"], uuid.UUID(incident), "ack", now + timedelta(hours=1))
    _, forged = sign("not-the-secret", uuid.UUID(incident), "ack", now + timedelta(hours=1))
    old_exp, old_sig = sign(s["link-signing secret"], uuid.UUID(incident), "ack", now - timedelta(seconds=1))
    for form in (
        {"exp": str(exp), "sig": forged},
        {"exp": str(exp + 1), "sig": good_sig},
        {"exp": str(old_exp), "sig": old_sig},
        {"exp": "x", "sig": "y"},
        {},
    ):
        reply = await env.request("POST", f"/incidents/{incident}/ack-link", data=form)
        assert reply.status == 403, (form, reply.status)
    assert await env.status_of(incident) == "open"
    assert await env.db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'acknowledged'") == 0
    # the right credentials work
    reply = await env.request("POST", f"/api/incidents/{incident}/ack", headers=env.api_auth())
    assert reply.status == 200, reply.body
    assert json.loads(reply.body)["acknowledged_by"] == "robot"


# --- CSRF ---------------------------------------------------------------------------------------------------------


async def test_page_actions_need_the_csrf_token_and_our_origin(env: Env) -> None:
    incident = await env.incident_id(alert(path="/csrf"))
    sid, token = await env.session(incident)
    other_sid, other_token = await env.session(incident)
    assert sid != other_sid and token != other_token
    origin = f"http://{env.host}"
    user = env.user_auth()
    path = f"/incidents/{incident}/actions/ack"
    refused: list[tuple[str, dict[str, str], str | None, dict[str, str]]] = [
        ("no token", {}, sid, {"Origin": origin}),
        ("empty token", {"csrf": ""}, sid, {"Origin": origin}),
        ("wrong token", {"csrf": "0" * 64}, sid, {"Origin": origin}),
        ("token of another session", {"csrf": other_token}, sid, {"Origin": origin}),
        ("token signed with another secret", {"csrf": csrf_token("guess", sid, "alice")}, sid, {"Origin": origin}),
        ("no session cookie", {"csrf": token}, None, {"Origin": origin}),
        ("a forged session cookie", {"csrf": token}, "A" * 32, {"Origin": origin}),
        ("foreign Origin", {"csrf": token}, sid, {"Origin": "http://evil.example"}),
        ("foreign Origin, our port", {"csrf": token}, sid, {"Origin": f"http://evil.example:{env.client.port}"}),
        ("Origin: null", {"csrf": token}, sid, {"Origin": "null"}),
        ("our host as a subdomain", {"csrf": token}, sid, {"Origin": f"http://{env.host}.evil.example"}),
        ("our host with a userinfo", {"csrf": token}, sid, {"Origin": f"http://{env.host}@evil.example"}),
        ("another port", {"csrf": token}, sid, {"Origin": f"http://{env.client.host}:1"}),
        ("foreign Referer", {"csrf": token}, sid, {"Referer": "http://evil.example/incidents"}),
        ("cross-site fetch", {"csrf": token}, sid, {"Sec-Fetch-Site": "cross-site"}),
        ("same-site fetch", {"csrf": token}, sid, {"Sec-Fetch-Site": "same-site"}),
    ]
    for name, form, cookie, headers in refused:
        reply = await env.request("POST", path, data=form, cookie=cookie, headers={**user, **headers})
        assert reply.status == 403, (name, reply.status, reply.body[:300])
        assert "text/html" in reply.headers.get("Content-Type", "")
        assert await env.status_of(incident) == "open", name
    # a silence needs the token too, whatever else the form carries
    reply = await env.request(
        "POST",
        f"/incidents/{incident}/actions/silence",
        cookie=sid,
        data={"duration": "1h", "reason": "x"},
        headers={**user, "Origin": origin},
    )
    assert reply.status == 403
    assert await env.db.fetchval("SELECT count(*) FROM incident_events WHERE actor = 'alice'") == 0
    # the page's own form, from our origin, works
    reply = await env.request("POST", path, data={"csrf": token}, cookie=sid, headers={**user, "Origin": origin})
    assert reply.status == 303, reply.body[:300]
    assert await env.status_of(incident) == "acknowledged"
    assert await env.db.fetchval("SELECT acknowledged_by FROM incidents WHERE id = $1", uuid.UUID(incident)) == "alice"


# --- SQL injection ------------------------------------------------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE incidents;--",
    "' OR 1=1 --",
    "' OR '1'='1",
    '"; DROP TABLE incident_alerts; --',
    "1; DELETE FROM incident_events WHERE true; --",
    "' UNION SELECT id, incident_key FROM incidents --",
    "$1",
    "$$; DROP TABLE notifications; $$",
    "\\'; TRUNCATE incidents CASCADE; --",
    "%s%s%s%n",
    '{"$ne": null}',
    "pg_sleep(10)--",
]


async def test_sql_injection_strings_are_stored_verbatim(env: Env) -> None:
    ids: dict[str, str] = {}
    for i, s in enumerate(INJECTIONS):
        a = alert(
            path=f"/{s}",
            kind=s,
            alertname=s,
            note=s,
            fingerprint=f"sqli-{i}",
            annotations={"summary": s, "description": s},
            labels={f"k{i}{s}": s},
        )
        data = await env.ingest(a, externalURL=f"http://am/{s}", groupKey=s, receiver=s)
        ids[s] = data["incidents"][0]["id"]
    for t in TABLES:
        assert await env.db.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{t}"), t
    assert await env.db.fetchval("SELECT count(*) FROM incidents") == len(INJECTIONS)
    assert await env.db.fetchval("SELECT count(*) FROM incident_alerts") == len(INJECTIONS)
    for i, s in enumerate(INJECTIONS):
        reply = await env.request("GET", f"/api/incidents/{ids[s]}", headers=env.api_auth())
        assert reply.status == 200, reply.body
        data = json.loads(reply.body)
        assert data["route"] == f"GET /{s}" and data["kind"] == s
        assert data["incident_key"] == f"GET /{s}::{s}"
        [member] = data["alerts"]
        assert member["labels"]["note"] == member["labels"][f"k{i}{s}"] == member["labels"]["alertname"] == s
        assert member["annotations"] == {"summary": s, "description": s}
        assert member["fingerprint"] == f"sqli-{i}"
        if "," not in s:  # a filter is a comma-separated list
            listed = await env.request("GET", "/api/incidents", params={"route": f"GET /{s}"}, headers=env.api_auth())
            assert [x["id"] for x in json.loads(listed.body)["incidents"]] == [ids[s]], s
            listed = await env.request("GET", "/api/incidents", params={"kind": s}, headers=env.api_auth())
            assert [x["id"] for x in json.loads(listed.body)["incidents"]] == [ids[s]], s
            page = await env.request("GET", "/", params={"route": f"GET /{s}"}, headers=env.user_auth())
            assert page.status == 200
            assert [i for i in ids.values() if f"/incidents/{i}" in page.body] == [ids[s]], s
    # filters made of injections match only what equals them, and break nothing
    for s in INJECTIONS:
        for name in ("route", "kind", "severity", "status"):
            reply = await env.request("GET", "/api/incidents", params={name: s}, headers=env.api_auth())
            assert reply.status in (200, 400), (name, s, reply.status)
            if reply.status == 200:
                found = [x["id"] for x in json.loads(reply.body)["incidents"]]
                assert found == ([ids[s]] if name == "kind" and "," not in s else []), (name, s)
        assert (await env.request("GET", "/", params={"owner": s}, headers=env.user_auth())).status == 200
    # an action with an injection as silence reason is stored as text
    s = INJECTIONS[0]
    reply = await env.request(
        "POST", f"/api/incidents/{ids[s]}/silence", headers=env.api_auth(), json={"duration": "1h", "reason": s}
    )
    assert reply.status == 200, reply.body
    assert json.loads(reply.body)["silence_reason"] == s
    for t in TABLES:
        assert await env.db.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{t}"), t
    assert await env.db.fetchval("SELECT count(*) FROM incidents") == len(INJECTIONS)


# --- markup -----------------------------------------------------------------------------------------------------

XSS = {
    "path": '/<script>alert("xss-path")</script>',
    "kind": "<img src=x onerror=alert('xss-kind')>",
    "alertname": "</title><script>alert('xss-alertname')</script>",
    "service": '"><svg onload=alert("xss-attr")>',
    "instance": "<iframe src=javascript:alert('xss-frame')>",
    "<b onmouseover=alert('xss-key')>": "key",
}
XSS_ANNOTATIONS = {
    "summary": "<script>alert('xss-summary')</script>",
    "description": "</p><style>*{display:none}</style><p>",
    "runbook_url": "javascript:alert('xss-runbook')",
    "dashboard_url": "JaVaScRiPt:alert('xss-dashboard')",
    "sentry_url": "data:text/html,<script>alert('xss-sentry')</script>",
}
RAW_MARKUP = [
    "<script>alert(",
    "<img src=x",
    "<svg onload",
    "<iframe",
    "<b onmouseover",
    "<style>",
    "</title><script",
    "onerror=alert('xss-kind')>",
]


class _Tags(HTMLParser):
    """Every real tag of a page: what the browser would build, as opposed to escaped text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if (
                name in ("href", "src", "action", "formaction")
                and value
                and re.match(r"\s*(javascript|data|vbscript):", value, re.I)
            ):
                self.problems.append(f"<{tag} {name}={value[:40]!r}>")
        if tag in ("iframe", "img", "svg", "style", "object", "embed", "b"):
            self.problems.append(f"<{tag}>")
        if tag == "script":
            src = dict(attrs).get("src") or ""
            if not src.startswith("/static/"):
                self.problems.append(f"<script src={src!r}>")
            self.in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.problems.append(f"inline script {data[:40]!r}")


def assert_escaped(reply: Reply, *, expect_data: bool = True) -> None:
    where = f"{reply.method} {reply.path} -> {reply.status}"
    for raw in RAW_MARKUP:
        assert raw not in reply.body, f"unescaped {raw!r} in {where}"
    if "text/html" in reply.headers.get("Content-Type", ""):
        tags = _Tags()
        tags.feed(reply.body)
        tags.close()
        assert not tags.problems, f"{where}: {tags.problems}"
    if expect_data:
        assert "&lt;script&gt;alert(" in reply.body, f"the hostile data is not shown (escaped) in {where}"


async def test_markup_in_labels_is_escaped_on_every_page(env: Env) -> None:
    a = alert(annotations=XSS_ANNOTATIONS, generator_url="javascript:alert('xss-generator')", labels=XSS)
    incident = await env.incident_id(a, externalURL="javascript:alert('xss-external')")
    sid, token = await env.session(incident)
    user = env.user_auth()
    pages = [
        await env.request("GET", "/", headers=user),
        await env.request("GET", "/?status=open", headers=user),
        await env.request("GET", f"/incidents/{incident}", headers=user),
    ]
    for reply in pages:
        assert reply.status == 200
        assert "text/html" in reply.headers["Content-Type"]
        assert "script-src 'self'" in reply.headers.get("Content-Security-Policy", "")
        assert_escaped(reply)
    # reflected input: filters, the "done" notice, an error page, a 404
    reflected = [
        await env.request(
            "GET",
            "/",
            params={"route": "<script>alert('xss-filter')</script>", "kind": '"><img src=x onerror=alert(1)>'},
            headers=user,
        ),
        await env.request(
            "GET", f"/incidents/{incident}", params={"done": "<script>alert('xss-done')</script>"}, headers=user
        ),
        await env.request(
            "POST",
            f"/incidents/{incident}/actions/silence",
            cookie=sid,
            headers={**user, "Origin": f"http://{env.host}"},
            data={
                "csrf": token,
                "duration": "<script>alert(1)</script>",
                "reason": "<script>alert('xss-reason')</script>",
            },
        ),
        await env.request("GET", "/incidents/<script>alert(1)</script>", headers=user),
        await env.request("GET", f"/incidents/{uuid.uuid4()}", headers=user),
    ]
    for reply in reflected:
        assert reply.status < 500, (reply.path, reply.status)
        assert_escaped(reply, expect_data=False)
    # an acknowledgement by a one-click link whose user typed markup as their name
    path = link_path(
        env.secrets["link-signing secret"], uuid.UUID(incident), "ack", datetime.now(UTC), timedelta(hours=1)
    )
    link_page = await env.request("GET", path)
    assert link_page.status == 200
    assert_escaped(link_page)
    query = dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))
    done = await env.request("POST", path.split("?")[0], data={**query, "name": "<script>alert('xss-name')</script>"})
    assert done.status == 200, done.body[:300]
    assert_escaped(done)
    after = await env.request("GET", f"/incidents/{incident}", headers=user)
    assert_escaped(after)
    assert "link:&lt;script&gt;" in after.body
    # a silence with markup as its reason, then every page again
    reply = await env.request(
        "POST",
        f"/api/incidents/{incident}/silence",
        headers=env.api_auth(),
        json={"duration": "1h", "reason": "<script>alert('xss-silence')</script>"},
    )
    assert reply.status == 200, reply.body
    for path in ("/", f"/incidents/{incident}", "/?status=silenced"):
        assert_escaped(await env.request("GET", path, headers=user))
    # the JSON API returns the same strings as plain data, as JSON
    reply = await env.request("GET", f"/api/incidents/{incident}", headers=env.api_auth())
    assert reply.headers["Content-Type"].startswith("application/json")
    data = json.loads(reply.body)
    [member] = data["alerts"]
    for k, v in XSS.items():
        assert member["labels"][k] == v
    assert member["annotations"] == XSS_ANNOTATIONS
    assert data["silence_reason"] == "<script>alert('xss-silence')</script>"
    listed = json.loads((await env.request("GET", "/api/incidents?status=silenced", headers=env.api_auth())).body)
    assert listed["incidents"][0]["kind"] == XSS["kind"]


async def _slack_texts(env: Env) -> tuple[list[str], list[str]]:
    """Page for an incident whose labels carry Slack control sequences: (top-level texts, mrkdwn block texts)."""
    await env.ingest(
        alert(
            path="/<https://evil.example|click here>",
            kind="<!channel>",
            annotations={"summary": "<!here> <https://evil.example|Acknowledge>"},
        )
    )
    now = datetime.now(UTC)
    await env.app[ESCALATOR].tick(now)
    await env.app[DELIVERER].deliver(now)
    assert env.slack_received, "nothing reached the fake Slack"
    top, blocks = [], []
    for message in env.slack_received:
        top.append(message["body"].get("text", ""))
        for block in message["body"].get("blocks", []):
            if block.get("text", {}).get("type") == "mrkdwn":
                blocks.append(block["text"]["text"])
            blocks.extend(f["text"] for f in block.get("fields", []) if f.get("type") == "mrkdwn")
    return top, blocks


def _assert_no_slack_control(texts: list[str]) -> None:
    for text in texts:
        assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text, text


async def test_markup_in_labels_is_escaped_in_slack_blocks(env: Env) -> None:
    """Slack's mrkdwn treats <...> as links and mentions: label text must not form any."""
    _, blocks = await _slack_texts(env)
    assert blocks
    _assert_no_slack_control(blocks)


async def test_markup_in_labels_is_escaped_in_slack_fallback_text(env: Env) -> None:
    top, _ = await _slack_texts(env)
    _assert_no_slack_control(top)


# --- secrets, and failed Slack deliveries ----------------------------------------------------------------------


async def test_failed_deliveries_and_error_replies_reveal_no_secret(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Pages go to a Slack answering 500, one answering 404, a webhook that refuses connections and a Slack
    that does not answer in time; every outcome is on the timeline, and no URL is anywhere (checked by `env`)."""
    ids = {}
    for team in ("500", "404", "down", "slow"):
        labels = {} if team == "500" else {"team": team}
        data = await env.ingest(alert(path=f"/deliver/{team}", severity="critical", labels=labels))
        ids[team] = data["incidents"][0]["id"]
    now = datetime.now(UTC)
    tick = await env.app[ESCALATOR].tick(now)
    assert tick.delivery_due
    deliveries = {d.target: d for d in await env.app[DELIVERER].deliver(now)}
    assert {d: (v.status, v.result.error) for d, v in deliveries.items()} == {
        "default/slack": ("pending", "HTTP 500"),
        "team404/slack": ("failed", "HTTP 404"),
        "teamdown/webhook-1": ("pending", deliveries["teamdown/webhook-1"].result.error),
        "teamslow/slack": ("pending", "no answer within 0.5s"),
    }
    assert deliveries["teamdown/webhook-1"].result.error == "ClientConnectorError"
    # later: escalation to the next level and retries, until the notifications are too old
    for later in (timedelta(minutes=6), timedelta(minutes=20), timedelta(hours=2)):
        await env.app[ESCALATOR].tick(now + later)
        await env.app[DELIVERER].deliver(now + later)
    assert len(env.slack_received) >= 6
    events = await env.db.fetch("SELECT type, detail FROM incident_events WHERE type LIKE 'notif%'")
    assert {e["type"] for e in events} >= {"notify_failed", "notify_retry"}
    # everything a user or a client can read about it
    user, api = env.user_auth(), env.api_auth()
    for incident in ids.values():
        assert (await env.request("GET", f"/incidents/{incident}", headers=user)).status == 200
        assert (await env.request("GET", f"/api/incidents/{incident}", headers=api)).status == 200
    for path in ("/", "/?status=resolved", "/api/incidents", "/metrics", "/healthz", "/readyz", "/signin"):
        await env.request("GET", path, headers=user if not path.startswith("/api/") else api)
    # error replies: not found, bad input, wrong method, conflict, too large, unauthorised
    await env.request("GET", "/nowhere")
    await env.request("PUT", "/webhook", headers=env.webhook_auth())
    await env.request("GET", "/api/incidents?cursor=!!", headers=api)
    await env.request("GET", "/api/incidents?limit=0", headers=api)
    await env.request("GET", f"/api/incidents/{uuid.uuid4()}", headers=api)
    await env.request("POST", f"/api/incidents/{ids['500']}/silence", headers=api, json={"duration": "1h"})
    await env.request("POST", f"/api/incidents/{ids['500']}/ack", headers=api, data=b"{not json")
    await env.request("POST", f"/api/incidents/{ids['500']}/ack", headers=api)
    await env.request("POST", f"/api/incidents/{ids['500']}/ack", headers=api)  # 409: already
    await env.request("POST", "/webhook", headers=env.webhook_auth(), data=b"{not json")
    await env.request("POST", "/webhook", headers=env.webhook_auth(), data=b"x" * (17 * 1024 * 1024))
    await env.request(
        "POST", "/webhook", headers={"Authorization": f"Bearer {env.secrets['API token']}"}, json=payload(alert())
    )
    await env.request("GET", "/", headers=env.user_auth(password=env.secrets["webhook token"]))
    statuses = {r.status for r in env.replies}
    assert {200, 400, 401, 404, 405, 409, 413} <= statuses, statuses
    # the failures were logged (so the log check below has something to check) ...
    delivery_logs = [r for r in caplog.records if r.name == "receiver.notify.delivery"]
    assert any("HTTP 500" in r.getMessage() for r in delivery_logs), [r.getMessage() for r in delivery_logs]
    assert any("ClientConnectorError" in r.getMessage() for r in delivery_logs)
    # ... and the secrets are really in play: the fake Slack was called on its secret paths
    paths = {m["path"] for m in env.slack_received}
    assert env.secrets["Slack URL path (500)"] in paths and env.secrets["Slack URL path (404)"] in paths
    # and the database keeps the URLs only where delivery needs them, not on the timeline
    for e in events:
        detail = json.dumps(e["detail"])
        assert "/services/" not in detail and "/hooks/" not in detail, detail


# --- issue 11 item 9: CSRF tokens bound to server-issued sessions and the user; the Origin's scheme --------------


async def test_csrf_sessions_are_issued_by_the_server_and_tokens_bound_to_the_user(env: Env) -> None:
    incident = await env.incident_id(alert(path="/csrf-session"))
    origin = f"http://{env.host}"
    path = f"/incidents/{incident}/actions/ack"
    alice = {**env.user_auth("alice"), "Origin": origin}
    # a session id of the client's choosing is not adopted: the page issues its own, and a token minted on
    # that page does not work with the chosen id
    for chosen in ("A" * 32, "B" * 24 + "." + "C" * 22):
        sid, token = await env.session(incident, "alice", cookie=chosen)
        assert sid != chosen, "the server adopted a session id the client chose"
        reply = await env.request("POST", path, data={"csrf": token}, cookie=chosen, headers=alice)
        assert reply.status == 403, (chosen, reply.status)
    # bob's session and bob's token do not let a request signed in as alice act
    bob_sid, bob_token = await env.session(incident, "bob")
    reply = await env.request("POST", path, data={"csrf": bob_token}, cookie=bob_sid, headers=alice)
    assert reply.status == 403 and "security token" in reply.body
    # the Origin's scheme counts: https://<our host> is another origin than the http:// we serve, and an
    # X-Forwarded-Proto from a client that is not a trusted proxy changes nothing
    sid, token = await env.session(incident, "alice")
    for headers in (
        {"Origin": f"https://{env.host}"},
        {"Origin": f"https://{env.host}", "X-Forwarded-Proto": "https"},
        {"Referer": f"https://{env.host}/incidents/{incident}"},
        {"Origin": "https://receiver.test"},
    ):
        reply = await env.request(
            "POST", path, data={"csrf": token}, cookie=sid, headers={**env.user_auth("alice"), **headers}
        )
        assert reply.status == 403 and "another site" in reply.body, headers
    assert await env.status_of(incident) == "open"
    # the configured external_url (http://receiver.test) is our origin too, whatever Host the proxy sends
    reply = await env.request(
        "POST",
        path,
        data={"csrf": token},
        cookie=sid,
        headers={**env.user_auth("alice"), "Origin": "http://receiver.test"},
    )
    assert reply.status == 303, reply.body[:300]
    assert await env.db.fetchval("SELECT acknowledged_by FROM incidents WHERE id = $1", uuid.UUID(incident)) == "alice"
    # bob's own token works for bob
    reply = await env.request(
        "POST",
        f"/incidents/{incident}/actions/unack",
        data={"csrf": bob_token},
        cookie=bob_sid,
        headers={**env.user_auth("bob"), "Origin": origin},
    )
    assert reply.status == 303, reply.body[:300]


# --- issue 11 item 6: bad lifecycle input is a 400 with a reason (or cleaned), never a 5xx -----------------------


async def _database_errors(env: Env) -> float:
    text = (await env.request("GET", "/metrics")).body
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("receiver_database_errors_total{")
    )


async def test_bad_lifecycle_input_is_a_400_or_cleaned_never_a_5xx(env: Env) -> None:
    incident = await env.incident_id(alert(path="/input"))
    api = {**env.api_auth(), "Content-Type": "application/json"}
    url = f"/api/incidents/{incident}/silence"
    refused = {
        "overflowing duration": b'{"reason": "r", "duration": "99999999999999999999d"}',
        "overflowing number": b'{"reason": "r", "duration": 1e400}',
        "NaN": b'{"reason": "r", "duration": NaN}',
        "duration over 30 days": b'{"reason": "r", "duration": "31d"}',
        "not a duration": b'{"reason": "r", "duration": "\\u0000h"}',
        "duration of the wrong type": b'{"reason": "r", "duration": ["1h"]}',
        "a long duration": b'{"reason": "r", "duration": "' + b"1" * 10_000 + b'h"}',
        "until in the past": b'{"reason": "r", "until": "2001-01-01T00:00:00Z"}',
        "until year 9999 with an offset": b'{"reason": "r", "until": "9999-12-31T23:59:59-05:00"}',
        "until with a NUL": b'{"reason": "r", "until": "2030-01-01T00:00:00Z\\u0000"}',
        "until of the wrong type": b'{"reason": "r", "until": 1e400}',
        "reason of the wrong type": b'{"reason": {"a": 1}, "duration": "1h"}',
        "reason missing": b'{"duration": "1h"}',
        "reason blank": b'{"reason": " \\t ", "duration": "1h"}',
        "nested JSON": b'{"reason": ' + b"[" * 20_000 + b"]" * 20_000 + b', "duration": "1h"}',
        "nested JSON, unclosed": b"[" * 40_000,
        "not UTF-8": b'{"reason": "\xff\xfe", "duration": "1h"}',
        "not an object": b'["reason"]',
    }
    for name, body in refused.items():
        reply = await env.request("POST", url, data=body, headers=api)
        assert reply.status == 400, (name, reply.status, reply.body[:200])
        assert json.loads(reply.body)["error"], name
    assert await env.status_of(incident) == "open"
    # text the database cannot store is cleaned as the webhook cleans labels: NUL and lone surrogates
    reply = await env.request(
        "POST", url, data=b'{"reason": "a\\u0000b \\ud800 c\\udfff", "duration": "1h"}', headers=api
    )
    assert reply.status == 200, reply.body[:300]
    assert json.loads(reply.body)["silence_reason"] == clean_text("a\x00b \ud800 c\udfff") == "a\ufffdb ? c?"
    # the page's form: the same rules, answered on a page
    sid, token = await env.session(incident)
    page = {**env.user_auth(), "Origin": f"http://{env.host}"}
    form_url = f"/incidents/{incident}/actions/silence"
    for name, form in {
        "overflowing duration": {"duration": "99999999999999999999d", "reason": "r"},
        "duration over 30 days": {"duration": "9999w", "reason": "r"},
        "no reason": {"duration": "1h", "reason": ""},
    }.items():
        reply = await env.request("POST", form_url, data={"csrf": token, **form}, cookie=sid, headers=page)
        assert reply.status == 400 and "text/html" in reply.headers["Content-Type"], (name, reply.status)
    # a form that does not decode, and a file where text belongs
    reply = await env.request(
        "POST",
        form_url,
        data=b"csrf=" + token.encode() + b"&reason=\xff&duration=1h",
        cookie=sid,
        headers={**page, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 400, reply.status
    multipart = aiohttp.FormData()
    multipart.add_field("csrf", token)
    multipart.add_field("duration", "1h")
    multipart.add_field("reason", b"file contents", filename="reason.txt")
    reply = await env.request("POST", form_url, data=multipart, cookie=sid, headers=page)
    assert reply.status == 400, reply.status
    urlencoded = {**page, "Content-Type": "application/x-www-form-urlencoded"}
    reply = await env.request(
        "POST",
        form_url,
        data=f"csrf={token}&duration=4h&reason=x%00y%ED%A0%80z".encode(),
        cookie=sid,
        headers=urlencoded,
    )
    assert reply.status == 303, reply.body[:300]
    assert await env.db.fetchval(
        "SELECT silence_reason FROM incidents WHERE id = $1", uuid.UUID(incident)
    ) == clean_text(unquote("x%00y%ED%A0%80z"))
    # a signed link's name is cleaned too
    await env.request("POST", f"/api/incidents/{incident}/unsilence", headers=env.api_auth())
    link = link_path(env.app[LINK_SECRET], uuid.UUID(incident), "ack", datetime.now(UTC), timedelta(hours=1))
    query = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))
    reply = await env.request("POST", link.split("?", 1)[0], data={**query, "name": "dave\x00"})
    assert reply.status == 200, reply.body[:300]
    assert (
        await env.db.fetchval("SELECT acknowledged_by FROM incidents WHERE id = $1", uuid.UUID(incident))
        == "link:dave\ufffd"
    )
    assert all(r.status < 500 for r in env.replies), [(r.path, r.status) for r in env.replies if r.status >= 500]
    assert await _database_errors(env) == 0


# --- issue 11 item 7: a signed link is spent in the same transaction as its action ---------------------------------


async def test_a_signed_link_is_spent_only_when_its_action_succeeds(env: Env) -> None:
    incident = await env.incident_id(alert(path="/link-spent"))
    link = link_path(env.app[LINK_SECRET], uuid.UUID(incident), "ack", datetime.now(UTC), timedelta(hours=1))
    query = dict(p.split("=", 1) for p in link.split("?", 1)[1].split("&"))
    form_url = link.split("?", 1)[0]
    # the action fails (someone acknowledged first): the link stays usable
    assert (await env.request("POST", f"/api/incidents/{incident}/ack", headers=env.api_auth())).status == 200
    reply = await env.request("POST", form_url, data={**query, "name": "dave"})
    assert reply.status == 409 and "already acknowledged" in reply.body, (reply.status, reply.body[:300])
    assert await env.db.fetchval("SELECT count(*) FROM used_links") == 0
    # a form that cannot be read fails before anything is spent as well
    reply = await env.request("POST", form_url, data={**query, "name": "x"}, headers={"Content-Type": "text/plain"})
    assert reply.status in (400, 403), reply.status
    assert await env.db.fetchval("SELECT count(*) FROM used_links") == 0
    assert (await env.request("POST", f"/api/incidents/{incident}/unack", headers=env.api_auth())).status == 200
    # now it acts, once
    reply = await env.request("POST", form_url, data={**query, "name": "dave"})
    assert reply.status == 200, reply.body[:300]
    assert (
        await env.db.fetchval("SELECT acknowledged_by FROM incidents WHERE id = $1", uuid.UUID(incident)) == "link:dave"
    )
    assert (await env.request("POST", f"/api/incidents/{incident}/unack", headers=env.api_auth())).status == 200
    reply = await env.request("POST", form_url, data={**query, "name": "eve"})
    assert reply.status == 409 and "already used" in reply.body
    assert await env.status_of(incident) == "open"
    # two clicks at once: one acts, the other is told the link was used (or that it is acknowledged)
    link2 = link_path(env.app[LINK_SECRET], uuid.UUID(incident), "ack", datetime.now(UTC), timedelta(hours=2))
    query2 = dict(p.split("=", 1) for p in link2.split("?", 1)[1].split("&"))
    replies = await asyncio.gather(*(env.request("POST", form_url, data={**query2, "name": f"n{i}"}) for i in range(4)))
    assert sorted(r.status for r in replies) == [200, 409, 409, 409]
    assert await env.db.fetchval("SELECT count(*) FROM incident_events WHERE type = 'acknowledged'") == 3


# --- issue 11 item 1: password checks off the event loop, throttled; the webhook never 429 ---------------------------


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.mark.timeout(deadline(240))
async def test_wrong_password_floods_neither_stall_the_server_nor_reach_the_webhook(
    fresh_database: str, receiver_procs: Any, tmp_path: Path
) -> None:
    """A real `receiver serve`. Clients send wrong passwords, first from many addresses at once (through a trusted
    proxy's X-Forwarded-For, so that every attempt reaches a password check), then from one address: /healthz
    and the webhook keep answering (the webhook with 200, never 429), repeated failures get 429 with
    Retry-After on the page and the read API, and a user signed in before keeps working."""
    password = "pw-" + _hex()
    cfg = tmp_path / "receiver.yml"
    cfg.write_text(f"""\
ui:
  users:
    - name: alice
      password_hash: "{hash_password(password)}"
  proxy_auth:
    header: X-Forwarded-User
    trusted_proxies: ["127.0.0.1/32"]
""")
    rx = receiver_procs("rx", cfg, fresh_database, "http://127.0.0.1:9/slack")
    webhook = {"Authorization": f"Bearer {TOKEN}"}
    probe_timeout = aiohttp.ClientTimeout(total=deadline(10))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline(60))) as s:
        await rx.wait_ready(s)
        async with s.get(f"{rx.url}/", headers={"Authorization": _basic("alice", password)}) as r:
            assert r.status == 200  # alice signs in before the flood: remembered

        stop = asyncio.Event()
        flood: collections.Counter[int] = collections.Counter()
        health: list[float] = []
        hooks: list[tuple[int, float]] = []

        async def flooder(i: int) -> None:
            n = 0
            while not stop.is_set():
                headers = {"Authorization": _basic(f"user-{i}-{n}", "wrong"), "X-Forwarded-For": f"10.9.{i}.{n % 250}"}
                async with s.get(f"{rx.url}/", headers=headers) as r:
                    flood[r.status] += 1
                    if r.status == 429:
                        assert r.headers["Retry-After"].isdigit()
                n += 1

        async def probe() -> None:
            while len(health) < 30 or sum(flood.values()) < 300:
                started = time.monotonic()
                async with s.get(f"{rx.url}/healthz", timeout=probe_timeout) as r:
                    assert r.status == 200
                health.append(time.monotonic() - started)
                started = time.monotonic()
                async with s.post(
                    f"{rx.url}/webhook",
                    json=payload(alert(instance=f"i-{len(hooks)}")),
                    headers=webhook,
                    timeout=probe_timeout,
                ) as r:
                    hooks.append((r.status, time.monotonic() - started))
                await asyncio.sleep(0.05)
            stop.set()

        tasks = [asyncio.create_task(flooder(i)) for i in range(48)]
        try:
            await probe()
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        health.sort()
        latencies = sorted(t for _, t in hooks)
        print(
            f"\nwrong-password flood from 48 addresses: {sum(flood.values())} attempts {dict(flood)}; "
            f"/healthz p50 {health[len(health) // 2] * 1000:.0f} ms max {health[-1] * 1000:.0f} ms; "
            f"webhook p50 {latencies[len(latencies) // 2] * 1000:.0f} ms max {latencies[-1] * 1000:.0f} ms"
        )
        assert {status for status, _ in hooks} == {200}
        assert set(flood) <= {401, 429}, flood
        assert flood[429], "48 concurrent checks never filled the bounded queue"

        # one address: ten failures, then 429 with Retry-After on the page and the read API, not on the webhook
        one = {"X-Forwarded-For": "192.0.2.7"}
        statuses = []
        for n in range(12):
            async with s.get(f"{rx.url}/", headers={**one, "Authorization": _basic(f"guess-{n}", "wrong")}) as r:
                statuses.append(r.status)
        assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses
        async with s.get(f"{rx.url}/api/incidents", headers={**one, "Authorization": _basic("x", "y")}) as r:
            assert r.status == 429 and r.headers["Retry-After"].isdigit()
            assert "too many sign-in attempts" in (await r.json())["error"]
        async with s.get(f"{rx.url}/incidents/{uuid.uuid4()}", headers={**one, "Authorization": _basic("x", "y")}) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
        for headers in ({**one, "Authorization": "Bearer wrong"}, {**one, **webhook}):
            async with s.post(f"{rx.url}/webhook", json=payload(alert()), headers=headers) as r:
                assert r.status == (401 if headers["Authorization"] == "Bearer wrong" else 200)
        # one user name from many addresses: throttled too, yet alice, signed in before, keeps working
        names = []
        for n in range(22):
            headers = {"X-Forwarded-For": f"198.51.100.{n}", "Authorization": _basic("alice", f"guess-{n}")}
            async with s.get(f"{rx.url}/", headers=headers) as r:
                names.append(r.status)
        assert names[:20] == [401] * 20 and names[20:] == [429, 429], names
        async with s.get(
            f"{rx.url}/", headers={"X-Forwarded-For": "203.0.113.1", "Authorization": _basic("alice", password)}
        ) as r:
            assert r.status == 200
    assert not rx.error_lines(), rx.error_context()


def test_sign_in_state_is_bounded_and_buckets_refill() -> None:
    """The rate limiter forgets the least recently used keys past its bound, and a bucket refills with time."""
    from receiver.web.users import Limit, RateLimiter

    now = [0.0]
    limiter = RateLimiter(max_keys=100, clock=lambda: now[0])
    limit = Limit(burst=2, per=60.0)
    for n in range(10_000):
        assert limiter.take([(("address", f"10.0.{n // 256}.{n % 256}"), limit)]) == 0
    assert len(limiter) == 100
    key = [(("user", b"alice"), limit)]
    assert limiter.take(key) == 0 and limiter.take(key) == 0
    assert limiter.take(key) == pytest.approx(30.0)  # one attempt back every 30 s
    now[0] += 30.0
    assert limiter.take(key) == 0
    limiter.give_back(key)  # a success gives its attempt back
    assert limiter.take(key) == 0
