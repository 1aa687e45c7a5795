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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config
from .database import default_data_dir, embedded_postgres, migrate, redact
from .ingest.alertmanager import PayloadError, parse_body

log = logging.getLogger("receiver")


def _config(path: str | None) -> Config:
    path = path or os.environ.get("RECEIVER_CONFIG") or None
    return load_config(path)


@contextlib.contextmanager
def database_url(config: Config, data_dir: str | None) -> Iterator[str]:
    """DATABASE_URL (or database.url_env/url_file) when set, else an embedded PostgreSQL."""
    if config.database.url is not None:
        yield config.database.url.value
        return
    directory = Path(data_dir or os.environ.get("RECEIVER_DATA_DIR") or config.data_dir or default_data_dir())
    log.info("DATABASE_URL is not set: starting an embedded PostgreSQL, data in %s", directory / "pgdata")
    with embedded_postgres(directory) as url:
        yield url


def _migrate_with_retry(url: str, deadline_seconds: float = 60.0) -> list[str]:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return migrate(url)
        except Exception as e:  # the database may still be starting
            if time.monotonic() > deadline:
                raise
            log.warning("database not ready for migrations (%s); retrying", type(e).__name__)
            time.sleep(1)


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
    with database_url(config, args.data_dir) as url:
        log.info("database: %s", redact(url))
        if not args.no_migrate:
            applied = _migrate_with_retry(url)
            log.info("migrations applied: %s", ", ".join(applied) or "none pending")
        if config.webhook.token is None and config.webhook.basic_auth is None:
            log.warning("the webhook accepts unauthenticated requests; set RECEIVER_WEBHOOK_TOKEN to require a token")
        app = create_app(config, url)
        log.info("receiver %s listening on http://%s:%d (webhook: POST /webhook)", __version__, host, port)
        asyncio.run(serve(app, app[DRAIN], host, port, args.shutdown_timeout))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _config(args.config)
    with database_url(config, args.data_dir) as url:
        applied = _migrate_with_retry(url)
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
        results.append({"labels": labels, "rule": m.rule, "route": m.route, "kind": m.kind,
                        "severity": m.severity, "incident_key": m.incident_key, "owner": m.owner})
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

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
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
    serve.add_argument("--shutdown-timeout", type=float, default=10.0,
                       help="seconds to let requests in flight finish on SIGTERM")
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
    hp.add_argument("--stdin", action="store_true", help="read the password from standard input")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The embedded server and yoyo narrate every step at INFO; their warnings still show.
    for noisy in ("embedded_postgres", "yoyo"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # While the database is down, asyncpg's pool retries its minimum size with a full traceback each time.
    logging.getLogger("asyncpg.pool").addFilter(one_line_errors)
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        return int(args.func(args))
    except ConfigError as e:
        for error in e.errors:  # every error of the file, one line each
            print(f"receiver: configuration error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
