"""One error middleware: expected errors keep their status with a JSON reason; the unexpected is a 500."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..keys import METRICS
from ..store import StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    except web.RequestPayloadError:  # e.g. a Content-Encoding that does not decode: bad input, never retried
        return json_error(400, "the request body could not be read or decoded")
    except StoreUnavailable as e:
        log.warning("database unavailable during %s %s: %s", request.method, request.path, e)
        request.app[METRICS].database_error("ingest" if request.path == "/webhook" else "read")
        return json_error(503, "the database is unavailable; retry later")
    except Exception:
        log.exception("unexpected error during %s %s", request.method, request.path)
        return json_error(500, "internal error")


@web.middleware
async def webhook_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every webhook answer by status and time it, whatever the outcome."""
    if request.path != "/webhook":
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
        request.app[METRICS].webhook_request(status, time.perf_counter() - started)


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/webhook", "/readyz", "/healthz")
