"""The status page on a real PostgreSQL: hostile values are escaped and only http(s) becomes a link;
actions need a user, a CSRF token and a same-origin request, and record the actor; who may view;
counts, filters, sort order and pagination.

Incidents are created the way production creates them, through POST /webhook.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import Config, parse_config
from receiver.web.users import hash_password
from tests.helpers import alert, payload

PASSWORD = "correct horse battery"
HASH = hash_password(PASSWORD)  # scrypt is slow on purpose: once per module
XSS = "<script>alert(1)</script>"
QUOTES = "\"'"
JS_URL = "javascript:alert(1)"
RLO = "\u202e"
RTL = RLO + "evil"
LONG = "L" * 5000
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


# --- helpers -------------------------------------------------------------------------------------------


def make_config(ui: dict[str, Any] | None = None, users: bool = True, **top: Any) -> Config:
    ui = dict(ui or {})
    if users:
        ui.setdefault("users", [{"name": "alice", "password_hash": HASH}, {"name": "bob", "password_hash": HASH}])
    return parse_config(json.dumps({"ui": ui, **top}), env={})  # JSON is YAML


def basic(name: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


ALICE = basic()


async def start(aiohttp_client: Any, database_url: str, config: Config | None = None) -> Any:
    return await aiohttp_client(create_app(config or make_config(), database_url, loops=False))


async def ingest(client: Any, *alerts: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    resp = await client.post("/webhook", json=payload(*alerts, **kw))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["incidents"]


async def page(client: Any, path: str, headers: dict[str, str] | None = None, status: int = 200) -> str:
    resp = await client.get(path, headers=ALICE if headers is None else headers)
    text = await resp.text()
    assert resp.status == status, text[:500]
    return text


async def api_incident(client: Any, incident_id: str, headers: dict[str, str] = ALICE) -> dict[str, Any]:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=headers)
    assert resp.status == 200
    return dict(await resp.json())


def origin(client: Any) -> str:
    url = client.make_url("/")
    return f"{url.scheme}://{url.host}:{url.port}"


def csrf_of(html: str) -> str:
    tokens = set(re.findall(r'name="csrf" value="([0-9a-f]+)"', html))
    assert len(tokens) == 1, tokens
    return tokens.pop()


async def act(
    client: Any,
    incident_id: str,
    action: str,
    *,
    headers: dict[str, str] | None = None,
    csrf: str | None = None,
    **form: str,
) -> Any:
    """POST an action form the way a browser on the page does (same Origin, the page's token, which is the
    signed-in user's: the page is opened with the same credentials)."""
    hdrs = {**ALICE, "Origin": origin(client)} if headers is None else headers
    if csrf is None:
        auth = {k: v for k, v in hdrs.items() if k == "Authorization"}
        csrf = csrf_of(await page(client, f"/incidents/{incident_id}", headers=auth or ALICE))
    return await client.post(
        f"/incidents/{incident_id}/actions/{action}", data={"csrf": csrf, **form}, headers=hdrs, allow_redirects=False
    )


def section(html: str, name: str) -> str:
    """The HTML of the Active or the Recently resolved section of the list."""
    m = re.search(rf'<section aria-labelledby="{name}-h">(.*?)</section>', html, re.S)
    return m.group(1) if m else ""


def rows(html: str) -> list[dict[str, str]]:
    out = []
    for sev, body in re.findall(r'<tr class="row-(\w+)">(.*?)</tr>', html, re.S):
        inc = re.search(rf'href="/incidents/({ID})"><bdi>(.*?)</bdi></a>', body, re.S)
        status = re.search(r'class="status status-(\w+)"', body)
        kind = re.search(r'data-label="Kind">(.*?)</td>', body, re.S)
        owner = re.search(r'data-label="Owner">(.*?)</td>', body, re.S)
        assert inc and status and kind and owner, body
        out.append(
            {
                "severity": sev,
                "id": inc.group(1),
                "route": inc.group(2),
                "status": status.group(1),
                "kind": kind.group(1).strip(),
                "owner": owner.group(1).strip(),
            }
        )
    return out


def active_rows(html: str) -> list[dict[str, str]]:
    return rows(section(html, "active"))


def resolved_rows(html: str) -> list[dict[str, str]]:
    return rows(section(html, "resolved"))


def more_link(html: str, text: str) -> str | None:
    m = re.search(rf'<a class="more" href="([^"]+)">{text}', html)
    return m.group(1).replace("&amp;", "&") if m else None


class Events(HTMLParser):
    """Start tags with attributes, and text with the stack of open elements around it."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "hr", "source", "col", "area", "base", "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.events: list[tuple[str, str, list[str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.events.append(("start", tag, list(self.stack)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.events.append(("end", tag, list(self.stack)))
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.events.append(("data", data, list(self.stack)))


BLOCKS = frozenset({"p", "div", "dd", "dt", "td", "th", "li", "h1", "h2", "title", "option"})


def assert_bidi_isolated(html: str) -> None:
    """Right-to-left override characters cannot flip what the page shows after them: every text holding
    one is inside a <bdi>, or is the last thing in its block element (where the override ends)."""
    ev = Events(html).events
    seen = 0
    for i, (kind, data, stack) in enumerate(ev):
        if kind != "data" or RLO not in data:
            continue
        seen += 1
        if "bdi" in stack:
            continue
        blocks = [j for j, tag in enumerate(stack) if tag in BLOCKS]
        assert blocks, f"right-to-left text {data[:60]!r} outside any block: {stack}"
        block = blocks[-1]
        for kind2, data2, stack2 in ev[i + 1 :]:
            if kind2 == "end" and len(stack2) == block + 1:
                break  # the block ends, and the override with it
            assert kind2 == "end" or (kind2 == "data" and not data2.strip()), (
                f"right-to-left text {data[:60]!r} in {stack} is not isolated from {kind2} {data2[:60]!r}"
            )
    assert seen, "the page shows no right-to-left text at all"


def assert_safe_html(html: str) -> None:
    lowered = html.lower()
    assert "<script>alert(1)" not in lowered
    assert "<script>" not in lowered  # the page's own script is <script src=...>
    assert 'href="javascript:' not in lowered and "href='javascript:" not in lowered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    tags = Events(html).tags
    for tag, attrs in tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)  # no injected handlers
        if tag == "script":
            assert attrs.get("src") == "/static/receiver.js", attrs
        for name in ("href", "src", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("javascript:", "data:", "vbscript:")), (tag, attrs)
    for tag, attrs in tags:  # links that leave the receiver carry no referrer and no opener
        if tag == "a" and (attrs.get("href") or "").startswith("http"):
            assert "noopener" in (attrs.get("rel") or "") and "noreferrer" in (attrs.get("rel") or ""), attrs


def assert_headers(resp: Any) -> None:
    csp = resp.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "script-src 'self'" in csp, csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp, csp
    assert "'unsafe-inline'" not in csp
    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
    # not no-referrer: under it browsers send "Origin: null" with the page's own form POSTs
    assert resp.headers.get("Referrer-Policy") == "same-origin"
    assert resp.headers.get("Cache-Control") == "no-store"


# --- (a) hostile values --------------------------------------------------------------------------------


HOSTILE_ANNOTATIONS = {
    "summary": f"{XSS}{QUOTES} summary {RTL}",
    "description": f"{QUOTES}><img src=x onerror=alert(1)> {LONG}",
    "runbook_url": JS_URL,
    "sentry_url": "  JavaScript:alert(1)",
    "dashboard_url": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "note": f"{XSS} {RTL} done",
}


async def test_hostile_values_are_escaped_and_only_http_urls_are_links(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    hostile = await ingest(
        client,
        alert(
            alertname=XSS,
            path=f"/x{QUOTES}>{XSS}",
            severity="critical",
            rtl=RTL,
            long=LONG,
            quoted="a\"b'c<d>&e",
            generator_url=JS_URL,
            annotations=HOSTILE_ANNOTATIONS,
        ),
        external_url=JS_URL,
    )
    rtl_route = await ingest(client, alert(alertname="SlowRTL", path=f"/rtl/{RTL}/x", annotations={}))
    fine = await ingest(
        client,
        alert(
            alertname="HighLatency",
            path="/fine",
            service="checkout",
            generator_url='https://prom.example/graph?g0.expr=up&x="1"',
            annotations={
                "summary": "fine",
                "runbook_url": "https://runbooks.example/high-latency",
                "sentry_url": "http://sentry.example/issues/1",
            },
        ),
        external_url="https://am.example:9093/",
    )

    resp = await client.get("/", headers=ALICE)
    assert resp.status == 200
    assert_headers(resp)
    listing = await resp.text()
    assert_safe_html(listing)
    assert_bidi_isolated(listing)
    assert {r["id"] for r in active_rows(listing)} == {hostile[0]["id"], rtl_route[0]["id"], fine[0]["id"]}

    resp = await client.get(f"/incidents/{hostile[0]['id']}", headers=ALICE)
    assert resp.status == 200
    assert_headers(resp)
    detail = await resp.text()
    assert_safe_html(detail)
    assert_bidi_isolated(detail)
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail
    assert "a&#34;b&#39;c&lt;d&gt;&amp;e" in detail
    assert LONG in detail  # long values are shown whole (and wrap; see the CSS), not dropped
    # not links, but still shown as text so a person can read what was sent
    assert detail.count(f'<span class="unsafe-url" title="not an http(s) link">{JS_URL}</span>') >= 3
    assert "data:text/html" in detail and 'href="data:' not in detail
    assert "am.example" not in detail and "#/silences/new" not in detail  # externalURL was javascript:

    detail = await page(client, f"/incidents/{rtl_route[0]['id']}")
    assert_safe_html_no_xss(detail)
    assert_bidi_isolated(detail)

    resp = await client.get(f"/incidents/{fine[0]['id']}", headers=ALICE)
    assert_headers(resp)
    detail = await resp.text()
    hrefs = [a.get("href") for t, a in Events(detail).tags if t == "a"]
    assert 'https://prom.example/graph?g0.expr=up&x="1"' in hrefs  # an attribute, escaped as &amp; and &#34;
    assert 'href="https://prom.example/graph?g0.expr=up&amp;x=&#34;1&#34;"' in detail
    assert "https://runbooks.example/high-latency" in hrefs
    assert "http://sentry.example/issues/1" in hrefs
    silence = next(h for h in hrefs if h and h.startswith("https://am.example:9093/#/silences/new?filter="))
    assert "alertname%3D%22HighLatency%22" in silence and "service%3D%22checkout%22" in silence
    assert any(h and h.startswith("https://am.example:9093/#/alerts?filter=") for h in hrefs)


def assert_safe_html_no_xss(html: str) -> None:
    lowered = html.lower()
    assert "<script>" not in lowered and 'href="javascript:' not in lowered


async def test_hostile_values_in_filters_and_actors_are_escaped(aiohttp_client: Any, database_url: str) -> None:
    config = make_config({"proxy_auth": {"header": "X-Forwarded-User", "trusted_proxies": ["127.0.0.1"]}})
    client = await start(aiohttp_client, database_url, config)
    created = await ingest(client, alert(path="/a"))
    listing = await page(client, f"/?route={XSS}&owner=%22%3E{XSS}&kind={RTL}")
    assert_safe_html_no_xss(listing)
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in listing
    assert "Nothing is burning that matches the filter" in listing
    # a proxy-asserted user name is untrusted text too
    evil_user = {"X-Forwarded-User": f"{XSS}{RTL}"}
    detail = await page(client, f"/incidents/{created[0]['id']}", headers=evil_user)
    resp = await act(
        client, created[0]["id"], "ack", headers={**evil_user, "Origin": origin(client)}, csrf=csrf_of(detail)
    )
    assert resp.status == 303
    for html in (
        await page(client, "/", headers=evil_user),
        await page(client, f"/incidents/{created[0]['id']}", headers=evil_user),
    ):
        assert_safe_html_no_xss(html)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert_bidi_isolated(html)


async def test_bad_query_values_are_answered_not_crashed(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    await ingest(client, alert(path="/a"))
    for path in (
        "/?after=nonsense",
        "/?after=critical~bm9wZQ",
        "/?before=%00%ff",
        "/?status=bogus",
        "/?severity=" + "x" * 5000,
        "/incidents/not-a-uuid",
        "/incidents/00000000-0000-0000-0000-000000000000",
    ):
        resp = await client.get(path, headers=ALICE)
        assert resp.status in (200, 400, 404), (path, resp.status)
        assert "<script>" not in (await resp.text()).lower()


# --- (b) actions ---------------------------------------------------------------------------------------


async def test_an_action_without_a_user_is_401_with_a_basic_challenge(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"require_login": False}))
    created = await ingest(client, alert(path="/a"))
    incident_id = created[0]["id"]
    detail = await page(client, f"/incidents/{incident_id}", headers={})  # viewing is open here
    assert 'href="/signin"' in detail and "actions/ack" not in detail  # no forms for anonymous viewers
    token = csrf_of_cookie_page(detail)
    for headers in (
        {"Origin": origin(client)},
        {**basic("alice", "wrong"), "Origin": origin(client)},
        {**basic("mallory", PASSWORD), "Origin": origin(client)},
        {"Authorization": "Bearer x", "Origin": origin(client)},
        {"Authorization": "Basic !!!", "Origin": origin(client)},
    ):
        resp = await act(client, incident_id, "ack", headers=headers, csrf=token)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    resp = await client.get("/signin", allow_redirects=False)
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic ")
    resp = await client.get("/signin", headers=ALICE, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    assert (await api_incident(client, incident_id))["status"] == "open"


def csrf_of_cookie_page(html: str) -> str:
    """Anonymous viewers get no forms; a made-up token is enough to show the user check comes first."""
    assert "csrf" not in html
    return "0" * 64


async def test_an_action_without_or_with_a_wrong_csrf_token_is_403(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    good = csrf_of(await page(client, f"/incidents/{incident_id}"))
    same = {**ALICE, "Origin": origin(client)}
    for token in ("", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1"), good.upper(), "x" * 10_000):
        resp = await act(client, incident_id, "ack", headers=same, csrf=token)
        assert resp.status == 403, token[:20]
        assert "security token" in await resp.text()
    resp = await client.post(f"/incidents/{incident_id}/actions/ack", data={}, headers=same, allow_redirects=False)
    assert resp.status == 403
    # the right token but another session (or none): the token is bound to the session cookie
    client.session.cookie_jar.clear()
    resp = await act(client, incident_id, "ack", headers=same, csrf=good)
    assert resp.status == 403
    assert (await api_incident(client, incident_id))["status"] == "open"


@pytest.mark.parametrize("action", ["actions/ack", "alertmanager-silence"])
async def test_every_form_action_checks_the_user_then_the_incident_then_the_csrf_token(
    aiohttp_client: Any, database_url: str, action: str
) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    good = csrf_of(await page(client, f"/incidents/{incident_id}"))
    same = {**ALICE, "Origin": origin(client)}

    async def post(ident: str, headers: dict[str, str], csrf: str) -> Any:
        return await client.post(f"/incidents/{ident}/{action}", data={"csrf": csrf}, headers=headers)

    resp = await post("not-an-id", {"Origin": origin(client)}, "x")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert "sign in to act on incidents" in await resp.text()
    resp = await post("not-an-id", same, "x")
    assert resp.status == 404 and await resp.text() == "no such incident"
    resp = await post(incident_id, same, "x")
    assert resp.status == 403 and "security token is missing or wrong" in await resp.text()
    assert "Content-Security-Policy" in resp.headers  # a page of ours, with its headers
    resp = await post(incident_id, {**ALICE, "Origin": "http://evil.example"}, good)
    assert resp.status == 403 and "Refused: the request came from another site" in await resp.text()
    resp = await client.post(
        f"/incidents/{incident_id}/{action}",
        data=b"csrf=%ff",
        headers={**same, "Content-Type": "application/x-www-form-urlencoded; charset=no-such-charset"},
    )
    assert resp.status == 400 and "the form could not be read" in await resp.text()
    resp = await post(incident_id, same, good)  # past the opening: what each action does
    if action == "actions/ack":
        assert resp.status == 200 and (await api_incident(client, incident_id))["status"] == "acknowledged"
    else:
        assert resp.status == 404 and "Silences in Alertmanager are not enabled." in await resp.text()


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Origin": "http://evil.example"}, id="origin-other-host"),
        pytest.param({"Origin": "http://127.0.0.1:1"}, id="origin-other-port"),
        pytest.param({"Origin": "null"}, id="origin-null"),
        pytest.param({"Referer": "http://evil.example/incidents/x"}, id="referer-other-host"),
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="fetch-cross-site"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="fetch-same-site"),
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, id="origin-null-cross-site"),
    ],
)
async def test_an_action_from_another_origin_is_403(
    aiohttp_client: Any, database_url: str, headers: dict[str, str]
) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    good = csrf_of(await page(client, f"/incidents/{incident_id}"))
    resp = await act(client, incident_id, "ack", headers={**ALICE, **headers}, csrf=good)
    assert resp.status == 403
    assert "another site" in await resp.text()
    assert (await api_incident(client, incident_id))["status"] == "open"


async def test_acknowledge_through_the_form_records_the_user(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a", severity="critical")))[0]["id"]
    resp = await act(client, incident_id, "ack")
    assert resp.status == 303
    assert resp.headers["Location"] == f"/incidents/{incident_id}?done=ack"
    data = await api_incident(client, incident_id)
    assert data["status"] == "acknowledged" and data["acknowledged_by"] == "alice"
    assert [(e["type"], e["actor"]) for e in data["events"] if e["type"] == "acknowledged"] == [
        ("acknowledged", "alice")
    ]
    detail = await page(client, f"/incidents/{incident_id}?done=ack")
    assert '<p class="notice" role="status">Acknowledged.</p>' in detail
    assert "actions/unack" in detail and 'actions/ack"' not in detail
    # the notice only names known actions: the query string cannot put words on the page
    assert 'class="notice"' not in await page(client, f"/incidents/{incident_id}?done=Everything+is+fine")
    assert re.search(r"<strong>acknowledged</strong> <span class=\"actor\">by <bdi>alice</bdi></span>", detail)
    listing = await page(client, "/")
    assert re.search(r'status-acknowledged">acknowledged</span><span class="by"> by <bdi>alice</bdi>', listing)
    # a second acknowledgement is a conflict, answered on a page, and changes nothing
    resp = await act(client, incident_id, "ack", headers={**basic("bob"), "Origin": origin(client)})
    assert resp.status == 409 and "already acknowledged by alice" in await resp.text()
    # without Origin or Referer (older clients), the token alone is enough
    resp = await act(client, incident_id, "unack", headers={**basic("bob")})
    assert resp.status == 303
    data = await api_incident(client, incident_id)
    assert data["status"] == "open" and data["acknowledged_by"] is None
    assert ("unacknowledged", "bob") in [(e["type"], e["actor"]) for e in data["events"]]
    # "Origin: null" with Fetch Metadata saying same-origin: what Chromium sends under a no-referrer policy
    resp = await act(client, incident_id, "ack", headers={**ALICE, "Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert resp.status == 303
    # a same-origin Referer is accepted as well
    resp = await act(
        client, incident_id, "unack", headers={**ALICE, "Referer": origin(client) + f"/incidents/{incident_id}"}
    )
    assert resp.status == 303
    assert (await api_incident(client, incident_id))["status"] == "open"


async def test_silence_with_a_reason_unsilence_and_resolve_through_forms(
    aiohttp_client: Any, database_url: str
) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a", severity="critical")))[0]["id"]
    detail = await page(client, f"/incidents/{incident_id}")
    durations = re.findall(r'<option value="(\w+)">', detail.split('actions/silence"')[1].split("</form>")[0])
    assert durations == ["30m", "1h", "4h", "12h", "1d", "7d"]
    assert 'name="reason" required' in detail

    # input that can never be valid is a 400 with the reason; a state that forbids the action is a 409
    resp = await act(client, incident_id, "silence", duration="4h", reason="")
    assert resp.status == 400 and "a silence needs a reason" in await resp.text()
    resp = await act(client, incident_id, "silence", duration="99y", reason="x")
    assert resp.status == 400 and "duration" in await resp.text()
    resp = await act(client, incident_id, "unsilence")
    assert resp.status == 409 and "not silenced" in await resp.text()

    resp = await act(client, incident_id, "silence", duration="4h", reason=f"deploy in progress {XSS}")
    assert resp.status == 303
    data = await api_incident(client, incident_id)
    assert data["status"] == "silenced" and data["silenced_by"] == "alice"
    assert data["silence_reason"] == f"deploy in progress {XSS}"
    assert [e["actor"] for e in data["events"] if e["type"] == "silenced"] == ["alice"]
    detail = await page(client, f"/incidents/{incident_id}")
    assert "actions/unsilence" in detail
    assert "by <bdi>alice</bdi> until <time" in detail and "<bdi>deploy in progress &lt;script&gt;" in detail
    timeline = detail.split('id="tl-h"')[1]
    assert re.search(
        r"<strong>silenced</strong> <span class=\"actor\">by <bdi>alice</bdi></span>\s*"
        r"<span class=\"detail\"><bdi>reason</bdi>=<bdi>deploy in progress &lt;script&gt;",
        timeline,
    )
    assert 'actions/ack"' in detail  # still acknowledgeable while silenced

    resp = await act(client, incident_id, "unsilence", headers={**basic("bob"), "Origin": origin(client)})
    assert resp.status == 303
    data = await api_incident(client, incident_id)
    assert data["status"] == "open" and data["silence_reason"] is None
    assert ("unsilenced", "bob") in [(e["type"], e["actor"]) for e in data["events"]]

    resp = await act(client, incident_id, "resolve")
    assert resp.status == 303
    data = await api_incident(client, incident_id)
    assert data["status"] == "resolved" and data["resolved_by"] == "alice"
    assert ("resolved", "alice") in [(e["type"], e["actor"]) for e in data["events"]]
    detail = await page(client, f"/incidents/{incident_id}")
    assert "This incident is resolved." in detail and "actions/" not in detail
    listing = await page(client, "/")
    assert [r["id"] for r in resolved_rows(listing)] == [incident_id] and not active_rows(listing)


async def test_an_action_event_detail_is_an_object_in_the_api_and_old_string_details_render(
    aiohttp_client: Any, database_url: str, db: Any
) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    assert (await act(client, incident_id, "silence", duration="1h", reason="deploy")).status == 303
    data = await api_incident(client, incident_id)
    silenced = [e for e in data["events"] if e["type"] == "silenced"]
    assert isinstance(silenced[0]["detail"], dict) and silenced[0]["detail"]["reason"] == "deploy"
    # rows written before the store stopped encoding lifecycle details twice hold a JSON string in jsonb
    await db.execute("UPDATE incident_events SET detail = to_jsonb(detail::text) WHERE type = 'silenced'")
    assert await db.fetchval("SELECT jsonb_typeof(detail) FROM incident_events WHERE type = 'silenced'") == "string"
    detail = await page(client, f"/incidents/{incident_id}")
    assert "<bdi>reason</bdi>=<bdi>deploy</bdi>" in detail


async def test_an_action_on_an_unknown_incident_is_404(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    token = csrf_of(await page(client, f"/incidents/{incident_id}"))
    resp = await act(client, "00000000-0000-0000-0000-000000000000", "ack", csrf=token)
    assert resp.status == 404
    resp = await client.post(
        f"/incidents/{incident_id}/actions/delete",
        data={"csrf": token},
        headers={**ALICE, "Origin": origin(client)},
        allow_redirects=False,
    )
    assert resp.status in (404, 405)
    resp = await client.get(f"/incidents/{incident_id}/actions/ack", headers=ALICE, allow_redirects=False)
    assert resp.status in (404, 405)  # actions are POST only
    assert (await api_incident(client, incident_id))["status"] == "open"


# --- (c) who may view ----------------------------------------------------------------------------------


async def test_viewing_needs_sign_in_by_default_once_users_exist(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    for path in ("/", f"/incidents/{incident_id}", "/?status=resolved"):
        for headers in ({}, basic("alice", "wrong"), basic("nobody", PASSWORD)):
            resp = await client.get(path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Basic ")
            assert "GET /a" not in await resp.text()
    listing = await page(client, "/")
    assert '<span class="who" title="signed in"><bdi>alice</bdi></span>' in listing


async def test_viewing_is_open_with_require_login_false(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"require_login": False}))
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    listing = await page(client, "/", headers={})
    assert [r["id"] for r in active_rows(listing)] == [incident_id]
    assert '<a href="/signin">Sign in</a>' in listing
    await page(client, f"/incidents/{incident_id}", headers={})


async def test_viewing_is_open_without_users_and_actions_explain_how_to_add_them(
    aiohttp_client: Any, database_url: str
) -> None:
    client = await start(aiohttp_client, database_url, make_config(users=False))
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    detail = await page(client, f"/incidents/{incident_id}", headers={})
    assert "add users to the config" in detail and "actions/ack" not in detail
    resp = await client.post(
        f"/incidents/{incident_id}/actions/ack",
        data={"csrf": "0" * 64},
        headers={"Origin": origin(client)},
        allow_redirects=False,
    )
    assert resp.status == 401


async def test_viewing_can_be_required_without_users(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"require_login": True}, users=False))
    assert (await client.get("/")).status == 401


PROXY = {"X-Forwarded-User": "carol"}


async def test_the_proxy_header_is_accepted_from_a_trusted_address(aiohttp_client: Any, database_url: str) -> None:
    config = make_config(
        {"proxy_auth": {"header": "X-Forwarded-User", "trusted_proxies": ["127.0.0.0/8"]}}, users=False
    )
    client = await start(aiohttp_client, database_url, config)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    assert (await client.get("/")).status == 401  # proxy auth on: viewing needs a user by default
    listing = await page(client, "/", headers=PROXY)
    assert '<span class="who" title="signed in"><bdi>carol</bdi></span>' in listing
    detail = await page(client, f"/incidents/{incident_id}", headers=PROXY)
    resp = await act(client, incident_id, "ack", headers={**PROXY, "Origin": origin(client)}, csrf=csrf_of(detail))
    assert resp.status == 303
    data = await api_incident(client, incident_id, headers=PROXY)
    assert data["acknowledged_by"] == "carol"
    assert ("acknowledged", "carol") in [(e["type"], e["actor"]) for e in data["events"]]
    # Basic auth is not configured here, so an Authorization header signs no one in
    assert (await client.get("/", headers=ALICE)).status == 401


async def test_the_proxy_header_is_ignored_from_an_untrusted_address(aiohttp_client: Any, database_url: str) -> None:
    config = make_config({"proxy_auth": {"header": "X-Forwarded-User", "trusted_proxies": ["10.0.0.0/8"]}})
    client = await start(aiohttp_client, database_url, config)
    incident_id = (await ingest(client, alert(path="/a")))[0]["id"]
    resp = await client.get("/", headers=PROXY)  # the test client connects from 127.0.0.1
    assert resp.status == 401
    detail = await page(client, f"/incidents/{incident_id}")  # alice by Basic auth still works
    token = csrf_of(detail)
    resp = await act(client, incident_id, "ack", headers={**PROXY, "Origin": origin(client)}, csrf=token)
    assert resp.status == 401
    # with both, the untrusted header is ignored and the Basic user is the actor
    resp = await act(client, incident_id, "ack", headers={**PROXY, **ALICE, "Origin": origin(client)}, csrf=token)
    assert resp.status == 303
    assert (await api_incident(client, incident_id))["acknowledged_by"] == "alice"


async def test_the_proxy_header_is_ignored_when_proxy_auth_is_off(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    assert (await client.get("/", headers=PROXY)).status == 401


# --- (d) counts, filters, sort, pagination --------------------------------------------------------------


OWNERS = [{"name": "payments", "match": {"service": "payments"}}, {"name": "search", "match": {"service": "search"}}]


async def seed(client: Any) -> dict[str, str]:
    """Eight incidents, ingested one webhook at a time so that first_seen follows this order."""
    specs = [
        ("w_old", alert(alertname="HighLatency", path="/search", service="search", severity="warning")),
        ("c_old", alert(alertname="HighErrorRate", path="/pay", service="payments", severity="critical")),
        ("w_mid", alert(alertname="DiskFull", path="/disk", severity="warning")),
        ("c_mid", alert(alertname="HighLatency", path="/pay", service="payments", severity="page")),
        ("w_new", alert(alertname="HighErrorRate", path="/search", service="search", severity="info")),
        ("c_new", alert(alertname="CheckoutSLOBurn", path="/checkout", severity="critical")),
        ("r_one", alert(alertname="HighLatency", path="/gone", severity="critical")),
        ("r_two", alert(alertname="HighLatency", path="/gone2", service="payments", severity="warning")),
    ]
    ids: dict[str, str] = {}
    for name, a in specs:
        ids[name] = (await ingest(client, a))[0]["id"]
    for name in ("r_one", "r_two"):
        a = dict(next(s for n, s in specs if n == name))
        a.update(status="resolved", endsAt="2026-11-27T11:00:00Z")
        await ingest(client, a)
    return ids


async def test_counts_sort_and_filters(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config(owners=OWNERS))
    ids = await seed(client)
    assert (await act(client, ids["c_mid"], "ack")).status == 303
    assert (await act(client, ids["w_mid"], "silence", duration="1h", reason="known")).status == 303

    listing = await page(client, "/")
    counts = dict(
        re.findall(
            r'<a class="count count-(?:critical|warning)" href="/\?severity=(\w+)">.*?<strong>(\d+)', listing, re.S
        )
    )
    assert counts == {"critical": "3", "warning": "3"}
    by_status = dict(re.findall(r'href="/\?status=(\w+)">\w+ <strong>(\d+)</strong>', listing))
    assert by_status == {"open": "4", "acknowledged": "1", "silenced": "1"}

    order = [r["id"] for r in active_rows(listing)]
    assert order == [ids[n] for n in ("c_old", "c_mid", "c_new", "w_old", "w_mid", "w_new")]
    active = {r["id"]: r for r in active_rows(listing)}
    assert active[ids["c_old"]]["kind"] == "error_rate" and active[ids["c_new"]]["kind"] == "slo_violation"
    assert active[ids["c_old"]]["owner"] == "payments" and active[ids["w_mid"]]["owner"] == "default"
    assert active[ids["c_mid"]]["status"] == "acknowledged" and active[ids["w_mid"]]["status"] == "silenced"
    assert [r["id"] for r in resolved_rows(listing)] == [ids["r_two"], ids["r_one"]]  # newest resolved first

    async def shown(query: str) -> tuple[list[str], list[str]]:
        html = await page(client, "/?" + query)
        name = {v: k for k, v in ids.items()}
        return [name[r["id"]] for r in active_rows(html)], [name[r["id"]] for r in resolved_rows(html)]

    assert await shown("severity=critical") == (["c_old", "c_mid", "c_new"], ["r_one"])
    assert await shown("severity=warning&status=open") == (["w_old", "w_new"], [])
    assert await shown("status=acknowledged") == (["c_mid"], [])
    assert await shown("status=acknowledged,silenced") == (["c_mid", "w_mid"], [])
    assert await shown("status=acknowledged&status=silenced") == (["c_mid", "w_mid"], [])
    assert await shown("status=resolved") == ([], ["r_two", "r_one"])
    assert await shown("route=POST%20/pay") == ([], [])
    assert await shown("route=GET%20/pay") == (["c_old", "c_mid"], [])
    assert await shown("route=GET+/search,GET+/disk") == (["w_old", "w_mid", "w_new"], [])
    assert await shown("kind=latency") == (["c_mid", "w_old"], ["r_two", "r_one"])
    assert await shown("kind=error_rate&severity=warning") == (["w_new"], [])
    assert await shown("owner=payments") == (["c_old", "c_mid"], ["r_two"])
    assert await shown("owner=search&kind=latency") == (["w_old"], [])
    # the filter form submits empty fields for "any"
    assert await shown("status=&severity=critical&route=&kind=&owner=") == (["c_old", "c_mid", "c_new"], ["r_one"])

    html = await page(client, "/?severity=critical&owner=payments")
    assert '<details class="filters" open>' in html and "Filter (active)" in html
    assert '<option value="critical" selected>' in html and 'name="owner" value="payments"' in html
    html = await page(client, "/?owner=nobody")
    assert "Nothing is burning that matches the filter." in html and "No resolved incidents." in html


async def test_the_resolved_section_is_paginated(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url)
    firing = [alert(path=f"/r/{i:02d}", severity="critical" if i % 2 else "warning") for i in range(30)]
    await ingest(client, *firing[:15])
    await ingest(client, *firing[15:])
    listed = await (await client.get("/api/incidents?limit=100", headers=ALICE)).json()
    opened = {r["id"] for r in listed["incidents"]}
    assert len(opened) == 30
    # resolved in three webhooks: two batches share one resolved_at, so ties are broken by id
    for chunk in (firing[:10], firing[10:20], firing[20:]):
        await ingest(client, *[{**a, "status": "resolved", "endsAt": "2026-11-27T11:00:00Z"} for a in chunk])
    still_open = await ingest(client, alert(path="/still-open"))

    first = await page(client, "/")
    assert [r["id"] for r in active_rows(first)] == [still_open[0]["id"]]
    page1 = [r["id"] for r in resolved_rows(first)]
    assert len(page1) == 25
    older = more_link(first, "Older")
    assert older and older.startswith("/?before=")
    second = await page(client, older)
    page2 = [r["id"] for r in resolved_rows(second)]
    assert len(page2) == 5 and more_link(second, "Older") is None
    assert set(page1) | set(page2) == opened and not set(page1) & set(page2)
    # newest resolved first: the last webhook's incidents lead
    listed = await (await client.get("/api/incidents?status=resolved&limit=100", headers=ALICE)).json()
    last_batch = {r["id"] for r in listed["incidents"] if r["route"] in {f"GET /r/{i:02d}" for i in range(20, 30)}}
    assert set(page1[:10]) == last_batch

    # the filter is kept when paging
    crit = await page(client, "/?severity=critical&status=resolved")
    assert len(resolved_rows(crit)) == 15 and more_link(crit, "Older") is None
    few = await page(client, "/?status=resolved&route=" + ",".join(f"GET+/r/{i:02d}" for i in range(28)))
    nxt = more_link(few, "Older")
    assert nxt and "route=" in nxt and "status=resolved" in nxt
    rest = await page(client, nxt)
    assert len(resolved_rows(rest)) == 3 and 'id="active-h"' not in rest


async def test_the_active_list_is_paginated_in_sort_order(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"page_size": 3}))
    for i in range(8):
        await ingest(client, alert(path=f"/p/{i}", severity="critical" if i in (2, 5, 7) else "warning"))
    seen: list[dict[str, str]] = []
    path: str | None = "/"
    pages = 0
    while path:
        html = await page(client, path)
        got = active_rows(html)
        assert 1 <= len(got) <= 3
        seen.extend(got)
        path = more_link(html, "More active incidents")
        pages += 1
        assert pages <= 4
    assert pages == 3
    assert [r["route"] for r in seen] == [f"GET /p/{i}" for i in (2, 5, 7, 0, 1, 3, 4, 6)]


async def test_the_page_shows_what_an_sre_needs(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"refresh": "15s"}))
    started = (datetime.now(UTC) - timedelta(hours=2, minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = await ingest(
        client,
        alert(
            path="/pay",
            severity="critical",
            instance="a",
            starts_at=started,
            annotations={
                "summary": "p99 over 2s",
                "description": "since the deploy",
                "runbook_url": "https://runbooks.example/pay",
            },
        ),
        alert(path="/pay", severity="critical", instance="b", annotations={"summary": "p99 over 2s"}),
    )
    incident_id = created[0]["id"]
    await ingest(
        client,
        {
            **alert(path="/pay", severity="critical", instance="b"),
            "status": "resolved",
            "endsAt": "2026-11-27T12:00:00Z",
        },
    )
    listing = await page(client, "/")
    assert '<meta name="refresh-seconds" content="15">' in listing
    assert '<noscript><meta http-equiv="refresh" content="15"></noscript>' in listing
    assert 'data-label="Firing">1/2</td>' in listing and "p99 over 2s" in listing
    assert re.search(r'<time datetime="[^"]+" title="opened \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', listing)
    detail = await page(client, f"/incidents/{incident_id}")
    for text in (
        "p99 over 2s",
        "since the deploy",
        'href="https://runbooks.example/pay"',
        "1/2 alerts firing",
        "Mapped by",
        "rule <code>default</code>",
        "Alerts (2)",
        "status-resolved",
        "alert resolved",
        "by <bdi>alertmanager</bdi>",
        "Common labels",
        "http://am-1:9093/#/silences/new?filter=",
    ):
        assert text in detail, text
    assert re.search(r'title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">2h [45]m ago</time>', detail)
    # the silence link's matchers are the incident's common labels, not one alert's
    silence = re.search(r'href="(http://am-1:9093/#/silences/new\?filter=[^"]+)"', detail)
    assert silence and "instance" not in silence.group(1) and "path%3D%22%2Fpay%22" in silence.group(1)


async def test_pages_render_with_no_incidents_and_refresh_off(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config({"refresh": "0s"}))
    listing = await page(client, "/")
    assert "Nothing is burning." in listing and "No resolved incidents." in listing
    assert "refresh" not in listing.split("</head>")[0].replace("refresh-seconds", "")
    assert "refresh-seconds" not in listing
    resp = await client.get("/static/receiver.css")
    assert resp.status == 200 and "prefers-color-scheme: dark" in await resp.text()
    resp = await client.get("/static/receiver.js")
    assert resp.status == 200
    css = await (await client.get("/static/receiver.css")).text()
    assert "@import" not in css and "url(" not in css  # no external fonts or CDNs
    for html in (listing,):
        assert not re.search(r'(src|href)="(https?:)?//', html.split("<main>")[0])


async def test_the_read_api_needs_sign_in_when_the_page_does(
    aiohttp_client: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("READER_TOKEN", "reader-token-1234567890")
    config = parse_config(
        json.dumps(
            {
                "ui": {"users": [{"name": "alice", "password_hash": HASH}]},
                "api_tokens": [{"name": "ci", "token_env": "READER_TOKEN"}],
            }
        )
    )
    client = await start(aiohttp_client, database_url, config)
    [inc] = await ingest(client, alert())
    for path in ("/api/incidents", f"/api/incidents/{inc['id']}"):
        for headers in ({}, basic(password="wrong"), {"Authorization": "Bearer not-the-token"}):
            resp = await client.get(path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert "API token" in (await resp.json())["error"]
            assert "Basic" in resp.headers["WWW-Authenticate"] and "Bearer" in resp.headers["WWW-Authenticate"]
        for headers in (ALICE, {"Authorization": "Bearer reader-token-1234567890"}):
            resp = await client.get(path, headers=headers)
            assert resp.status == 200, (path, headers)
            body = await resp.json()
            ids = [i["id"] for i in body["incidents"]] if path == "/api/incidents" else [body["id"]]
            assert ids == [inc["id"]]


async def test_the_read_api_is_open_when_the_page_is(aiohttp_client: Any, database_url: str) -> None:
    client = await start(aiohttp_client, database_url, make_config(users=False))
    [inc] = await ingest(client, alert())
    assert (await client.get("/api/incidents")).status == 200
    assert (await client.get(f"/api/incidents/{inc['id']}")).status == 200
