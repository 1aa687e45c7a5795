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
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

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


async def serve(app: web.Application, drain: Drain, host: str, port: int, shutdown_timeout: float) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain (see the module docstring)."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=UNWIND_SECONDS)
    await runner.setup()  # runs cleanup_ctx: the pool, the HTTP session, the loops
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await stop.wait()
        began = time.monotonic()
        drain.draining = True
        await site.stop()
        log.info("%s: stopped listening; letting %d request(s) in flight finish (up to %.0f s)",
                 received[0], drain.in_flight, shutdown_timeout)
        if not await drain.wait_idle(shutdown_timeout):
            log.warning("%d request(s) still running after %.0f s are cancelled (unanswered, so the sender "
                        "retries them)", drain.in_flight, shutdown_timeout)
        else:
            log.info("requests drained in %.2f s", time.monotonic() - began)
    finally:
        await runner.cleanup()  # closes idle connections, stops the loops, closes the pool

