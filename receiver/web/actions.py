"""Lifecycle actions over HTTP: the JSON API (Bearer API tokens) and signed one-click links."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import jinja2
from aiohttp import web

from .. import lifecycle
from ..keys import CONFIG, ESCALATION_WAKEUP, LINK_SECRET, METRICS, SILENCER, STORE, TEMPLATES
from ..links import LinkError, verify
from ..model import Incident, Transition
from ..store import LinkAlreadyUsed, Store
from ..timeutil import utcnow
from .auth import api_actor, unauthorized
from .handlers import incident_json, json_response, parse_incident_id
from .middleware import json_error


async def perform(
    app: web.Application,
    incident_id: uuid.UUID,
    action: str,
    actor: str,
    now: datetime,
    body: dict[str, Any],
    *,
    link_signature: str | None = None,
) -> tuple[Incident, Incident] | None:
    """Run one lifecycle action; raises InvalidInput before touching the database, InvalidTransition, and
    LinkAlreadyUsed (with `link_signature`, spent in the action's transaction); None for an unknown incident."""
    config = app[CONFIG]
    store: Store = app[STORE]
    silence = lifecycle.silence_input(body, now) if action == "silence" else None

    def change(incident: Incident) -> Transition:
        if action == "ack":
            return lifecycle.acknowledge(incident, actor, now)
        if action == "unack":
            return lifecycle.unacknowledge(incident, actor, now)
        if action == "resolve":
            return lifecycle.resolve(incident, actor, now)
        if action == "unsilence":
            return lifecycle.unsilence(incident, actor, now)
        assert silence is not None
        return lifecycle.silence(incident, actor, now, *silence)

    result = await store.transition(
        incident_id,
        change,
        actor=actor,
        now=now,
        notice_severities=config.escalation.resolve_notice_severities,
        link_signature=link_signature,
    )
    if result is not None:
        after = result[1]
        metrics = app[METRICS]
        age = (now - after.first_seen).total_seconds()
        if action == "ack":
            metrics.time_to_acknowledge(after.kind, after.severity, age)
        elif action == "resolve":
            metrics.incident_transition("resolved", after.kind, after.severity)
            metrics.time_to_resolve(after.kind, after.severity, age)
        app[ESCALATION_WAKEUP].set()
        silencer = app.get(SILENCER)
        if silencer is not None:  # after the commit, never inside the transaction (see receiver/silences.py)
            await silencer.run(silencer.after_action(action, after, actor, now))
    return result


async def api_action(request: web.Request) -> web.Response:
    actor = api_actor(request.app[CONFIG], request.headers.get("Authorization"))
    if actor is None:
        raise unauthorized()
    incident_id = parse_incident_id(request)
    action = request.match_info["action"]
    body: dict[str, Any] = {}
    if request.can_read_body:
        try:
            parsed = json.loads(await request.read() or b"{}")
        except RecursionError:
            return json_error(400, "the JSON is nested too deeply")
        except ValueError:  # UnicodeDecodeError included
            return json_error(400, "the body must be a JSON object")
        if not isinstance(parsed, dict):
            return json_error(400, "the body must be a JSON object")
        body = parsed
    try:
        result = await perform(request.app, incident_id, action, actor, utcnow(), body)
    except lifecycle.InvalidInput as e:
        return json_error(400, str(e))
    except lifecycle.InvalidTransition as e:
        return json_error(409, str(e))
    if result is None:
        return json_error(404, "no such incident")
    return json_response(incident_json(result[1]))


async def read_form(request: web.Request) -> Any:
    """The POSTed form; a body that is not a decodable form is the client's error (400), not ours."""
    try:
        return await request.post()
    except (ValueError, LookupError, AssertionError) as e:  # UnicodeDecodeError, an unknown charset, bad multipart
        raise web.HTTPBadRequest(text=f"400: the form could not be read ({type(e).__name__})") from None


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env: jinja2.Environment = request.app[TEMPLATES]
    html = env.get_template(template).render(**{"done": False, "error": None, **context})
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


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
    form = await read_form(request)
    exp, sig = str(form.get("exp", "")), str(form.get("sig", ""))
    now = utcnow()
    try:
        verify(request.app[LINK_SECRET], incident_id, action, exp, sig, now)
    except LinkError as e:
        return render(request, "link.html", status=403, error=str(e), incident=None)
    try:
        name = lifecycle.text_input(form.get("name"), "name", limit=64) or "slack"
        # the link is spent in the action's transaction: an action that fails leaves it usable
        result = await perform(request.app, incident_id, action, "link:" + name, now, {}, link_signature=sig)
    except lifecycle.InvalidInput as e:
        return render(request, "link.html", status=400, error=str(e), incident=None)
    except LinkAlreadyUsed:
        return render(request, "link.html", status=409, error="this link was already used", incident=None)
    except lifecycle.InvalidTransition as e:
        return render(request, "link.html", status=409, error=str(e), incident=None)
    if result is None:
        return render(request, "link.html", status=404, error="no such incident", incident=None)
    return render(request, "link.html", incident=result[1], action=action, done=True, error=None)
