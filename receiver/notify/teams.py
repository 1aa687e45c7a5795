"""Microsoft Teams: an Adaptive Card message, posted to a Workflows webhook (or a legacy incoming webhook).

The body is the shape Teams' "post to a channel when a webhook request is received" workflow takes: a `message`
with one Adaptive Card attachment. Untrusted values (route, kind, owner, summary, the headline that holds the
incident key) only ever appear in `TextRun`s of `RichTextBlock`s, which Teams renders as they are: no Markdown,
links or mentions (a mention needs an `msteams.entities` entry, and the card has none). Our own words may use
`TextBlock`s. Links are `Action.OpenUrl` buttons with `safe_link` URLs.

Workflows answer 202; legacy connectors answer 200 with "1", and some of their failures are a 200 whose body
says "Microsoft Teams endpoint returned HTTP error 429": that one is retried, other such bodies fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..model import TargetType
from . import Notifier, SendResult
from .http import check_status, post_json
from .messages import Context, ack_link, cut, fold, headline, headline_mark, link_list

_COLOR = {"critical": "Attention", "warning": "Warning"}


def run(text: Any, limit: int, *, multiline: bool = False, **style: Any) -> dict[str, Any]:
    """An untrusted value as a RichTextBlock of one TextRun: shown as it is, no Markdown parsed."""
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": cut(fold(text, multiline=multiline), limit) or " ", **style}],
    }


def fact(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """A name (our words) beside a value block, as a two-column row."""
    return {
        "type": "ColumnSet",
        "columns": [
            {"type": "Column", "width": "100px", "items": [{"type": "TextBlock", "text": name, "weight": "Bolder"}]},
            {"type": "Column", "width": "stretch", "items": [value]},
        ],
    }


def teams_message(ctx: Context) -> dict[str, Any]:
    mark = headline_mark(ctx)
    body: list[dict[str, Any]] = [
        run(
            headline(ctx),
            300,
            weight="Bolder",
            size="Large",
            color="Good" if ctx.event == "resolved" else _COLOR.get(ctx.severity, "Default"),
        ),
        {"type": "TextBlock", "text": cut(fold(mark), 50), "weight": "Bolder", "spacing": "None"},
        run(ctx.summary, 2000, multiline=True),
        fact("Route", run(ctx.route, 300)),
        fact("Kind", run(ctx.kind, 100)),
        fact("Owner", run(ctx.owner, 100)),
        fact("Status", run(ctx.status, 50)),
        fact("Age", run(ctx.age, 50)),
        fact("Alerts firing", run(f"{ctx.firing}/{ctx.total}", 50)),
        fact("Level", run(ctx.level, 20)),
    ]
    actions = []
    if ack_url := ack_link(ctx):
        actions.append({"type": "Action.OpenUrl", "title": "Acknowledge", "url": ack_url, "style": "destructive"})
    actions += [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in link_list(ctx)]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "fallbackText": cut(fold(f"[{mark}] {headline(ctx)}"), 300),
        "body": body,
    }
    if actions:
        card["actions"] = actions[:5]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def check_teams(status: int, headers: Mapping[str, str], body: bytes, now: datetime) -> SendResult:
    if 200 <= status < 300 and b"returned HTTP error" in body:
        # a legacy connector's failure, answered 200: its text names the status Teams itself got
        return (
            SendResult.retry_later("HTTP 429 in a 200")
            if b"HTTP error 429" in body
            else SendResult.failed("delivery failed in a 200")
        )
    return check_status(status, headers, body, now)


class TeamsNotifier(Notifier[dict[str, Any]]):
    type = TargetType.TEAMS

    def render(self, ctx: Context) -> dict[str, Any]:
        return teams_message(ctx)

    async def send(self, destination: str, message: dict[str, Any], *, timeout: float, now: datetime) -> SendResult:
        return await post_json(self.session, destination, message, timeout=timeout, now=now, check=check_teams)
