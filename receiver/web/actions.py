"""Lifecycle actions over HTTP: the JSON API (Bearer API tokens) and signed one-click links."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from .. import lifecycle
from ..keys import CONFIG, ESCALATION_WAKEUP, LINK_SECRET, METRICS, STORE, TEMPLATES
from ..links import LinkError, verify
from ..store import Store
from ..timeutil import parse_duration, parse_rfc3339, utcnow
from .auth import api_actor
from .handlers import incident_json, json_response, parse_incident_id
from .middleware import json_error


async def perform(app: web.Application, incident_id: uuid.UUID, action: str, actor: str, now: datetime,
                  body: dict[str, Any]) -> tuple[Any, Any] | None:
    """Run one lifecycle action; raises InvalidTransition, returns None for an unknown incident."""
    config = app[CONFIG]
    store: Store = app[STORE]

    def change(row: Any) -> lifecycle.Change:
        if action == "ack":
            return lifecycle.acknowledge(row, actor, now)
        if action == "unack":
            return lifecycle.unacknowledge(row, actor, now)
        if action == "resolve":
            return lifecycle.resolve(row, actor, now)
        if action == "unsilence":
            return lifecycle.unsilence(row, actor, now)
        until, reason = silence_args(body, now)
        return lifecycle.silence(row, actor, now, until, reason)

    def notify_resolved(row: Any) -> bool:
        policy = config.escalation.policies.get(row["severity"])
        return bool(policy and policy.notify_on_resolve)

    result = await store.transition(incident_id, change, actor=actor, now=now, notify_resolved=notify_resolved)
    if result is not None:
        after = result[1]
        metrics = app[METRICS]
        age = (now - after["first_seen"]).total_seconds()
        if action == "ack":
            metrics.time_to_acknowledge(after["kind"], after["severity"], age)
        elif action == "resolve":
            metrics.incident_transition("resolved", after["kind"], after["severity"])
            metrics.time_to_resolve(after["kind"], after["severity"], age)
        app[ESCALATION_WAKEUP].set()
    return result


def silence_args(body: dict[str, Any], now: datetime) -> tuple[datetime, str]:
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise lifecycle.InvalidTransition("a silence needs a reason")
    if body.get("until"):
        try:
            until = parse_rfc3339(str(body["until"]))
        except ValueError as e:
            raise lifecycle.InvalidTransition(str(e)) from None
        if until is None:
            raise lifecycle.InvalidTransition("until must be a time")
        return until, reason.strip()[:500]
    try:
        duration = parse_duration(body.get("duration") or "")
    except ValueError as e:
        raise lifecycle.InvalidTransition(f"duration: {e}") from None
    return now + duration, reason.strip()[:500]


async def api_action(request: web.Request) -> web.Response:
    actor = api_actor(request.app[CONFIG], request.headers.get("Authorization"))
    if actor is None:
        return web.json_response({"error": "a valid API token is required"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="receiver"'})
    incident_id = parse_incident_id(request)
    action = request.match_info["action"]
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            parsed = json.loads(await request.read() or b"{}")
        except ValueError:
            return json_error(400, "the body must be a JSON object")
        if not isinstance(parsed, dict):
            return json_error(400, "the body must be a JSON object")
        body = parsed
    try:
        result = await perform(request.app, incident_id, action, actor, utcnow(), body)
    except lifecycle.InvalidTransition as e:
        return json_error(409, str(e))
    if result is None:
        return json_error(404, "no such incident")
    return json_response(incident_json(result[1]))


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env: jinja2.Environment = request.app[TEMPLATES]
    html = env.get_template(template).render(**{"done": False, "error": None, **context})
    return web.Response(text=html, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def link_page(request: web.Request) -> web.Response:
    """GET on a signed link: show what it will do, never act (scanners fetch links)."""
    incident_id = parse_incident_id(request)
    action = request.match_info["action"]
    exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
    try:
        verify(request.app[LINK_SECRET], incident_id, action, exp, sig, utcnow())
    except LinkError as e:
        return render(request, "link.html", status=403, error=str(e), incident=None)
    row = await request.app[STORE].get_incident(incident_id)
    if row is None:
        return render(request, "link.html", status=404, error="no such incident", incident=None)
    return render(request, "link.html", incident=row, action=action, exp=exp, sig=sig, error=None)


async def link_action(request: web.Request) -> web.Response:
    incident_id = parse_incident_id(request)
    action = request.match_info["action"]
    form = await request.post()
    exp, sig = str(form.get("exp", "")), str(form.get("sig", ""))
    now = utcnow()
    try:
        verify(request.app[LINK_SECRET], incident_id, action, exp, sig, now)
    except LinkError as e:
        return render(request, "link.html", status=403, error=str(e), incident=None)
    store: Store = request.app[STORE]
    if not await store.use_link(sig, now):
        return render(request, "link.html", status=409, error="this link was already used", incident=None)
    try:
        result = await perform(request.app, incident_id, action, "link:" + str(form.get("name") or "slack")[:64],
                               now, {})
    except lifecycle.InvalidTransition as e:
        return render(request, "link.html", status=409, error=str(e), incident=None)
    if result is None:
        return render(request, "link.html", status=404, error="no such incident", incident=None)
    return render(request, "link.html", incident=result[1], action=action, done=True, error=None)
