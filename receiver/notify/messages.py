"""What a notification says: one context built from an outbox row, rendered for Slack (Block Kit for
incoming webhooks) or as generic JSON. Pure functions.

Label values, annotations and link URLs are untrusted. In Slack messages they only ever appear in
`plain_text` objects (no bold, italics, code spans, quotes, links or mentions are parsed there), with
`&`, `<`, `>` escaped as Slack requires of all text, a zero-width space after a mention-like `@` (so
`@channel`, `@here`, `@everyone` and `@name` notify nobody wherever Slack would parse them), control
characters and line separators folded, and bidirectional overrides dropped. The only `mrkdwn` objects
hold our own words and values from fixed sets (severity, status, numbers). Link buttons take only
well-formed http(s) URLs of printable ASCII (anything else percent-encoded or refused), because one URL
Slack rejects would make it reject the whole page.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..timeutil import format_duration

_SEVERITY_MARK = {"critical": "\N{LARGE RED CIRCLE} CRITICAL", "warning": "\N{LARGE YELLOW CIRCLE} WARNING"}
_RESOLVED_MARK = "\N{WHITE HEAVY CHECK MARK} RESOLVED"


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


_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# '@' at the start of a word is how Slack spells a mention; a zero-width space after it breaks the mention
_MENTION = re.compile(r"(?<![\w.+-])@(?=\w)")
_BIDI = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def untrusted(text: Any, limit: int, *, multiline: bool = False) -> str:
    """An untrusted value made inert for a Slack text object, escaped, at most `limit` characters."""
    text = str(text).translate(_BIDI)
    out = []
    for c in text:
        if c in _LINE_BREAKS:
            out.append("\n" if multiline else " ")
        elif unicodedata.category(c) == "Cc":  # tabs, NUL, escape sequences...
            out.append(" ")
        else:
            out.append(c)
    text = "".join(out).replace("\r\n", "\n")
    return fit(_MENTION.sub("@\u200b", text), limit)


def fit(text: str, limit: int) -> str:
    """`text` with Slack's three control characters escaped, cut (never inside an entity) to `limit`."""
    pieces = [_SLACK_ENTITIES.get(c, c) for c in text]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    out, n = [], 0
    for piece in pieces:
        if n + len(piece) > limit - 1:
            break
        out.append(piece)
        n += len(piece)
    return "".join(out) + "\N{HORIZONTAL ELLIPSIS}"


def plain(text: str) -> dict[str, Any]:
    """A plain_text object: Slack parses no markup, links or mentions in it; emoji codes stay literal."""
    return {"type": "plain_text", "text": text or " ", "emoji": False}


def safe_link(url: Any) -> str | None:
    """A URL fit for a Slack button: http(s), with a host, printable ASCII (other letters percent-encoded);
    None for anything else, control characters, spaces and line separators (U+2028...) included."""
    if not isinstance(url, str) or len(url) > 2000:
        return None
    for c in url:
        if c.isascii():
            if not c.isprintable() or c in ' <>|"\\`':
                return None
        elif unicodedata.category(c)[0] in "CZ":  # controls, format characters, separators of any kind
            return None
    url = urllib.parse.quote(url, safe="".join(map(chr, range(0x21, 0x7F))))
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
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
    mark = _RESOLVED_MARK if ctx.event == "resolved" else _SEVERITY_MARK.get(ctx.severity, ctx.severity.upper())
    fields = [
        # our words and values from fixed sets: mrkdwn, for bold names
        {"type": "mrkdwn", "text": f"*Severity*\n{fit(ctx.severity, 50)}", "verbatim": True},
        {"type": "mrkdwn", "text": f"*Status*\n{fit(ctx.status, 50)}", "verbatim": True},
        # label values: plain text, where Slack parses nothing
        plain(f"Route\n{untrusted(ctx.route, 300)}"),
        plain(f"Kind\n{untrusted(ctx.kind, 100)}"),
        plain(f"Owner\n{untrusted(ctx.owner, 100)}"),
        {"type": "mrkdwn", "text": f"*Age*\n{fit(ctx.age, 50)}", "verbatim": True},
        {"type": "mrkdwn", "text": f"*Alerts firing*\n{ctx.firing}/{ctx.total}", "verbatim": True},
        {"type": "mrkdwn", "text": f"*Level*\n{ctx.level}", "verbatim": True},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(untrusted(headline(ctx), 150))},
        {"type": "section", "text": plain(f"{mark}  {untrusted(summary, 2000, multiline=True)}")},
        {"type": "section", "fields": fields},
    ]
    buttons = []
    ack_url = safe_link(ctx.ack_url)
    if ack_url and ctx.event != "resolved" and ctx.status == "open":
        buttons.append({"type": "button", "style": "danger", "text": plain("Acknowledge"), "url": ack_url})
    for label, url in link_list(ctx):
        buttons.append({"type": "button", "text": plain(label), "url": url})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:5]})
    # The fallback text shows in notifications: escaped, mentions broken, and not read as mrkdwn.
    text = untrusted(f"[{ctx.severity.upper()}] {headline(ctx)}", 300)
    return {"text": text, "mrkdwn": False, "blocks": blocks}


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
