"""One error middleware: expected errors keep their status with a JSON reason; the unexpected is a 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

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
    except StoreUnavailable as e:
        log.warning("database unavailable during %s %s: %s", request.method, request.path, e)
        return json_error(503, "the database is unavailable; retry later")
    except Exception:
        log.exception("unexpected error during %s %s", request.method, request.path)
        return json_error(500, "internal error")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path in ("/webhook", "/readyz", "/healthz")
