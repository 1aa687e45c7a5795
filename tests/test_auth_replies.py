"""The 401 answers, byte for byte: each endpoint that refuses missing or wrong credentials says why in JSON and
challenges for the credentials it accepts (the lifecycle API and the ping: an API token; the read API: a token
or a page user; the webhook: its own credentials)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from receiver.app import create_app
from receiver.config import parse_config

API_TOKEN = "api-token-1234567890"
CONFIG = {
    "webhook": {"token_env": "WEBHOOK_TOKEN"},
    "api_tokens": [{"name": "ci", "token_env": "API_TOKEN"}],
    "ui": {"users": [{"name": "alice", "password_hash": "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43}]},
    "heartbeats": [{"name": "cron", "every": "1h"}],
}
TOKEN_REPLY = ('{"error": "a valid API token is required"}', 'Bearer realm="receiver"')
READER_REPLY = (
    '{"error": "sign in (Basic) or send an API token (Bearer) to read incidents"}',
    'Bearer realm="receiver", Basic realm="receiver", charset="UTF-8"',
)
WEBHOOK_REPLY = ('{"error": "missing or wrong credentials"}', 'Bearer realm="receiver"')


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic YWxpY2U6d3Jvbmc="])
@pytest.mark.parametrize(
    ("method", "path", "reply"),
    [
        pytest.param("POST", f"/api/incidents/{uuid.uuid4()}/ack", TOKEN_REPLY, id="api-action"),
        pytest.param("POST", "/api/heartbeats/cron/ping", TOKEN_REPLY, id="ping"),
        pytest.param("GET", "/api/incidents", READER_REPLY, id="read-api"),
        pytest.param("GET", "/api/heartbeats", READER_REPLY, id="read-api-heartbeats"),
        pytest.param("POST", "/webhook", WEBHOOK_REPLY, id="webhook"),
    ],
)
async def test_the_401_reply(
    aiohttp_client: Any, database_url: str, method: str, path: str, reply: tuple[str, str], authorization: str | None
) -> None:
    config = parse_config(json.dumps(CONFIG), env={"WEBHOOK_TOKEN": "webhook-token", "API_TOKEN": API_TOKEN})
    client = await aiohttp_client(create_app(config, database_url, loops=False))
    headers = {"Authorization": authorization} if authorization else {}
    resp = await client.request(method, path, headers=headers, data=b"{}")
    body, challenge = reply
    assert resp.status == 401
    assert await resp.text() == body
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert resp.headers.getall("WWW-Authenticate") == [challenge]


@pytest.mark.parametrize(
    ("webhook", "challenge"),
    [
        pytest.param({"token_env": "WEBHOOK_TOKEN"}, 'Bearer realm="receiver"', id="token"),
        pytest.param(
            {"basic_auth": {"username": "am", "password_env": "WEBHOOK_PASSWORD"}},
            'Basic realm="receiver", charset="UTF-8"',
            id="basic",
        ),
        pytest.param(
            {"token_env": "WEBHOOK_TOKEN", "basic_auth": {"username": "am", "password_env": "WEBHOOK_PASSWORD"}},
            'Bearer realm="receiver", Basic realm="receiver", charset="UTF-8"',
            id="both",
        ),
    ],
)
async def test_the_webhook_challenges_for_what_it_accepts(
    aiohttp_client: Any, database_url: str, webhook: dict[str, Any], challenge: str
) -> None:
    env = {"WEBHOOK_TOKEN": "webhook-token", "WEBHOOK_PASSWORD": "webhook-password"}
    config = parse_config(json.dumps({"webhook": webhook}), env=env)
    client = await aiohttp_client(create_app(config, database_url, loops=False))
    for path in ("/webhook", "/webhook/grafana"):
        resp = await client.post(path, data=b"{}")
        assert resp.status == 401
        assert await resp.text() == '{"error": "missing or wrong credentials"}'
        assert resp.headers.getall("WWW-Authenticate") == [challenge]
