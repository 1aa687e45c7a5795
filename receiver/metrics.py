"""Prometheus metrics: counters and histograms this process observes, incident gauges read from the database.

`Metrics` owns its registry (never the global one), so two applications in one test process do not
collide. Every label has a bounded set of values and the known ones are pre-initialised, so series
exist at 0 before the first event and `rate()`/`increase()` see the first one. Incident state
(`receiver_active_incidents`, the oldest unacknowledged age, the optional per-route series) is
computed from the database at scrape time, so every replica reports the same, correct numbers;
dashboards and rules take `max` across replicas for those, and `sum` for the per-process counters.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from . import heartbeats as heartbeats_mod
from .config import Heartbeat
from .model import ACTIVE_STATUSES, AlertStatus, Outcome, Severity, TargetType
from .store import Store, StoreError

log = logging.getLogger(__name__)

WEBHOOK_CODES = (200, 400, 401, 413, 500, 503)
# Why the server closed (or lost) a connection before answering it; see receiver/server.py.
HTTP_CLOSE_REASONS = ("header_timeout", "body_timeout", "connection_limit", "malformed", "client_disconnect")
ALERT_OUTCOMES = tuple(Outcome)
ALERT_STATUSES = tuple(AlertStatus)
TRANSITIONS = ("opened", "resolved", "reopened", "stale_resolved")
BUILTIN_KINDS = ("error_rate", "latency", "slo_violation")
SEVERITIES = tuple(Severity)
ESCALATION_LEVEL_CAP = 10
TARGET_TYPES = tuple(TargetType)  # every channel's series exist from the start
NOTIFICATION_RESULTS = ("delivered", "retried", "unknown", "failed")
DATABASE_OPERATIONS = ("ingest", "read", "tick", "deliver", "metrics")
AM_SILENCE_OUTCOMES = ("created", "expired", "create_failed", "expire_failed")  # receiver/silences.py
# receiver/reconcile.py: a run compared every peer (ok), could not because a peer failed (peer_error: nothing
# resolved), failed on the database (error), or was left to another replica or to the next interval (skipped)
RECONCILE_RESULTS = ("ok", "peer_error", "error", "skipped")
RECONCILE_ACTIONS = ("resolved", "ingested")
OTHER = "other"

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Humans acknowledge and resolve: 30 s to a day.
HUMAN_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0)

# The store turns driver errors into StoreError; TimeoutError is the scrape's own bound (state_timeout).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (StoreError, OSError, TimeoutError)


def _check(value: str, allowed: Iterable[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}")
    return value


class Metrics:
    """Every metric of one receiver process, on a registry of its own (`self.registry`)."""

    def __init__(
        self,
        *,
        per_route: bool = False,
        route_cap: int = 20,
        kinds: Iterable[str] = (),
        kind_cap: int = 50,
        state_timeout: float = 5.0,
        process_metrics: bool = True,
        registry: CollectorRegistry | None = None,
        heartbeats: Sequence[Heartbeat] = (),
    ) -> None:
        """`kinds`: the kinds the mapping rules name, pre-initialised beside the built-in ones.
        `kind_cap`: at most this many further kinds get their own series; the rest count as "other".
        `per_route`/`route_cap`: per-route active incident series, the largest `route_cap` routes
        by count and the rest summed as route="other". `state_timeout` bounds the scrape-time query.
        `heartbeats`: the configured heartbeats; their state is read at scrape time with the incidents'."""
        if route_cap < 1:
            raise ValueError("route_cap must be at least 1")
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.per_route = per_route
        self.route_cap = route_cap
        self.state_timeout = state_timeout
        self._known_kinds: tuple[str, ...] = tuple(dict.fromkeys((*BUILTIN_KINDS, *kinds)))
        self._kinds: set[str] = set(self._known_kinds)
        self._kind_limit = len(self._known_kinds) + kind_cap
        r = self.registry

        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

        self._http_metrics(r)
        self._ingest_metrics(r)
        self._escalation_metrics(r)
        self._delivery_metrics(r)
        self._database_metrics(r)
        self._state_metrics(r)
        self._heartbeat_metrics(r, heartbeats)
        self._silence_metrics(r)
        self._reconcile_metrics(r)
        self._preinit()

    def _http_metrics(self, r: CollectorRegistry) -> None:
        """The HTTP edge: webhook requests and their duration, connections open and closed early."""
        self.webhook_requests = Counter(
            "receiver_webhook_requests_total", "Webhook requests answered, by HTTP status code.", ["code"], registry=r
        )
        self.http_closed = Counter(
            "receiver_http_connections_closed_total",
            "Connections closed without a normal answer, by reason (header_timeout, body_timeout, "
            "connection_limit, malformed, client_disconnect).",
            ["reason"],
            registry=r,
        )
        self.http_open = Gauge("receiver_http_connections", "HTTP connections open now.", registry=r)
        self.webhook_duration = Histogram(
            "receiver_webhook_duration_seconds",
            "Time to handle one webhook request, from receipt to response.",
            registry=r,
            buckets=WEBHOOK_BUCKETS,
        )

    def _ingest_metrics(self, r: CollectorRegistry) -> None:
        """What webhooks brought (alerts by outcome and status), and the incident transitions and their times."""
        self.alerts = Counter(
            "receiver_alerts_received_total",
            "Alerts received in webhooks, by what ingest did with them "
            "(new, updated, duplicate, stale: ignored as older than the known state, invalid).",
            ["outcome"],
            registry=r,
        )
        # group commit: webhooks / transactions is the mean batch size
        self.ingest_transactions = Counter(
            "receiver_ingest_transactions_total",
            "Ingest transactions committed (each writes a batch of webhooks, see receiver_ingest_webhooks_total).",
            registry=r,
        )
        self.ingest_webhooks = Counter(
            "receiver_ingest_webhooks_total",
            "Webhooks (or key chunks of huge ones) committed by ingest transactions.",
            registry=r,
        )
        self.alert_status = Counter(
            "receiver_alerts_received_by_status_total",
            "Alerts received in webhooks, by the alert's own status (firing or resolved).",
            ["status"],
            registry=r,
        )
        self.incidents = Counter(
            "receiver_incidents_total",
            "Incident lifecycle transitions made by this process (opened, resolved, reopened, stale_resolved).",
            ["transition", "kind", "severity"],
            registry=r,
        )
        self.time_to_ack = Histogram(
            "receiver_time_to_acknowledge_seconds",
            "Time from an incident opening to its acknowledgement, by kind and severity.",
            ["kind", "severity"],
            registry=r,
            buckets=HUMAN_BUCKETS,
        )
        self.time_to_res = Histogram(
            "receiver_time_to_resolve_seconds",
            "Time from an incident opening to its resolution, by kind and severity.",
            ["kind", "severity"],
            registry=r,
            buckets=HUMAN_BUCKETS,
        )

    def _escalation_metrics(self, r: CollectorRegistry) -> None:
        """The escalation loop: its ticks and the levels escalations reach."""
        self.escalations = Counter(
            "receiver_escalations_total",
            f"Escalations made by this process, by the level reached (levels above {ESCALATION_LEVEL_CAP} "
            f'are "{ESCALATION_LEVEL_CAP}+").',
            ["level"],
            registry=r,
        )
        self.tick_duration = Histogram(
            "receiver_escalation_tick_duration_seconds",
            "Duration of one escalation loop tick.",
            registry=r,
            buckets=TICK_BUCKETS,
        )
        self.ticks = Counter(
            "receiver_escalation_ticks_total",
            "Escalation loop ticks, by result (ok or error).",
            ["result"],
            registry=r,
        )
        self.tick_last_success = Gauge(
            "receiver_escalation_last_success_timestamp_seconds",
            "Unix time of the last successful escalation loop tick; 0 until the first.",
            registry=r,
        )

    def _delivery_metrics(self, r: CollectorRegistry) -> None:
        """Notification delivery attempts, by target type and result."""
        self.notifications = Counter(
            "receiver_notifications_total",
            "Notification delivery attempts, by target type and result (delivered; retried; unknown: no answer "
            "in time, retried and possibly a repeat; failed for good).",
            ["target_type", "result"],
            registry=r,
        )
        self.notification_delivery = Histogram(
            "receiver_notification_delivery_seconds",
            "Duration of one notification delivery attempt, by target type and result.",
            ["target_type", "result"],
            registry=r,
            buckets=DELIVERY_BUCKETS,
        )

    def _database_metrics(self, r: CollectorRegistry) -> None:
        """Database errors, by the operation that met them."""
        self.database_errors = Counter(
            "receiver_database_errors_total",
            "Database errors, by the operation that met them.",
            ["operation"],
            registry=r,
        )

    def _reconcile_metrics(self, r: CollectorRegistry) -> None:
        """Reconciliation with Alertmanager's API (receiver/reconcile.py)."""
        self.reconcile_runs = Counter(
            "receiver_reconcile_runs_total",
            "Reconciliation runs with Alertmanager, by result (ok; peer_error: a peer failed, nothing was resolved; "
            "error: the database failed; skipped: another replica holds the lease or ran within the interval).",
            ["result"],
            registry=r,
        )
        self.reconcile_alerts = Counter(
            "receiver_reconcile_alerts_total",
            "Alerts changed by reconciliation: resolved (no peer listed them for the grace period) or ingested "
            "(listed firing by a peer, never received as a webhook).",
            ["outcome"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "receiver_reconcile_duration_seconds",
            "Duration of one reconciliation run that was not skipped (peers asked, database compared and written).",
            registry=r,
            buckets=WEBHOOK_BUCKETS,
        )

    def _silence_metrics(self, r: CollectorRegistry) -> None:
        """The Alertmanager silences made for incidents' silences (receiver/silences.py)."""
        self.am_silences = Counter(
            "receiver_alertmanager_silences_total",
            "Alertmanager silences made for incidents' silences, by outcome: created, expired, create_failed (a "
            "matcher set no peer took, or none could be made), expire_failed (an expiry no peer confirmed).",
            ["outcome"],
            registry=r,
        )

    def _state_metrics(self, r: CollectorRegistry) -> None:
        """The incident gauges, read from the database at scrape time."""
        self.active = Gauge(
            "receiver_active_incidents",
            "Incidents not resolved, by status, severity and kind; read from the database at scrape time "
            "(the same on every replica).",
            ["status", "severity", "kind"],
            registry=r,
        )
        self.oldest_unacked = Gauge(
            "receiver_oldest_unacknowledged_incident_age_seconds",
            "Age of the oldest open (unacknowledged) incident, 0 when there is none, NaN when the database "
            "cannot be read; read at scrape time.",
            registry=r,
        )
        self.state_query_duration = Gauge(
            "receiver_incident_state_query_duration_seconds",
            "Duration of the last scrape-time incident state query.",
            registry=r,
        )
        self.active_by_route: Gauge | None = None
        if self.per_route:
            self.active_by_route = Gauge(
                "receiver_active_incidents_by_route",
                f'Incidents not resolved, by route: the {self.route_cap} largest routes, the rest as route="other".',
                ["route"],
                registry=r,
            )

    def _heartbeat_metrics(self, r: CollectorRegistry, heartbeats: Sequence[Heartbeat]) -> None:
        """Each configured heartbeat (receiver/heartbeats.py; names come from the config, so the series are
        bounded): seconds since its last sign of life, read from the database at scrape time, and its allowance."""
        self.heartbeats = {hb.name: hb for hb in heartbeats}
        self.heartbeat_age = Gauge(
            "receiver_heartbeat_last_ping_age_seconds",
            "Seconds since the heartbeat's last ping (or since its clock started, when that is later: see the "
            "README's Heartbeats); read from the database at scrape time, NaN when it cannot be read.",
            ["heartbeat"],
            registry=r,
        )
        self.heartbeat_allowed = Gauge(
            "receiver_heartbeat_allowed_seconds",
            "How long the heartbeat may stay silent before its missed-heartbeat incident opens: every + grace.",
            ["heartbeat"],
            registry=r,
        )
        self.heartbeat_up = Gauge(
            "receiver_heartbeat_up",
            "1 while the heartbeat is healthy (or waiting for its first ping), 0 once it missed its deadline.",
            ["heartbeat"],
            registry=r,
        )
        for name, hb in self.heartbeats.items():
            self.heartbeat_allowed.labels(name).set(hb.allowed.total_seconds())

    def _preinit(self) -> None:
        for code in WEBHOOK_CODES:
            self.webhook_requests.labels(str(code))
        for reason in HTTP_CLOSE_REASONS:
            self.http_closed.labels(reason)
        for outcome in ALERT_OUTCOMES:
            self.alerts.labels(outcome)
        for status in ALERT_STATUSES:
            self.alert_status.labels(status)
        for kind in self._known_kinds:
            for severity in SEVERITIES:
                for transition in TRANSITIONS:
                    self.incidents.labels(transition, kind, severity)
                self.time_to_ack.labels(kind, severity)
                self.time_to_res.labels(kind, severity)
        for level in range(1, ESCALATION_LEVEL_CAP + 1):
            self.escalations.labels(str(level))
        self.escalations.labels(f"{ESCALATION_LEVEL_CAP}+")
        for target_type in TARGET_TYPES:
            for result in NOTIFICATION_RESULTS:
                self.notifications.labels(target_type, result)
                self.notification_delivery.labels(target_type, result)
        for operation in DATABASE_OPERATIONS:
            self.database_errors.labels(operation)
        for result in ("ok", "error"):
            self.ticks.labels(result)
        for silence_outcome in AM_SILENCE_OUTCOMES:
            self.am_silences.labels(silence_outcome)
        for run_result in RECONCILE_RESULTS:
            self.reconcile_runs.labels(run_result)
        for action in RECONCILE_ACTIONS:
            self.reconcile_alerts.labels(action)
        self._reset_state()

    def _kind(self, kind: str) -> str:
        """The label value for a kind: kinds come from the mapping rules, so they are bounded in
        practice; the cap makes sure a rule that derives them from alert names cannot blow up."""
        if kind in self._kinds:
            return kind
        if len(self._kinds) < self._kind_limit:
            self._kinds.add(kind)
            return kind
        return OTHER

    # --- observed by the code -------------------------------------------------------------------

    def webhook_request(self, code: int, seconds: float) -> None:
        self.webhook_requests.labels(str(int(code))).inc()
        self.webhook_duration.observe(max(seconds, 0.0))

    def http_connection_closed(self, reason: str) -> None:
        _check(reason, HTTP_CLOSE_REASONS, "close reason")
        self.http_closed.labels(reason).inc()

    def alerts_received(self, outcomes: Mapping[str, int]) -> None:
        """Counts per outcome: new, updated, duplicate, stale, invalid."""
        for outcome, n in outcomes.items():
            _check(outcome, ALERT_OUTCOMES, "alert outcome")
            if n > 0:
                self.alerts.labels(outcome).inc(n)

    def alert_statuses(self, firing: int, resolved: int) -> None:
        if firing > 0:
            self.alert_status.labels(AlertStatus.FIRING).inc(firing)
        if resolved > 0:
            self.alert_status.labels(AlertStatus.RESOLVED).inc(resolved)

    def ingest_batch(self, webhooks: int, _alerts: int) -> None:
        """One ingest transaction committed `webhooks` webhooks (the batcher's on_batch)."""
        self.ingest_transactions.inc()
        self.ingest_webhooks.inc(webhooks)

    def incident_transition(self, transition: str, kind: str, severity: str) -> None:
        _check(transition, TRANSITIONS, "incident transition")
        self.incidents.labels(transition, self._kind(kind), severity).inc()

    def escalated(self, level: int) -> None:
        label = str(level) if level <= ESCALATION_LEVEL_CAP else f"{ESCALATION_LEVEL_CAP}+"
        self.escalations.labels(label).inc()

    def notification(self, target_type: str, result: str, seconds: float | None) -> None:
        _check(target_type, TARGET_TYPES, "notification target type")
        _check(result, NOTIFICATION_RESULTS, "notification result")
        self.notifications.labels(target_type, result).inc()
        if seconds is not None:
            self.notification_delivery.labels(target_type, result).observe(max(seconds, 0.0))

    def alertmanager_silences(self, outcome: str, n: int = 1) -> None:
        _check(outcome, AM_SILENCE_OUTCOMES, "silence outcome")
        if n:
            self.am_silences.labels(outcome).inc(n)

    def reconcile_run(self, result: str, seconds: float | None = None) -> None:
        self.reconcile_runs.labels(_check(result, RECONCILE_RESULTS, "reconcile result")).inc()
        if seconds is not None:
            self.reconcile_duration.observe(max(seconds, 0.0))

    def reconciled(self, action: str, n: int) -> None:
        if n:
            self.reconcile_alerts.labels(_check(action, RECONCILE_ACTIONS, "reconcile action")).inc(n)

    def database_error(self, operation: str) -> None:
        self.database_errors.labels(_check(operation, DATABASE_OPERATIONS, "database operation")).inc()

    def tick(self, seconds: float, ok: bool, now_ts: float) -> None:
        self.tick_duration.observe(max(seconds, 0.0))
        self.ticks.labels("ok" if ok else "error").inc()
        if ok:
            self.tick_last_success.set(now_ts)

    def time_to_acknowledge(self, kind: str, severity: str, seconds: float) -> None:
        self.time_to_ack.labels(self._kind(kind), severity).observe(max(seconds, 0.0))

    def time_to_resolve(self, kind: str, severity: str, seconds: float) -> None:
        self.time_to_res.labels(self._kind(kind), severity).observe(max(seconds, 0.0))

    # --- read from the database at scrape time --------------------------------------------------

    async def collect_incident_state(self, store: Store, now: float | None = None) -> None:
        """Set the incident gauges from one query. Raises StoreError (or TimeoutError after
        `state_timeout`), leaving the previous values; the handler then clears them."""
        started = time.perf_counter()
        async with asyncio.timeout(self.state_timeout):
            state = await store.active_incidents(by_route=self.per_route)
        self.state_query_duration.set(time.perf_counter() - started)
        now = time.time() if now is None else now

        # No await from here on: a concurrent scrape sees either the old or the new state, never half.
        self._reset_state()
        oldest: float | None = None
        for c in state.by_state:
            self.active.labels(c.status, c.severity, self._kind(c.kind)).inc(c.n)
            if c.oldest_open is not None and (oldest is None or c.oldest_open < oldest):
                oldest = c.oldest_open
        self.oldest_unacked.set(max(now - oldest, 0.0) if oldest is not None else 0.0)
        if self.active_by_route is not None:
            ranked = sorted(state.by_route.items(), key=lambda item: (-item[1], item[0]))
            for route, n in ranked[: self.route_cap]:
                self.active_by_route.labels(route).set(n)
            self.active_by_route.labels(OTHER).inc(sum(n for _, n in ranked[self.route_cap :]))
        if self.heartbeats:
            await self._collect_heartbeats(store, now)

    async def _collect_heartbeats(self, store: Store, now: float) -> None:
        async with asyncio.timeout(self.state_timeout):
            states = {s.name: s for s in await store.heartbeats(list(self.heartbeats))}
        when = datetime.fromtimestamp(now, UTC)
        for name, hb in self.heartbeats.items():
            state = states.get(name)  # None: not registered yet (start-up), its clock has not started
            age = max(now - state.last_seen.timestamp(), 0.0) if state is not None else 0.0
            self.heartbeat_age.labels(name).set(age)
            # up unless missed, by the rule the API and the page show (receiver/heartbeats.py)
            self.heartbeat_up.labels(name).set(0 if heartbeats_mod.status(state, hb, when) == "missed" else 1)

    def _reset_state(self) -> None:
        """Known combinations at 0; combinations of other kinds disappear until seen again."""
        self.active.clear()
        for status in ACTIVE_STATUSES:
            for severity in SEVERITIES:
                for kind in self._known_kinds:
                    self.active.labels(status, severity, kind)
        self.oldest_unacked.set(0)
        if self.active_by_route is not None:
            self.active_by_route.clear()
            self.active_by_route.labels(OTHER)

    def clear_incident_state(self) -> None:
        """Drop the scrape-time series when the database cannot be read: better absent than stale, and
        the oldest age is NaN (unknown), not 0, which would claim that nothing waits. So are a heartbeat's age
        and whether it is up: a stale 1 would claim that a heartbeat which may have stopped meanwhile is fine."""
        self.active.clear()
        self.oldest_unacked.set(math.nan)
        for name in self.heartbeats:
            self.heartbeat_age.labels(name).set(math.nan)
            self.heartbeat_up.labels(name).set(math.nan)
        if self.active_by_route is not None:
            self.active_by_route.clear()


class _WithoutCreated:
    """The registry without `_created` samples: Prometheus 2.x stores them as series of their own
    (one more per counter and histogram label set) and nothing here charts them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type in ("counter", "histogram", "summary"):
                metric = copy.copy(metric)
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def _bearer_matches(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace"))


def make_metrics_handler(
    metrics: Metrics,
    store_getter: Callable[[], Store | None],
    token: str | None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics: optional bearer token, incident state read at scrape time, classic text or
    OpenMetrics as the scraper's Accept header asks. A database error is counted and logged, and
    the process metrics are still served (without the incident gauges)."""
    if token is not None and not token:
        raise ValueError("an empty metrics token would accept any bearer header; pass None to disable")

    async def handler(request: web.Request) -> web.Response:
        if token is not None and not _bearer_matches(request.headers.get("Authorization"), token):
            raise web.HTTPUnauthorized(
                text="a bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
            )
        store = store_getter()
        if store is None:
            metrics.clear_incident_state()
        else:
            try:
                await metrics.collect_incident_state(store)
            except DATABASE_ERRORS as e:
                metrics.database_error("metrics")
                metrics.clear_incident_state()
                log.warning("metrics: cannot read incident state: %s: %s", type(e).__name__, e)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(_WithoutCreated(metrics.registry))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        if len(body) > 1024:
            response.enable_compression()
        return response

    return handler
