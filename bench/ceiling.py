"""The database ceilings: the receiver's ingest work with no HTTP, run in their own process.

`python -m bench.ceiling ingestor ...`  "Ingestor without HTTP": for every payload,
    `Ingestor(config, Store(pool, ...)).ingest(parse_body(body), now)` -- the receiver's own parse, mapping,
    planner and SQL, one transaction per payload, N payloads in flight, built as receiver/app.py builds them
    (default config: pool size, max_ingest_transactions).

`python -m bench.ceiling record ...`   runs the same Ingestor once (untimed) through a pool proxy that
    captures every statement `Store.ingest` sends (the named queries ingest_state and apply_ingest, with
    their exact arguments), in commit order, to a file.

`python -m bench.ceiling replay ...`   "raw SQL ceiling": replays that capture on a fresh database with
    asyncpg: the same statements with the same arguments, one transaction per payload, N connections
    and N transactions in flight, and no Python work between statements (no parsing, mapping or
    planning). `--ordered` (the default) keeps the commit order per incident key, which is what makes
    the replay write exactly what the receiver wrote; unrelated payloads run concurrently.
    `--free` drops that order (after the first payload), for storms of payloads that all update the
    same incidents: the transactions then queue on the database's locks, as concurrent writers do.

Each prints one JSON result on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from receiver.config import parse_config
from receiver.database import create_pool
from receiver.ingest.alertmanager import parse_body
from receiver.ingest.service import Ingestor
from receiver.store import Store, StoreUnavailable
from receiver.timeutil import utcnow

from .loadgen import Result, drive
from .payloads import add_load_arguments, stream_from

# (incident keys, alert count) of the payload being ingested by the current task
_payload: contextvars.ContextVar[tuple[list[str], int]] = contextvars.ContextVar("payload")


class _ConnProxy:
    """Forwards to an asyncpg connection and records every statement sent with arguments."""

    def __init__(self, conn: Any):
        self._conn = conn
        self.statements: list[tuple[str, str, tuple[Any, ...]]] = []

    def transaction(self, *a: Any, **kw: Any) -> Any:
        return self._conn.transaction(*a, **kw)

    def _recorded(self, method: str) -> Any:
        real = getattr(self._conn, method)

        async def call(query: str, *args: Any, **kw: Any) -> Any:
            self.statements.append((method, query, args))
            return await real(query, *args, **kw)

        return call

    def __getattr__(self, name: str) -> Any:
        if name in ("fetch", "fetchval", "fetchrow", "execute", "executemany"):
            return self._recorded(name)
        return getattr(self._conn, name)


class _Acquire:
    def __init__(self, owner: CapturingPool, cm: Any):
        self.owner, self.cm = owner, cm
        self.proxy: _ConnProxy | None = None

    async def __aenter__(self) -> _ConnProxy:
        self.proxy = _ConnProxy(await self.cm.__aenter__())
        return self.proxy

    async def __aexit__(self, et: Any, e: Any, tb: Any) -> Any:
        result = await self.cm.__aexit__(et, e, tb)
        if et is None and self.proxy is not None and self.proxy.statements:
            # the transaction committed just before: commit order
            keys, alerts = _payload.get(([], 0))
            self.owner.log.append({"keys": keys, "alerts": alerts, "statements": self.proxy.statements})
        return result


class CapturingPool:
    """An asyncpg pool whose connections record what is sent through them, for `Store(pool)`."""

    def __init__(self, pool: Any):
        self._pool = pool
        self.log: list[dict[str, Any]] = []

    def acquire(self, *a: Any, **kw: Any) -> _Acquire:
        return _Acquire(self, self._pool.acquire(*a, **kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


class _OneByOne:
    """In place of the Ingestor's batcher: each webhook in its own transaction, in the caller's task."""

    def __init__(self, store: Store, config: Any):
        self.store, self.config = store, config

    async def submit(self, w: Any, *, source: str | None = None) -> Any:
        return await self.store.ingest(
            w.alerts,
            w.mappings,
            w.now,
            reopen_window_start=w.reopen_window_start,
            external_url=w.external_url,
            owner_snapshot=w.owner_snapshot,
            actor=w.actor,
            event_detail=w.event_detail,
            source=source,
            resolve_notice_severities=self.config.escalation.resolve_notice_severities,
        )


def _store_options(config: Any) -> dict[str, Any]:
    """The options receiver/app.py passes to Store(...), so that this row is the receiver minus HTTP."""
    options = {}
    if hasattr(config.database, "max_ingest_transactions"):
        options["max_ingest_transactions"] = config.database.max_ingest_transactions
    return options


async def _ingestor_work(args: argparse.Namespace, capture: bool) -> tuple[Result, list[dict[str, Any]]]:
    config = parse_config("", env={})
    pool_size = args.pool or config.database.pool_max
    pool = await create_pool(args.db, min_size=min(config.database.pool_min, pool_size), max_size=pool_size)
    capturing = CapturingPool(pool) if capture else None
    store = Store(capturing if capturing is not None else pool, **_store_options(config))  # type: ignore[arg-type]
    ingestor = Ingestor(config, store)
    if capturing is not None:
        # the recording is of one transaction per payload (Store.ingest, what the batcher's writes equal), so
        # that the replay ceiling stays one transaction per payload
        ingestor.batcher = _OneByOne(store, config)  # type: ignore[assignment]

    async def work(body: bytes) -> int:
        notification = parse_body(body)
        if capturing is not None:
            keys = sorted({ingestor.map(a.labels).incident_key for a in notification.alerts})
            _payload.set((keys, len(notification.alerts)))
        try:
            await ingestor.ingest(notification, utcnow())
        except StoreUnavailable:
            return 503
        return 200

    cpu = time.process_time()
    try:
        result = await drive(
            work,
            stream_from(args),
            concurrency=args.concurrency,
            duration=args.duration,
            max_requests=args.max_requests,
            warmup=args.warmup,
        )
    finally:
        await pool.close()
    result.extra["cpu_s"] = time.process_time() - cpu
    result.extra["pool_size"] = pool_size
    return result, capturing.log if capturing is not None else []


async def _replay(args: argparse.Namespace) -> Result:
    with open(args.recording, "rb") as f:
        entries: list[dict[str, Any]] = pickle.load(f)
    n = len(entries)
    deps: list[list[int]] = []
    last: dict[str, int] = {}
    for i, e in enumerate(entries):
        if args.free:
            deps.append([0] if i else [])
        else:
            deps.append(sorted({last[k] for k in e["keys"] if k in last}))
            for k in e["keys"]:
                last[k] = i
    done = [asyncio.Event() for _ in range(n)]
    pool = await create_pool(args.db, min_size=args.concurrency, max_size=args.concurrency)

    async def work(i: int) -> int:
        try:
            for d in deps[i]:
                await done[d].wait()
            status = 200
            try:
                async with pool.acquire() as conn, conn.transaction():
                    for method, query, qargs in entries[i]["statements"]:
                        await getattr(conn, method)(query, *qargs)
            except Exception as e:  # counted as a failed "request", like a 503
                print(f"replay {i}: {type(e).__name__}: {e}", file=sys.stderr)
                status = 503
            return status
        finally:
            done[i].set()

    items = ((i, int(e["alerts"])) for i, e in enumerate(entries))
    cpu = time.process_time()
    try:
        result = await drive(
            work, items, concurrency=args.concurrency, duration=args.duration, max_requests=n, warmup=args.warmup
        )
    finally:
        await pool.close()
    result.extra["cpu_s"] = time.process_time() - cpu
    result.extra["recorded_payloads"] = n
    result.extra["mode"] = "free" if args.free else "ordered"
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("mode", choices=("ingestor", "record", "replay"))
    add_load_arguments(parser)
    parser.add_argument("--pool", type=int, default=0, help="pool size (ingestor/record; default: the receiver's)")
    parser.add_argument("--recording", type=Path)
    parser.add_argument("--free", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.mode == "replay":
        result = asyncio.run(_replay(args))
    else:
        result, log = asyncio.run(_ingestor_work(args, capture=args.mode == "record"))
        if args.mode == "record":
            with open(args.recording, "wb") as f:
                pickle.dump(log, f, protocol=pickle.HIGHEST_PROTOCOL)
            result.extra["recorded_payloads"] = len(log)
    result.extra["wall_seconds"] = time.perf_counter() - started
    print(json.dumps(result.as_dict()))


if __name__ == "__main__":
    main()
