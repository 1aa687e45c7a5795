"""The fixed ceiling: a minimal correct correlation in raw asyncpg that never changes with the receiver.

`python -m bench.yardstick --db URL --concurrency N ...` runs the bench's payload stream through it and prints
one JSON result. Per payload, one transaction (BEGIN, one or two statements, COMMIT):

1. set-based, one statement: upsert one active incident per incident key that has a firing alert, on the
   partial unique index (one open incident per key); upsert the firing alerts by fingerprint into it (a stale
   firing, older than the instance known, changes nothing); mark the resolved alerts resolved;
3. only when the payload resolved something: resolve the incidents it touched that have no firing alert left.

No timeline, no reopen window, no severity, no escalation: far less than the receiver does, on purpose, so
that it is a fixed yardstick. Its tables are its own (`yardstick_*`), created here, so the receiver's
migrations never move it. The incident key is "<method> <path>::<alertname>", from the labels. The payloads
are decoded (json.loads, the arrays built) in this process before each transaction, as a client must.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

import asyncpg

from .loadgen import drive
from .payloads import add_load_arguments, stream_from

SCHEMA = """
CREATE TABLE IF NOT EXISTS yardstick_incidents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_key text NOT NULL,
    status text NOT NULL,
    opened_at timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS yardstick_incidents_open ON yardstick_incidents (incident_key)
    WHERE status = 'open';
CREATE TABLE IF NOT EXISTS yardstick_alerts (
    fingerprint text PRIMARY KEY,
    incident_id bigint NOT NULL,
    status text NOT NULL,
    labels jsonb NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz,
    receive_count bigint NOT NULL DEFAULT 1,
    last_received_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS yardstick_alerts_incident ON yardstick_alerts (incident_id) WHERE status = 'firing';
"""

# Serialize payloads per incident key, locks taken in one global order (without it, a payload resolving an
# alert and one firing into the same incident lock alert and incident rows in opposite orders: deadlocks).
LOCK = """
SELECT count(pg_advisory_xact_lock(h))
FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS ordered
"""

# $1 fingerprints, $2 keys, $3 statuses, $4 labels (JSON text), $5 starts, $6 ends; sorted by key, then
# fingerprint, so that concurrent payloads take their row locks in one order.
CORRELATE = """
WITH p AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
        WITH ORDINALITY AS p(fp, key, status, labels, starts_at, ends_at, ord)
), inc AS (
    INSERT INTO yardstick_incidents AS i (incident_key, status, opened_at, last_seen)
    SELECT DISTINCT ON (key) key, 'open', now(), now() FROM p WHERE status = 'firing' ORDER BY key
    ON CONFLICT (incident_key) WHERE status = 'open' DO UPDATE SET last_seen = excluded.last_seen
    RETURNING i.id, i.incident_key
), fired AS (
    INSERT INTO yardstick_alerts AS a (fingerprint, incident_id, status, labels, starts_at, ends_at,
                                       last_received_at)
    SELECT p.fp, inc.id, 'firing', p.labels::jsonb, p.starts_at, p.ends_at, now()
    FROM p JOIN inc ON inc.incident_key = p.key
    WHERE p.status = 'firing'
    ORDER BY p.ord
    ON CONFLICT (fingerprint) DO UPDATE
    SET incident_id = excluded.incident_id, status = 'firing', labels = excluded.labels,
        starts_at = excluded.starts_at, ends_at = excluded.ends_at, receive_count = a.receive_count + 1,
        last_received_at = excluded.last_received_at
    WHERE a.starts_at <= excluded.starts_at
    RETURNING a.incident_id
), resolved AS (
    UPDATE yardstick_alerts AS a
    SET status = 'resolved', ends_at = p.ends_at, receive_count = a.receive_count + 1, last_received_at = now()
    FROM p
    WHERE p.status = 'resolved' AND a.fingerprint = p.fp AND a.starts_at <= p.starts_at
    RETURNING a.incident_id
)
SELECT coalesce(array_agg(DISTINCT incident_id), '{}') FROM resolved
"""

RESOLVE_QUIET = """
UPDATE yardstick_incidents AS i SET status = 'resolved', resolved_at = now()
WHERE i.id = any($1::bigint[]) AND i.status = 'open'
  AND NOT EXISTS (SELECT 1 FROM yardstick_alerts AS a WHERE a.incident_id = i.id AND a.status = 'firing')
"""


def _time(value: str) -> datetime | None:
    if value.startswith("0001-"):
        return None
    # Alertmanager's nanoseconds: keep microseconds
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def decode(body: bytes) -> tuple[list[Any], ...]:
    """A webhook as CORRELATE's arrays, sorted by incident key, then fingerprint."""
    rows = []
    for a in json.loads(body)["alerts"]:
        labels = a["labels"]
        key = f"{labels.get('method', '')} {labels.get('path', '')}::{labels.get('alertname', '')}"
        rows.append((key, a["fingerprint"], a["status"], json.dumps(labels), _time(a["startsAt"]), _time(a["endsAt"])))
    rows.sort(key=lambda r: (r[0], r[1]))
    return (
        [r[1] for r in rows],
        [r[0] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(args.db)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(args.db, min_size=args.concurrency, max_size=args.concurrency)
    retries = 0

    async def work(body: bytes) -> int:
        nonlocal retries
        arrays = decode(body)
        for _ in range(5):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.fetchval(LOCK, arrays[1])
                    touched = await conn.fetchval(CORRELATE, *arrays)
                    if touched:
                        await conn.execute(RESOLVE_QUIET, touched)
                return 200
            except (
                asyncpg.DeadlockDetectedError,
                asyncpg.UniqueViolationError,
                asyncpg.SerializationError,
            ):  # two payloads racing for one new incident: again
                retries += 1
        return 503

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
    result.extra["retries"] = retries
    return result.as_dict()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.yardstick")
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["extra"]["wall_seconds"] = time.perf_counter() - started
    print(json.dumps(result), file=sys.stdout)


if __name__ == "__main__":
    main()
