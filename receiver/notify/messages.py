"""What a notification says: one context built from an outbox row, rendered for Slack (Block Kit for
incoming webhooks) or as generic JSON. Pure functions; label values are untrusted, so Slack's mrkdwn
control characters are escaped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..timeutil import format_duration

_SEVERITY_MARK = {"critical": ":red_circle: CRITICAL", "warning": ":large_yellow_circle: WARNING"}


@dataclass(frozen=True)
class Context:
    incident_id: str
    incident_key: str
    route: str
    kind: str
    severity: str
    status: str
    owner: str
    level: int
    event: str  # opened | escalated | resolved
    first_seen: datetime
    resolved_at: datetime | None
    firing: int
    total: int
    metadata: dict[str, Any]
    now: datetime
    incident_url: str | None = None
    ack_url: str | None = None

    @property
    def age(self) -> str:
        end = self.resolved_at or self.now
        return format_duration(end - self.first_seen)


def escape_mrkdwn(text: str, limit: int = 500) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_link(url: Any) -> str | None:
    """Only http(s) links, and nothing that would break Slack's <url|text> syntax."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    if any(c in url for c in "<>|\n\r "):
        return None
    return url if len(url) <= 2000 else None


def headline(ctx: Context) -> str:
    if ctx.event == "resolved":
        return f"Resolved after {ctx.age}: {ctx.incident_key}"
    if ctx.event == "escalated":
        return f"Escalated to level {ctx.level}: {ctx.incident_key}"
    return f"Incident opened: {ctx.incident_key}"


def slack_message(ctx: Context) -> dict[str, Any]:
    summary = ctx.metadata.get("summary") or ctx.metadata.get("description") or ""
    mark = ":white_check_mark: RESOLVED" if ctx.event == "resolved" else _SEVERITY_MARK.get(ctx.severity, ctx.severity)
    fields = [
        f"*Severity*\n{escape_mrkdwn(ctx.severity)}",
        f"*Status*\n{escape_mrkdwn(ctx.status)}",
        f"*Route*\n`{escape_mrkdwn(ctx.route, 200)}`",
        f"*Kind*\n{escape_mrkdwn(ctx.kind, 100)}",
        f"*Owner*\n{escape_mrkdwn(ctx.owner, 100)}",
        f"*Age*\n{ctx.age}",
        f"*Alerts firing*\n{ctx.firing}/{ctx.total}",
        f"*Level*\n{ctx.level}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline(ctx)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{mark}  {escape_mrkdwn(summary)}"}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    buttons = []
    if ctx.ack_url and ctx.event != "resolved" and ctx.status == "open":
        buttons.append({"type": "button", "style": "danger", "text": {"type": "plain_text", "text": "Acknowledge"},
                        "url": ctx.ack_url})
    for label, url in link_list(ctx):
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": label}, "url": url})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:5]})
    # the fallback text is mrkdwn too: escaped, so a label like <!channel> pings nobody
    return {"text": escape_mrkdwn(f"[{ctx.severity.upper()}] {headline(ctx)}", 300), "blocks": blocks}


def link_list(ctx: Context) -> list[tuple[str, str]]:
    links = [
        ("Incident", ctx.incident_url),
        ("Graph", ctx.metadata.get("generator_url")),
        ("Runbook", ctx.metadata.get("runbook_url")),
        ("Sentry", ctx.metadata.get("sentry_url")),
    ]
    return [(label, url) for label, url in ((lbl, safe_link(u)) for lbl, u in links) if url]


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
            "summary": ctx.metadata.get("summary"),
        },
        "links": {label.lower(): url for label, url in link_list(ctx)} | ({"acknowledge": ctx.ack_url}
                                                                           if ctx.ack_url else {}),
    }
