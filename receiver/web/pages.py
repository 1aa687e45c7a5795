"""The status page: server-rendered HTML that works without JavaScript, and its HTML form actions.

Viewing may require a signed-in user (by default, once users exist); acting always does, and every
action is a POST with a CSRF token bound to the server-issued session cookie and the user, plus an Origin
check; its fields are validated (400 with a reason) before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from .. import lifecycle
from ..keys import CONFIG, LINK_SECRET, SILENCER, STORE, TEMPLATES
from ..model import ACTIVE_STATUSES, Incident, IncidentStatus, IncidentSummary, Severity
from ..silences import describe
from ..timeutil import format_duration, utcnow
from . import detail
from .actions import perform, read_form
from .handlers import decode_cursor, encode_cursor, parse_incident_id, query_list
from .users import challenge, check_csrf, csrf_token, current_user, ensure_session, known_user

SEVERITY_ORDER = tuple(sorted(Severity, key=lambda s: -s.rank))  # most severe first
SILENCE_CHOICES = (
    ("30m", "30 minutes"),
    ("1h", "1 hour"),
    ("4h", "4 hours"),
    ("12h", "12 hours"),
    ("1d", "1 day"),
    ("7d", "7 days"),
)
RESOLVED_PAGE = 25
AM_SILENCES_SHOWN = 20  # an incident's Alertmanager silences listed on its page, newest first


def safe_url(value: Any) -> str | None:
    """Only http(s) URLs become links; anything else (javascript:, data:, relative) stays text."""
    if not isinstance(value, str):
        return None
    v = value.strip()
    return v if v.lower().startswith(("http://", "https://")) and len(v) <= 4096 else None


def reltime(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    delta = now - value
    if delta.total_seconds() < 0:
        return "in " + format_duration(-delta)
    if delta.total_seconds() < 30:
        return "just now"
    return format_duration(delta) + " ago"


def abstime(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def from_iso(value: Any) -> datetime | None:
    """A time kept as ISO 8601 text in JSON (an incident's `suppressed`), for `when`; None when it is not one."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)


def install_filters(env: jinja2.Environment) -> None:
    env.filters["from_iso"] = from_iso
    env.filters["safe_url"] = safe_url
    env.filters["abstime"] = abstime
    env.globals["reltime"] = reltime
    env.filters["duration"] = format_duration


def _filters(request: web.Request) -> dict[str, list[str]]:
    return {name: query_list(request, name, limit=500) for name in ("status", "severity", "route", "kind", "owner")}


async def viewer(request: web.Request) -> str | None:
    """The signed-in user, or None; raises 401 when viewing needs sign-in (429 when sign-in is throttled)."""
    config = request.app[CONFIG]
    user = await current_user(request)
    if user is None and config.ui.login_required:
        raise challenge()
    return user


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    response, render = _prepare(request, template, status, context)
    response.text = render()
    return response


def _prepare(
    request: web.Request, template: str, status: int, context: dict[str, Any]
) -> tuple[web.Response, Callable[[], str]]:
    """The response (session cookie, headers) and the template's render call, which a large page makes in a
    worker thread."""
    config = request.app[CONFIG]
    env: jinja2.Environment = request.app[TEMPLATES]
    response = web.Response(status=status, content_type="text/html")
    sid = ensure_session(request, response)
    context.setdefault("user", known_user(request))  # found by the handler before rendering
    context.setdefault("can_act", bool(config.ui.users or config.ui.proxy_header))
    render = functools.partial(
        env.get_template(template).render,
        csrf=csrf_token(request.app[LINK_SECRET], sid, context["user"] or ""),
        refresh=int(config.ui.refresh.total_seconds()),
        now=utcnow(),
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    return response, render


def _cursor3(text: str | None) -> tuple[str, datetime, uuid.UUID] | None:
    if not text:
        return None
    severity, _, rest = text.partition("~")
    if severity not in SEVERITY_ORDER:
        raise web.HTTPBadRequest(text="the page cursor is not valid")
    first_seen, incident_id = decode_cursor(rest)
    return severity, first_seen, incident_id


async def index(request: web.Request) -> web.Response:
    user = await viewer(request)
    config = request.app[CONFIG]
    store = request.app[STORE]
    f = _filters(request)
    statuses = f["status"] or list(IncidentStatus)
    active_statuses = [s for s in statuses if s in ACTIVE_STATUSES]
    size = config.ui.page_size
    active: list[IncidentSummary] = []
    if active_statuses:
        active = await store.page_incidents(
            statuses=active_statuses,
            severities=f["severity"],
            routes=f["route"],
            kinds=f["kind"],
            owners=f["owner"],
            after=_cursor3(request.query.get("after")),
            limit=size + 1,
        )
    more_active = None
    if len(active) > size:
        active = active[:size]
        last = active[-1]
        more_active = f"{last.severity}~{encode_cursor(last.first_seen, last.id)}"
    resolved: list[IncidentSummary] = []
    more_resolved = None
    if IncidentStatus.RESOLVED in statuses:
        before = request.query.get("before")
        resolved = await store.page_resolved(
            severities=f["severity"],
            routes=f["route"],
            kinds=f["kind"],
            owners=f["owner"],
            after=decode_cursor(before) if before else None,
            limit=RESOLVED_PAGE + 1,
        )
        if len(resolved) > RESOLVED_PAGE:
            resolved = resolved[:RESOLVED_PAGE]
            last_resolved = resolved[-1]
            assert last_resolved.resolved_at is not None  # the query reads resolved incidents only
            more_resolved = encode_cursor(last_resolved.resolved_at, last_resolved.id)
    counts: dict[str, dict[str, int]] = {s: {} for s in SEVERITY_ORDER}
    by_status: dict[str, int] = dict.fromkeys(ACTIVE_STATUSES, 0)
    for c in await store.page_counts():
        counts.setdefault(c.severity, {})[c.status] = c.n
        by_status[c.status] = by_status.get(c.status, 0) + c.n

    def page_link(**extra: str) -> str:
        query = [(k, v) for k, vs in f.items() for v in vs] + list(extra.items())
        return "/?" + urlencode(query)

    return _render(
        request,
        "index.html",
        user=user,
        active=active,
        resolved=resolved,
        counts=counts,
        by_status=by_status,
        filters=f,
        more_active=page_link(after=more_active) if more_active else None,
        more_resolved=page_link(before=more_resolved) if more_resolved else None,
        filtered=any(f.values()),
        statuses=tuple(IncidentStatus),
        severities=SEVERITY_ORDER,
    )


def event_detail(value: Any) -> dict[str, Any]:
    """A timeline event's detail as a mapping. Events written by the lifecycle actions may hold their detail
    as a JSON string inside jsonb (encoded twice); the page must render them either way."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {"detail": value}
    if value is None:
        return {}
    return value if isinstance(value, dict) else {"detail": value}


def alertmanager_links(external_url: Any, labels: dict[str, str]) -> dict[str, str]:
    base = safe_url(external_url)
    if not base or not labels:
        return {}
    matchers = ",".join(f'{k}="{_escape_matcher(v)}"' for k, v in sorted(labels.items()))
    flt = quote("{" + matchers + "}", safe="")
    base = base.rstrip("/")
    return {"alerts": f"{base}/#/alerts?filter={flt}", "silence": f"{base}/#/silences/new?filter={flt}"}


def _escape_matcher(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def incident(request: web.Request) -> web.Response:
    """One incident: `ui.page_size` member alerts (firing first) and timeline events (newest first) per page,
    with the totals and next-page links (`?alerts=<cursor>`, `?events=<cursor>`) that work without JavaScript."""
    user = await viewer(request)
    incident_id = parse_incident_id(request)
    store = request.app[STORE]
    size = min(request.app[CONFIG].ui.page_size, detail.MAX_PAGE)
    row = await store.get_incident(incident_id)
    if row is None:
        return _render(request, "error.html", status=404, message="There is no such incident.")
    alerts_cursor, events_cursor = request.query.get("alerts"), request.query.get("events")
    try:
        page = await detail.read_page(
            store,
            incident_id,
            alerts_cursor=alerts_cursor,
            alerts_limit=size,
            events_cursor=events_cursor,
            events_limit=size,
            newest_first=True,
        )
    except detail.BadPageRequest as e:
        return _render(
            request,
            "error.html",
            status=400,
            message=f"The page link is not valid: {e}.",
            back=f"/incidents/{incident_id}",
        )
    events = [dataclasses.replace(e, detail=event_detail(e.detail)) for e in page.events]
    labels = await store.incident_common_labels(incident_id)
    metadata = row.metadata or {}
    am_silences = await _alertmanager_silences(request, row, metadata)

    def link(**cursors: str | None) -> str:
        query = urlencode({k: v for k, v in cursors.items() if v})
        return f"/incidents/{incident_id}" + (f"?{query}" if query else "")

    response, render = _prepare(
        request,
        "incident.html",
        200,
        dict(
            user=user,
            incident=row,
            alerts=page.alerts,
            events=events,
            event_count=page.event_count,
            metadata=metadata,
            common=labels,
            am=alertmanager_links(metadata.get("external_url"), labels),
            silence_choices=SILENCE_CHOICES,
            message=request.query.get("done"),
            am_silences=am_silences,
            alerts_next=link(alerts=page.alerts_next, events=events_cursor) if page.alerts_next else None,
            alerts_first=link(events=events_cursor) if alerts_cursor else None,
            events_next=link(alerts=alerts_cursor, events=page.events_next) if page.events_next else None,
            events_first=link(alerts=alerts_cursor) if events_cursor else None,
        ),
    )
    response.text = await detail.off_loop_if(page.large, render)
    return response


async def _alertmanager_silences(
    request: web.Request, row: Incident, metadata: dict[str, Any]
) -> dict[str, Any] | None:
    """With `alertmanager.silences: true`, the incident's Alertmanager silences (links into Alertmanager's UI at
    the externalURL its webhooks carry) and whether to offer a retry: silenced here, but the latest attempt
    failed or no silence of ours lasts as long as the one here."""
    if request.app.get(SILENCER) is None:
        return None
    silences, last = await request.app[STORE].incident_alertmanager_silences(row.id, limit=AM_SILENCES_SHOWN)
    base = safe_url(metadata.get("external_url"))
    current = [s for s in silences if s.expired_at is None and s.ends_at == row.silenced_until]
    return {
        "silences": [
            {
                "silence": s,
                "matchers": describe((k, v) for k, v in s.matchers),
                "url": f"{base.rstrip('/')}/#/silences/{quote(s.silence_id, safe='')}" if base else None,
            }
            for s in silences
        ],
        "retry": row.status == IncidentStatus.SILENCED
        and (not current or (last is not None and last[0] == "alertmanager_silence_failed")),
        "failure": event_detail(last[1]).get("reason") if last and last[0] == "alertmanager_silence_failed" else None,
    }


async def _open_action(request: web.Request) -> tuple[str, uuid.UUID, Any] | web.Response:
    """How every form action starts: the signed-in user (401 without one), the incident's id (404), the form
    (400 when it cannot be read), the CSRF check. (user, incident id, form), or the refusal page to answer."""
    user = await current_user(request)
    if user is None:
        raise challenge("sign in to act on incidents")
    incident_id = parse_incident_id(request)
    form = await read_form(request)
    submitted = form.get("csrf")
    refused = check_csrf(request, submitted if isinstance(submitted, str) else "", user)
    if refused:
        return _render(request, "error.html", status=403, message=f"Refused: {refused}.")
    return user, incident_id, form


async def alertmanager_silence(request: web.Request) -> web.StreamResponse:
    """POST: try again to silence a silenced incident's alerts in Alertmanager (CSRF-safe like every action)."""
    opened = await _open_action(request)
    if isinstance(opened, web.Response):
        return opened
    user, incident_id, _ = opened
    silencer = request.app.get(SILENCER)
    if silencer is None:
        return _render(request, "error.html", status=404, message="Silences in Alertmanager are not enabled.")
    row = await request.app[STORE].get_incident(incident_id)
    if row is None:
        return _render(request, "error.html", status=404, message="There is no such incident.")
    if row.status != IncidentStatus.SILENCED:
        return _render(
            request,
            "error.html",
            status=409,
            message=f"The incident is {row.status}, not silenced.",
            back=f"/incidents/{incident_id}",
        )
    await silencer.run(silencer.silence(row, user, utcnow()))
    raise web.HTTPSeeOther(f"/incidents/{incident_id}?done=am-silence")


async def incident_action(request: web.Request) -> web.StreamResponse:
    opened = await _open_action(request)
    if isinstance(opened, web.Response):
        return opened
    user, incident_id, form = opened
    action = request.match_info["action"]
    body = {"duration": form.get("duration"), "reason": form.get("reason")}
    try:
        result = await perform(request.app, incident_id, action, user, utcnow(), body)
    except lifecycle.InvalidInput as e:
        return _render(
            request, "error.html", status=400, message=f"Cannot {action}: {e}.", back=f"/incidents/{incident_id}"
        )
    except lifecycle.InvalidTransition as e:
        return _render(
            request, "error.html", status=409, message=f"Cannot {action}: {e}.", back=f"/incidents/{incident_id}"
        )
    if result is None:
        return _render(request, "error.html", status=404, message="There is no such incident.")
    raise web.HTTPSeeOther(f"/incidents/{incident_id}?done={action}")


async def signin(request: web.Request) -> web.StreamResponse:
    if await current_user(request) is None:
        raise challenge()
    raise web.HTTPSeeOther("/")


@web.middleware
async def security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    if response.content_type == "text/html":
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with the page's own
        # form POSTs, and the CSRF Origin check needs the real origin. Other sites still get no referrer.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
