"""End to end: a Watchdog through a real Alertmanager (Debian's 0.25) keeps a heartbeat healthy; stopping
Alertmanager opens the missed-heartbeat incident, which pages a fake Slack over real HTTP; starting it again
resolves the incident with the gap on its timeline.

Alertmanager is configured by the README's example ("A Watchdog from Prometheus through Alertmanager") with only
the receiver's address, the token file and its timers replaced: seconds instead of minutes, and the heartbeat's
every and grace to match. The Prometheus rule of the same section is checked by promtool. The receiver runs with
its loops, as `receiver serve` does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from receiver.app import create_app
from receiver.config import parse_config
from tests.alertmanager import AM_BINARY, Alertmanager, Alertmanagers
from tests.fakes import FakeSlack
from tests.helpers import am_alert, deadline, eventually
from tests.readme import code_blocks

pytestmark = [
    pytest.mark.alertmanager,
    pytest.mark.timeout(deadline(90)),
    pytest.mark.skipif(
        not os.path.exists(AM_BINARY), reason=f"{AM_BINARY} is missing: apt-get install -y prometheus-alertmanager"
    ),
]
HEADING = "A Watchdog from Prometheus through Alertmanager"
KEY = "heartbeat prod-prometheus::heartbeat_missed"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# The README's text -> the test's, each with how often it appears in the snippet.
REPLACEMENTS = {
    "url: http://receiver:9095/webhook": (1, "url: {url}"),
    "credentials_file: /etc/alertmanager/receiver.token": (1, "credentials_file: {credentials_file}"),
    "group_wait: 10s": (1, "group_wait: 1s"),
    "group_interval: 1m": (2, "group_interval: 1s"),
    "repeat_interval: 5m ": (1, "repeat_interval: 2s "),  # the Watchdog's route: pings every ~2 s
}
RECEIVER_CONFIG = """
webhook: {token_env: TOK}
owners:
  - name: sre
    slack_url_env: SLACK_URL
escalation: {interval: 1s}
heartbeats:
  - name: prod-prometheus
    match: ['alertname="Watchdog"', 'prometheus="prod"']
    every: 2s
    grace: 3s
    owner: sre
    severity: critical
"""
WATCHDOG = {"alertname": "Watchdog", "prometheus": "prod", "severity": "none"}


def alertmanager_config(receiver_url: str, credentials_file: Path) -> str:
    rule, snippet = code_blocks(HEADING, "yaml")
    assert "expr: vector(1)" in rule
    for old, (count, new) in REPLACEMENTS.items():
        assert snippet.count(old) == count, f"the README's Watchdog snippet no longer has {old!r} {count} time(s)"
        snippet = snippet.replace(old, new.format(url=receiver_url, credentials_file=credentials_file))
    return snippet


def start_alertmanager(alertmanagers: Alertmanagers, receiver_url: str, token: str) -> Alertmanager:
    token_file = alertmanagers.workdir("am-watchdog") / "receiver.token"
    token_file.write_text(token + "\n")
    return alertmanagers("am-watchdog", alertmanager_config(receiver_url, token_file))


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed (apt-get install prometheus)")
def test_the_readme_watchdog_rule_is_valid(tmp_path: Path) -> None:
    rule, _ = code_blocks(HEADING, "yaml")
    path = tmp_path / "watchdog.rules.yml"
    path.write_text(rule)
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "1 rules found" in result.stdout, result.stdout + result.stderr


async def test_a_watchdog_keeps_the_heartbeat_healthy_its_silence_pages_and_its_return_resolves(
    database_url: str, aiohttp_server: Any, aiohttp_client: Any, alertmanagers: Alertmanagers
) -> None:
    token = "e2e-" + secrets.token_hex(12)
    async with FakeSlack() as slack:
        config = parse_config(RECEIVER_CONFIG, env={"TOK": token, "SLACK_URL": slack.url})
        server = await aiohttp_server(create_app(config, database_url), host="127.0.0.1")
        client = await aiohttp_client(server)
        receiver_url = str(server.make_url("/webhook"))

        async def heartbeat() -> dict[str, Any]:
            r = await client.get("/api/heartbeats")
            assert r.status == 200, await r.text()
            [hb] = (await r.json())["heartbeats"]
            return dict(hb)

        async def incidents() -> list[dict[str, Any]]:
            r = await client.get("/api/incidents", params={"status": "open,acknowledged,silenced,resolved"})
            return list((await r.json())["incidents"])

        am = start_alertmanager(alertmanagers, receiver_url, token)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=deadline(30))) as session:
            await am.wait_ready(session)
            await am.post_alerts(session, [am_alert(WATCHDOG, datetime.now(UTC))])

            # Alertmanager repeats the Watchdog every ~2 s: several pings, each within every + grace
            async def pinged_often() -> dict[str, Any] | None:
                hb = await heartbeat()
                return hb if hb["pings"] >= 4 else None

            hb = await eventually(pinged_often, "four pings of the Watchdog", timeout=40)
            assert hb["status"] == "healthy" and hb["last_sender"] == "alertmanager"
            assert hb["last_labels"]["alertname"] == "Watchdog" and hb["last_labels"]["prometheus"] == "prod"
            assert await incidents() == []  # pings are never incidents, and it was never missed
            assert slack.requests == []

            am.stop()  # Prometheus' Alertmanager is gone: nothing pings any more

            async def paged() -> bool:
                return f"Incident opened: {KEY}" in slack.headlines()

            await eventually(paged, "the missed-heartbeat incident to page", timeout=30)
            [inc] = await incidents()
            assert (inc["incident_key"], inc["status"], inc["severity"]) == (KEY, "open", "critical")
            assert (await heartbeat())["status"] == "missed"

            am = start_alertmanager(alertmanagers, receiver_url, token)  # back, and Prometheus re-sends
            await am.wait_ready(session)
            await am.post_alerts(session, [am_alert(WATCHDOG, datetime.now(UTC))])

            async def resolved() -> dict[str, Any] | None:
                r = await client.get(f"/api/incidents/{inc['id']}")
                detail = dict(await r.json())
                return detail if detail["status"] == "resolved" else None

            detail = await eventually(resolved, "the ping to resolve the incident", timeout=30)
            [resumed] = [e for e in detail["events"] if e["type"] == "heartbeat_resumed"]
            assert resumed["actor"] == "heartbeat" and resumed["detail"]["gap_seconds"] >= 5
            assert resumed["detail"]["sender"] == "alertmanager"
            assert (await heartbeat())["status"] == "healthy"

            async def resolve_notice() -> bool:
                return any(h.startswith("Resolved after") for h in slack.headlines())

            await eventually(resolve_notice, "the resolve notice to reach Slack", timeout=20)
            assert [h for h in slack.headlines() if h.startswith("Incident opened")] == [f"Incident opened: {KEY}"]
