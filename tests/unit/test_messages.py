"""What each channel renders of one Context (receiver/notify/): the exact Teams card and mail, and the decisions
every channel shares (the headline's mark; whether an acknowledge link is offered). Pure: no I/O."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.notify.mail import mail_text
from receiver.notify.messages import Context
from receiver.notify.slack import slack_message
from receiver.notify.teams import teams_message
from receiver.notify.webhook import webhook_message

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ACK = "https://receiver.example/incidents/7/ack?t=abc"
CTX = Context(
    incident_id="7",
    incident_key="GET /orders::latency",
    route="GET /orders",
    kind="latency",
    severity="critical",
    status="open",
    owner="payments",
    level=1,
    event="escalated",
    first_seen=T0,
    resolved_at=None,
    firing=2,
    total=3,
    metadata={"summary": "p99 is high\r\n@here <b>now</b>", "runbook_url": "https://wiki.example/runbooks/latency"},
    now=T0 + timedelta(minutes=6),
    incident_url="https://receiver.example/incidents/7",
    ack_url=ACK,
)
RESOLVED = dataclasses.replace(CTX, event="resolved", status="resolved", level=0, resolved_at=T0 + timedelta(minutes=7))


def row(name: str, text: str) -> dict[str, Any]:
    return {
        "type": "ColumnSet",
        "columns": [
            {"type": "Column", "width": "100px", "items": [{"type": "TextBlock", "text": name, "weight": "Bolder"}]},
            {
                "type": "Column",
                "width": "stretch",
                "items": [{"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text}]}],
            },
        ],
    }


def test_the_exact_teams_card() -> None:
    headline = "Escalated to level 1: GET /orders::latency"
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "fallbackText": f"[CRITICAL] {headline}",
        "body": [
            {
                "type": "RichTextBlock",
                "inlines": [
                    {"type": "TextRun", "text": headline, "weight": "Bolder", "size": "Large", "color": "Attention"}
                ],
            },
            {"type": "TextBlock", "text": "CRITICAL", "weight": "Bolder", "spacing": "None"},
            {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": "p99 is high\n@here <b>now</b>"}]},
            row("Route", "GET /orders"),
            row("Kind", "latency"),
            row("Owner", "payments"),
            row("Status", "open"),
            row("Age", "6m"),
            row("Alerts firing", "2/3"),
            row("Level", "1"),
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": "Acknowledge", "url": ACK, "style": "destructive"},
            {"type": "Action.OpenUrl", "title": "Incident", "url": "https://receiver.example/incidents/7"},
            {"type": "Action.OpenUrl", "title": "Runbook", "url": "https://wiki.example/runbooks/latency"},
        ],
    }
    expected = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
    # posted as json.dumps writes it: the order of the keys is part of the bytes
    assert json.dumps(teams_message(CTX)) == json.dumps(expected)


def test_the_exact_mail() -> None:
    assert mail_text(CTX) == (
        "[CRITICAL] Escalated to level 1: GET /orders::latency",
        "Escalated to level 1: GET /orders::latency\n"
        "\n"
        "p99 is high\n"
        "@here <b>now</b>\n"
        "\n"
        "Severity:      critical\n"
        "Status:        open\n"
        "Route:         GET /orders\n"
        "Kind:          latency\n"
        "Owner:         payments\n"
        "Age:           6m\n"
        "Alerts firing: 2/3\n"
        "Level:         1\n"
        "\n"
        f"Acknowledge: {ACK}\n"
        "Incident: https://receiver.example/incidents/7\n"
        "Runbook: https://wiki.example/runbooks/latency\n",
    )


def marks(ctx: Context) -> tuple[str, str, str, str]:
    """(Slack's mark before the summary, Teams' mark, Teams' fallback text, the mail's subject)."""
    slack = slack_message(ctx)["blocks"][1]["text"]["text"].split("  ", 1)[0]
    card = teams_message(ctx)["attachments"][0]["content"]
    return slack, card["body"][1]["text"], card["fallbackText"], mail_text(ctx)[0]


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (
            CTX,
            (
                "\U0001f534 CRITICAL",
                "CRITICAL",
                "[CRITICAL] Escalated to level 1: GET /orders::latency",
                "[CRITICAL] Escalated to level 1: GET /orders::latency",
            ),
        ),
        (
            dataclasses.replace(CTX, severity="warning"),
            (
                "\U0001f7e1 WARNING",
                "WARNING",
                "[WARNING] Escalated to level 1: GET /orders::latency",
                "[WARNING] Escalated to level 1: GET /orders::latency",
            ),
        ),
        (  # a severity no channel knows: its name in capitals, no emoji
            dataclasses.replace(CTX, severity="info"),
            (
                "INFO",
                "INFO",
                "[INFO] Escalated to level 1: GET /orders::latency",
                "[INFO] Escalated to level 1: GET /orders::latency",
            ),
        ),
        (
            RESOLVED,
            (
                "\u2705 RESOLVED",
                "RESOLVED",
                "[RESOLVED] Resolved after 7m: GET /orders::latency",
                "[RESOLVED] Resolved after 7m: GET /orders::latency",
            ),
        ),
    ],
)
def test_the_headline_mark_is_resolved_or_the_severity(ctx: Context, expected: tuple[str, ...]) -> None:
    assert marks(ctx) == expected


def ack_links(ctx: Context) -> tuple[str | None, str | None, str | None]:
    """The acknowledge link each of Slack, Teams and mail offers, or None."""
    slack = [
        e["url"]
        for b in slack_message(ctx)["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["text"]["text"] == "Acknowledge"
    ]
    teams = [
        a["url"] for a in teams_message(ctx)["attachments"][0]["content"]["actions"] if a["title"] == "Acknowledge"
    ]
    mail = [line.split(": ", 1)[1] for line in mail_text(ctx)[1].splitlines() if line.startswith("Acknowledge: ")]
    return slack[0] if slack else None, teams[0] if teams else None, mail[0] if mail else None


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (CTX, ACK),
        (dataclasses.replace(CTX, event="opened", level=0), ACK),
        (dataclasses.replace(CTX, ack_url="https://wiki.example/Störung"), "https://wiki.example/St%C3%B6rung"),
        (dataclasses.replace(CTX, status="acknowledged"), None),  # acknowledged already
        (dataclasses.replace(CTX, event="resolved"), None),  # a resolve notice offers none
        (RESOLVED, None),
        (dataclasses.replace(CTX, ack_url=None), None),
        (dataclasses.replace(CTX, ack_url="javascript:alert(1)"), None),  # not a safe link
    ],
)
def test_an_acknowledge_link_only_while_open_and_only_a_safe_one(ctx: Context, expected: str | None) -> None:
    assert ack_links(ctx) == (expected, expected, expected)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"summary": "p99 is high"}, "p99 is high"),
        ({"description": "only a description"}, "only a description"),
        ({"summary": "p99 is high", "description": "and why"}, "p99 is high"),
    ],
)
def test_every_channel_shows_the_same_summary(metadata: dict[str, str], expected: str) -> None:
    ctx = dataclasses.replace(CTX, metadata=metadata)
    assert webhook_message(ctx)["incident"]["summary"] == expected
    for rendered in (json.dumps(slack_message(ctx)), json.dumps(teams_message(ctx)), json.dumps(mail_text(ctx))):
        assert json.dumps(expected)[1:-1] in rendered


def test_a_webhook_without_summary_or_description_says_null() -> None:
    assert webhook_message(dataclasses.replace(CTX, metadata={}))["incident"]["summary"] is None
