"""The servers under test, each a subprocess on 127.0.0.1: the receiver, the HTTP ceiling, alerta-server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
ALERTA_PACKAGES = ("alerta-server==9.1.0", "gunicorn", "psycopg2-binary")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str], root: Path = ROOT) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECEIVER_", "ALERTA_"))}
    env["PYTHONPATH"] = str(root)
    env.update(extra)
    return env


class Server:
    """A subprocess serving HTTP on 127.0.0.1:port."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: dict[str, str], log: Path, ready_path: str, cwd: Path = ROOT
    ):
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.ready_path = ready_path

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log: {self.tail()}")
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as r:
                    if r.status < 500:
                        return
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; log: {self.tail()}")

    def rss_bytes(self) -> int:
        """Resident memory of the server process and its children (gunicorn workers)."""
        p = psutil.Process(self.proc.pid)
        total = p.memory_info().rss
        for c in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += c.memory_info().rss
        return total

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # only our own process group (start_new_session): gunicorn workers included
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_receiver(
    database_url: str, logdir: Path, *, config: Path | None = None, env: dict[str, str] | None = None, root: Path = ROOT
) -> Server:
    """`python -m receiver serve` from the source tree `root` (default: the one this bench runs from)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "receiver",
        "--log-level",
        "WARNING",
        "serve",
        "--no-migrate",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if config is not None:
        argv += ["--config", str(config)]
    server = Server(
        "receiver",
        argv,
        port,
        _env({"DATABASE_URL": database_url, **(env or {})}, root),
        logdir / f"receiver-{port}.log",
        "/healthz",
        cwd=root,
    )
    server.wait_ready()
    return server


def migrate_with(root: Path, database_url: str, log: Path) -> None:
    """Apply the migrations of the source tree `root` (`python -m receiver migrate`)."""
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, "-m", "receiver", "--log-level", "WARNING", "migrate"],
            cwd=root,
            env=_env({"DATABASE_URL": database_url}, root),
            stdout=out,
            stderr=out,
            check=True,
            timeout=300,
        )


def start_http_ceiling(logdir: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.httpceiling", "--port", str(port)]
    server = Server("http-ceiling", argv, port, _env({}), logdir / f"http-ceiling-{port}.log", "/healthz")
    server.wait_ready()
    return server


# --- alerta-server ------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("BENCH_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "receiver-bench"


def alerta_venv(log: Path) -> Path:
    """alerta-server, gunicorn and psycopg2 in their own virtual environment under the cache dir."""
    venv = cache_dir() / "alerta-venv"
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text() == " ".join(ALERTA_PACKAGES):
        return venv
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *ALERTA_PACKAGES], check=True, stdout=out, stderr=out
        )
    marker.write_text(" ".join(ALERTA_PACKAGES))
    return venv


def alerta_config(path: Path, database_url: str) -> Path:
    path.write_text(
        "# written by the receiver benchmark\n"
        f"DATABASE_URL = {database_url!r}\n"
        "DATABASE_NAME = None\n"
        "AUTH_REQUIRED = False\n"
        "LOG_LEVEL = 'WARNING'\n"
        "DEBUG = False\n"
    )
    return path


def start_alerta(venv: Path, database_url: str, logdir: Path, workers: int = 2) -> Server:
    """alerta-server under gunicorn (sync workers) against its own database on the bench's PostgreSQL."""
    port = free_port()
    conf = alerta_config(logdir / f"alertad-{port}.conf", database_url)
    env = _env({"ALERTA_SVR_CONF_FILE": str(conf)})
    env.pop("PYTHONPATH", None)
    env.pop("DATABASE_URL", None)
    log = logdir / f"alerta-{port}.log"
    # Create the schema once, so that the workers do not race to create it.
    with log.open("ab") as out:
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "from alerta.app import create_app; create_app()"],
            env=env,
            check=True,
            stdout=out,
            stderr=out,
            cwd=logdir,
            timeout=120,
        )
    argv = [
        str(venv / "bin" / "gunicorn"),
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--timeout",
        "60",
        "alerta:create_app()",
    ]
    server = Server("alerta", argv, port, env, log, "/management/healthcheck", cwd=logdir)
    server.wait_ready()
    return server


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process, its live descendants, and the children it has
    reaped (PostgreSQL's postmaster reaps its backends, so their time stays counted after they exit)."""
    try:
        p = psutil.Process(pid)
        t = p.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for c in p.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                ct = c.cpu_times()
                total += ct.user + ct.system
        return total
    except psutil.Error:
        return 0.0


def own_cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system
