"""What one reconciliation with Alertmanager costs over 10,000 active alerts, and whether ingest notices it.

`python -m bench.reconcile [--alerts 10000] [--peers 2] [--runs 5] [--seconds 5] [--repeats 3]`

A private PostgreSQL (bench/pg.py) gets `--alerts` firing alerts from the receiver's own Ingestor (webhooks of
100 alerts from the Alertmanager receiver `incidents`, 20 alerts per incident key). `--peers` fake Alertmanager
peers on loopback list every one of them as GET /api/v2/alerts does (Alertmanager 0.25's JSON), so a run is
the steady state: every member listed, nothing to resolve, ingest or suppress, and every byte still to fetch,
parse and compare. Reported per run: wall time (median, min-max) and the statements it sent (every query the
pool's connections ran, counted by asyncpg's query logger).

Then ingest side by side, interleaved: `--repeats` times, in rotated order, `--seconds` of 10-alert webhooks
through the Ingestor (8 in flight, alerts of other keys than the preloaded ones, in the same process and event
loop as the reconciler) alone, with a reconciliation every second (60 times the default interval), and with
reconciliations back to back (the worst case). Reported: webhooks per second
and latency p50/p99 of each row. Numbers only, no assertion: see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bench.pg import Postgres
from receiver.alertmanager_api import AlertmanagerAPI
from receiver.config import Config, parse_config
from receiver.database import _init_connection
from receiver.ingest.alertmanager import label_fingerprint, parse_notification
from receiver.ingest.service import Ingestor
from receiver.reconcile import Reconciler
from receiver.store import Store

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def labels(i: int, prefix: str = "r") -> dict[str, str]:
    return {
        "alertname": "HighLatency",
        "method": "GET",
        "path": f"/{prefix}/{i // 20}",
        "instance": f"i-{i}",
        "severity": "warning",
    }


def webhook(alerts: list[dict[str, str]], starts: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "incidents",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "groupKey": "{}",
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": lb,
                "annotations": {"summary": "p99 is high"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": label_fingerprint(lb),
            }
            for lb in alerts
        ],
    }


def listing(n: int) -> bytes:
    """GET /api/v2/alerts as Alertmanager 0.25 answers it, every preloaded alert active."""
    return json.dumps(
        [
            {
                "labels": lb,
                "annotations": {"summary": "p99 is high"},
                "startsAt": "2026-11-27T10:00:00Z",
                "endsAt": "2026-11-27T10:05:00Z",
                "updatedAt": "2026-11-27T10:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": label_fingerprint(lb),
                "receivers": [{"name": "incidents"}],
                "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
            }
            for lb in (labels(i) for i in range(n))
        ]
    ).encode()


# A fake peer in a process of its own, as Alertmanager is: serving 4.5 MB must not use the receiver's CPU time.
_PEER = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def alerts(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/api/v2/alerts", alerts)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


async def fake_peer(body_file: str, session: aiohttp.ClientSession) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _PEER, body_file, str(port)])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            async with session.get(url + "/api/v2/alerts") as r:
                if r.status == 200:
                    await r.read()
                    return proc, url
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the fake peer did not start")


def summary(values: list[float], scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values) * scale)} ({fmt.format(min(values) * scale)}–"
        f"{fmt.format(max(values) * scale)})"
    )


async def main(args: argparse.Namespace) -> None:
    with Postgres() as pg:
        url = pg.fresh_receiver_db()
        statements = 0

        def count(record: Any) -> None:
            nonlocal statements
            statements += 1

        async def init(conn: asyncpg.Connection) -> None:
            await _init_connection(conn)
            conn.add_query_logger(count)

        pool = await asyncpg.create_pool(url, min_size=2, max_size=8, init=init)
        body = listing(args.alerts)
        body_file = tempfile.NamedTemporaryFile(suffix=".json", delete=False)  # noqa: SIM115 (removed at the end)
        body_file.write(body)
        body_file.close()
        peers: list[tuple[subprocess.Popen[bytes], str]] = []
        try:
            async with aiohttp.ClientSession() as probe:
                for _ in range(args.peers):
                    peers.append(await fake_peer(body_file.name, probe))
            await measure(args, pool, [u for _, u in peers], len(body), lambda: statements)
        finally:
            for proc, _ in peers:
                proc.terminate()
                proc.wait()
            os.unlink(body_file.name)
            await pool.close()


async def measure(
    args: argparse.Namespace, pool: asyncpg.Pool, peer_urls: list[str], body_size: int, statements: Callable[[], int]
) -> None:
    """The reconcile runs, then ingest alone and beside reconciliations (see the module docstring)."""
    urls = ", ".join(peer_urls)
    config: Config = parse_config(
        f"alertmanager: {{urls: [{urls}], receiver: incidents, timeout: 30s, reconcile: {{interval: 1m, grace: 10m}}}}",
        env={},
    )
    store = Store(pool, max_ingest_transactions=4)
    ingestor = Ingestor(config, store)
    for start in range(0, args.alerts, 100):
        await ingestor.ingest(
            parse_notification(webhook([labels(i) for i in range(start, start + 100)], "2026-11-27T10:00:00Z")), T0
        )
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(config, store, ingestor, AlertmanagerAPI(config.alertmanager, session))  # type: ignore[arg-type]
        now = T0
        times, counts = [], []
        for _ in range(args.runs):
            now += timedelta(minutes=1)
            before, started = statements(), time.perf_counter()
            result = await reconciler.run(now)
            times.append(time.perf_counter() - started)
            counts.append(statements() - before)
            assert result.result == "ok" and not (result.resolved or result.ingested), result
        print(
            f"Reconcile run over {args.alerts:,} active alerts, {args.peers} peers "
            f"({body_size / 1e6:.1f} MB each): {summary(times, 1000)} ms, {summary(counts)} statements"
        )

        async def ingest_load(seconds: float, with_reconcile: float | None) -> tuple[float, list[float]]:
            stop = time.perf_counter() + seconds
            latencies: list[float] = []
            n = 0

            async def worker(w: int) -> None:
                nonlocal n
                k = 0
                while time.perf_counter() < stop:
                    k += 1
                    starts = (T0 + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
                    body = webhook([labels(w * 10 + j, "load") for j in range(10)], starts)
                    t = time.perf_counter()
                    await ingestor.ingest(parse_notification(body), T0 + timedelta(seconds=k))
                    latencies.append(time.perf_counter() - t)
                    n += 1

            async def reconcile_every(pause: float) -> None:
                at = now + timedelta(hours=1)
                while time.perf_counter() < stop:
                    at += timedelta(minutes=1)
                    await reconciler.run(at)
                    await asyncio.sleep(pause)

            tasks = [worker(w) for w in range(8)]
            if with_reconcile is not None:
                tasks.append(reconcile_every(with_reconcile))
            await asyncio.gather(*tasks)
            return n / seconds, latencies

        # None: ingest alone; a number: reconciliations with that pause between them (0: back to back)
        names = {
            None: "alone",
            1.0: "with a reconciliation every second (60x the default)",
            0.0: "with reconciliations back to back",
        }
        rows: dict[float | None, list[tuple[float, float, float]]] = {k: [] for k in names}
        order = list(names)
        for r in range(args.repeats):
            for with_reconcile in order[r % len(order) :] + order[: r % len(order)]:  # rotated
                rate, lat = await ingest_load(args.seconds, with_reconcile)
                lat.sort()
                rows[with_reconcile].append((rate, lat[len(lat) // 2], lat[int(len(lat) * 0.99)]))
        print("| ingest (10-alert webhooks, 8 in flight) | webhooks/s | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for with_reconcile, name in names.items():
            got = rows[with_reconcile]
            print(
                f"| {name} | {summary([g[0] for g in got])} | {summary([g[1] for g in got], 1000, '{:.1f}')} "
                f"| {summary([g[2] for g in got], 1000, '{:.1f}')} |"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(
        prog="python -m bench.reconcile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--alerts", type=int, default=10_000)
    p.add_argument("--peers", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(p.parse_args()))
