"""The command line: serve, migrate, check-config, explain.

A thin wrapper: it reads the config and the environment, finds or starts the database, and hands
over to the application factory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .config import Config, ConfigError, load_config
from .database import (
    DatabaseUnavailable,
    DatabaseUnreachable,
    check_url,
    default_data_dir,
    embedded_postgres,
    migrate,
    probe,
    redact,
)
from .ingest.alertmanager import PayloadError, parse_body

log = logging.getLogger("receiver")


def _config(path: str | None) -> Config:
    path = path or os.environ.get("RECEIVER_CONFIG") or None
    return load_config(path)


@contextlib.contextmanager
def database_url(config: Config, data_dir: str | None) -> Iterator[str]:
    """DATABASE_URL (or database.url_env/url_file) when set, else an embedded PostgreSQL."""
    if config.database.url is not None:
        check_url(config.database.url.value)
        yield config.database.url.value
        return
    directory = Path(data_dir or os.environ.get("RECEIVER_DATA_DIR") or config.data_dir or default_data_dir())
    log.info("DATABASE_URL is not set: using an embedded PostgreSQL, data in %s", directory / "pgdata")
    with embedded_postgres(directory, start_timeout=config.database.startup_wait) as url:
        yield url


# While the reason stays the same, one line per this many seconds is enough to follow a wait.
RETRY_LOG_EVERY = 10.0


def _migrate_with_retry(url: str, config: Config) -> list[str]:
    """Apply migrations, waiting up to `database.startup_wait` for the database to accept connections."""
    return _with_database(url, config, lambda: migrate(url, connect_timeout=config.database.connect_timeout))


def _wait_for_database(url: str, config: Config) -> None:
    """Without migrations, still wait (as long) for the database, so the pool starts on a database that answers."""
    _with_database(url, config, lambda: probe(url, connect_timeout=config.database.connect_timeout))


T = TypeVar("T")


def _with_database(url: str, config: Config, action: Callable[[], T]) -> T:
    """`action()`, retried while the database cannot be reached (it may be starting beside us), for up to
    `database.startup_wait`. Each retry line says why; giving up is one line saying what to check."""
    wait = config.database.startup_wait
    began = time.monotonic()
    said: tuple[str, float] | None = None  # the reason last logged, and when
    while True:
        try:
            return action()
        except DatabaseUnreachable as e:
            now = time.monotonic()
            if now - began >= wait:
                waited = f" after {wait:.0f} s" if wait >= 1 else ""
                raise DatabaseUnavailable(
                    f"cannot connect to the database at {redact(url)}{waited}: {e.reason}; check {e.check}"
                    " (database.startup_wait sets how long to wait)"
                ) from None
            if said is None or said[0] != e.reason or now - said[1] >= RETRY_LOG_EVERY:
                log.warning(
                    "database at %s not reachable: %s; retrying for up to %.0f s more",
                    redact(url),
                    e.reason,
                    wait - (now - began),
                )
                said = (e.reason, now)
            time.sleep(min(1.0, max(0.0, wait - (now - began))))


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import create_app
    from .keys import DRAIN
    from .server import serve

    config = _config(args.config)
    host = args.host or config.host
    port = args.port or config.port

    def stop_during_start(signum: int, frame: object) -> None:
        # A SIGTERM while the database starts or migrates still runs the cleanup below (stopping an
        # embedded PostgreSQL); once serving, `serve` takes over for a graceful drain.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop_during_start)
    signal.signal(signal.SIGINT, stop_during_start)  # Ctrl-C while starting: no KeyboardInterrupt traceback
    with database_url(config, args.data_dir) as url:
        log.info("database: %s", redact(url))
        if not args.no_migrate:
            applied = _migrate_with_retry(url, config)
            log.info("migrations applied: %s", ", ".join(applied) or "none pending")
        else:
            _wait_for_database(url, config)
        if config.webhook.token is None and config.webhook.basic_auth is None:
            log.warning("the webhook accepts unauthenticated requests; set RECEIVER_WEBHOOK_TOKEN to require a token")
        app = create_app(config, url)
        asyncio.run(serve(app, app[DRAIN], host, port, args.shutdown_timeout))
    log.info("stopped")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _config(args.config)
    with database_url(config, args.data_dir) as url:
        applied = _migrate_with_retry(url, config)
        print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: ok ({len(config.rules)} rules)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    config = _config(args.config)
    label_sets: list[dict[str, str]] = []
    items = list(args.input)
    if len(items) == 1 and "=" not in items[0]:
        try:
            notification = parse_body(Path(items[0]).read_bytes())
        except OSError as e:
            raise SystemExit(f"receiver explain: cannot read {items[0]}: {e.strerror}") from None
        except PayloadError as e:
            raise SystemExit(f"receiver explain: {items[0]}: {e}") from None
        label_sets = [a.labels for a in notification.alerts]
    else:
        labels: dict[str, str] = {}
        for item in items:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise SystemExit(f"receiver explain: {item!r} is not name=value")
            labels[name] = value
        label_sets = [labels]
    results: list[dict[str, Any]] = []
    for labels in label_sets:
        m = config.map(labels)
        results.append(
            {
                "labels": labels,
                "rule": m.rule,
                "route": m.route,
                "kind": m.kind,
                "severity": m.severity,
                "incident_key": m.incident_key,
                "owner": m.owner,
            }
        )
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            print(", ".join(f"{k}={v}" for k, v in r["labels"].items()))
            for k in ("rule", "route", "kind", "severity", "incident_key", "owner"):
                print(f"  {k:<13}{r[k]}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from .web.users import hash_password

    if args.stdin or not sys.stdin.isatty():
        # A pipe or a file (`echo pw | receiver hash-password`): one line, as with --stdin; asking twice
        # would read past its end.
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            print(
                "receiver: no password on standard input (pipe one line, or run in a terminal to be asked)",
                file=sys.stderr,
            )
            return 1
    else:
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Again: ")
        except (EOFError, KeyboardInterrupt):
            print("\nreceiver: no password given", file=sys.stderr)
            return 1
        if again != password:
            print("receiver: the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("receiver: an empty password is not allowed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="receiver", description="Alertmanager webhooks become incidents.")
    parser.add_argument("--version", action="version", version=f"receiver {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("RECEIVER_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the receiver")
    serve.add_argument("--config", help="YAML config file (default: $RECEIVER_CONFIG)")
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default 9095)")
    serve.add_argument("--data-dir", help="embedded PostgreSQL data directory (default: $RECEIVER_DATA_DIR)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    serve.add_argument(
        "--shutdown-timeout", type=float, default=10.0, help="seconds to let requests in flight finish on SIGTERM"
    )
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.add_argument("--config")
    mig.add_argument("--data-dir")
    mig.set_defaults(func=cmd_migrate)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)

    explain = sub.add_parser("explain", help="show how labels map to route, kind, severity and owner")
    explain.add_argument("input", nargs="+", help="name=value labels, or a webhook JSON file")
    explain.add_argument("--config")
    explain.add_argument("--json", action="store_true")
    explain.set_defaults(func=cmd_explain)
    hp = sub.add_parser("hash-password", help="print an scrypt hash for ui.users[].password_hash")
    hp.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from standard input (the default when it is not a terminal)",
    )
    hp.set_defaults(func=cmd_hash_password)
    return parser


def one_line_errors(record: logging.LogRecord) -> bool:
    """A warning's traceback becomes one line: the exception's type and message."""
    if record.levelno < logging.ERROR and record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Called without `argv` it is the program (the `receiver` script, `python -m receiver`)
    and owns the process: after `serve` has stopped everything, it ends the process at once (see
    `_exit_now`). Called with `argv` (tests) it returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The embedded server and yoyo narrate every step at INFO; their warnings still show.
    for noisy in ("embedded_postgres", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # embedded-postgres logs a failed command's whole output as an ERROR before raising; we report the
    # failure in one line (DatabaseUnavailable), with the server log's path.
    logging.getLogger("embedded_postgres").addFilter(lambda record: record.levelno != logging.ERROR)
    # While the database is down, asyncpg's pool retries its minimum size with a full traceback each time.
    logging.getLogger("asyncpg.pool").addFilter(one_line_errors)
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        code = int(args.func(args))
    except ConfigError as e:
        for error in e.errors:  # every error of the file, one line each (tests/test_readme.py)
            print(f"receiver: configuration error: {error}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as e:
        print(f"receiver: {e}", file=sys.stderr)
        return 1
    if argv is None and args.func is cmd_serve:
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown.

    Once `serve` returns, everything that matters is done: requests drained, loops stopped, the pool
    closed, an embedded PostgreSQL stopped (or left to the processes still using it). What the normal
    exit would still do is free every object one by one and run the final garbage collections, over
    caches of up to hundreds of MB (label mappings, parsed timestamps): seconds of CPU on a busy machine,
    during which an orchestrator waits and may SIGKILL. `gc.freeze()` would skip the collections but not
    the freeing; `os._exit` skips both, and the OS takes the memory back at once. It also skips `atexit`
    handlers, of which a serving process has three: logging's (run here), embedded-postgres's (the cleanup
    already run when `serve` left the database) and yoyo's (it closes files extracted from a zipped package;
    our migrations are a directory). So: flush what is buffered (log handlers, stdout, stderr), then leave."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
