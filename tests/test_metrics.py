"""/metrics: the counters, the incident gauges read from a real database, the exposition formats,
the token, and the shipped dashboard and rules (checked by promtool and against a real scrape).

Each test serves `make_metrics_handler` alone in a tiny aiohttp app on a fresh migrated database.
The promtool tests skip when Debian's `prometheus` package is not installed.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from receiver.config import Heartbeat
from receiver.database import create_pool
from receiver.metrics import Metrics, make_metrics_handler
from receiver.store import Store

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "receiver.json"
RULES = ROOT / "alerts" / "receiver.rules.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
OPENMETRICS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
STORE = web.AppKey("store", Store)
# Series Prometheus makes itself for every target, not exposed by the receiver.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (apt-get install prometheus)"
)


# --- helpers shared with tests/e2e/test_prometheus.py ----------------------------------------------


def metrics_app(database_url: str, metrics: Metrics, token: str | None = None) -> web.Application:
    """Just the metrics handler, with a store opened in cleanup_ctx as the real app does."""
    app = web.Application()

    async def store(app: web.Application) -> AsyncIterator[None]:
        app[STORE] = Store(await create_pool(database_url, max_size=2))
        try:
            yield
        finally:
            await app[STORE].pool.close()

    app.cleanup_ctx.append(store)
    app.router.add_get("/metrics", make_metrics_handler(metrics, lambda: app.get(STORE), token))
    return app


async def insert_incidents(conn: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    """Rows of route, kind, severity, status and optional age (seconds since first_seen)."""
    for i, r in enumerate(rows):
        route = r.get("route", f"GET /r{i}")
        await conn.execute(
            """
            INSERT INTO incidents (incident_key, route, kind, severity, status, first_seen, last_seen,
                                   acknowledged_at, resolved_at)
            VALUES ($1, $2, $3, $4, $5, now() - make_interval(secs => $6), now(),
                    CASE WHEN $5 = 'acknowledged' THEN now() END, CASE WHEN $5 = 'resolved' THEN now() END)
            """,
            f"{route}::{r['kind']}",
            route,
            r["kind"],
            r["severity"],
            r["status"],
            float(r.get("age", 60)),
        )


def samples(text: str, openmetrics: bool = False) -> list[Any]:
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    return [s for family in parse(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample with this name and exactly these labels; None when absent."""
    return _value(samples(text), name, labels)


def om_value(text: str, name: str, **labels: str) -> float | None:
    """`value` for the OpenMetrics format."""
    return _value(samples(text, openmetrics=True), name, labels)


def _value(found: list[Any], name: str, labels: dict[str, str]) -> float | None:
    values = [s.value for s in found if s.name == name and s.labels == labels]
    assert len(values) <= 1
    return values[0] if values else None


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
    "start",
    "end",
}


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (a tokenizer, enough for our queries): strings, label
    matchers, ranges, grouping label lists and Grafana variables are removed; what is left that is not
    a keyword, a number or a function call is a metric name."""
    s = _STRINGS.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _LABEL_LISTS.sub(" ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group() in _KEYWORDS:
            continue
        names.add(m.group())
    return names


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(_panels(p.get("panels", [])))
    return out


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", []) if t.get("expr")]


def dashboard_variable_metrics() -> set[str]:
    """Metric names in the template variables' `label_values(metric, label)` queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    names = set()
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+)\s*,\s*\w+\)", var["definition"])
            assert m, var["definition"]
            names.add(m.group(1))
    return names


def rule_queries() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def grafana_to_promql(expr: str, job: str) -> str:
    """A dashboard query as Prometheus would receive it from Grafana."""
    return expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$job", job)


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def serve(aiohttp_client: Any, database_url: str) -> Callable[..., Any]:
    async def make(metrics: Metrics, token: str | None = None) -> Any:
        return await aiohttp_client(metrics_app(database_url, metrics, token))

    return make


async def scrape(client: Any, accept: str | None = None, token: str | None = None) -> tuple[str, str]:
    headers = {}
    if accept:
        headers["Accept"] = accept
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    return await resp.text(), resp.headers["Content-Type"]


# --- the counters, without a database ---------------------------------------------------------------


def test_known_label_values_exist_at_zero() -> None:
    text = generate_latest(Metrics().registry).decode()
    for code in ("200", "400", "401", "413", "500", "503"):
        assert value(text, "receiver_webhook_requests_total", code=code) == 0
    for outcome in ("new", "updated", "duplicate", "stale", "invalid"):
        assert value(text, "receiver_alerts_received_total", outcome=outcome) == 0
    for t in ("opened", "resolved", "reopened", "stale_resolved"):
        for kind in ("error_rate", "latency", "slo_violation"):
            for severity in ("warning", "critical"):
                assert value(text, "receiver_incidents_total", transition=t, kind=kind, severity=severity) == 0
                assert value(text, "receiver_time_to_acknowledge_seconds_count", kind=kind, severity=severity) == 0
                assert value(text, "receiver_time_to_resolve_seconds_count", kind=kind, severity=severity) == 0
    for level in [*map(str, range(1, 11)), "10+"]:
        assert value(text, "receiver_escalations_total", level=level) == 0
    for target in ("slack", "webhook"):
        for result in ("delivered", "retried", "failed"):
            assert value(text, "receiver_notifications_total", target_type=target, result=result) == 0
    for op in ("ingest", "read", "tick", "deliver", "metrics"):
        assert value(text, "receiver_database_errors_total", operation=op) == 0
    assert value(text, "receiver_escalation_last_success_timestamp_seconds") == 0
    assert value(text, "receiver_oldest_unacknowledged_incident_age_seconds") == 0
    assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 0


def test_every_method_counts() -> None:
    m = Metrics(kinds=["disk_full"])
    m.webhook_request(200, 0.02)
    m.webhook_request(503, 0.5)
    m.webhook_request(404, 0.001)
    m.alerts_received({"new": 2, "updated": 1, "duplicate": 0, "stale": 1, "invalid": 3})
    m.alert_statuses(firing=3, resolved=1)
    m.incident_transition("opened", "latency", "critical")
    m.incident_transition("stale_resolved", "disk_full", "warning")
    m.escalated(1)
    m.escalated(10)
    m.escalated(11)
    m.escalated(250)
    m.notification("slack", "delivered", 0.3)
    m.notification("webhook", "failed", None)
    m.database_error("tick")
    m.tick(0.04, True, 1_800_000_000.0)
    m.tick(0.5, False, 1_800_000_060.0)
    m.time_to_acknowledge("latency", "critical", 45)
    m.time_to_resolve("latency", "critical", 7200)
    text = generate_latest(m.registry).decode()

    assert value(text, "receiver_webhook_requests_total", code="200") == 1
    assert value(text, "receiver_webhook_requests_total", code="404") == 1
    assert value(text, "receiver_webhook_duration_seconds_count") == 3
    assert value(text, "receiver_alerts_received_total", outcome="new") == 2
    assert value(text, "receiver_alerts_received_total", outcome="invalid") == 3
    assert value(text, "receiver_alerts_received_total", outcome="duplicate") == 0
    assert value(text, "receiver_alerts_received_by_status_total", status="firing") == 3
    assert value(text, "receiver_incidents_total", transition="opened", kind="latency", severity="critical") == 1
    assert value(text, "receiver_incidents_total", transition="opened", kind="disk_full", severity="warning") == 0
    assert (
        value(text, "receiver_incidents_total", transition="stale_resolved", kind="disk_full", severity="warning") == 1
    )
    assert value(text, "receiver_escalations_total", level="1") == 1
    assert value(text, "receiver_escalations_total", level="10") == 1
    assert value(text, "receiver_escalations_total", level="10+") == 2
    assert value(text, "receiver_escalations_total", level="11") is None
    assert value(text, "receiver_notifications_total", target_type="slack", result="delivered") == 1
    assert value(text, "receiver_notifications_total", target_type="webhook", result="failed") == 1
    assert value(text, "receiver_notification_delivery_seconds_count", target_type="slack", result="delivered") == 1
    assert value(text, "receiver_notification_delivery_seconds_count", target_type="webhook", result="failed") == 0
    assert value(text, "receiver_database_errors_total", operation="tick") == 1
    assert value(text, "receiver_escalation_tick_duration_seconds_count") == 2
    assert value(text, "receiver_escalation_ticks_total", result="error") == 1
    # A failed tick does not move the last success.
    assert value(text, "receiver_escalation_last_success_timestamp_seconds") == 1_800_000_000.0
    latency = {"kind": "latency", "severity": "critical"}
    assert value(text, "receiver_time_to_acknowledge_seconds_bucket", **latency, le="30.0") == 0
    assert value(text, "receiver_time_to_acknowledge_seconds_bucket", **latency, le="60.0") == 1
    assert value(text, "receiver_time_to_resolve_seconds_bucket", **latency, le="3600.0") == 0
    assert value(text, "receiver_time_to_resolve_seconds_bucket", **latency, le="7200.0") == 1
    assert value(text, "receiver_time_to_resolve_seconds_bucket", **latency, le="86400.0") == 1


def test_unknown_label_values_are_programming_errors() -> None:
    m = Metrics()
    with pytest.raises(ValueError):
        m.alerts_received({"lost": 1})
    with pytest.raises(ValueError):
        m.incident_transition("acknowledged", "latency", "critical")
    with pytest.raises(ValueError):
        m.notification("carrier-pigeon", "delivered", 1.0)
    with pytest.raises(ValueError):
        m.notification("slack", "ok", 1.0)
    with pytest.raises(ValueError):
        m.database_error("migrate")


def test_kinds_beyond_the_cap_count_as_other() -> None:
    m = Metrics(kind_cap=2)
    for kind in ("a", "b", "c", "d"):
        m.incident_transition("opened", kind, "warning")
    text = generate_latest(m.registry).decode()
    assert value(text, "receiver_incidents_total", transition="opened", kind="a", severity="warning") == 1
    assert value(text, "receiver_incidents_total", transition="opened", kind="b", severity="warning") == 1
    assert value(text, "receiver_incidents_total", transition="opened", kind="c", severity="warning") is None
    assert value(text, "receiver_incidents_total", transition="opened", kind="other", severity="warning") == 2


def test_names_help_and_suffixes() -> None:
    m = Metrics(per_route=True)
    families = [f for f in m.registry.collect() if f.name.startswith("receiver_")]
    assert len(families) >= 18
    for f in families:
        assert f.documentation.strip(), f.name
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
        if f.type == "histogram":
            assert f.name.endswith("_seconds"), f.name
        for s in f.samples:
            # No unbounded labels: nothing like ids, fingerprints or raw alert labels.
            assert set(s.labels) <= {
                "code",
                "outcome",
                "status",
                "transition",
                "kind",
                "severity",
                "level",
                "target_type",
                "result",
                "operation",
                "route",
                "reason",
                "le",
            }, s


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.webhook_request(200, 0.1)
    assert value(generate_latest(a.registry).decode(), "receiver_webhook_requests_total", code="200") == 1
    assert value(generate_latest(b.registry).decode(), "receiver_webhook_requests_total", code="200") == 0
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("receiver_")]


def test_metric_names_from_promql() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, kind) (rate(receiver_x_seconds_bucket{job=~"$job", a="b(c)"}'
        "[$__rate_interval]))) / on (job) group_left (instance) foo:bar offset 5m > bool 1e3 "
        "and time() - max(baz) without (x) < inf"
    )
    assert metric_names(expr) == {"receiver_x_seconds_bucket", "foo:bar", "baz"}
    assert metric_names('up{job="receiver"} == 0') == {"up"}


# --- the incident gauges and the handler, on a real database ----------------------------------------


async def test_incident_gauges_from_the_database(serve: Any, db: asyncpg.Connection) -> None:
    await insert_incidents(
        db,
        [
            {"kind": "latency", "severity": "critical", "status": "open", "age": 3600},
            {"kind": "latency", "severity": "critical", "status": "open", "age": 120},
            {"kind": "latency", "severity": "warning", "status": "acknowledged", "age": 7200},
            {"kind": "error_rate", "severity": "warning", "status": "silenced", "age": 9000},
            {"kind": "disk_full", "severity": "critical", "status": "open", "age": 60},
            {"kind": "latency", "severity": "critical", "status": "resolved", "age": 99999},
        ],
    )
    client = await serve(Metrics())
    text, _ = await scrape(client)
    active = {
        (s.labels["status"], s.labels["severity"], s.labels["kind"]): s.value
        for s in samples(text)
        if s.name == "receiver_active_incidents"
    }
    assert active[("open", "critical", "latency")] == 2
    assert active[("acknowledged", "warning", "latency")] == 1
    assert active[("silenced", "warning", "error_rate")] == 1
    assert active[("open", "critical", "disk_full")] == 1
    assert active[("open", "warning", "slo_violation")] == 0  # known combinations exist at 0
    assert sum(active.values()) == 5  # resolved incidents are not active
    assert ("resolved", "critical", "latency") not in active
    # The acknowledged and silenced incidents are older but not unacknowledged-open.
    age = value(text, "receiver_oldest_unacknowledged_incident_age_seconds")
    assert age is not None and 3590 < age < 3700
    assert value(text, "receiver_incident_state_query_duration_seconds") is not None
    assert value(text, "receiver_active_incidents_by_route", route="other") is None  # per_route is off

    # A resolved custom kind disappears; a resolved built-in combination drops to 0.
    await db.execute("UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE status = 'open'")
    text, _ = await scrape(client)
    assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="disk_full") is None
    assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 0
    assert value(text, "receiver_oldest_unacknowledged_incident_age_seconds") == 0


async def test_per_route_series_are_capped(serve: Any, db: asyncpg.Connection) -> None:
    rows = []
    for route, n in (("GET /a", 3), ("GET /b", 2), ("GET /c", 1), ("GET /d", 1)):
        for i in range(n):
            rows.append({"route": route, "kind": f"k{i}", "severity": "warning", "status": "open"})
    rows.append({"route": "GET /e", "kind": "latency", "severity": "warning", "status": "resolved"})
    await insert_incidents(db, rows)
    client = await serve(Metrics(per_route=True, route_cap=2))
    text, _ = await scrape(client)
    by_route = {s.labels["route"]: s.value for s in samples(text) if s.name == "receiver_active_incidents_by_route"}
    assert by_route == {"GET /a": 3, "GET /b": 2, "other": 2}
    assert value(text, "receiver_active_incidents", status="open", severity="warning", kind="k0") == 4


async def test_content_negotiation(serve: Any, db: asyncpg.Connection) -> None:
    await insert_incidents(db, [{"kind": "latency", "severity": "critical", "status": "open"}])
    client = await serve(Metrics())

    text, content_type = await scrape(client)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 1

    text, content_type = await scrape(client, accept=OPENMETRICS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert text.endswith("# EOF\n")
    assert om_value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 1
    # OpenMetrics names the counter family without _total; the sample keeps it.
    assert om_value(text, "receiver_webhook_requests_total", code="200") == 0

    # Prometheus 3.x asks for UTF-8 names; ours are all legacy-valid, so the text is the same.
    prometheus3 = (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    text, content_type = await scrape(client, accept=prometheus3)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert om_value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 1
    text, content_type = await scrape(client, accept="text/plain;version=1.0.0;escaping=allow-utf-8")
    assert content_type.startswith("text/plain; version=1.0.0")
    assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 1

    text, content_type = await scrape(client, accept="text/html,*/*;q=0.8")
    assert content_type.startswith("text/plain; version=0.0.4")
    # No _created series in either format: Prometheus 2.x would store each as a series of its own.
    assert "_created" not in text


async def test_compressed_when_asked(serve: Any) -> None:
    client = await serve(Metrics())
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.status == 200
    assert resp.headers.get("Content-Encoding") == "gzip"


async def test_bearer_token(serve: Any) -> None:
    client = await serve(Metrics(), token="s3cret")
    resp = await client.get("/metrics")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer wrong", "Basic czNjcmV0", "s3cret", "Bearer s3cret-and-more", "Bearer "):
        resp = await client.get("/metrics", headers={"Authorization": header})
        assert resp.status == 401, header
    text, _ = await scrape(client, token="s3cret")
    assert "receiver_webhook_requests_total" in text
    resp = await client.get("/metrics", headers={"Authorization": "bearer s3cret"})
    assert resp.status == 200
    with pytest.raises(ValueError):
        make_metrics_handler(Metrics(), lambda: None, "")


async def test_two_apps_on_one_process(serve: Any, db: asyncpg.Connection) -> None:
    await insert_incidents(db, [{"kind": "latency", "severity": "critical", "status": "open"}])
    a, b = Metrics(), Metrics()
    client_a, client_b = await serve(a), await serve(b)
    a.webhook_request(200, 0.01)
    text_a, _ = await scrape(client_a)
    text_b, _ = await scrape(client_b)
    assert value(text_a, "receiver_webhook_requests_total", code="200") == 1
    assert value(text_b, "receiver_webhook_requests_total", code="200") == 0
    for text in (text_a, text_b):
        assert value(text, "receiver_active_incidents", status="open", severity="critical", kind="latency") == 1


async def test_database_error_is_counted_and_metrics_still_served(
    aiohttp_client: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = await create_pool(database_url, max_size=1)
    await closed.close()
    metrics = Metrics()
    metrics.webhook_request(200, 0.01)
    app = web.Application()
    app.router.add_get("/metrics", make_metrics_handler(metrics, lambda: Store(closed), None))
    client = await aiohttp_client(app)
    text, _ = await scrape(client)
    assert value(text, "receiver_database_errors_total", operation="metrics") == 1
    assert value(text, "receiver_webhook_requests_total", code="200") == 1
    assert value(text, "process_start_time_seconds") is not None
    # Better absent (or unknown) than stale.
    assert not [s for s in samples(text) if s.name == "receiver_active_incidents"]
    assert math.isnan(value(text, "receiver_oldest_unacknowledged_incident_age_seconds") or 0.0)
    assert "cannot read incident state" in caplog.text


async def test_slow_database_is_cut_off(aiohttp_client: Any) -> None:
    class SlowPool:
        async def fetch(self, *_: Any) -> list[Any]:
            await asyncio.sleep(5)
            return []

    metrics = Metrics(state_timeout=0.1)
    app = web.Application()
    slow = Store(SlowPool())  # only what the store calls
    app.router.add_get("/metrics", make_metrics_handler(metrics, lambda: slow, None))
    client = await aiohttp_client(app)
    text, _ = await scrape(client)
    assert value(text, "receiver_database_errors_total", operation="metrics") == 1


async def test_no_pool_yet(aiohttp_client: Any) -> None:
    app = web.Application()
    app.router.add_get("/metrics", make_metrics_handler(Metrics(), lambda: None, None))
    client = await aiohttp_client(app)
    text, _ = await scrape(client)
    assert value(text, "receiver_database_errors_total", operation="metrics") == 0


# --- promtool, the dashboard and the rules -----------------------------------------------------------


@needs_promtool
async def test_promtool_check_metrics(serve: Any, db: asyncpg.Connection) -> None:
    await insert_incidents(db, [{"kind": "latency", "severity": "critical", "status": "open", "route": "GET /x"}])
    metrics = Metrics(per_route=True)
    metrics.time_to_acknowledge("latency", "critical", 100)
    client = await serve(metrics)
    text, content_type = await scrape(client)
    assert content_type.startswith("text/plain; version=0.0.4")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout  # no lint findings either


@needs_promtool
def test_promtool_check_rules() -> None:
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert(name: str, at: str, *expected: tuple[dict[str, str], dict[str, str]]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": name,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": notes} for labels, notes in expected],
    }


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    labels = {"job": "receiver", **labels}
    return {"series": name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "values": values}


def rule_tests() -> dict[str, Any]:
    """promtool unit tests: each alert fires on the failure it names, with its annotations rendered."""
    job = {"job": "receiver"}
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    _series("receiver_escalation_last_success_timestamp_seconds", "0+60x30", instance="ok"),
                    _series("receiver_escalation_last_success_timestamp_seconds", "0+60x3 180x27", instance="stuck"),
                    _series("receiver_oldest_unacknowledged_incident_age_seconds", "0+120x30", instance="a"),
                    _series("receiver_oldest_unacknowledged_incident_age_seconds", "0+120x30", instance="b"),
                    _series(
                        "receiver_notifications_total", "0x10 1x20", instance="a", target_type="slack", result="failed"
                    ),
                    _series(
                        "receiver_notifications_total", "0x30", instance="a", target_type="webhook", result="failed"
                    ),
                    _series("receiver_webhook_requests_total", "0+50x30", instance="a", code="200"),
                    _series("receiver_webhook_requests_total", "0+10x30", instance="a", code="503"),
                    _series("receiver_webhook_requests_total", "0x30", instance="a", code="401"),
                    _series("up", "1x30", instance="a"),
                    _series("receiver_heartbeat_last_ping_age_seconds", "0+60x30", instance="a", heartbeat="prod"),
                    _series("receiver_heartbeat_last_ping_age_seconds", "0+60x30", instance="b", heartbeat="prod"),
                    _series("receiver_heartbeat_allowed_seconds", "420x30", instance="a", heartbeat="prod"),
                    _series("receiver_heartbeat_allowed_seconds", "420x30", instance="b", heartbeat="prod"),
                    _series("receiver_heartbeat_last_ping_age_seconds", "30x30", instance="a", heartbeat="cron"),
                    _series("receiver_heartbeat_allowed_seconds", "3700x30", instance="a", heartbeat="cron"),
                ],
                "alert_rule_test": [
                    _alert("ReceiverEscalationLoopStuck", "5m"),
                    _alert(
                        "ReceiverEscalationLoopStuck",
                        "12m",
                        (
                            {"severity": "critical", **job, "instance": "stuck"},
                            {
                                "summary": "receiver stuck: no successful escalation tick for 5 minutes",
                                "description": "The escalation loop escalates unacknowledged incidents and delivers "
                                "notifications; its last successful tick was 9m 0s ago "
                                "(decades: none since the process started).",
                            },
                        ),
                    ),
                    _alert("ReceiverNotificationsFailing", "9m"),
                    _alert(
                        "ReceiverNotificationsFailing",
                        "12m",
                        (
                            {"severity": "critical", **job, "target_type": "slack"},
                            {
                                "summary": "receiver gave up delivering slack notifications",
                                "description": "1 slack notifications failed for good in 15 minutes: pages are not "
                                "reaching people. Check the target URLs and the incidents' timelines (notify_failed).",
                            },
                        ),
                    ),
                    _alert("ReceiverIncidentUnacknowledged", "10m"),
                    _alert(
                        "ReceiverIncidentUnacknowledged",
                        "20m",
                        (
                            {"severity": "warning", **job},
                            {
                                "summary": "an incident has been open and unacknowledged for 40m 0s",
                                "description": "The oldest open incident has waited more than 30 minutes for an "
                                "acknowledgement; see the status page.",
                            },
                        ),
                    ),
                    _alert(
                        "ReceiverWebhookErrors",
                        "20m",
                        (
                            {"severity": "warning", **job},
                            {
                                "summary": "receiver answers 16.67% of webhooks with 5xx",
                                "description": "Alertmanager retries 5xx, so alerts are delayed rather than lost; "
                                "look at receiver_database_errors_total and the logs.",
                            },
                        ),
                    ),
                    _alert("ReceiverWebhookRejected", "20m"),
                    _alert("ReceiverDown", "20m"),
                    _alert("ReceiverHeartbeatMissed", "9m"),  # silent past every + grace, pending for 2m
                    _alert(
                        "ReceiverHeartbeatMissed",
                        "12m",
                        (
                            {"severity": "critical", **job, "heartbeat": "prod"},
                            {
                                "summary": "heartbeat prod: no ping for 12m 0s",
                                "description": "Whatever sends the heartbeat prod (a Watchdog through Prometheus "
                                "and Alertmanager, a cron job) has been silent for longer than its every + grace: "
                                "alerts may not be reaching the receiver. See the receiver's /heartbeats page.",
                            },
                        ),
                    ),
                ],
            }
        ],
    }


@needs_promtool
def test_promtool_rule_unit_tests(tmp_path: Path) -> None:
    tests = tmp_path / "receiver.rules.test.yml"
    tests.write_text(yaml.safe_dump(rule_tests()))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_is_importable_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert dashboard["id"] is None and dashboard["uid"] and dashboard["title"]
    panels = _panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert {"h", "w", "x", "y"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert 'job=~"$job"' in t["expr"], t["expr"]
    titles = " ".join(p["title"] for p in panels).lower()
    for words in (
        "severity and kind",
        "opened and resolved",
        "time to acknowledge",
        "time to resolve",
        "escalations",
        "notification failures",
        "webhook requests",
        "webhook latency",
        "webhook errors",
        "escalation tick",
    ):
        assert words in titles, words


async def test_every_metric_in_dashboard_and_rules_exists(serve: Any) -> None:
    heartbeat = Heartbeat("prod-prometheus", (), timedelta(minutes=6), timedelta(minutes=1), "default", "critical")
    client = await serve(Metrics(per_route=True, heartbeats=[heartbeat]))
    text, _ = await scrape(client)
    exposed = {s.name for s in samples(text)} | SYNTHETIC
    used: dict[str, set[str]] = {}
    for source, exprs in (("dashboard", dashboard_queries()), ("rules", rule_queries())):
        for expr in exprs:
            names = metric_names(expr)
            assert names, expr
            for name in names:
                used.setdefault(name, set()).add(source)
    for name in dashboard_variable_metrics():
        used.setdefault(name, set()).add("dashboard variables")
    missing = {name: sorted(sources) for name, sources in used.items() if name not in exposed}
    assert not missing, missing
    # And the dashboard covers every receiver metric family worth charting.
    assert {n for n in used if n.startswith("receiver_")} >= {
        "receiver_active_incidents",
        "receiver_oldest_unacknowledged_incident_age_seconds",
        "receiver_incidents_total",
        "receiver_time_to_acknowledge_seconds_bucket",
        "receiver_time_to_resolve_seconds_bucket",
        "receiver_escalations_total",
        "receiver_notifications_total",
        "receiver_webhook_requests_total",
        "receiver_webhook_duration_seconds_bucket",
        "receiver_escalation_last_success_timestamp_seconds",
        "receiver_database_errors_total",
    }
