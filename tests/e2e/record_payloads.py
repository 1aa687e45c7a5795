"""Record real Alertmanager webhook bodies into tests/data (not a test; run by hand when Alertmanager changes).

    python -m tests.e2e.record_payloads [--binary /usr/bin/prometheus-alertmanager] [--out tests/data]

Starts Alertmanager (gossip off) against a capturing aiohttp server on loopback, posts two alerts,
resolves one, then the other, and writes the three notifications it sends, pretty-printed with the
keys in Alertmanager's order:

    alertmanager-<version>-firing.json                 status firing, two firing alerts
    alertmanager-<version>-firing-with-resolved.json   status firing, one firing and one resolved alert
    alertmanager-<version>-resolved.json               status resolved, the last alert resolved
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

TOKEN = "recording-token"
CONFIG = """\
route:
  receiver: receiver
  group_by: [alertname, path]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: receiver
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rfc3339_nano(moment: datetime, nanos: int) -> str:
    """Prometheus sends nanosecond timestamps; Python has microseconds, so append three digits."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{nanos:03d}Z"


def alert(instance: str, starts_at: str, ends_at: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "labels": {
            "alertname": "HighLatency",
            "job": "api",
            "method": "GET",
            "path": "/api/items/{id}",
            "severity": "critical",
            "instance": instance,
        },
        "annotations": {
            "summary": f"p99 latency of GET /api/items/{{id}} is above 500ms on {instance}",
            "runbook_url": "https://runbooks.example/high-latency",
        },
        "startsAt": starts_at,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=histogram_quantile%280.99%2C+rate%28"
        "http_request_duration_seconds_bucket%5B5m%5D%29%29+%3E+0.5&g0.tab=1",
    }
    if ends_at is not None:
        body["endsAt"] = ends_at
    return body


async def record(binary: str, out: Path) -> None:
    captured: list[tuple[dict[str, str], bytes]] = []

    async def webhook(request: web.Request) -> web.Response:
        captured.append((dict(request.headers), await request.read()))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    receiver_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()

    version = re.search(r"version (\d+\.\d+)", subprocess.run([binary, "--version"], capture_output=True,
                                                               text=True).stdout + "")
    tag = version.group(1) if version else "unknown"
    work = Path(tempfile.mkdtemp(prefix="am-record-"))
    (work / "alertmanager.yml").write_text(CONFIG.format(url=f"http://127.0.0.1:{receiver_port}/webhook",
                                                          token=TOKEN))
    port = free_port()
    with (work / "alertmanager.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={work / 'alertmanager.yml'}", f"--storage.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.external-url=http://am-1:9093",
             "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"

    async def wait(n: int) -> None:
        deadline = time.monotonic() + 30
        while len(captured) < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"no notification {n}; see {work / 'alertmanager.log'}")
            await asyncio.sleep(0.05)

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with session.get(f"{base}/-/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"Alertmanager did not start; see {work / 'alertmanager.log'}")
                await asyncio.sleep(0.05)

            async def post(alerts: list[dict[str, Any]]) -> None:
                async with session.post(f"{base}/api/v2/alerts", json=alerts) as r:
                    if r.status != 200:
                        raise SystemExit(f"Alertmanager refused alerts: {r.status} {await r.text()}")

            def now() -> str:
                return rfc3339_nano(datetime.now(UTC) - timedelta(milliseconds=1), 654)

            starts = rfc3339_nano(datetime.now(UTC), 789)
            await post([alert("10.0.0.1:8080", starts), alert("10.0.0.2:8080", starts)])
            await wait(1)
            await post([alert("10.0.0.2:8080", starts, now())])
            await wait(2)
            await post([alert("10.0.0.1:8080", starts, now())])
            await wait(3)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        await runner.cleanup()

    names = ("firing", "firing-with-resolved", "resolved")
    for name, (headers, body) in zip(names, captured, strict=False):
        path = out / f"alertmanager-{tag}-{name}.json"
        path.write_text(json.dumps(json.loads(body), indent=2, ensure_ascii=False) + "\n")
        print(f"{path}: {headers.get('User-Agent')} {len(body)} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="/usr/bin/prometheus-alertmanager")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args()
    asyncio.run(record(args.binary, args.out))


if __name__ == "__main__":
    sys.exit(main())
