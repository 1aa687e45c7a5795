"""Memory stays bounded in bytes whatever senders put in their label sets, measured on a real process.

A real `receiver serve` subprocess is fed max-size (16 MiB) webhooks of adversarial shapes; its resident
memory is read from /proc/<pid>/status before and after. What a webhook costs while it is parsed is
returned once it is answered: nothing the receiver keeps (its caches) may grow with the shape of labels.

- many tiny labels: 1,000 one-character label names an alert, every label set distinct. As a tuple of
  pairs in the mapping cache each cost ~64 KB: nine such webhooks pinned 1.2 GB.
- few huge labels: a handful of alerts whose labels are megabytes long.
- many distinct label sets: ~45,000 small alerts a webhook, none alike.

Every alert is a resolve of an alert never seen (stale), so the database writes nothing and the figures are
the receiver's own. The test prints one `MEMORY ...` line per webhook (run with -s to read them).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes import FakeSlack
from tests.helpers import deadline

from .conftest import TOKEN, ReceiverProc, receiver_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
BODY_BYTES = 16 * 1024 * 1024 - 64 * 1024  # just under webhook.max_body_bytes (16 MiB by default)
# The stated bound (README, "Security and limits"): after nine max-size webhooks of these shapes, the
# receiver's resident memory has grown by less than this over what it was after one small webhook.
RSS_GROWTH_CEILING_MB = 200
POLICY = "    warning:\n      steps: [{after: 1h}]\n    critical:\n      steps: [{after: 1h}]\n"
STAMP = '"startsAt":"2026-11-27T10:00:00Z","endsAt":"2026-11-27T10:05:00Z","generatorURL":""'


def _body(alerts: Iterator[str]) -> bytes:
    """A webhook of resolved alerts, filled up to BODY_BYTES."""
    head = (
        '{"version":"4","receiver":"receiver","status":"resolved","externalURL":"http://am:9093",'
        '"groupKey":"{}:{}","truncatedAlerts":0,"groupLabels":{},"commonLabels":{},"commonAnnotations":{},'
        '"alerts":['
    )
    parts: list[str] = []
    size = len(head) + 2
    for a in alerts:
        encoded = len(a.encode()) + 1
        if size + encoded > BODY_BYTES:
            break
        parts.append(a)
        size += encoded
    return (head + ",".join(parts) + "]}").encode()


def many_tiny_labels(n: int) -> bytes:
    tiny = ",".join(json.dumps(chr(0x4E00 + j), ensure_ascii=False) + ':""' for j in range(1000))
    return _body(
        f'{{"status":"resolved","fingerprint":"tiny-{n}-{k}","labels":{{{tiny},"n":"{n}-{k}"}},{STAMP}}}'
        for k in range(10**9)
    )


def few_huge_labels(n: int) -> bytes:
    huge = "/" + "x" * (BODY_BYTES // 8)
    return _body(
        f'{{"status":"resolved","fingerprint":"huge-{n}-{k}","labels":{{"method":"GET",'
        f'"path":"{huge}{k}","description":"{huge}"}},{STAMP}}}'
        for k in range(10**9)
    )


def many_label_sets(n: int) -> bytes:
    return _body(
        f'{{"status":"resolved","fingerprint":"set-{n}-{k}","labels":{{"alertname":"HighLatency",'
        f'"method":"GET","path":"/api/items","instance":"api-{n}-{k}.prod.svc:8080","job":"api",'
        f'"namespace":"prod","severity":"warning","team":"core"}},{STAMP}}}'
        for k in range(10**9)
    )


SHAPES: dict[str, Callable[[int], bytes]] = {
    "few-huge-labels": few_huge_labels,
    "many-label-sets": many_label_sets,
    "many-tiny-labels": many_tiny_labels,
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def feed(session: aiohttp.ClientSession, url: str, pid: int, rounds: int = 3) -> dict[str, Any]:
    """Post `rounds` webhooks of each shape in turn (distinct label sets every time: the many tiny labels
    last, which a count-bounded cache kept most of); RSS before and after each."""
    small = _body(iter([f'{{"status":"resolved","fingerprint":"warm","labels":{{"alertname":"Warm"}},{STAMP}}}']))
    timeout = aiohttp.ClientTimeout(total=deadline(120))
    async with session.post(f"{url}/webhook", data=small, headers=AUTH, timeout=timeout) as r:
        assert r.status == 200, await r.text()
    before = rss_mb(pid)
    steps = []
    for shape, build in SHAPES.items():
        for n in range(rounds):
            body = build(n)
            async with session.post(f"{url}/webhook", data=body, headers=AUTH, timeout=timeout) as r:
                answer = await r.text()
                assert r.status == 200, f"{shape}: {r.status} {answer[:500]}"
            steps.append(
                {
                    "shape": shape,
                    "round": n,
                    "body_mb": round(len(body) / 2**20, 1),
                    "alerts": json.loads(answer)["alerts"]["received"],
                    "rss_mb": round(rss_mb(pid), 1),
                }
            )
            print(f"MEMORY {json.dumps(steps[-1])}")
    return {
        "before_mb": round(before, 1),
        "after_mb": steps[-1]["rss_mb"],
        "peak_mb": max(s["rss_mb"] for s in steps),
        "steps": steps,
    }


async def test_rss_stays_bounded_whatever_the_label_shape(
    tmp_path: Path, fresh_database: str, receiver_procs: Callable[..., ReceiverProc], fake_slack: FakeSlack
) -> None:
    cfg = receiver_config(tmp_path / "receiver.yml", policies=POLICY)
    rx = receiver_procs("rx", cfg, fresh_database, fake_slack.url)
    async with aiohttp.ClientSession() as session:
        await rx.wait_ready(session, timeout=deadline(60))
        result = await asyncio.wait_for(feed(session, rx.url, rx.pid), deadline(900))
    growth = result["after_mb"] - result["before_mb"]
    print(
        f"MEMORY before={result['before_mb']} MB after={result['after_mb']} MB peak={result['peak_mb']} MB "
        f"growth={growth:.1f} MB ceiling={RSS_GROWTH_CEILING_MB} MB"
    )
    assert growth < RSS_GROWTH_CEILING_MB, result
    assert not rx.error_lines(), rx.error_context()
