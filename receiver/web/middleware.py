"""The middlewares: errors (expected ones keep their status with a JSON reason, the unexpected is a 500, a
client that went away is neither), webhook metrics, and request body limits applied before any body is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from ..config import WebhookConfig
from ..ingest import SENDER_PATHS
from ..keys import CONFIG, METRICS
from ..server import BodyTimeout, LogLimiter, held_back
from ..store import StoreUnavailable
from .auth import BASIC_CHALLENGE, BEARER_CHALLENGE, webhook_authorized

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Every body but the webhook's (page forms, signed-link forms, lifecycle API JSON) is read only up to this:
# most come from clients not yet authorised, and none needs more than a few hundred bytes.
FORM_MAX_BYTES = 64 * 1024
# The status of a request whose client left before the answer (nginx's convention). Never sent; the
# webhook metrics leave it out of receiver_webhook_requests_total.
CLIENT_CLOSED = 499


def json_error(status: int, reason: str, **extra: object) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json" or not _wants_json(request):
            raise
        reason = e.text if e.text and e.content_type == "text/plain" else e.reason
        return json_error(e.status, reason or e.reason)
    except BodyTimeout:  # counted and logged (DEBUG) where the connection was closed; nobody hears an answer
        return web.Response(status=CLIENT_CLOSED)
    except (ConnectionError, web.RequestPayloadError) as e:
        if isinstance(e, ConnectionError) or _client_gone(request):
            # The client went away mid-request (an upload cut off): nothing to answer, nothing to fix here.
            request.app[METRICS].http_connection_closed("client_disconnect")
            log.info(
                "client %s closed the connection during %s %s (%s)",
                request.remote,
                request.method,
                request.path,
                type(e).__name__,
            )
            return web.Response(status=CLIENT_CLOSED)
        # e.g. a Content-Encoding that does not decode: bad input, never retried
        return json_error(400, "the request body could not be read or decoded")
    except StoreUnavailable as e:
        log.warning("database unavailable during %s %s: %s", request.method, request.path, e)
        request.app[METRICS].database_error("ingest" if request.path in SENDER_PATHS else "read")
        return json_error(503, "the database is unavailable; retry later")
    except Exception:
        log.exception("unexpected error during %s %s", request.method, request.path)
        return json_error(500, "internal error")


@web.middleware
async def webhook_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every webhook answer (every sender's route) by status and time it, whatever the outcome."""
    if request.path not in SENDER_PATHS:
        return await handler(request)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        if status != CLIENT_CLOSED:  # not answered: counted in receiver_http_connections_closed_total
            request.app[METRICS].webhook_request(status, time.perf_counter() - started)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in SENDER_PATHS or request.path in ("/readyz", "/healthz")


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def webhook_unauthorized(config: WebhookConfig) -> web.Response:
    """401, challenging for the credentials the webhook accepts (RFC 9110: a challenge that applies to it)."""
    challenges = ([BEARER_CHALLENGE] if config.token is not None else []) + (
        [BASIC_CHALLENGE] if config.basic_auth is not None else []
    )
    return web.json_response(
        {"error": "missing or wrong credentials"},
        status=401,
        headers={"WWW-Authenticate": ", ".join(challenges)},
    )


class BodyLimits:
    """Every body is bounded before a byte of it is read.

    On every sender's route (`receiver.ingest.SENDER_PATHS`: /webhook, /webhook/grafana) the webhook
    credentials are checked first (a stranger's body is never read), then the declared length against
    `webhook.max_body_bytes`; every other body is capped at FORM_MAX_BYTES, so a signed-link
    POST, whose signature can only be checked after its form is read, costs at most that. A body without a
    declared length (chunked) is held to the same cap as it is read (aiohttp's client_max_size, per
    request). `Expect: 100-continue` gets the 401 or 413 instead of the invitation to send the body.
    A refused webhook is logged, one line per sender address a minute, without what it sent.
    """

    def __init__(self) -> None:
        self.rejected_log = LogLimiter()

    def _verdict(self, request: web.Request) -> tuple[web.Response | None, int]:
        """(a refusal or None, the byte limit of this request's body)."""
        config = request.app[CONFIG]
        limit = FORM_MAX_BYTES
        if request.path in SENDER_PATHS and request.method == hdrs.METH_POST:
            header = request.headers.get(hdrs.AUTHORIZATION)
            if not webhook_authorized(config.webhook, header):
                self._log_rejected(request, header)
                return webhook_unauthorized(config.webhook), limit
            limit = config.webhook.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            return json_error(
                413, f"the body is {declared} bytes; at most {limit} are accepted here", max_bytes=limit
            ), limit
        return None, limit

    def _log_rejected(self, request: web.Request, header: str | None) -> None:
        sender = request.remote or "?"
        held = self.rejected_log.allow(sender)
        if held is None:
            return
        if not header:
            what = "no Authorization header"
        else:
            scheme = header.partition(" ")[0][:16]
            what = (
                f"wrong {scheme.title()} credentials"
                if scheme.lower() in ("bearer", "basic")
                else "an unsupported Authorization scheme"
            )
        log.warning("webhook from %s refused (401): %s%s", sender, what, held_back(held))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists and request.path not in SENDER_PATHS:
            return await handler(request)
        refusal, limit = self._verdict(request)
        if refusal is not None:
            refusal.force_close()  # the unread body is not worth waiting for
            return refusal
        if limit != request.client_max_size:  # webhooks keep the app's own (webhook.max_body_bytes): no clone
            request = request.clone(client_max_size=limit)
        return await handler(request)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """The route's Expect handler (it runs before any middleware): refuse, or invite the body."""
        expect = request.headers.get(hdrs.EXPECT, "")
        if request.version != HttpVersion11 or expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect[:64]}")
        started = time.perf_counter()
        refusal, _ = self._verdict(request)
        if refusal is None:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer proper has not started
            return None
        refusal.force_close()
        if request.path in SENDER_PATHS:  # middlewares do not see this answer: count it here
            request.app[METRICS].webhook_request(refusal.status, time.perf_counter() - started)
        return refusal
