"""Heartbeats over HTTP: the read API and page (each heartbeat, its last ping and sender, whether it is healthy),
and the ping endpoint for senders without Alertmanager (a cron job, a batch system)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from .. import heartbeats
from ..config import Heartbeat
from ..keys import CONFIG, HEARTBEATS
from ..model import HeartbeatState
from ..timeutil import utcnow
from .auth import api_actor, unauthorized
from .handlers import json_response, require_reader
from .middleware import json_error
from .pages import _render, viewer


def heartbeat_json(hb: Heartbeat, state: HeartbeatState | None, now: datetime) -> dict[str, Any]:
    """One heartbeat as the API shows it (README: GET /api/heartbeats)."""
    last_seen = state.last_seen if state is not None else None
    status = heartbeats.status(state, hb, now)
    return {
        "name": hb.name,
        "status": status,
        "healthy": status != "missed",
        "match": [str(m) for m in hb.matchers],
        "every_seconds": hb.every.total_seconds(),
        "grace_seconds": hb.grace.total_seconds(),
        "owner": hb.owner,
        "severity": hb.severity,
        "incident_key": heartbeats.incident_key(hb.name),
        "last_ping_at": state.last_ping_at if state is not None else None,
        "last_sender": state.last_sender if state is not None else None,
        "last_labels": state.last_labels if state is not None else {},
        "pings": state.pings if state is not None else 0,
        "clock_started_at": state.clock_at if state is not None else None,
        "seconds_since_last_seen": (now - last_seen).total_seconds() if last_seen is not None else None,
        "deadline": heartbeats.deadline(state, hb) if state is not None else None,
        "missed_at": state.missed_at if state is not None else None,
        "silent_since": state.missed_since if state is not None else None,
    }


async def _listing(app: web.Application, now: datetime) -> list[dict[str, Any]]:
    config = app[CONFIG]
    states = await app[HEARTBEATS].states() if config.heartbeats else {}
    return [heartbeat_json(hb, states.get(hb.name), now) for hb in config.heartbeats]


async def list_heartbeats(request: web.Request) -> web.Response:
    """GET /api/heartbeats: every configured heartbeat, in config order."""
    await require_reader(request)
    return json_response({"heartbeats": await _listing(request.app, utcnow())})


async def ping(request: web.Request) -> web.Response:
    """POST /api/heartbeats/{name}/ping with an API token: 200 with the heartbeat, 401 without a token, 404 for a
    name no heartbeat has. The body, if any, is ignored."""
    actor = api_actor(request.app[CONFIG], request.headers.get("Authorization"))
    if actor is None:
        raise unauthorized()
    monitor = request.app[HEARTBEATS]
    hb = monitor.by_name.get(request.match_info["name"])
    if hb is None:
        return json_error(404, "no such heartbeat")
    now = utcnow()
    if await monitor.ping(hb.name, f"api ({actor})", now):
        monitor.wakeup.set()  # it was missed: the check resolves its incident now
    return json_response(heartbeat_json(hb, await monitor.state(hb.name), now))


async def page(request: web.Request) -> web.Response:
    """GET /heartbeats: the same as the API, for people."""
    user = await viewer(request)
    listing = await _listing(request.app, utcnow())
    for item, hb in zip(listing, request.app[CONFIG].heartbeats, strict=True):
        item.update(every=hb.every, grace=hb.grace)
    return _render(request, "heartbeats.html", user=user, heartbeats=listing)
