"""The suite's one copy of its helpers: Alertmanager-shaped payloads, fingerprints, ports, and the one way to wait.

Every wait in the suite is event-driven (poll a condition) with a generous deadline scaled by one setting,
`RECEIVER_TEST_TIME_SCALE` (default 1): on a slow or shared machine, `RECEIVER_TEST_TIME_SCALE=3 pytest`
triples every deadline. A deadline is a ceiling for failure, never a measurement: a test that passes
does so as soon as its condition holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

ZERO = "0001-01-01T00:00:00Z"

T = TypeVar("T")
TIME_SCALE = max(1.0, float(os.environ.get("RECEIVER_TEST_TIME_SCALE") or 1))


def deadline(seconds: float) -> float:
    """`seconds` scaled by RECEIVER_TEST_TIME_SCALE: the one knob for slow machines."""
    return seconds * TIME_SCALE


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30.0, interval: float = 0.1
) -> T:
    """Poll `probe` until it returns something truthy; fail after `deadline(timeout)` seconds."""
    end = time.monotonic() + deadline(timeout)
    last_error: BaseException | None = None
    while True:
        try:
            result = await probe()
        except (TimeoutError, OSError) as e:  # a server still starting, a connection refused
            result, last_error = None, e
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(
                f"timed out after {deadline(timeout):.0f} s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        await asyncio.sleep(interval)


async def wait_http_ready(
    session: aiohttp.ClientSession,
    url: str,
    proc: subprocess.Popen[bytes],
    what: str,
    *,
    log: Callable[[], str] = str,
    timeout: float = 60.0,
) -> None:
    """Until GET `url` answers 200 from a process we started: fails at once (with the tail of `log()`) if the
    process exits, after deadline(timeout) otherwise; a refused or slow connection is just "not yet"."""

    async def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log()[-4000:]}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=deadline(5))) as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await eventually(ready, f"{what} to be ready", timeout)
    except AssertionError as e:
        if proc.poll() is not None:  # the message already has the log
            raise
        raise AssertionError(f"{e}:\n{log()[-4000:]}") from None


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable fingerprint of a label set, shaped like Alertmanager's (16 hex digits); the suite's one."""
    return hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


def alert(
    status: str = "firing",
    *,
    labels: Mapping[str, str] | None = None,
    starts_at: str = "2026-11-27T10:00:00Z",
    ends_at: str = ZERO,
    annotations: dict[str, str] | None = None,
    fingerprint: str | None = None,
    generator_url: str = "http://prometheus:9090/graph?g0.expr=up",
    **label_kwargs: str,
) -> dict[str, Any]:
    """One alert as Alertmanager posts it to a webhook: HighLatency on GET /notifications/recent, plus `labels`
    and then keyword labels. A label named like a parameter (`status`, `labels`, `fingerprint`...) can only be
    given in `labels`."""
    merged = {
        "alertname": "HighLatency",
        "method": "GET",
        "path": "/notifications/recent",
        **(labels or {}),
        **label_kwargs,
    }
    return {
        "status": status,
        "labels": merged,
        "annotations": annotations if annotations is not None else {"summary": "p99 latency is high"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": generator_url,
        "fingerprint": fingerprint or fingerprint_of(merged),
    }


def alert_without(field: str) -> dict[str, Any]:
    """A valid alert with one of its fields removed: input that can never be valid."""
    a = alert()
    del a[field]
    return a


def alert_with(field: str, value: Any) -> dict[str, Any]:
    """A valid alert with one of its fields set to `value`."""
    a = alert()
    a[field] = value
    return a


def am_alert(
    labels: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An alert as Prometheus posts it to Alertmanager's /api/v2/alerts (no endsAt while it fires)."""
    body: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations)
        if annotations is not None
        else {"summary": f"p99 latency is high on {labels.get('instance', 'every instance')}"},
        "startsAt": rfc3339(starts_at),
        "generatorURL": "http://prometheus.test:9090/graph?g0.expr=up",
    }
    if ends_at is not None:
        body["endsAt"] = rfc3339(ends_at)
    return body


def payload(
    *alerts: dict[str, Any], status: str | None = None, external_url: str = "http://am-1:9093", **extra: Any
) -> dict[str, Any]:
    if status is None:
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    body = {
        "receiver": "receiver",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
    }
    body.update(extra)
    return body


def free_port(udp: bool = False) -> int:
    """A free loopback port; with udp=True free for TCP and UDP alike (memberlist gossip uses both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def sum_samples(text: str, name: str, labels: Mapping[str, str]) -> float:
    """Sum of one metric's samples in a Prometheus text exposition whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
