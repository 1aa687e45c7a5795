"""The HTTP edge against a real `receiver serve` process: nothing a client does at the socket can hold the
server, fill its memory, or earn a 5xx or a traceback (issue 11 items 2, 3 and 8; issue 15 items 6 and 12).

- slow clients: a partial request line, headers a byte at a time, a body never sent: each connection is
  closed by the server within its `listen:` timeout (short ones here, so the deadlines stay generous);
- the connection cap: beyond `listen.max_connections` a new connection gets a 503 (or is closed), a webhook
  gets through again once the hogs are gone, and no `accept()` traceback reaches the log;
- `Expect: 100-continue` with a declared length over the limit: 413 (401 without credentials), never the
  invitation to upload; bodies of page and signed-link forms are capped small before they are read;
- a client that disconnects mid-upload: counted as a client disconnect, not a 500, and no ERROR line;
- a malformed request: one INFO line naming the sender, without the header's value;
- a rejected (401) webhook: one line per sender address, rate-limited, without the credentials;
- the port already in use: one line naming the address, a non-zero exit code, no traceback;
- the shipped rules: strangers' 401s fire nothing while Alertmanager's webhooks succeed; a 400 or 413 fires
  ReceiverWebhookRejected; 401s with no webhook accepted fire ReceiverWebhookUnauthorized (promtool).

Raw sockets (asyncio streams) play the clients, since aiohttp's client cannot misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import alert, deadline, eventually, payload, sum_samples

from .conftest import REPO, TOKEN, ReceiverProc, receiver_config

POLICY = """\
    critical:
      steps: [{after: 1h}]
    warning:
      steps: [{after: 1h}]
"""
AUTH = f"Authorization: Bearer {TOKEN}\r\n"


def edge_config(tmp_path: Path, listen: str, webhook: str = "") -> Path:
    return receiver_config(tmp_path / "receiver.yml", policies=POLICY, extra=f"listen: {{{listen}}}\n{webhook}")


@pytest.fixture
def start_receiver(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Path
) -> Callable[..., Awaitable[ReceiverProc]]:
    async def start(listen: str, webhook: str = "") -> ReceiverProc:
        rx = receiver_procs("rx", edge_config(tmp_path, listen, webhook), fresh_database, fake_slack.url)
        async with fresh_session() as s:
            await rx.wait_ready(s, timeout=deadline(60))
        return rx

    return start


def fresh_session() -> aiohttp.ClientSession:
    """A session whose connections close after each answer, so that they never hold a slot of the cap."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=deadline(20))
    )


class RawClient:
    """One TCP connection, written to by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, rx: ReceiverProc) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", rx.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """False when the server has already closed the connection."""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    def closed_by_server(self) -> bool:
        """EOF (the server closed) or a reset; either way the server let go of the connection."""
        return self.reader.at_eof() or self.reader.exception() is not None

    async def status_line(self) -> str:
        line = await asyncio.wait_for(self.reader.readline(), deadline(20))
        return line.decode("latin-1").strip()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[ReceiverProc], Awaitable[RawClient]]]:
    opened: list[RawClient] = []

    async def connect(rx: ReceiverProc) -> RawClient:
        client = await RawClient.open(rx)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        await client.close()


async def closed_by_server(client: RawClient, what: str, timeout: float = 15.0) -> None:
    async def probe() -> bool:
        return client.closed_by_server()

    await eventually(probe, what, timeout=timeout)


async def metric(rx: ReceiverProc, name: str, **labels: str) -> float:
    async with fresh_session() as s, s.get(f"{rx.url}/metrics") as r:
        assert r.status == 200
        return sum_samples(await r.text(), name, labels)


async def post_webhook(rx: ReceiverProc, body: dict[str, Any]) -> int:
    async with (
        fresh_session() as s,
        s.post(f"{rx.url}/webhook", json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as r,
    ):
        return r.status


def lines_with(rx: ReceiverProc, text: str) -> list[str]:
    return [line for line in rx.stderr().splitlines() if text in line]


# --- slow clients -------------------------------------------------------------------------------------------


@pytest.mark.timeout(deadline(120))
async def test_partial_request_line_is_closed_after_the_header_timeout(start_receiver: Any, raw: Any) -> None:
    rx = await start_receiver("header_timeout: 1s, body_timeout: 1s")
    client = await raw(rx)
    assert await client.send(b"POST /webh")
    await closed_by_server(client, "the server to close a connection that sent half a request line")
    assert await metric(rx, "receiver_http_connections_closed_total", reason="header_timeout") >= 1
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_headers_sent_a_byte_at_a_time_are_closed_after_the_header_timeout(start_receiver: Any, raw: Any) -> None:
    """Bytes keep arriving, but the head must be complete within header_timeout of its first byte."""
    rx = await start_receiver("header_timeout: 1s, body_timeout: 1s")
    client = await raw(rx)
    head = b"POST /webhook HTTP/1.1\r\nHost: receiver\r\nX-Padding: " + b"a" * 10_000

    async def drip() -> None:
        for byte in head:
            if not await client.send(bytes([byte])):
                return
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(drip())
    try:
        await closed_by_server(client, "the server to close a connection dripping its headers")
        assert not dripping.done(), "the whole head was sent: the server must close before it completes"
    finally:
        dripping.cancel()
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_a_body_never_sent_is_closed_after_the_body_timeout(start_receiver: Any, raw: Any) -> None:
    rx = await start_receiver("header_timeout: 1s, body_timeout: 1s")
    client = await raw(rx)
    assert await client.send(
        f"POST /webhook HTTP/1.1\r\nHost: receiver\r\n{AUTH}Content-Type: application/json\r\n"
        f'Content-Length: 5000\r\n\r\n{{"alerts": ['.encode()
    )
    await closed_by_server(client, "the server to close a connection whose body never came")
    assert await metric(rx, "receiver_http_connections_closed_total", reason="body_timeout") >= 1
    # unanswered, so Alertmanager would retry; not a 5xx, not an error
    assert await metric(rx, "receiver_webhook_requests_total", code="500") == 0
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_connections_beyond_the_cap_are_refused_and_a_webhook_gets_through_afterwards(
    start_receiver: Any, raw: Any
) -> None:
    rx = await start_receiver("header_timeout: 60s, body_timeout: 60s, max_connections: 4")
    hogs = [await raw(rx) for _ in range(4)]  # connected, sending nothing: each holds a slot
    assert await hogs[-1].send(b"G")  # the last one is accepted and parsed: the server holds all four

    async def refused() -> bool:
        extra = await RawClient.open(rx)
        try:
            if not await extra.send(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n"):
                return True
            try:
                line = await extra.status_line()
            except (ConnectionError, OSError):
                return True
            return line == "" or line.startswith("HTTP/1.1 503")
        finally:
            await extra.close()

    await eventually(refused, "a connection beyond max_connections to be refused", timeout=15)
    for hog in hogs:
        await hog.close()

    async def delivered() -> bool:
        return await post_webhook(rx, payload(alert(fingerprint=uuid.uuid4().hex[:16]))) == 200

    await eventually(delivered, "a webhook to get through once the hogs are gone", timeout=15)
    assert await metric(rx, "receiver_http_connections_closed_total", reason="connection_limit") >= 1
    assert len(lines_with(rx, "refusing new ones with 503")) == 1, rx.stderr()[-3000:]
    assert not lines_with(rx, "accept"), rx.stderr()[-3000:]
    assert not rx.error_lines(), rx.error_context()


# --- bodies -------------------------------------------------------------------------------------------------


@pytest.mark.timeout(deadline(120))
async def test_expect_100_continue_over_the_limit_is_answered_413(start_receiver: Any, raw: Any) -> None:
    rx = await start_receiver("header_timeout: 5s", webhook="webhook:\n  max_body_bytes: 64KiB\n")
    head = (
        "POST /webhook HTTP/1.1\r\nHost: receiver\r\n{auth}Content-Type: application/json\r\n"
        "Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    )
    over = await raw(rx)
    assert await over.send(head.format(auth=AUTH, length=10 * 1024 * 1024).encode())
    assert await over.status_line() == "HTTP/1.1 413 Request Entity Too Large"
    stranger = await raw(rx)  # no credentials: refused before any invitation to send
    assert await stranger.send(head.format(auth="", length=1000).encode())
    assert (await stranger.status_line()).startswith("HTTP/1.1 401")
    within = await raw(rx)  # within the limit and authorised: invited
    assert await within.send(head.format(auth=AUTH, length=1000).encode())
    assert await within.status_line() == "HTTP/1.1 100 Continue"
    assert await metric(rx, "receiver_webhook_requests_total", code="413") == 1
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_form_bodies_are_capped_small_before_they_are_read(start_receiver: Any) -> None:
    """The signed ack link's POST checks its signature only after reading the form: its body is capped at
    64 KiB, declared (Content-Length) or not (chunked)."""
    rx = await start_receiver("header_timeout: 5s")
    url = f"{rx.url}/incidents/{uuid.uuid4()}/ack-link"
    form = "exp=1&sig=x&name=" + "a" * (1024 * 1024)
    async with fresh_session() as s:
        async with s.post(url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 413

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"a" * 16384

        async with s.post(url, data=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status == 413
        async with s.post(url, data="exp=1&sig=x", headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
            assert r.status != 413  # a small form still reaches the handler (which refuses the signature)
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_a_client_disconnecting_mid_upload_is_not_a_500(start_receiver: Any, raw: Any) -> None:
    rx = await start_receiver("header_timeout: 5s, body_timeout: 60s")
    client = await raw(rx)
    body = json.dumps(payload(*(alert(fingerprint=f"{i:016x}", idx=str(i)) for i in range(200)))).encode()
    assert await client.send(
        f"POST /webhook HTTP/1.1\r\nHost: receiver\r\n{AUTH}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[: len(body) // 2]
    )
    await asyncio.sleep(0.2)  # (not a timing assumption: the test holds whether or not the server read it yet)
    client.writer.transport.abort()  # gone, mid-body

    async def counted() -> float:
        return await metric(rx, "receiver_http_connections_closed_total", reason="client_disconnect")

    await eventually(counted, "the disconnect to be counted as a client disconnect", timeout=15)
    assert await metric(rx, "receiver_webhook_requests_total", code="500") == 0
    assert await metric(rx, "receiver_webhook_requests_total", code="400") == 0
    assert not rx.error_lines(), rx.error_context()
    assert len(lines_with(rx, "closed the connection during POST /webhook")) == 1, rx.stderr()[-3000:]


# --- what the log says --------------------------------------------------------------------------------------


@pytest.mark.timeout(deadline(120))
async def test_a_malformed_request_is_one_line_without_the_header_value(start_receiver: Any, raw: Any) -> None:
    rx = await start_receiver("header_timeout: 5s")
    secret = "tok3n-prefix-" + uuid.uuid4().hex
    client = await raw(rx)
    assert await client.send(
        f"POST /webhook HTTP/1.1\r\nHost: receiver\r\nAuthorization: Bearer {secret}\x01x\r\n"
        "Content-Length: 2\r\n\r\n{}".encode()
    )
    assert (await client.status_line()).split()[1:2] == ["400"]

    async def logged() -> list[str]:
        return lines_with(rx, "malformed request from 127.0.0.1")

    lines = await eventually(logged, "one line about the malformed request", timeout=15)
    assert len(lines) == 1, lines
    assert secret[:8] not in rx.stderr(), rx.stderr()[-3000:]
    assert "Traceback" not in rx.stderr()
    assert not rx.error_lines(), rx.error_context()


@pytest.mark.timeout(deadline(120))
async def test_rejected_webhooks_are_logged_once_per_sender_without_credentials(start_receiver: Any) -> None:
    rx = await start_receiver("header_timeout: 5s")
    wrong = "wrong-" + uuid.uuid4().hex
    async with fresh_session() as s:
        for _ in range(5):
            async with s.post(
                f"{rx.url}/webhook", json=payload(alert()), headers={"Authorization": f"Bearer {wrong}"}
            ) as r:
                assert r.status == 401
        async with s.post(f"{rx.url}/webhook", json=payload(alert())) as r:
            assert r.status == 401

    async def logged() -> list[str]:
        return lines_with(rx, "webhook from 127.0.0.1 refused (401)")

    lines = await eventually(logged, "a line about the refused webhook", timeout=15)
    await post_webhook(rx, payload(alert()))  # a later request: any further line would be written by now
    assert len(lines_with(rx, "refused (401)")) == 1, rx.stderr()[-3000:]
    assert "wrong Bearer credentials" in lines[0]
    assert wrong not in rx.stderr() and wrong[:10] not in rx.stderr()
    assert TOKEN not in rx.stderr()


@pytest.mark.timeout(deadline(120))
async def test_port_in_use_is_one_line_and_a_non_zero_exit(
    fresh_database: str, receiver_procs: Any, fake_slack: Any, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        rx = receiver_procs(
            "rx", edge_config(tmp_path, "header_timeout: 5s"), fresh_database, fake_slack.url, port=port
        )
        code = await rx.wait_exit(deadline(60))
    assert code is not None and code != 0, rx.stderr()[-3000:]
    stderr = rx.stderr()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "listening on" not in stderr, stderr[-3000:]
    failing = [line for line in stderr.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(failing) == 1 and "cannot listen" in failing[0] and "in use" in failing[0], stderr[-3000:]


# --- the shipped alert rules --------------------------------------------------------------------------------


PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _series(code: str, values: str, instance: str) -> dict[str, str]:
    return {
        "series": f'receiver_webhook_requests_total{{job="receiver", instance="{instance}", code="{code}"}}',
        "values": values,
    }


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool not installed (apt-get install prometheus)")
def test_rules_ignore_strangers_401_but_not_a_wrong_token_or_a_rejected_payload(tmp_path: Path) -> None:
    rules_file = REPO / "alerts" / "receiver.rules.yml"
    described = {
        r["alert"]: r["annotations"]["description"]
        for g in yaml.safe_load(rules_file.read_text())["groups"]
        for r in g["rules"]
    }
    summaries = {
        "ReceiverWebhookRejected": "receiver rejects webhooks with {code}",
        "ReceiverWebhookUnauthorized": "receiver refuses webhooks (401) and accepts none",
    }

    def case(series: list[dict[str, str]], fires: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
        return {
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {
                    "eval_time": "40m",
                    "alertname": name,
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "warning", "job": "receiver", **labels},
                            "exp_annotations": {
                                "summary": summaries[name].format(**labels),
                                "description": described[name],
                            },
                        }
                        for labels in fires.get(name, [])
                    ],
                }
                for name in summaries
            ],
        }

    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            # a scanner earning 401s while Alertmanager's webhooks succeed: nothing fires
            case([_series("200", "0+10x60", "a"), _series("401", "0+3x60", "a")], {}),
            # a wrong token in Alertmanager: only 401s, nothing accepted
            case([_series("200", "0x60", "a"), _series("401", "0+10x60", "a")], {"ReceiverWebhookUnauthorized": [{}]}),
            # payloads refused from the authenticated sender: lost alerts
            case(
                [_series("200", "0+10x60", "a"), _series("413", "0+1x60", "a"), _series("401", "0+3x60", "a")],
                {"ReceiverWebhookRejected": [{"code": "413"}]},
            ),
        ],
    }
    path = tmp_path / "edge.rules.test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=deadline(60)
    )
    assert result.returncode == 0, result.stdout + result.stderr
