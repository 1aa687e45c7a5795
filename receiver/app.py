"""The application factory: `create_app(config, database_url)` wires parts together and does no I/O.

Resources open in `cleanup_ctx` and close in reverse: the database pool, the HTTP client session,
then the background loops (escalation ticks and outbox delivery), which stop first on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import aiohttp
import jinja2
from aiohttp import web

from .alertmanager_api import AlertmanagerAPI
from .config import Config
from .database import create_pool, resource_dir
from .escalation import Escalator, run_loop
from .heartbeats import KIND as HEARTBEAT_KIND
from .heartbeats import HeartbeatMonitor
from .ingest import SENDERS
from .ingest.service import Ingestor
from .keys import (
    ALERTMANAGER_API,
    CONFIG,
    DATABASE_URL,
    DELIVERER,
    DELIVERY_WAKEUP,
    DRAIN,
    ESCALATION_WAKEUP,
    ESCALATOR,
    HEARTBEATS,
    HTTP_SESSION,
    INGESTOR,
    LINK_SECRET,
    LOOPS,
    METRICS,
    SILENCER,
    STORE,
    TEMPLATES,
)
from .links import link_path
from .metrics import Metrics, make_metrics_handler
from .notify import NOBODY_PAGED, nobody_paged
from .notify.delivery import Deliverer, Delivery
from .reconcile import Reconciler
from .server import Drain
from .silences import Silencer
from .store import Store, StoreUnavailable
from .timeutil import utcnow
from .web import actions, handlers, heartbeats, pages, users
from .web.middleware import BodyLimits, error_middleware, webhook_metrics

log = logging.getLogger(__name__)


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = await create_pool(
        app[DATABASE_URL],
        min_size=config.database.pool_min,
        max_size=config.database.pool_max,
        timeout=config.database.connect_timeout,
    )
    store = Store(pool, max_ingest_transactions=config.database.max_ingest_transactions)
    app[STORE] = store
    app[INGESTOR] = Ingestor(config, store)
    app[INGESTOR].batcher.on_batch = app[METRICS].ingest_batch
    app[ESCALATOR] = Escalator(config, store)
    app[HEARTBEATS] = HeartbeatMonitor(config, store, app[INGESTOR].owner_snapshot)
    app[INGESTOR].on_missed_ping = app[HEARTBEATS].wakeup.set  # a ping resolves a missed heartbeat's incident soon
    if config.links.signing_secret is not None:
        app[LINK_SECRET] = config.links.signing_secret.value
    else:  # generated once and shared by every replica through the database
        app[LINK_SECRET] = await store.link_secret(secrets.token_urlsafe(32))
    try:
        yield
    finally:
        await pool.close()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    metrics = app[METRICS]
    timeout = aiohttp.ClientTimeout(total=config.delivery.timeout.total_seconds())

    def observe(dv: Delivery) -> None:
        metrics.notification(dv.target_type, dv.metric_result, dv.seconds)

    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "receiver"}) as session:
        app[HTTP_SESSION] = session
        if config.alertmanager is not None:
            app[ALERTMANAGER_API] = AlertmanagerAPI(config.alertmanager, session)
        app[DELIVERER] = Deliverer(config, app[STORE], session, links=_link_builder(app), on_delivery=observe)
        yield


def _silences(loops: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """With `alertmanager.silences: true`: the Silencer (receiver/silences.py) and, with the loops, its sweep
    every reconcile interval, which expires our Alertmanager silences whose incident is no longer silenced."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        am = config.alertmanager
        if am is None or not am.silences:
            yield
            return
        silencer = Silencer(app[ALERTMANAGER_API], app[STORE], app[METRICS], external_url=config.external_url)
        app[SILENCER] = silencer
        stop = asyncio.Event()
        task = (
            asyncio.create_task(
                run_loop("alertmanager-silences", silencer.sweep, am.reconcile.interval.total_seconds(), stop),
                name="receiver-alertmanager-silences",
            )
            if loops
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
            await silencer.close()

    return context


def _link_builder(app: web.Application) -> Callable[[uuid.UUID, datetime], tuple[str | None, str | None]]:
    config = app[CONFIG]

    def links(incident_id: uuid.UUID, now: datetime) -> tuple[str | None, str | None]:
        if not config.external_url:
            return None, None
        ack = link_path(app[LINK_SECRET], incident_id, "ack", now, config.links.ttl)
        return f"{config.external_url}/incidents/{incident_id}", f"{config.external_url}{ack}"

    return links


async def _loops(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    stop = asyncio.Event()
    escalator, deliverer = app[ESCALATOR], app[DELIVERER]
    interval = config.escalation.interval.total_seconds()

    metrics = app[METRICS]

    async def tick(now: datetime) -> None:
        started = time.perf_counter()
        try:
            result = await escalator.tick(now)
        except BaseException:
            metrics.tick(time.perf_counter() - started, False, now.timestamp())
            raise
        metrics.tick(time.perf_counter() - started, True, now.timestamp())
        for esc in result.escalations:
            if esc.level > esc.from_level:
                metrics.escalated(esc.level)
        for stale in result.stale_resolved:
            metrics.incident_transition("stale_resolved", stale.kind, stale.severity)
            metrics.time_to_resolve(stale.kind, stale.severity, stale.age_seconds)
        if result.delivery_due:
            app[DELIVERY_WAKEUP].set()

    tasks = [
        asyncio.create_task(
            run_loop(
                "escalation",
                tick,
                interval,
                stop,
                app[ESCALATION_WAKEUP],
                on_error=lambda e: _db_error(metrics, e, "tick"),
            ),
            name="receiver-escalation",
        ),
        # the tick says when rows are due (new, or a retry's time has come) and wakes delivery; its own
        # timer is only a safety net, so an idle replica costs one query per tick
        asyncio.create_task(
            run_loop(
                "delivery",
                deliverer.deliver,
                max(interval * 10, 30.0),
                stop,
                app[DELIVERY_WAKEUP],
                on_error=lambda e: _db_error(metrics, e, "deliver"),
            ),
            name="receiver-delivery",
        ),
    ]
    if config.heartbeats:
        tasks.append(await _heartbeat_loop(app, stop, interval))
    if config.alertmanager is not None:  # without the section nothing asks Alertmanager anything
        reconciler = Reconciler(
            config,
            app[STORE],
            app[INGESTOR],
            app[ALERTMANAGER_API],
            metrics=metrics,
            on_unsuppressed=app[ESCALATION_WAKEUP].set,
        )
        # its own task: a slow peer (each request bounded by alertmanager.timeout) delays only this loop
        tasks.append(
            asyncio.create_task(
                run_loop("reconcile", reconciler.run, config.alertmanager.reconcile.interval.total_seconds(), stop),
                name="receiver-reconcile",
            )
        )
    app[LOOPS] = tasks
    try:
        yield
    finally:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=config.delivery.timeout.total_seconds() + 5)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _heartbeat_loop(app: web.Application, stop: asyncio.Event, interval: float) -> asyncio.Task[None]:
    """Start the heartbeats' clocks (receiver/heartbeats.py: the start-up rule), then check them every escalation
    interval, and sooner when a ping reaches a missed one; a check that opens or resolves an incident wakes
    escalation, so it pages at once."""
    monitor, metrics = app[HEARTBEATS], app[METRICS]
    await monitor.start(utcnow())

    async def check(now: datetime) -> None:
        result = await monitor.tick(now)
        for plan in result.plans:
            handlers.observe_transitions(metrics, plan, now)
        if result.missed or result.resumed:
            app[ESCALATION_WAKEUP].set()

    return asyncio.create_task(
        run_loop("heartbeats", check, interval, stop, monitor.wakeup, on_error=lambda e: _db_error(metrics, e, "tick")),
        name="receiver-heartbeats",
    )


def _db_error(metrics: Metrics, error: BaseException, operation: str) -> None:
    if isinstance(error, StoreUnavailable):
        metrics.database_error(operation)


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )
    pages.install_filters(env)
    return env


def create_app(config: Config, database_url: str, *, loops: bool = True) -> web.Application:
    """The receiver as an aiohttp application. `loops=False` leaves escalation to the caller (tests)."""
    drain = Drain()
    limits = BodyLimits()  # bodies are bounded per route before they are read (see BodyLimits)
    app = web.Application(
        client_max_size=config.webhook.max_body_bytes,
        middlewares=[drain.middleware, webhook_metrics, error_middleware, limits.middleware, pages.security_headers],
    )
    app[DRAIN] = drain
    app.on_response_prepare.append(drain.on_response_prepare)
    app[CONFIG] = config
    app[DATABASE_URL] = database_url
    app[TEMPLATES] = templates()
    if nobody_paged(config):  # said at start and on every page, so a missing target is not found out in an outage
        log.warning("%s", NOBODY_PAGED)
    app[TEMPLATES].globals["nobody_paged"] = NOBODY_PAGED if nobody_paged(config) else None
    app[TEMPLATES].globals["heartbeats_configured"] = bool(config.heartbeats)  # the page's link in the header
    metrics = Metrics(
        per_route=config.metrics.per_route,
        route_cap=config.metrics.route_cap,
        kinds=[r.kind for r in config.rules if r.kind] + ([HEARTBEAT_KIND] if config.heartbeats else []),
        heartbeats=config.heartbeats,
    )
    app[METRICS] = metrics
    app[ESCALATION_WAKEUP] = asyncio.Event()
    app[DELIVERY_WAKEUP] = asyncio.Event()
    app.cleanup_ctx.append(users.sign_in_context)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_http_session)
    app.cleanup_ctx.append(_silences(loops))
    if loops:
        app.cleanup_ctx.append(_loops)
    for sender in SENDERS:  # /webhook (Alertmanager), /webhook/grafana, ...: see receiver/ingest
        app.router.add_post(sender.path, handlers.webhook_handler(sender), expect_handler=limits.expect)
    app.router.add_get("/api/incidents", handlers.list_incidents)
    app.router.add_get("/api/incidents/{id}", handlers.get_incident)
    app.router.add_post(
        "/api/incidents/{id}/{action:ack|unack|resolve|silence|unsilence}",
        actions.api_action,
        expect_handler=limits.expect,
    )
    app.router.add_get("/incidents/{id}/{action:ack}-link", actions.link_page)
    app.router.add_post("/incidents/{id}/{action:ack}-link", actions.link_action, expect_handler=limits.expect)
    app.router.add_get("/api/heartbeats", heartbeats.list_heartbeats)
    app.router.add_post("/api/heartbeats/{name}/ping", heartbeats.ping, expect_handler=limits.expect)
    app.router.add_get("/heartbeats", heartbeats.page)
    app.router.add_get("/", pages.index)
    app.router.add_get("/signin", pages.signin)
    app.router.add_get("/incidents/{id}", pages.incident)
    app.router.add_post(
        "/incidents/{id}/actions/{action:ack|unack|resolve|silence|unsilence}",
        pages.incident_action,
        expect_handler=limits.expect,
    )
    app.router.add_post(
        "/incidents/{id}/alertmanager-silence", pages.alertmanager_silence, expect_handler=limits.expect
    )
    token = config.metrics.token.value if config.metrics.token else None
    app.router.add_get("/metrics", make_metrics_handler(metrics, lambda: app.get(STORE), token))
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_static("/static", resource_dir("templates") / "static")
    return app
