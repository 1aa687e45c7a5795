"""HTTP handlers: the webhook, the read API, health and readiness."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import correlation
from ..database import migration_ids
from ..ingest import PayloadError, Sender
from ..keys import CONFIG, DRAIN, ESCALATION_WAKEUP, INGESTOR, METRICS, STORE
from ..metrics import Metrics
from ..model import ACTIVE_STATUSES, AlertStatus, Incident, IncidentStatus, Notification, as_dict, clean_text
from ..store import StoreUnavailable
from ..timeutil import utcnow
from . import detail
from .auth import BASIC_CHALLENGE, BEARER_CHALLENGE, api_actor, unauthorized
from .middleware import json_error
from .users import current_user

STATUSES = tuple(IncidentStatus)
MAX_LIMIT = 500
PARSE_OFF_LOOP_BYTES = 256 * 1024  # webhook bodies larger than this (~300 alerts) are parsed in a worker thread


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the store's types (receiver/model.py)
        return as_dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


def webhook_handler(sender: Sender) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The POST handler of one sender's route: the same credentials, limits and ingest path for every sender."""

    async def handler(request: web.Request) -> web.Response:
        return await receive(request, sender)

    handler.__name__ = f"webhook_{sender.name}"
    return handler


async def receive(request: web.Request, sender: Sender) -> web.Response:
    # BodyLimits (middleware) checked the sender's credentials on every sender's route before the body is read
    body = await request.read()  # 413 past webhook.max_body_bytes
    try:
        if len(body) > PARSE_OFF_LOOP_BYTES:
            # parsers are pure: a 16 MB body takes ~0.15 s, which would hold every other request
            notification = await asyncio.get_running_loop().run_in_executor(None, sender.parse, body)
        else:
            notification = sender.parse(body)
    except PayloadError as e:
        return json_error(400, str(e))
    now = utcnow()
    plan = await request.app[INGESTOR].ingest(notification, now)
    observe_plan(request.app[METRICS], plan, notification, now)
    if plan.new_incidents or any(c.rearm or c.resolved for c in plan.changes.values()):
        request.app[ESCALATION_WAKEUP].set()  # page now rather than at the next tick
    return json_response(
        {
            "status": "ok",
            "incidents": plan.summary(),
            "alerts": {
                "received": len(notification.alerts) + len(notification.invalid),
                **plan.outcomes,
                "invalid": len(notification.invalid),
            },
            "invalid": [i.as_dict() for i in notification.invalid],
        }
    )


def observe_plan(metrics: Metrics, plan: correlation.Plan, notification: Notification, now: datetime) -> None:
    """Count what a committed webhook did."""
    metrics.alerts_received({**plan.outcomes, "invalid": len(notification.invalid)})
    firing = sum(1 for a in notification.alerts if a.status == AlertStatus.FIRING)
    metrics.alert_statuses(firing, len(notification.alerts) - firing)
    observe_transitions(metrics, plan, now)


def observe_transitions(metrics: Metrics, plan: correlation.Plan, now: datetime) -> None:
    """Count the incidents a committed plan opened, reopened and resolved (a webhook's, or a heartbeat check's)."""
    for ni in plan.new_incidents:
        metrics.incident_transition("opened", ni.kind, ni.severity)
    for ch in plan.changes.values():
        if ch.reopened:
            metrics.incident_transition("reopened", ch.kind, ch.severity)
        if ch.resolved:
            metrics.incident_transition("resolved", ch.kind, ch.severity)
            if ch.first_seen is not None:
                metrics.time_to_resolve(ch.kind, ch.severity, (now - ch.first_seen).total_seconds())


def incident_json(incident: Incident) -> dict[str, Any]:
    data = as_dict(incident)
    owner = data.get("owner")
    if isinstance(owner, dict):
        data["owner"] = public_owner(owner)
    return data


def public_owner(owner: dict[str, Any]) -> dict[str, Any]:
    """The owner snapshot without secrets: its name and its targets' ids and types, never URLs."""
    targets = [{"id": t.get("id"), "type": t.get("type")} for t in owner.get("targets") or [] if isinstance(t, dict)]
    return {"name": owner.get("name"), "targets": targets}


def query_list(request: web.Request, name: str, *, limit: int | None = None) -> list[str]:
    """`?name=a,b&name=c` -> ["a", "b", "c"]; each value at most `limit` characters."""
    values: list[str] = []
    for raw in request.query.getall(name, []):
        # cleaned as stored values are: PostgreSQL refuses NUL, which would otherwise be a 503
        values.extend(clean_text(v.strip()[:limit]) for v in raw.split(",") if v.strip())
    return values


def encode_cursor(first_seen: datetime, incident_id: uuid.UUID) -> str:
    raw = f"{first_seen.isoformat()}|{incident_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, ident = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:  # cursors are written with an offset; a naive time cannot be compared
            raise ValueError("cursor time without an offset")
        return when.astimezone(UTC), uuid.UUID(ident)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):  # Overflow: year 1 at +05:00
        raise web.HTTPBadRequest(text="cursor is not valid") from None


async def require_reader(request: web.Request) -> None:
    """The read API shows what the status page shows: when the page needs sign-in, so does the API
    (an API token, or a page user's Basic credentials or proxy header; 429 when sign-in is throttled)."""
    config = request.app[CONFIG]
    if not config.ui.login_required:
        return
    if api_actor(config, request.headers.get("Authorization")) or await current_user(request):
        return
    raise unauthorized(
        "sign in (Basic) or send an API token (Bearer) to read incidents",
        f"{BEARER_CHALLENGE}, {BASIC_CHALLENGE}",
    )


async def list_incidents(request: web.Request) -> web.Response:
    await require_reader(request)
    statuses = query_list(request, "status") or list(ACTIVE_STATUSES)
    bad = [s for s in statuses if s not in STATUSES]
    if bad:
        return json_error(400, f"unknown status {bad[0][:32]!r}; expected any of {', '.join(STATUSES)}")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        return json_error(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return json_error(400, f"limit must be between 1 and {MAX_LIMIT}")
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    rows = await request.app[STORE].list_incidents(
        statuses=statuses,
        routes=query_list(request, "route"),
        kinds=query_list(request, "kind"),
        severities=query_list(request, "severity"),
        after=after,
        limit=limit + 1,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].first_seen, rows[-1].id)
    return json_response({"incidents": [incident_json(r) for r in rows], "next_cursor": next_cursor})


def parse_incident_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text="no such incident") from None


AM_SILENCES_LISTED = 20  # an incident's Alertmanager silences in its JSON detail, newest first


async def get_incident(request: web.Request) -> web.Response:
    """One incident with one page of its member alerts (firing first) and one of its timeline (oldest first,
    or newest first with `events_order=desc`): `?alerts_limit=&alerts_cursor=&events_limit=&events_cursor=`,
    500 of each by default and at most; `alert_count`, `firing_count`, `event_count` are the totals and
    `alerts_next_cursor`/`events_next_cursor` continue (null on the last page)."""
    await require_reader(request)
    incident_id = parse_incident_id(request)
    store = request.app[STORE]
    q = request.query
    order = q.get("events_order", "asc")
    try:
        if order not in ("asc", "desc"):
            raise detail.BadPageRequest("events_order must be asc or desc")
        alerts_limit = detail.page_limit(q, "alerts_limit", detail.MAX_PAGE)
        events_limit = detail.page_limit(q, "events_limit", detail.MAX_PAGE)
        row = await store.get_incident(incident_id)
        if row is None:
            return json_error(404, "no such incident")
        page = await detail.read_page(
            store,
            incident_id,
            alerts_cursor=q.get("alerts_cursor"),
            alerts_limit=alerts_limit,
            events_cursor=q.get("events_cursor"),
            events_limit=events_limit,
            newest_first=order == "desc",
        )
    except detail.BadPageRequest as e:
        return json_error(400, str(e))
    data = incident_json(row)
    data.update(
        event_count=page.event_count,
        alerts=page.alerts,
        events=page.events,
        alerts_next_cursor=page.alerts_next,
        events_next_cursor=page.events_next,
    )
    config = request.app[CONFIG]
    if config.alertmanager is not None and config.alertmanager.silences:
        mirrored, _ = await store.incident_alertmanager_silences(incident_id, limit=AM_SILENCES_LISTED)
        data["alertmanager_silences"] = [as_dict(s) for s in mirrored]
    return detail.json_text_response(await detail.off_loop_if(page.large, dumps, data))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if request.app[DRAIN].draining:
        return json_error(503, "shutting down")
    store = request.app[STORE]
    try:
        await store.ping()
        applied = await store.applied_migrations()
    except StoreUnavailable:
        return json_error(503, "the database is unreachable")
    pending = [m for m in migration_ids() if m not in applied]
    if pending:
        return json_error(503, f"migrations pending: {', '.join(pending)}")
    return web.json_response({"status": "ready"})
