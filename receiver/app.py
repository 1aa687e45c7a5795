"""The application factory: `create_app(config, database_url)` wires parts together and does no I/O.

Resources open in `cleanup_ctx` and close in reverse: the database pool, then (in later parts) the
HTTP client session and the background loops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .config import Config
from .database import create_pool
from .ingest.service import Ingestor
from .keys import CONFIG, DATABASE_URL, INGESTOR, STORE
from .store import Store
from .web import handlers
from .web.middleware import error_middleware


async def _database(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    pool = await create_pool(
        app[DATABASE_URL],
        min_size=config.database.pool_min,
        max_size=config.database.pool_max,
        timeout=config.database.connect_timeout,
    )
    store = Store(pool)
    app[STORE] = store
    app[INGESTOR] = Ingestor(config, store)
    try:
        yield
    finally:
        await pool.close()


def create_app(config: Config, database_url: str) -> web.Application:
    app = web.Application(client_max_size=config.webhook.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[DATABASE_URL] = database_url
    app.cleanup_ctx.append(_database)
    app.router.add_post("/webhook", handlers.webhook)
    app.router.add_get("/api/incidents", handlers.list_incidents)
    app.router.add_get("/api/incidents/{id}", handlers.get_incident)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    return app
