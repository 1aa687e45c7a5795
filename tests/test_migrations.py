"""The schema migrations (receiver.database.migrate / rollback_all) on a real PostgreSQL.

Each test makes its own empty database on the session's server (`pg_admin_url`), so the order of
migrations, their rollbacks and yoyo's lock are exercised from scratch, not from the shared template.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from receiver import schema
from receiver.database import migrate, migration_ids, rollback_all
from receiver.store import QUERIES
from tests.helpers import with_database

ROOT = Path(__file__).resolve().parent.parent

# The incidents table of the original schema: column -> (type, nullable, default as PostgreSQL shows it).
# None in the nullable slot means "not specified by the original schema".
ORIGINAL_COLUMNS: dict[str, tuple[str, bool | None, str | None]] = {
    "id": ("uuid", False, "gen_random_uuid()"),
    "incident_key": ("text", None, None),
    "route": ("text", None, None),
    "kind": ("text", None, None),
    "severity": ("text", False, None),
    "status": ("text", False, "'open'::text"),
    "first_seen": ("timestamp with time zone", False, "now()"),
    "last_seen": ("timestamp with time zone", False, "now()"),
    "acknowledged_by": ("text", True, None),
    "acknowledged_at": ("timestamp with time zone", True, None),
    "escalation_level": ("integer", False, "0"),
    "escalated_at": ("timestamp with time zone", True, None),
    "owner": ("jsonb", True, None),
    "metadata": ("jsonb", False, "'{}'::jsonb"),
}

# yoyo's own bookkeeping; everything else in the schema belongs to the receiver.
YOYO_TABLES = {"_yoyo_migration", "_yoyo_log", "_yoyo_version", "yoyo_lock"}


@pytest.fixture
def empty_db(pg_admin_url: str) -> Iterator[str]:
    """A new, empty database (no migrations applied); dropped after the test."""
    name = f"receiver_mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def columns(url: str, table: str = "incidents") -> dict[str, tuple[str, bool, str | None]]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type, is_nullable = 'YES', column_default FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        ).fetchall()
    return {name: (dtype, nullable, default) for name, dtype, nullable, default in rows}


def indexes(url: str, table: str = "incidents") -> list[dict[str, Any]]:
    """Every index on `table`: its name, key columns in order, uniqueness, primary-ness and predicate."""
    with connect(url) as conn:
        rows = conn.execute(
            """
            SELECT c.relname,
                   ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         ORDER BY k.n),
                   i.indisunique, i.indisprimary, pg_get_expr(i.indpred, i.indrelid)
            FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = %s::regclass
            """,
            (table,),
        ).fetchall()
    return [
        {"name": name, "columns": tuple(cols), "unique": unique, "primary": primary, "predicate": predicate}
        for name, cols, unique, primary, predicate in rows
    ]


def receiver_relations(url: str) -> list[str]:
    """Tables, views, sequences, indexes and types left in the schema that are not yoyo's own."""
    with connect(url) as conn:
        rels = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema()"
        ).fetchall()
        types = conn.execute(
            "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'd', 'r', 'm')"
        ).fetchall()
    names = [r[0] for r in rels] + [t[0] for t in types]
    return sorted(n for n in names if not any(n == t or n.startswith(f"{t}_") for t in YOYO_TABLES))


def applied_ids(url: str) -> list[str]:
    with connect(url) as conn:
        return sorted(r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration").fetchall())


def schema_snapshot(url: str) -> dict[str, Any]:
    """Enough of the receiver's schema to compare two applications of the migrations."""
    with connect(url) as conn:
        cols = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " ORDER BY table_name, column_name"
        ).fetchall()
        idx = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " ORDER BY tablename, indexname"
        ).fetchall()
        cons = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2"
        ).fetchall()
    return {"columns": cols, "indexes": idx, "constraints": cons}


def assert_original_schema(url: str) -> None:
    cols = columns(url)
    missing = set(ORIGINAL_COLUMNS) - set(cols)
    assert not missing, f"incidents lacks columns {sorted(missing)}"
    for name, (dtype, nullable, default) in ORIGINAL_COLUMNS.items():
        got_type, got_nullable, got_default = cols[name]
        assert got_type == dtype, f"incidents.{name} is {got_type}, expected {dtype}"
        if nullable is not None:
            assert got_nullable == nullable, f"incidents.{name} nullable={got_nullable}, expected {nullable}"
        assert got_default == default, f"incidents.{name} default {got_default!r}, expected {default!r}"

    idx = indexes(url)
    assert any(i["primary"] and i["columns"] == ("id",) for i in idx), f"no primary key on id: {idx}"
    for key in [("incident_key",), ("status",), ("route", "kind")]:
        plain = [i for i in idx if i["columns"] == key and not i["unique"] and i["predicate"] is None]
        assert plain, f"no plain index on incidents {key}: {idx}"
    active = [
        i
        for i in idx
        if i["columns"] == ("incident_key",) and i["unique"] and i["predicate"] == "(status <> 'resolved'::text)"
    ]
    assert len(active) == 1, f"expected one partial unique index on incident_key WHERE status <> 'resolved': {idx}"

    # The same, as pg_indexes spells it (what an operator would look at).
    with connect(url) as conn:
        defs = [
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'incidents'"
            ).fetchall()
        ]
    assert any(
        d.startswith("CREATE UNIQUE INDEX") and d.endswith("(incident_key) WHERE (status <> 'resolved'::text)")
        for d in defs
    ), defs


def insert_incident(conn: psycopg.Connection[Any], key: str, status: str = "open") -> None:
    conn.execute(
        "INSERT INTO incidents (incident_key, route, kind, severity, status) VALUES (%s, %s, %s, %s, %s)",
        (key, "GET /x", "latency", "warning", status),
    )


# --- tests ----------------------------------------------------------------------------------------------


def test_migration_files_come_in_pairs() -> None:
    directory = ROOT / "migrations"
    forward = sorted(p.name for p in directory.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    assert forward, "no migrations found"
    for name in forward:
        assert (directory / name.replace(".sql", ".rollback.sql")).is_file(), f"{name} has no rollback"
    assert migration_ids() == [n.removesuffix(".sql") for n in forward]


def test_migrate_creates_the_original_schema(empty_db: str) -> None:
    applied = migrate(empty_db)
    assert applied == migration_ids()
    assert applied_ids(empty_db) == migration_ids()
    assert_original_schema(empty_db)
    # A second run has nothing to do.
    assert migrate(empty_db) == []


def test_defaults_fill_an_incident(empty_db: str) -> None:
    migrate(empty_db)
    with connect(empty_db) as conn:
        insert_incident(conn, "k")
        row = conn.execute(
            "SELECT id, status, first_seen, last_seen, escalation_level, metadata, owner, acknowledged_by,"
            " first_seen <= now() FROM incidents"
        ).fetchone()
    assert row is not None
    id_, status, first_seen, last_seen, level, metadata, owner, acked_by, past = row
    assert isinstance(id_, uuid.UUID)
    assert (status, level, metadata, owner, acked_by) == ("open", 0, {}, None, None)
    assert first_seen is not None and first_seen == last_seen and past


def test_one_active_incident_per_key(empty_db: str) -> None:
    migrate(empty_db)
    with connect(empty_db) as conn:
        insert_incident(conn, "a")
        with pytest.raises(errors.UniqueViolation):
            insert_incident(conn, "a")
        # Any status but resolved counts as active.
        with pytest.raises(errors.UniqueViolation):
            insert_incident(conn, "a", status="acknowledged")
        # Resolved history does not conflict, with the active one or with itself.
        insert_incident(conn, "a", status="resolved")
        insert_incident(conn, "a", status="resolved")
        # Other keys are independent.
        insert_incident(conn, "b")
        counts = conn.execute(
            "SELECT incident_key, status, count(*) FROM incidents GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        assert counts == [("a", "open", 1), ("a", "resolved", 2), ("b", "open", 1)]
        # Once the active one resolves, a new one may open.
        conn.execute("UPDATE incidents SET status = 'resolved' WHERE incident_key = 'a' AND status = 'open'")
        insert_incident(conn, "a")


def test_rollback_all_then_migrate_again(empty_db: str) -> None:
    migrate(empty_db)
    first = schema_snapshot(empty_db)

    rollback_all(empty_db)
    assert receiver_relations(empty_db) == []
    assert applied_ids(empty_db) == []

    assert migrate(empty_db) == migration_ids()
    assert_original_schema(empty_db)
    assert schema_snapshot(empty_db) == first

    # And once more, so that rollbacks of a re-applied schema work too.
    rollback_all(empty_db)
    assert receiver_relations(empty_db) == []


def test_rollback_all_with_data(empty_db: str) -> None:
    migrate(empty_db)
    with connect(empty_db) as conn:
        insert_incident(conn, "a")
        insert_incident(conn, "a", status="resolved")
    rollback_all(empty_db)
    assert receiver_relations(empty_db) == []


def test_concurrent_migrate_in_threads_applies_once(empty_db: str) -> None:
    barrier = threading.Barrier(2)
    results: list[list[str]] = []
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(migrate(empty_db))
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "migrate hung"
    assert not failures, failures
    # One of them applied everything, the other found nothing pending.
    assert sorted(results, key=len) == [[], migration_ids()]
    assert applied_ids(empty_db) == migration_ids()
    with connect(empty_db) as conn:
        applies = conn.execute(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY 1 ORDER BY 1"
        ).fetchall()
        locks = conn.execute("SELECT count(*) FROM yoyo_lock").fetchone()
    assert applies == [(m, 1) for m in migration_ids()]
    assert locks == (0,), "the migration lock was left behind"
    assert_original_schema(empty_db)


def test_concurrent_receiver_migrate_processes(empty_db: str, tmp_path: Path) -> None:
    """Two replicas are two processes: `receiver migrate` twice at once, against DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECEIVER_")}
    env.update(DATABASE_URL=empty_db, RECEIVER_DATA_DIR=str(tmp_path / "unused"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "receiver", "migrate"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"receiver migrate failed ({p.returncode}):\n{out}\n{err}"
        outputs.append(out.strip())
    assert sorted(outputs) == sorted([f"applied: {', '.join(migration_ids())}", "the database is up to date"])
    assert applied_ids(empty_db) == migration_ids()
    assert not (tmp_path / "unused").exists(), "an embedded PostgreSQL was started despite DATABASE_URL"
    assert_original_schema(empty_db)


def test_schema_snapshot_is_what_the_migrations_produce(empty_db: str) -> None:
    """migrations/snapshot/schema.sql equals the schema of a freshly migrated database."""
    migrate(empty_db)
    produced = asyncio.run(schema.dump(empty_db))
    snapshot = (ROOT / "migrations" / "snapshot" / "schema.sql").read_text(encoding="utf-8")
    assert produced == snapshot, (
        "migrations/snapshot/schema.sql is out of date: python -m receiver.schema > migrations/snapshot/schema.sql"
    )
    # the snapshot's own checks: every table and function of the migrations is in it, nothing of yoyo's is
    for table in ("incidents", "incident_alerts", "incident_events", "notifications", "settings", "used_links"):
        assert f"CREATE TABLE {table} (" in snapshot
    for function in ("ingest_state", "ingest_state_v2", "queue_resolve_notices"):
        assert f"FUNCTION public.{function}(" in snapshot
    assert "yoyo" not in snapshot


def test_schema_dump_sees_a_new_column(empty_db: str) -> None:
    """The snapshot check can fail: a change the migrations did not make shows in the dump."""
    migrate(empty_db)
    before = asyncio.run(schema.dump(empty_db))
    with connect(empty_db) as conn:
        conn.execute("ALTER TABLE incidents ADD COLUMN snapshot_probe text")
        conn.execute("CREATE INDEX snapshot_probe_idx ON incidents (snapshot_probe)")
    after = asyncio.run(schema.dump(empty_db))
    assert before != after
    assert "    snapshot_probe text" in after and "CREATE INDEX snapshot_probe_idx ON" in after


def test_every_named_query_says_what_it_does() -> None:
    """Each named query in receiver/store/queries.sql opens with a one-line description, procrastinate style:
    `-- name --` then `-- what it does`."""
    text = (ROOT / "receiver" / "store" / "queries.sql").read_text(encoding="utf-8")
    lines = text.splitlines()
    names = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.fullmatch(r"-- (\w+) --", line))]
    assert names and [n for _, n in names] == list(QUERIES)
    undescribed = [name for i, name in names if i + 1 >= len(lines) or not re.fullmatch(r"-- \S.{9,}", lines[i + 1])]
    assert not undescribed, f"named queries without a description: {undescribed}"
