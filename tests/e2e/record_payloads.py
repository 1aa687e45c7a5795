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
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tests.alertmanager import Alertmanagers
from tests.fakes import FakeWebhook
from tests.helpers import eventually

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
    version = re.search(
        r"version (\d+\.\d+)", subprocess.run([binary, "--version"], capture_output=True, text=True).stdout + ""
    )
    tag = version.group(1) if version else "unknown"
    launcher = Alertmanagers(Path(tempfile.mkdtemp(prefix="am-record-")), binary)  # kept: its log, if it fails

    async with FakeWebhook(path="/webhook") as receiver:
        am = launcher("am-1", CONFIG.format(url=receiver.url, token=TOKEN), external_url="http://am-1:9093")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                await am.wait_ready(session, timeout=15)

                async def notifications(n: int) -> None:
                    async def arrived() -> bool:
                        return len(receiver.requests) >= n

                    await eventually(arrived, f"notification {n} (see {am.log_path})")

                def now() -> str:
                    return rfc3339_nano(datetime.now(UTC) - timedelta(milliseconds=1), 654)

                starts = rfc3339_nano(datetime.now(UTC), 789)
                await am.post_alerts(session, [alert("10.0.0.1:8080", starts), alert("10.0.0.2:8080", starts)])
                await notifications(1)
                await am.post_alerts(session, [alert("10.0.0.2:8080", starts, now())])
                await notifications(2)
                await am.post_alerts(session, [alert("10.0.0.1:8080", starts, now())])
                await notifications(3)
        finally:
            am.stop()
    captured = [(r.headers, r.body) for r in receiver.requests]

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
    main()
