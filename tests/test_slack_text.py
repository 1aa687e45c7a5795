"""What reaches Slack when label values and annotations are hostile: the exact bytes posted to a fake Slack
(a real HTTP server), for mentions, Slack's formatting characters, a backtick in a route, control characters
and line separators, and link URLs. Label values are untrusted: nothing in them may ping, format or link.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import parse_config
from receiver.ingest.alertmanager import parse_notification
from receiver.keys import DELIVERER, ESCALATOR, INGESTOR
from receiver.notify.messages import fold, safe_link
from tests.fakes import FakeSlack
from tests.helpers import alert, payload

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ZWSP = "\u200b"


@pytest.fixture
async def page(aiohttp_client: Any, database_url: str, fake_slack: FakeSlack) -> Callable[..., Any]:
    """page(labels, annotations, generator_url) -> the raw bytes of the one Slack message it causes."""
    fake = fake_slack
    config = parse_config("owners: [{name: default, slack_url_env: SLACK_URL}]\n", env={"SLACK_URL": fake.url})
    receiver = (await aiohttp_client(create_app(config, database_url, loops=False))).server.app

    async def make(
        labels: dict[str, str],
        annotations: dict[str, str] | None = None,
        generator_url: str = "http://prometheus:9090/graph",
    ) -> bytes:
        before = len(fake.requests)
        body = payload(
            alert(annotations=annotations or {}, generator_url=generator_url, severity="critical", labels=labels)
        )
        await receiver[INGESTOR].ingest(parse_notification(body), T0)
        await receiver[ESCALATOR].tick(T0 + timedelta(seconds=1))
        await receiver[DELIVERER].deliver(T0 + timedelta(seconds=1))
        assert len(fake.requests) == before + 1
        return fake.requests[-1].body

    return make


def untrusted_texts(message: dict[str, Any]) -> list[str]:
    """Every text object in the message that is read as mrkdwn (where Slack parses markup)."""
    found = []
    for block in message["blocks"]:
        for obj in [block.get("text") or {}, *block.get("fields", [])]:
            if obj.get("type") == "mrkdwn":
                found.append(obj["text"])
    return found


async def test_the_exact_message_for_hostile_labels(page: Callable[..., Any]) -> None:
    raw = await page(
        {"path": "/@channel *b* _i_ ~s~ `x` >q &a <!here>", "kind": "@everyone`", "instance": "a"},
        {"summary": "@here see <https://evil.example|this>\n> quoted *now*\u2028next\u202egnp.exe\x1b[0m"},
    )
    key = "GET /@\u200bchannel *b* _i_ ~s~ `x` &gt;q &amp;a &lt;!here&gt;::@\u200beveryone`"
    expected = {
        "text": f"[CRITICAL] Incident opened: {key}",
        "mrkdwn": False,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"Incident opened: {key}", "emoji": False}},
            {
                "type": "section",
                "text": {
                    "type": "plain_text",
                    "text": "\U0001f534 CRITICAL  @\u200bhere see &lt;https://evil.example|this&gt;\n"
                    "&gt; quoted *now*\nnextgnp.exe [0m",
                    "emoji": False,
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Severity*\ncritical", "verbatim": True},
                    {"type": "mrkdwn", "text": "*Status*\nopen", "verbatim": True},
                    {
                        "type": "plain_text",
                        "text": "Route\nGET /@\u200bchannel *b* _i_ ~s~ `x` &gt;q &amp;a &lt;!here&gt;",
                        "emoji": False,
                    },
                    {"type": "plain_text", "text": "Kind\n@\u200beveryone`", "emoji": False},
                    {"type": "plain_text", "text": "Owner\ndefault", "emoji": False},
                    {"type": "mrkdwn", "text": "*Age*\n1s", "verbatim": True},
                    {"type": "mrkdwn", "text": "*Alerts firing*\n1/1", "verbatim": True},
                    {"type": "mrkdwn", "text": "*Level*\n0", "verbatim": True},
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Graph", "emoji": False},
                        "url": "http://prometheus:9090/graph",
                    },
                ],
            },
        ],
    }
    # aiohttp serialises with json.dumps' defaults (ASCII only: \u escapes), in the order the dicts are built
    assert raw == json.dumps(expected).encode()
    assert b"\\u200b" in raw and b"\\u202e" not in raw and b"\\u2028" not in raw and b"\\u001b" not in raw


@pytest.mark.parametrize(
    "value",
    [
        "@channel",
        "@here",
        "@everyone",
        "hi @channel!",
        "(@here)",
        "<!channel>",
        "<!here|here>",
        "<@U024BE7LH>",
        "<!subteam^S123>",
        "@alice",
    ],
)
async def test_no_mention_survives_anywhere(page: Callable[..., Any], value: str) -> None:
    raw = await page(
        {"path": f"/m {value}", "kind": value, "instance": value}, {"summary": value, "description": value}
    )
    strings = list(all_strings(json.loads(raw)))
    for mention in ("@channel", "@here", "@everyone", "@alice", "<!", "<@"):
        assert not [s for s in strings if mention in s], mention
    assert b"@\\u200b" in raw or b"&lt;" in raw


def all_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from all_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from all_strings(v)


@pytest.mark.parametrize("char", ["*", "_", "~", "`", ">", "<", "&"])
async def test_formatting_characters_are_only_in_plain_text(page: Callable[..., Any], char: str) -> None:
    value = f"{char}x{char} {char}{char}{char}y{char}{char}{char}"
    raw = await page({"path": f"/f/{value}", "kind": value}, {"summary": f"{char} {value}\n{char}{value}"})
    message = json.loads(raw)
    escaped = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}.get(char, char)
    shown = value.replace(char, escaped)
    route_field = next(f for f in message["blocks"][2]["fields"] if f["text"].startswith("Route\n"))
    assert route_field == {"type": "plain_text", "text": f"Route\nGET /f/{shown}", "emoji": False}
    # the only mrkdwn texts are ours: no trace of the label value in them
    for text in untrusted_texts(message):
        assert "x" not in text.split("\n", 1)[1], text
    assert message["mrkdwn"] is False
    if char in "<>&":
        assert f"{char}x{char}".encode() not in raw


async def test_a_backtick_in_a_route_opens_no_code_span(page: Callable[..., Any]) -> None:
    raw = await page({"path": "/a` *bold* <!channel> `b", "instance": "a"})
    assert b'"Route\\nGET /a` *bold* &lt;!channel&gt; `b"' in raw
    assert b"`GET" not in raw  # the route is not wrapped in a code span any more


@pytest.mark.parametrize(
    "bad",
    [
        "https://runbook.example/a\u2028b",
        "https://runbook.example/a\u2029b",
        "https://runbook.example/a\x85b",
        "https://runbook.example/a\u200eb",
        "https://runbook.example/a\u202eb",
        "https://runbook.example/a\nb",
        "https://runbook.example/a\tb",
        "https://runbook.example/a b",
        "https://runbook.example/a\u00a0b",
        "https://runbook.example/a<!channel>",
        "https://runbook.example/a|b",
        "javascript:alert(1)",
        "https://",
        "http://[::1/x",
        "https://host:99999/",
        "ftp://runbook.example/",
    ],
)
async def test_link_buttons_refuse_control_characters_and_separators(page: Callable[..., Any], bad: str) -> None:
    raw = await page({"path": "/links", "instance": "a"}, {"runbook_url": bad, "summary": "s"})
    message = json.loads(raw)
    [actions] = [b for b in message["blocks"] if b["type"] == "actions"]
    assert [e["text"]["text"] for e in actions["elements"]] == ["Graph"]  # no Runbook button
    assert safe_link(bad) is None


async def test_link_buttons_percent_encode_other_letters(page: Callable[..., Any]) -> None:
    raw = await page({"path": "/links", "instance": "a"}, {"runbook_url": "https://wiki.example/Störung?q=ä&x=1"})
    assert b'"url": "https://wiki.example/St%C3%B6rung?q=%C3%A4&x=1"' in raw


@pytest.mark.parametrize(
    ("text", "multiline", "expected"),
    [
        ("one\r\ntwo", True, "one\ntwo"),
        ("one\r\ntwo", False, "one two"),
        ("one\r\r\ntwo\n\rthree", True, "one\n\ntwo\n\nthree"),
        ("a\u2028b\u2029c\x85d", True, "a\nb\nc\nd"),
    ],
)
def test_a_crlf_is_one_line_break(text: str, multiline: bool, expected: str) -> None:
    assert fold(text, multiline=multiline) == expected


async def test_a_summary_written_on_windows_keeps_its_lines(page: Callable[..., Any]) -> None:
    raw = await page({"instance": "a"}, {"summary": "first line\r\nsecond line\r\n"})
    [section] = [b for b in json.loads(raw)["blocks"] if b["type"] == "section" and "text" in b]
    assert "first line\nsecond line" in section["text"]["text"], section
