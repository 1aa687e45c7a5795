"""Slack incoming webhooks: a Block Kit message, posted as JSON.

Label values, annotations and link URLs are untrusted. In Slack messages they only ever appear in `plain_text`
objects (no bold, italics, code spans, quotes, links or mentions are parsed there), with `&`, `<`, `>` escaped as
Slack requires of all text, a zero-width space after a mention-like `@` (so `@channel`, `@here`, `@everyone` and
`@name` notify nobody wherever Slack would parse them), control characters and line separators folded, and
bidirectional overrides dropped. The only `mrkdwn` objects hold our own words and values from fixed sets
(severity, status, numbers). Link buttons take only `safe_link` URLs, because one URL Slack rejects would make
it reject the whole page. Slack answers 2xx, 429 with Retry-After, 4xx or 5xx: the common HTTP rule.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ..model import TargetType
from . import Notifier, SendResult
from .http import post_json
from .messages import Context, ack_link, fold, headline, headline_mark, link_list

_SEVERITY_MARK = {"critical": "\N{LARGE RED CIRCLE} CRITICAL", "warning": "\N{LARGE YELLOW CIRCLE} WARNING"}
_RESOLVED_MARK = "\N{WHITE HEAVY CHECK MARK} RESOLVED"
_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# '@' at the start of a word is how Slack spells a mention; a zero-width space after it breaks the mention
_MENTION = re.compile(r"(?<![\w.+-])@(?=\w)")


def untrusted(text: Any, limit: int, *, multiline: bool = False) -> str:
    """An untrusted value made inert for a Slack text object, escaped, at most `limit` characters."""
    return fit(_MENTION.sub("@\u200b", fold(text, multiline=multiline)), limit)


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


def slack_message(ctx: Context) -> dict[str, Any]:
    mark = headline_mark(ctx, resolved=_RESOLVED_MARK, severities=_SEVERITY_MARK)
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
        {"type": "section", "text": plain(f"{mark}  {untrusted(ctx.summary, 2000, multiline=True)}")},
        {"type": "section", "fields": fields},
    ]
    buttons = []
    if ack_url := ack_link(ctx):
        buttons.append({"type": "button", "style": "danger", "text": plain("Acknowledge"), "url": ack_url})
    for label, url in link_list(ctx):
        buttons.append({"type": "button", "text": plain(label), "url": url})
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:5]})
    # The fallback text shows in notifications: escaped, mentions broken, and not read as mrkdwn.
    text = untrusted(f"[{ctx.severity.upper()}] {headline(ctx)}", 300)
    return {"text": text, "mrkdwn": False, "blocks": blocks}


class SlackNotifier(Notifier[dict[str, Any]]):
    type = TargetType.SLACK

    def render(self, ctx: Context) -> dict[str, Any]:
        return slack_message(ctx)

    async def send(self, destination: str, message: dict[str, Any], *, timeout: float, now: datetime) -> SendResult:
        return await post_json(self.session, destination, message, timeout=timeout, now=now)
