"""The status page in a real headless Chromium, driven over the DevTools protocol (no driver library).

A receiver serves real incidents (ingested through POST /webhook) on loopback. Chromium signs in with
HTTP Basic, reads the list, follows a link to an incident, and acknowledges it with a real mouse click
on the form's button; the API then shows alice as the actor. Screenshots of the list and detail pages at
desktop and phone widths go to test-artifacts/ at the repository root.

CI: `apt-get install -y chromium` (Debian's); this test skips only when the binary is missing. Nothing
here downloads a browser. Every wait has a deadline and Chromium's process group is killed in finally.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.app import create_app
from receiver.config import parse_config
from receiver.web.users import hash_password
from tests.helpers import alert, deadline, eventually, payload

pytestmark = [pytest.mark.browser, pytest.mark.timeout(deadline(240))]

CHROMIUM = os.environ.get("CHROMIUM_BIN") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "s3cret pw"
API_TOKEN = "bob-api-token-0123456789"
CALL_TIMEOUT = deadline(30)  # one DevTools command or page load; scaled by RECEIVER_TEST_TIME_SCALE
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}


# --- a minimal DevTools protocol client ------------------------------------------------------------------


class CDPError(Exception):
    pass


class Page:
    """One page target over its websocket: commands with ids and deadlines, and event waiters."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.waiters: list[tuple[str, asyncio.Future[Any]]] = []
        self.log: list[str] = []  # console errors, exceptions and CSP reports
        self.sent: list[dict[str, Any]] = []  # the headers Chromium really sent (Network.*ExtraInfo)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                if "id" in data:
                    fut = self.pending.pop(data["id"], None)
                    if fut and not fut.done():
                        if "error" in data:
                            fut.set_exception(CDPError(f"{data['error']}"))
                        else:
                            fut.set_result(data.get("result", {}))
                    continue
                method, params = data.get("method", ""), data.get("params", {})
                self._note(method, params)
                for name, fut in list(self.waiters):
                    if name == method and not fut.done():
                        fut.set_result(params)
                        self.waiters.remove((name, fut))
        finally:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(CDPError("the DevTools connection closed"))

    def _note(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSentExtraInfo":
            self.sent.append({k.lower(): v for k, v in params.get("headers", {}).items()})
        if method == "Runtime.exceptionThrown":
            self.log.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.log.append("console: " + json.dumps(params.get("args", []))[:500])
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error" and "favicon.ico" not in entry.get("url", ""):
                self.log.append(f"log {entry.get('source')}: {entry.get('text', '')[:500]}")

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return dict(await asyncio.wait_for(fut, CALL_TIMEOUT))

    def expect(self, event: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append((event, fut))
        return fut

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        loaded = self.expect("Page.loadEventFired")
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        await asyncio.wait_for(loaded, CALL_TIMEOUT)

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, and wait for the page it loads."""
        box = await self.js(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return null;"
            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height}; })()"
        )
        assert box and box["w"] > 0 and box["h"] > 0, f"{selector} is not on the page or not visible"
        loaded = self.expect("Page.loadEventFired")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)
        await asyncio.wait_for(loaded, CALL_TIMEOUT)

    async def screenshot(self, path: Path, metrics: dict[str, Any], full: bool = True) -> bytes:
        """The whole page (height capped), or the first screen, at the given device metrics, as PNG."""
        await self.call("Emulation.setDeviceMetricsOverride", **metrics)
        await self.js("window.scrollTo(0, 0)")
        height = metrics["height"]
        if full:
            height = max(height, min(int(await self.js("Math.ceil(document.documentElement.scrollHeight)")), 6000))
        shot = await self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": metrics["width"], "height": height, "scale": 1},
        )
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        return data


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    profile = Path(tempfile.mkdtemp(prefix="receiver-chromium-"))
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    stderr = open(profile.parent / (profile.name + ".log"), "wb")  # noqa: SIM115 - closed in finally
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT))
    page: Page | None = None
    try:
        port_file = profile / "DevToolsActivePort"

        async def started() -> str | None:
            if proc.returncode is not None:
                stderr.flush()
                log = (profile.parent / (profile.name + ".log")).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium exited with {proc.returncode}: {log}")
            return port_file.read_text().strip() if port_file.exists() else None

        port = int((await eventually(started, "Chromium to start (DevToolsActivePort)", 60, 0.05)).split()[0])

        async def page_targets() -> list[dict[str, Any]]:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                return [t for t in await resp.json() if t.get("type") == "page"]

        targets = await eventually(page_targets, "Chromium's page target", 30, 0.05)
        ws = await session.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0, autoping=True)
        page = Page(ws)
        for domain in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            await page.call(domain)
        yield page
    finally:
        if page is not None:
            page.reader.cancel()
            with contextlib.suppress(BaseException):
                await page.ws.close()
        await session.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group started above: the wrapper and its children
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), deadline(10))
        stderr.close()
        shutil.rmtree(profile, ignore_errors=True)
        with contextlib.suppress(OSError):
            (profile.parent / (profile.name + ".log")).unlink()


# --- the receiver and its incidents ------------------------------------------------------------------------


def config(refresh: str = "0s") -> Any:
    return parse_config(
        json.dumps(
            {
                "ui": {"users": [{"name": "alice", "password_hash": hash_password(PASSWORD)}], "refresh": refresh},
                "api_tokens": [{"name": "bob", "token_env": "RECEIVER_TEST_API_TOKEN"}],
                "owners": [
                    {"name": "payments", "match": {"service": "payments"}},
                    {"name": "search", "match": {"service": "search"}},
                ],
            }
        ),
        env={"RECEIVER_TEST_API_TOKEN": API_TOKEN},
    )


ALERTS = [
    alert(
        alertname="HighErrorRate",
        method="POST",
        path="/api/payments",
        service="payments",
        severity="critical",
        instance="pay-1:8080",
        starts_at="2026-11-27T09:12:00Z",
        generator_url="http://prometheus:9090/graph?g0.expr=rate%28http_requests_total%7Bcode%3D~%225..%22%7D%5B5m%5D%29",
        annotations={
            "summary": "5xx ratio 12% on POST /api/payments",
            "description": "The error ratio has been above 5% for 10 minutes since the 09:05 deploy. "
            "Card authorisations fail with upstream timeouts from the acquirer.",
            "runbook_url": "https://runbooks.example.com/payments/5xx",
            "sentry_url": "https://sentry.example.com/organizations/acme/issues/4242/",
        },
    ),
    alert(
        alertname="HighErrorRate",
        method="POST",
        path="/api/payments",
        service="payments",
        severity="critical",
        instance="pay-2:8080",
        starts_at="2026-11-27T09:13:00Z",
        annotations={"summary": "5xx ratio 12% on POST /api/payments"},
    ),
    alert(
        alertname="CheckoutSLOBurn",
        method="GET",
        path="/api/checkout",
        service="payments",
        severity="critical",
        annotations={"summary": "Checkout availability SLO burning 14x"},
    ),
    alert(
        alertname="HighLatency",
        method="GET",
        path="/api/search",
        service="search",
        severity="warning",
        annotations={"summary": "p99 latency 2.4s (SLO 800ms)"},
    ),
    {
        **alert(
            alertname="DiskFillingUp",
            job="postgres",
            instance="db-1:9187",
            severity="warning",
            annotations={"summary": "Disk /var/lib/postgresql will be full in 6h"},
        ),
        "labels": {"alertname": "DiskFillingUp", "job": "postgres", "instance": "db-1:9187", "severity": "warning"},
    },
    alert(
        alertname="HighLatency",
        method="GET",
        path="/api/items/{id}",
        service="search",
        severity="warning",
        annotations={"summary": "p99 latency 1.3s"},
    ),
]
RESOLVED = [
    alert(
        alertname="HighLatency",
        method="GET",
        path="/api/users",
        severity="warning",
        annotations={"summary": "p99 latency 900ms"},
    ),
    alert(
        alertname="HighErrorRate",
        method="DELETE",
        path="/api/sessions",
        severity="critical",
        annotations={"summary": "5xx on logout"},
    ),
]


async def seed(base: str) -> dict[str, str]:
    """Ingest through the webhook like Alertmanager; acknowledge one and silence one by API; resolve two.
    Returns the incident ids by route."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as http:

        async def post(body: dict[str, Any]) -> None:
            async with http.post(f"{base}/webhook", json=body) as resp:
                assert resp.status == 200, await resp.text()

        for a in [*ALERTS, *RESOLVED]:
            await post(payload(a, external_url="http://alertmanager.example:9093"))
        for a in RESOLVED:
            await post(payload({**a, "status": "resolved", "endsAt": "2026-11-27T11:00:00Z"}))
        async with http.get(
            f"{base}/api/incidents?status=open,acknowledged,silenced,resolved&limit=100",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as resp:
            ids = {i["route"]: i["id"] for i in (await resp.json())["incidents"]}
        async with http.post(
            f"{base}/api/incidents/{ids['GET /api/search']}/ack", headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(
            f"{base}/api/incidents/{ids['postgres']}/silence",
            json={"duration": "4h", "reason": "volume resize in progress"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        return ids


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_png(path: Path, width: int) -> None:
    data = path.read_bytes()
    w, h = png_size(data)
    assert w == width and h >= 600, (path.name, w, h)
    assert len(data) > 20_000, f"{path.name} is only {len(data)} bytes: a blank page?"


# --- the test --------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"Chromium is not installed at {CHROMIUM} (CI installs it: apt-get install -y chromium)",
)
async def test_triage_and_acknowledge_in_a_real_browser(aiohttp_server: Any, database_url: str) -> None:
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    server = await aiohttp_server(create_app(config(), database_url, loops=False), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    ids = await seed(base)
    target = ids["POST /api/payments"]
    timings["seed"] = time.monotonic() - t0
    ARTIFACTS.mkdir(exist_ok=True)

    t1 = time.monotonic()
    async with chromium() as page:
        timings["chromium start"] = time.monotonic() - t1
        await page.call("Emulation.setDeviceMetricsOverride", **DESKTOP)

        # Sign in: credentials in the URL answer the Basic challenge; Chromium then keeps them for the origin.
        await page.goto(f"http://alice:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{server.port}/")
        assert await page.js("document.title") == "Incidents · receiver"
        assert await page.js("document.querySelector('.who')?.textContent") == "alice"
        listing = await page.js("""JSON.stringify({
            rows: [...document.querySelectorAll('section[aria-labelledby=active-h] tbody tr')].map(tr => ({
                severity: tr.className, href: tr.querySelector('a').getAttribute('href'),
                status: tr.querySelector('.status').textContent})),
            resolved: document.querySelectorAll('section[aria-labelledby=resolved-h] tbody tr').length,
            counts: [...document.querySelectorAll('.count')].map(a => a.textContent.replace(/\\s+/g, ' ').trim()),
            overflow: document.documentElement.scrollWidth - window.innerWidth,
            css: getComputedStyle(document.body).backgroundColor})""")
        listing = json.loads(listing)
        assert [r["severity"] for r in listing["rows"]] == ["row-critical"] * 2 + ["row-warning"] * 3
        assert listing["rows"][0]["href"] == f"/incidents/{target}"  # oldest critical first
        assert sorted(r["status"] for r in listing["rows"]) == ["acknowledged", "open", "open", "open", "silenced"]
        assert listing["resolved"] == 2
        assert {"▲ critical 2", "● warning 3", "open 3", "acknowledged 1", "silenced 1"} <= set(listing["counts"])
        assert listing["overflow"] <= 0, "the list scrolls sideways on a desktop"
        assert listing["css"] != "rgba(0, 0, 0, 0)", "the stylesheet did not load"
        await page.screenshot(ARTIFACTS / "list-desktop.png", DESKTOP)

        # Through to the incident by clicking its link.
        await page.click(f'a[href="/incidents/{target}"]')
        assert await page.js("location.pathname") == f"/incidents/{target}"
        assert "POST /api/payments" in await page.js("document.querySelector('h1').textContent")
        assert await page.js("document.querySelectorAll('li.alert').length") == 2
        links = await page.js("[...document.querySelectorAll('.evidence a')].map(a => a.href)")
        assert "https://runbooks.example.com/payments/5xx" in links
        assert any(u.startswith("http://alertmanager.example:9093/#/silences/new?filter=") for u in links)
        await page.screenshot(ARTIFACTS / "incident-desktop.png", DESKTOP)

        # Acknowledge through the form: a real click on the button, a real POST with the page's token.
        t2 = time.monotonic()
        await page.click(f'form[action="/incidents/{target}/actions/ack"] button')
        timings["acknowledge round trip"] = time.monotonic() - t2
        # the form POST carried the page's real origin (a no-referrer policy would make it "null")
        posts = [h for h in page.sent if h.get("content-type") == "application/x-www-form-urlencoded"]
        assert [(h.get("origin"), h.get("sec-fetch-site")) for h in posts] == [(base, "same-origin")], posts
        body = await page.js("document.body.innerText")
        assert await page.js("location.pathname + location.search") == f"/incidents/{target}?done=ack", body[:500]
        assert await page.js("document.querySelector('.notice').textContent") == "Acknowledged."
        assert await page.js("!!document.querySelector('form[action$=\"/actions/unack\"]')")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/api/incidents/{target}", headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp,
        ):
            data = await resp.json()
        assert data["status"] == "acknowledged" and data["acknowledged_by"] == "alice", data
        assert [e["actor"] for e in data["events"] if e["type"] == "acknowledged"] == ["alice"]
        await page.screenshot(ARTIFACTS / "incident-acknowledged-desktop.png", DESKTOP)

        # Phone width: the table turns into cards and nothing scrolls sideways.
        await page.call("Emulation.setDeviceMetricsOverride", **PHONE)
        await page.goto(f"{base}/")
        assert await page.js("document.documentElement.scrollWidth - window.innerWidth") <= 0
        assert await page.js("getComputedStyle(document.querySelector('table.incidents thead')).display") == "none"
        await page.screenshot(ARTIFACTS / "list-phone.png", PHONE)
        await page.screenshot(ARTIFACTS / "list-phone-screen.png", PHONE, full=False)
        await page.goto(f"{base}/incidents/{ids['GET /api/checkout']}")
        assert await page.js("document.documentElement.scrollWidth - window.innerWidth") <= 0
        await page.screenshot(ARTIFACTS / "incident-phone.png", PHONE)
        await page.screenshot(ARTIFACTS / "incident-phone-screen.png", PHONE, full=False)

        # Dark theme through prefers-color-scheme.
        await page.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
        await page.goto(f"{base}/")
        assert await page.js("getComputedStyle(document.body).backgroundColor") == "rgb(18, 19, 22)"
        await page.screenshot(ARTIFACTS / "list-phone-dark.png", PHONE)
        await page.call("Emulation.setEmulatedMedia", features=[])

        assert not page.log, page.log  # no script errors, no CSP violations
    timings["total"] = time.monotonic() - t0

    check_png(ARTIFACTS / "list-desktop.png", 1280)
    check_png(ARTIFACTS / "incident-desktop.png", 1280)
    check_png(ARTIFACTS / "incident-acknowledged-desktop.png", 1280)
    for name in (
        "list-phone.png",
        "incident-phone.png",
        "list-phone-dark.png",
        "list-phone-screen.png",
        "incident-phone-screen.png",
    ):
        check_png(ARTIFACTS / name, 780)
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(timings, indent=2))
    print("browser timings:", json.dumps({k: round(v, 2) for k, v in timings.items()}))


@pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"Chromium is not installed at {CHROMIUM} (CI installs it: apt-get install -y chromium)",
)
async def test_auto_refresh_never_interrupts_a_form(aiohttp_server: Any, database_url: str) -> None:
    server = await aiohttp_server(create_app(config(refresh="1s"), database_url, loops=False), host="127.0.0.1")
    base = f"http://127.0.0.1:{server.port}"
    ids = await seed(base)
    async with chromium() as page:
        await page.call("Emulation.setDeviceMetricsOverride", **DESKTOP)
        await page.goto(
            f"http://alice:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{server.port}/incidents/{ids['GET /api/checkout']}"
        )
        # idle: the page reloads itself (a marker set on this document disappears)
        await page.js("window.__marker = 1")
        reloaded = page.expect("Page.loadEventFired")
        await asyncio.wait_for(reloaded, CALL_TIMEOUT)
        assert await page.js("window.__marker === undefined")
        # typing a silence reason: no reload, the text stays
        await page.js("window.__marker = 2; document.querySelector('input[name=reason]').focus()")
        await page.call("Input.insertText", text="rolling back the deploy")
        # three refresh periods by the page's own clock (a loaded machine slows both alike); a reload meanwhile
        # would destroy this evaluation's context and fail it
        await page.js("new Promise(resolve => setTimeout(resolve, 3000))")
        assert await page.js("window.__marker") == 2
        assert await page.js("document.querySelector('input[name=reason]').value") == "rolling back the deploy"
        assert not page.log, page.log
