"""PagerDuty Events API v2: our incident's lifecycle, followed by one PagerDuty alert.

Every event carries `dedup_key` = our incident id, so PagerDuty keeps one alert per incident: the opening page
triggers it; escalations trigger it again (PagerDuty folds a trigger with an open alert's key into that alert,
so a level reached here pages nobody twice there: PagerDuty escalates by its own policy); the resolve notice
resolves it. Acknowledging here sends nothing (an acknowledgement writes no outbox item); acknowledge in
PagerDuty, or resolve here.

The destination is a JSON document `{"url": ..., "routing_key": ...}` (written by the config; the routing key is
a secret). PagerDuty answers 202; 400 means the event is invalid (failed), 429 throttled and 5xx retried.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..model import TargetType
from . import Notifier, SendResult
from .http import post_json
from .messages import Context, cut, fold, headline, link_list

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITY = {"critical": "critical", "warning": "warning"}


def pagerduty_event(ctx: Context) -> dict[str, Any]:
    """The event without its routing key (the send adds it: a message is never a place for a secret)."""
    if ctx.event == "resolved":
        return {"event_action": "resolve", "dedup_key": ctx.incident_id}
    return {
        "event_action": "trigger",
        "dedup_key": ctx.incident_id,
        "payload": {
            "summary": cut(fold(f"{headline(ctx)}: {ctx.summary}" if ctx.summary else headline(ctx)), 1024),
            "source": cut(fold(ctx.route), 255) or "receiver",
            "severity": _SEVERITY.get(ctx.severity, "error"),
            "timestamp": ctx.first_seen.isoformat(),
            "component": cut(fold(ctx.route), 255),
            "group": cut(fold(ctx.owner), 255),
            "class": cut(fold(ctx.kind), 255),
            "custom_details": {
                "incident_key": ctx.incident_key,
                "status": ctx.status,
                "level": ctx.level,
                "alerts_firing": ctx.firing,
                "alerts_total": ctx.total,
                "summary": cut(fold(ctx.summary, multiline=True), 2000),
            },
        },
        "client": "receiver",
        **({"client_url": ctx.incident_url} if ctx.incident_url else {}),
        "links": [{"href": url, "text": label} for label, url in link_list(ctx)],
    }


def destination(url: str, routing_key: str) -> str:
    """The outbox destination of a PagerDuty target."""
    return json.dumps({"url": url, "routing_key": routing_key})


class PagerDutyNotifier(Notifier[dict[str, Any]]):
    type = TargetType.PAGERDUTY

    def render(self, ctx: Context) -> dict[str, Any]:
        return pagerduty_event(ctx)

    async def send(self, destination: str, message: dict[str, Any], *, timeout: float, now: datetime) -> SendResult:
        try:
            where = json.loads(destination)
            url, key = str(where["url"]), str(where["routing_key"])
        except (ValueError, KeyError, TypeError):
            return SendResult.failed("malformed PagerDuty destination")
        return await post_json(self.session, url, {"routing_key": key, **message}, timeout=timeout, now=now)
