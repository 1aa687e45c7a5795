"""Realistic Alertmanager webhook payloads (version "4"), generated deterministically from a seed.

The alert universe is `routes x kinds x instances` label sets (default 50 x 3 x 4 = 600 alerts, which the
receiver maps to 150 incident keys `route::kind`). Fingerprints are ordered by (kind, route, instance)
and cut into groups of `alerts_per_payload`, like an Alertmanager `group_by: [alertname]` (100: 25 routes
of one alertname) or a finer grouping (10, 1). Every payload is one whole group, as Alertmanager sends it:
each alert either firing (its current instance) or resolved.

Each alert follows a two-state process: a firing alert resolves with probability q per notification and a
resolved one fires again, as a *new instance* (a new startsAt), with probability r = 0.5, so that the
share of resolved alerts in the stream is `resolved_share` = q / (q + r). The stream so mixes new alerts,
repeats (duplicates), resolves, incidents resolving and reopening, as a real alert storm does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

ZERO = "0001-01-01T00:00:00Z"
KINDS = (
    # alertname (mapped to kind by the receiver's default rules), severity, summary
    ("HighErrorRate", "critical", "5xx ratio above 2% for 5m"),
    ("HighLatency", "warning", "p99 latency above 750ms for 10m"),
    ("SLOBurnRate", "critical", "error budget burning 14x faster than allowed"),
    ("HighSaturation", "warning", "CPU saturation above 90%"),
    ("PodCrashLooping", "critical", "container restarting"),
)
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
SERVICES = (
    "orders",
    "users",
    "payments",
    "inventory",
    "search",
    "catalog",
    "carts",
    "shipping",
    "auth",
    "notifications",
    "reviews",
    "pricing",
    "billing",
    "reports",
    "media",
)
RESOURCES = ("items", "recent", "{id}", "{id}/history", "export", "batch", "summary")


@dataclass(frozen=True)
class Workload:
    alerts_per_payload: int = 10
    routes: int = 50
    kinds: int = 3
    instances: int = 4
    resolved_share: float = 0.2
    seed: int = 1

    @property
    def distinct_alerts(self) -> int:
        return self.routes * self.kinds * self.instances

    @property
    def distinct_keys(self) -> int:
        return self.routes * self.kinds


def route_names(n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    i = 0
    while len(out) < n:
        svc = SERVICES[i % len(SERVICES)]
        res = RESOURCES[(i // len(SERVICES)) % len(RESOURCES)]
        method = METHODS[(i // (len(SERVICES) * len(RESOURCES)) + i) % len(METHODS)]
        generation = i // (len(SERVICES) * len(RESOURCES) * len(METHODS))
        path = f"/api/v{1 + generation}/{svc}/{res}"
        out.append((method, path))
        i += 1
    return out


def fingerprint(labels: dict[str, str]) -> str:
    return hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


class _Alert:
    """One label set and its current state; renders itself as webhook JSON cheaply."""

    __slots__ = ("ends", "fp", "group", "labels", "prefix", "starts", "status", "suffix")

    def __init__(self, labels: dict[str, str], annotations: dict[str, str], generator_url: str, starts: datetime):
        self.labels = labels
        self.fp = fingerprint(labels)
        self.prefix = ',"labels":' + json.dumps(labels) + ',"annotations":' + json.dumps(annotations)
        self.suffix = ',"generatorURL":' + json.dumps(generator_url) + ',"fingerprint":"' + self.fp + '"}'
        self.status = "firing"
        self.starts = _rfc3339(starts)
        self.ends = ZERO
        self.group = 0

    def render(self) -> str:
        return (
            '{"status":"'
            + self.status
            + '"'
            + self.prefix
            + ',"startsAt":"'
            + self.starts
            + '","endsAt":"'
            + self.ends
            + '"'
            + self.suffix
        )


def _rfc3339(t: datetime) -> str:
    # Alertmanager writes nanoseconds
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}123Z"


class PayloadStream:
    """An endless, deterministic stream of (body bytes, number of alerts) for a workload."""

    def __init__(self, workload: Workload, *, base: datetime | None = None, group: int | None = None):
        self.w = workload
        self.rng = random.Random(workload.seed)
        self.base = base or (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
        self.tick = 0
        s = min(max(workload.resolved_share, 0.0), 1.0)
        self.refire = 0.5 if s < 1 else 0.0
        self.resolve = 1.0 if s >= 1 else s * self.refire / (1 - s)
        self.alerts: list[_Alert] = []
        routes = route_names(workload.routes)
        kinds = [KINDS[k % len(KINDS)] for k in range(workload.kinds)]
        for k, (alertname, severity, summary) in enumerate(kinds):
            if k >= len(KINDS):
                alertname = f"{alertname}{k}"
            for method, path in routes:
                for inst in range(workload.instances):
                    labels = {
                        "alertname": alertname,
                        "method": method,
                        "path": path,
                        "instance": f"api-{inst}.prod.svc:8080",
                        "job": "api",
                        "namespace": "prod",
                        "severity": severity,
                        "service": path.split("/")[3],
                    }
                    annotations = {
                        "summary": f"{method} {path}: {summary}",
                        "description": f"{alertname} on {method} {path} at instance api-{inst}",
                        "runbook_url": f"https://runbooks.example.com/{alertname.lower()}",
                        "dashboard_url": f"https://grafana.example.com/d/api?var-path={path}",
                    }
                    gen = (
                        "http://prometheus.example.com:9090/graph?g0.expr="
                        f"{alertname}%7Bpath%3D%22{path}%22%7D&g0.tab=1"
                    )
                    starts = self.base - timedelta(seconds=self.rng.randrange(60, 3600))
                    self.alerts.append(_Alert(labels, annotations, gen, starts))
        size = max(1, workload.alerts_per_payload)
        n = len(self.alerts)
        if size >= n:
            self.groups = [list(range(n))]
        else:
            self.groups = [list(range(i, i + size)) for i in range(0, n - size + 1, size)]
        if group is not None:  # a storm: every payload is the same group
            self.groups = [self.groups[group % len(self.groups)]]
        self.group_json: list[tuple[str, str]] = []
        for g in self.groups:
            members = [self.alerts[i] for i in g]
            common = {k: v for k, v in members[0].labels.items() if all(m.labels.get(k) == v for m in members)}
            group_labels = {"alertname": members[0].labels["alertname"]}
            if size <= workload.instances:
                group_labels.update({"method": members[0].labels["method"], "path": members[0].labels["path"]})
            gk = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}"
            head = (
                '{"receiver":"receiver","groupLabels":'
                + json.dumps(group_labels)
                + ',"commonLabels":'
                + json.dumps(common)
                + ',"commonAnnotations":{}'
                + ',"externalURL":"http://alertmanager.example.com:9093","version":"4","groupKey":'
                + json.dumps(gk)
                + ',"truncatedAlerts":0'
            )
            self.group_json.append((head, gk))

    def keys_of(self, group_index: int) -> set[tuple[str, str, str]]:
        return {
            (self.alerts[i].labels["alertname"], self.alerts[i].labels["method"], self.alerts[i].labels["path"])
            for i in self.groups[group_index]
        }

    def next(self) -> tuple[bytes, int]:
        self.tick += 1
        now = _rfc3339(self.base + timedelta(milliseconds=self.tick))
        gi = self.rng.randrange(len(self.groups))
        head, _ = self.group_json[gi]
        rnd = self.rng.random
        parts = []
        firing = False
        for i in self.groups[gi]:
            a = self.alerts[i]
            if a.status == "firing":
                if rnd() < self.resolve:
                    a.status, a.ends = "resolved", now
            elif rnd() < self.refire:
                a.status, a.starts, a.ends = "firing", now, ZERO
            firing = firing or a.status == "firing"
            parts.append(a.render())
        body = head + ',"status":"' + ("firing" if firing else "resolved") + '","alerts":[' + ",".join(parts) + "]}"
        return body.encode(), len(parts)

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        while True:
            yield self.next()


def probe_body(n: int) -> bytes:
    """A one-alert webhook on a key of its own (no other workload uses it), so that it never waits on another
    webhook's key lock: what it waits for is the receiver itself. Repeats of one firing alert after the first."""
    labels = {
        "alertname": "ProbeLatency",
        "method": "GET",
        "path": "/bench/probe",
        "instance": "probe-0",
        "severity": "warning",
    }
    starts = "2026-01-01T00:00:00.000000000Z"
    body = {
        "receiver": "receiver",
        "status": "firing",
        "groupLabels": {"alertname": "ProbeLatency"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "version": "4",
        "groupKey": '{}:{alertname="ProbeLatency"}',
        "truncatedAlerts": 0,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"probe {n}"},
                "startsAt": starts,
                "endsAt": ZERO,
                "generatorURL": "",
                "fingerprint": fingerprint(labels),
            }
        ],
    }
    return json.dumps(body).encode()


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a process that drives the payload stream against a database itself (bench/ceiling.py,
    bench/yardstick.py): where, how hard, and the workload's shape (see Workload)."""
    parser.add_argument("--db", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--alerts-per-payload", type=int, default=10)
    parser.add_argument("--routes", type=int, default=50)
    parser.add_argument("--kinds", type=int, default=3)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--resolved-share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--storm-group", type=int, default=None)


def stream_from(args: argparse.Namespace) -> Iterator[tuple[bytes, int]]:
    """The payload stream that add_load_arguments' options describe."""
    workload = Workload(
        alerts_per_payload=args.alerts_per_payload,
        routes=args.routes,
        kinds=args.kinds,
        instances=args.instances,
        resolved_share=args.resolved_share,
        seed=args.seed,
    )
    return iter(PayloadStream(workload, group=args.storm_group))
