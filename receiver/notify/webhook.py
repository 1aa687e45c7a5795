"""Generic webhooks: the incident as one JSON document (`version: "1"`), posted as JSON.

The document carries values as they are (JSON escapes them; what the receiving end does with them is its own
business), and links only when `safe_link` accepts them; the acknowledge link is ours. The common HTTP rule
classifies the answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..model import TargetType
from . import Notifier, SendResult
from .http import post_json
from .messages import Context, link_list


def webhook_message(ctx: Context) -> dict[str, Any]:
    return {
        "version": "1",
        "event": ctx.event,
        "level": ctx.level,
        "incident": {
            "id": ctx.incident_id,
            "incident_key": ctx.incident_key,
            "route": ctx.route,
            "kind": ctx.kind,
            "severity": ctx.severity,
            "status": ctx.status,
            "owner": ctx.owner,
            "first_seen": ctx.first_seen.isoformat(),
            "resolved_at": ctx.resolved_at.isoformat() if ctx.resolved_at else None,
            "duration_seconds": int(((ctx.resolved_at or ctx.now) - ctx.first_seen).total_seconds()),
            "firing_alerts": ctx.firing,
            "total_alerts": ctx.total,
            "summary": ctx.summary or None,  # as Slack, Teams and mail show it: summary, else description
        },
        "links": {label.lower(): url for label, url in link_list(ctx)}
        | ({"acknowledge": ctx.ack_url} if ctx.ack_url else {}),
    }


class WebhookNotifier(Notifier[dict[str, Any]]):
    type = TargetType.WEBHOOK

    def render(self, ctx: Context) -> dict[str, Any]:
        return webhook_message(ctx)

    async def send(self, destination: str, message: dict[str, Any], *, timeout: float, now: datetime) -> SendResult:
        return await post_json(self.session, destination, message, timeout=timeout, now=now)
