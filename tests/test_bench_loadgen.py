"""The benchmark's lean HTTP client (bench/loadgen.py) against a real aiohttp server and a scripted raw one: it
must read every framing an answer can have (Content-Length, chunked, up to the close, none for 204, past an
interim 1xx), reuse a keep-alive connection, not reuse one the server closes or announces it will close, and
send the body and headers it was given. Also the paced driver: requests go out on their schedule, are counted
by when they were due, and a stall of the client itself sheds nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from bench import loadgen


async def _server(aiohttp_server: Any) -> tuple[Any, list[tuple[str, bytes, str, int]]]:
    seen: list[tuple[str, bytes, str, int]] = []  # (path, body, user agent, peer port)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        seen.append((request.path, body, request.headers.get("User-Agent", ""), peer[1]))
        kind = request.match_info["kind"]
        if kind == "length":
            return web.json_response({"ok": True, "n": len(body)}, status=201)
        if kind == "chunked":
            response = web.StreamResponse(status=202)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b"x" * 10, b"y" * 70_000, b"z"):
                await response.write(part)
            await response.write_eof()
            return response
        if kind == "close":
            return web.Response(text="bye", status=200, headers={"Connection": "close"})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{kind}", handle)
    return await aiohttp_server(app), seen


async def test_every_framing_is_read_and_keep_alive_is_reused(aiohttp_server: Any) -> None:
    server, seen = await _server(aiohttp_server)
    headers = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}
    statuses: list[int] = []
    for kind in ("length", "chunked", "length", "nobody", "length"):
        client = loadgen.LeanHttpClient(f"http://127.0.0.1:{server.port}/{kind}", headers, timeout=30)
        try:
            for i in range(3):
                statuses.append(await client.post(b'{"i": %d}' % i))
            assert len(client.open) == 1  # one connection carried the three
        finally:
            client.close()
    assert statuses == [201] * 3 + [202] * 3 + [201] * 3 + [204] * 3 + [201] * 3
    assert [s[1] for s in seen[:3]] == [b'{"i": 0}', b'{"i": 1}', b'{"i": 2}']
    assert {s[2] for s in seen} == {"Alertmanager/0.25.0"}
    assert len({s[3] for s in seen[:3]}) == 1  # the same client port: the connection was kept


async def test_a_connection_the_server_closes_is_not_reused(aiohttp_server: Any) -> None:
    server, seen = await _server(aiohttp_server)
    client = loadgen.LeanHttpClient(f"http://127.0.0.1:{server.port}/close", {}, timeout=30)
    try:
        assert [await client.post(b"{}") for _ in range(3)] == [200, 200, 200]
        assert not client.idle and not client.open
    finally:
        client.close()
    assert len({s[3] for s in seen}) == 3  # a new connection each time


async def test_no_answer_is_an_error_not_a_hang() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")  # then closes: 5 bytes missing
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = loadgen.LeanHttpClient(f"http://127.0.0.1:{port}/webhook", {}, timeout=30)
    try:
        result = await loadgen.drive(
            client.post, iter([(b"{}", 1)] * 5), concurrency=1, duration=30, max_requests=5, warmup=0
        )
    finally:
        client.close()
        listener.close()
    assert result.errors == 5 and result.requests == 0


async def test_paced_requests_are_sent_on_schedule_and_timed_from_when_due(aiohttp_server: Any) -> None:
    server, seen = await _server(aiohttp_server)
    result = await loadgen.run_http(
        f"http://127.0.0.1:{server.port}/length",
        iter([(b"{}", 10)] * 1000),
        rate=50,
        concurrency=100,  # never reached: 61 requests in all, so a stalled machine sheds none
        duration=1.0,
        warmup=0.21,
    )
    # due every 20 ms from 0 to 1.2 s: 61 sent; the 50 due inside the measured second (0.21-1.21 s) are counted
    assert len(seen) == 61
    assert result.requests == 50 and result.alerts == 500
    assert result.extra["shed"] == 0 and result.errors == 0 and result.non2xx == 0


async def _scripted(answers: list[bytes]) -> tuple[asyncio.Server, int, list[int]]:
    """A raw HTTP server that answers the i-th request on a connection with answers[i] (then closes when
    the script says so, or when the answers run out); returns it, its port and each request's connection
    number."""
    conns: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(set(conns))
        try:
            for answer in answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                conns.append(number)
                writer.write(answer)
                await writer.drain()
                if b"close" in answer.split(b"\r\n\r\n")[0].lower() or b"Content-Length" not in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], conns


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True, id="length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close, x-other\r\nContent-Length: 2\r\n\r\nok",
            False,
            id="close-among-tokens",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
            False,
            id="close-on-any-line",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: x-other, Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
            True,
            id="http10-keep-alive",
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, id="http10"),
        pytest.param(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            True,
            id="interim-1xx",
        ),
        pytest.param(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", True, id="204-has-no-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nup to the close", False, id="close-delimited"),
    ],
)
async def test_answers_read_to_their_end_and_the_connection_kept_only_when_it_may_be(answer: bytes, kept: bool) -> None:
    server, port, conns = await _scripted([answer] * 3)
    client = loadgen.LeanHttpClient(f"http://127.0.0.1:{port}/webhook", {}, timeout=30)
    try:
        statuses = [await client.post(b"{}") for _ in range(3)]
    finally:
        client.close()
        server.close()
    assert statuses == [int(answer.split(b"\r\n\r\n")[-2 if b" 103 " in answer else 0].split(b" ")[1])] * 3
    assert conns == ([0, 0, 0] if kept else [0, 1, 2])


async def test_a_connection_closed_while_idle_is_not_used() -> None:
    server, port, conns = await _scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])  # then closes
    client = loadgen.LeanHttpClient(f"http://127.0.0.1:{port}/webhook", {}, timeout=30)
    try:
        assert await client.post(b"{}") == 200
        [(reader, _)] = client.idle
        await reader.read()  # the server's close has arrived: the idle connection is at its end
        assert await client.post(b"{}") == 200  # on a new connection, not an error on the dead one
    finally:
        client.close()
        server.close()
    assert conns == [0, 1]


async def test_a_stall_of_the_client_sheds_nothing(aiohttp_server: Any) -> None:
    server, seen = await _server(aiohttp_server)

    def stall() -> None:
        time.sleep(0.4)  # the client's own loop stops until after the schedule's end: 35 requests fall due

    asyncio.get_running_loop().call_later(0.25, stall)
    result = await loadgen.run_http(
        f"http://127.0.0.1:{server.port}/length",
        iter([(b"{}", 1)] * 1000),
        rate=100,
        # sent and unanswered at most: the overdue ones are sent when the loop resumes, none of them in flight
        # yet when it falls due (counting the requests merely started, 5 of them were shed)
        concurrency=30,
        duration=0.6,
        warmup=0.0,
    )
    assert result.extra["shed"] == 0 and len(seen) == 60 and result.errors == 0
