"""What a notification says, whatever the channel: the `Context` built from an outbox item, its headline and
the mark beside it, and the links it offers (the acknowledge link only while the incident is open). Pure
functions; each channel (slack.py, teams.py, ...) renders a Context its own way.

Label values, annotations and link URLs are untrusted. `fold` makes a value one harmless line (or lines) of
text for any channel: control characters and line separators folded, bidirectional overrides dropped. Links
are offered only as well-formed http(s) URLs of printable ASCII (`safe_link`: anything else percent-encoded or
refused), because one URL a target rejects (Slack does) would make it reject the whole page.
"""

from __future__ import annotations

import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import OutboxItem
from ..timeutil import format_duration

_BIDI = dict.fromkeys(map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


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
    metadata: Mapping[str, Any]
    now: datetime
    incident_url: str | None = None
    ack_url: str | None = None

    @classmethod
    def of(
        cls, item: OutboxItem, now: datetime, incident_url: str | None = None, ack_url: str | None = None
    ) -> Context:
        return cls(
            incident_id=str(item.incident_id),
            incident_key=item.incident_key,
            route=item.route,
            kind=item.kind,
            severity=item.severity,
            status=item.status,
            owner=item.owner_name,
            level=max(item.level, 0),
            event=item.event,
            first_seen=item.first_seen,
            resolved_at=item.resolved_at,
            firing=item.firing_count,
            total=item.alert_count,
            metadata=item.metadata,
            now=now,
            incident_url=incident_url,
            ack_url=ack_url,
        )

    @property
    def summary(self) -> str:
        """The incident's summary (or description) annotation: untrusted."""
        return str(self.metadata.get("summary") or self.metadata.get("description") or "")

    @property
    def age(self) -> str:
        end = self.resolved_at or self.now
        return format_duration(end - self.first_seen)


def fold(text: Any, *, multiline: bool = False) -> str:
    """An untrusted value as plain text: bidirectional overrides dropped, line separators folded to a space
    (or to "\\n" when `multiline`), other control characters (tabs, NUL, escape sequences) to a space."""
    # a CRLF is one line break (folded one by one, it would become two)
    text = str(text).translate(_BIDI).replace("\r\n", "\n")
    out = []
    for c in text:
        if c in _LINE_BREAKS:
            out.append("\n" if multiline else " ")
        elif unicodedata.category(c) == "Cc":
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


def cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


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


_NO_MARKS: Mapping[str, str] = {}


def headline_mark(ctx: Context, *, resolved: str = "RESOLVED", severities: Mapping[str, str] = _NO_MARKS) -> str:
    """The mark beside the headline: `resolved` once the incident is, else the severity's mark in `severities`
    (a channel's own spelling of the severities it knows), else the severity in capitals."""
    if ctx.event == "resolved":
        return resolved
    return severities.get(ctx.severity, ctx.severity.upper())


def ack_link(ctx: Context) -> str | None:
    """The acknowledge link a message offers, a `safe_link`: only while the incident is open, never on its
    resolve notice."""
    if ctx.event == "resolved" or ctx.status != "open":
        return None
    return safe_link(ctx.ack_url)


def link_list(ctx: Context) -> list[tuple[str, str]]:
    links = [
        ("Incident", ctx.incident_url),
        ("Graph", ctx.metadata.get("generator_url")),
        ("Runbook", ctx.metadata.get("runbook_url")),
        ("Sentry", ctx.metadata.get("sentry_url")),
        # Grafana's panel link is its dashboard link narrowed to the panel: one button, the narrower first
        ("Dashboard", ctx.metadata.get("panel_url") or ctx.metadata.get("dashboard_url")),
    ]
    return [(label, url) for label, url in ((lbl, safe_link(u)) for lbl, u in links) if url]
