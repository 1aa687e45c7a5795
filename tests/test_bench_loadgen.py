"""The benchmark's lean HTTP client (bench/loadgen.py) against a real aiohttp server: it must read every
framing an answer can have (Content-Length, chunked, none with a close, none for 204), reuse a keep-alive
connection, not reuse one the server closes, and send the body and headers it was given. Also the paced
driver: requests go out on their schedule and are counted by when they were due."""

from __future__ import annotations

import asyncio
from typing import Any

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
        concurrency=8,
        duration=1.0,
        warmup=0.21,
    )
    # due every 20 ms from 0 to 1.2 s: 61 sent; the 50 due inside the measured second (0.21-1.21 s) are counted
    assert len(seen) == 61
    assert result.requests == 50 and result.alerts == 500
    assert result.extra["shed"] == 0 and result.errors == 0 and result.non2xx == 0
