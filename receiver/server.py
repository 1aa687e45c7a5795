"""Serving the application, with a graceful drain on SIGTERM/SIGINT.

`web.run_app` drains by closing every connection first (`Server.pre_shutdown`), and a closed aiohttp
connection drops every byte that arrives afterwards: a webhook whose body is still uploading at SIGTERM
could never finish and was cut off at the timeout. Here the order is ours:

1. stop listening (new connections are refused, so the load balancer or Alertmanager goes elsewhere),
   `/readyz` answers 503 and every answer carries `Connection: close`;
2. wait, up to `shutdown_timeout`, until no request is in a handler, uploads included;
3. only then `runner.cleanup()`: idle keep-alive connections close, anything still running past the
   deadline is cancelled (it got no 2xx, so Alertmanager re-sends it), and `cleanup_ctx` stops the loops
   and closes the pool.

Each connection is also bounded (`listen:` in the config), because aiohttp waits for a request head and
a body as long as the client likes: a head must arrive within `header_timeout` of the connection opening
(or of its first byte on a kept-alive connection), a body within `body_timeout` of its head, and an idle
kept-alive connection closes after `idle_timeout`. Either timeout closes the connection without an answer
(Alertmanager retries a dropped connection; it would not retry a 408). Beyond `max_connections`, a new
connection gets a 503 and is closed at once, so the process never runs out of file descriptors (which
made asyncio log an `accept()` traceback per attempt). A request aiohttp cannot parse is one INFO line
naming the sender and the error's type, never the bytes (they may hold a token's prefix).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import resource
import signal
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from . import __version__
from .config import ListenConfig
from .metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# After the drain's deadline, how long cancelled handlers get to unwind (roll back, release connections).
UNWIND_SECONDS = 1.0


@dataclass
class Drain:
    """Requests in handlers, and whether the process is shutting down."""

    draining: bool = False
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.in_flight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.draining:  # no keep-alive while stopping: the client opens its next connection elsewhere
            response.force_close()  # the connection closes after this answer
            response.headers["Connection"] = "close"  # (headers are already prepared when this hook runs)

    async def wait_idle(self, timeout: float) -> bool:
        """True when no request is in a handler (within `timeout` seconds)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


# File descriptors kept free beyond max_connections: the database pool, outgoing HTTP, logs, the listener.
FD_RESERVE = 128
# A connection beyond the cap gets this and is closed: Alertmanager retries a 503.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 50\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n\r\n"
    b'{"error": "too many connections; retry shortly"}\r\n'
)


class LogLimiter:
    """At most one line per key (a sender's address) per `interval` and `burst` lines per interval in all;
    the keys are bounded (the oldest is forgotten first), so a flood costs neither memory nor log volume."""

    def __init__(self, interval: float = 60.0, burst: int = 20, max_keys: int = 1024) -> None:
        self.interval, self.burst, self.max_keys = interval, burst, max_keys
        self._last: OrderedDict[str, float] = OrderedDict()
        self._window_start = float("-inf")
        self._window_lines = 0
        self._suppressed = 0

    def allow(self, key: str, now: float | None = None) -> int | None:
        """None: stay quiet. Otherwise log now; the value is how many lines were held back since the last."""
        now = time.monotonic() if now is None else now
        if now - self._window_start >= self.interval:
            self._window_start, self._window_lines = now, 0
        last = self._last.get(key)
        if (last is not None and now - last < self.interval) or self._window_lines >= self.burst:
            self._suppressed += 1
            return None
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        self._window_lines += 1
        held, self._suppressed = self._suppressed, 0
        return held


def held_back(count: int) -> str:
    return f" ({count} similar line(s) held back)" if count else ""


class BodyTimeout(ConnectionResetError):
    """The request body did not arrive within listen.body_timeout; the connection was closed."""


@dataclass
class Edge:
    """What every connection shares: its limits, the metrics and the rate-limited logs."""

    limits: ListenConfig
    metrics: Metrics
    max_connections: int
    malformed_log: LogLimiter = field(default_factory=LogLimiter)
    refused_log: LogLimiter = field(default_factory=lambda: LogLimiter(burst=1))


class Connection(RequestHandler):
    """aiohttp's connection protocol with deadlines for the request head and body (module docstring)."""

    def __init__(self, manager: web.Server, edge: Edge, **kwargs: Any) -> None:
        quiet: dict[str, Any] = {"access_log": None}  # no access log, as before (typed as a Logger)
        super().__init__(
            manager,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=edge.limits.idle_timeout.total_seconds(),
            **quiet,
            **kwargs,
        )
        self._edge = edge
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        self._disarm()
        self._deadline = self._loop.call_later(seconds, callback)
        return self._deadline

    def _disarm(self, only: asyncio.TimerHandle | None = None) -> None:
        if self._deadline is not None and (only is None or only is self._deadline):
            self._deadline.cancel()
            self._deadline = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._edge.limits.header_timeout.total_seconds(), self._head_overdue)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:  # a head is complete (or unparseable, and answered 400)
            self._disarm()
            payload = self._messages[-1][1] if self._messages else None
            if isinstance(payload, StreamReader) and not payload.is_eof():
                handle = self._arm(self._edge.limits.body_timeout.total_seconds(), lambda: self._body_overdue(payload))
                payload.on_eof(lambda: self._disarm(handle))
        elif data and self._deadline is None and self._waiter is not None:
            # the first bytes of the next request on a kept-alive connection
            self._arm(self._edge.limits.header_timeout.total_seconds(), self._head_overdue)

    def _head_overdue(self) -> None:
        self._deadline = None
        if self.transport is None or self._request_in_progress:
            return
        self._edge.metrics.http_connection_closed("header_timeout")
        log.debug(
            "closed a connection from %s: no complete request head within %s",
            self._peer(),
            self._edge.limits.header_timeout,
        )
        self.force_close()

    def _body_overdue(self, payload: StreamReader) -> None:
        self._deadline = None
        if self.transport is None or payload.is_eof():
            return
        self._edge.metrics.http_connection_closed("body_timeout")
        log.debug(
            "closed a connection from %s: request body not complete within %s",
            self._peer(),
            self._edge.limits.body_timeout,
        )
        if self._request_in_progress:  # the handler's read ends now, and says why
            payload.set_exception(BodyTimeout(f"request body not complete within {self._edge.limits.body_timeout}"))
        self.force_close()

    def _peer(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) and peer else "?"

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):  # a handler's failure: aiohttp logs it as before
            return super().handle_error(request, status, exc, message)
        # Unparseable input. aiohttp's own line is a traceback quoting the offending bytes (which can be a
        # token's prefix) and so is its reply: here one line naming the sender and the error's type.
        self._edge.metrics.http_connection_closed("malformed")
        held = self._edge.malformed_log.allow(self._peer())
        if held is not None:
            log.info(
                "malformed request from %s answered %d (%s)%s",
                self._peer(),
                status,
                type(exc).__name__,
                held_back(held),
            )
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Bad Request"
        response = web.Response(status=status, text=f"{status} {phrase}\n")
        response.force_close()
        return response


class _Refused(asyncio.Protocol):
    """A connection beyond max_connections: a 503 and closed at once, before reading anything."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(REFUSED)
        transport.close()


def _connection_factory(runner: web.AppRunner, edge: Edge) -> Callable[[], asyncio.Protocol]:
    def make() -> asyncio.Protocol:
        server = runner.server
        assert server is not None, "the runner is set up before serving starts"
        if len(server.connections) >= edge.max_connections:
            edge.metrics.http_connection_closed("connection_limit")
            held = edge.refused_log.allow("cap")
            if held is not None:
                log.warning(
                    "%d connections open (listen.max_connections): refusing new ones with 503%s",
                    edge.max_connections,
                    held_back(held),
                )
            return _Refused()
        return Connection(server, edge)

    return make


def connection_cap(wanted: int) -> int:
    """`wanted`, or less when the open-file limit cannot leave FD_RESERVE descriptors beside it (the soft
    limit is raised towards the hard one first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft - FD_RESERVE < wanted:
        cap = max(1, soft - FD_RESERVE)
        log.warning(
            "listen.max_connections %d needs %d open files but the limit is %d: at most %d connections",
            wanted,
            need,
            soft,
            cap,
        )
        return cap
    return wanted


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop, limiter: LogLimiter) -> None:
    """Out of descriptors, asyncio logs a traceback per accept(); the cap should prevent it, and if something
    else exhausts them, one warning a minute says so."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if (
            isinstance(error, OSError)
            and error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
            and "accept" in str(context.get("message", ""))
        ):
            held = limiter.allow("accept")
            if held is not None:
                log.warning("cannot accept connections: %s (open-file limit?)%s", error.strerror, held_back(held))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def serve(app: web.Application, drain: Drain, host: str, port: int, shutdown_timeout: float) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain (see the module docstring). A port that cannot be
    bound is one ERROR line and SystemExit(1), before anything starts."""
    from .keys import CONFIG, METRICS  # keys imports this module

    loop = asyncio.get_running_loop()
    metrics = app[METRICS]
    edge = Edge(app[CONFIG].listen, metrics, connection_cap(app[CONFIG].listen.max_connections))
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=UNWIND_SECONDS)
    try:  # bound first, serving only once the app is set up
        listener = await loop.create_server(_connection_factory(runner, edge), host, port, start_serving=False)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        log.error(
            "cannot listen on %s:%d: %s (another process has it? choose another with --port or listen.port)",
            host,
            port,
            reason,
        )
        raise SystemExit(1) from None
    _quiet_accept_errors(loop, edge.refused_log)
    await runner.setup()  # runs cleanup_ctx: the pool, the HTTP session, the loops
    # What exists now lives as long as the process (modules, templates, the pool): out of the collector's
    # reach, so that a full collection, which a big webhook's transient objects trigger, walks only what
    # requests allocate (20,000-alert webhook: the longest loop stall 0.19-0.30 s -> 0.12-0.18 s).
    gc.collect()
    gc.freeze()
    try:
        server = runner.server
        assert server is not None
        metrics.http_open.set_function(lambda: len(server.connections))
        await listener.start_serving()
        log.info("receiver %s listening on http://%s:%d (webhook: POST /webhook)", __version__, host, port)
        stop = asyncio.Event()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await stop.wait()
        began = time.monotonic()
        drain.draining = True
        listener.close()
        log.info(
            "%s: stopped listening; letting %d request(s) in flight finish (up to %.0f s)",
            received[0],
            drain.in_flight,
            shutdown_timeout,
        )
        if not await drain.wait_idle(shutdown_timeout):
            log.warning(
                "%d request(s) still running after %.0f s are cancelled (unanswered, so the sender retries them)",
                drain.in_flight,
                shutdown_timeout,
            )
        else:
            log.info("requests drained in %.2f s", time.monotonic() - began)
    finally:
        listener.close()
        await runner.cleanup()  # closes idle connections, stops the loops, closes the pool
