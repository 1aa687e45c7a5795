"""Fast preloads with set-based SQL (generate_series): history, active incidents. Shapes follow what the
receiver itself writes: incidents, their member alerts and their timeline.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from receiver.config import parse_config

from .payloads import PayloadStream, Workload

OWNER = json.dumps({"name": "default", "targets": []})


def _key_table(conn: psycopg.Connection, workload: Workload) -> int:
    """A temporary table bk(k, incident_key, route, kind, severity, alertname, fps, labels, annotations) of the
    workload's incident keys and their alerts, mapped by the receiver's default rules."""
    config = parse_config("", env={})
    stream = PayloadStream(workload)
    keys: dict[str, dict[str, Any]] = {}
    for a in stream.alerts:
        m = config.map(a.labels)
        entry = keys.setdefault(
            m.incident_key,
            {
                "route": m.route,
                "kind": m.kind,
                "severity": m.severity,
                "alertname": a.labels["alertname"],
                "fps": [],
                "labels": [],
                "annotations": [],
            },
        )
        entry["fps"].append(a.fp)
        entry["labels"].append(json.dumps(a.labels))
        ann = json.loads(a.prefix.split(',"annotations":', 1)[1])
        entry["annotations"].append(json.dumps(ann))
    conn.execute("""CREATE TEMP TABLE bk (k int PRIMARY KEY, incident_key text, route text, kind text, severity text,
                    alertname text, fps text[], labels jsonb[], annotations jsonb[])""")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO bk VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb[], %s::jsonb[])",
            [
                (i, key, e["route"], e["kind"], e["severity"], e["alertname"], e["fps"], e["labels"], e["annotations"])
                for i, (key, e) in enumerate(sorted(keys.items()))
            ],
        )
    return len(keys)


def _drop_indexes(conn: psycopg.Connection, tables: tuple[str, ...]) -> list[str]:
    """Bulk-load mode for this session: no foreign-key triggers, and secondary indexes dropped (rebuilt after,
    which is much faster than maintaining them row by row). Returns the CREATE INDEX statements."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("SET maintenance_work_mem = '256MB'")
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes AS i
        WHERE i.schemaname = 'public' AND i.tablename = any(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS c WHERE c.conname = i.indexname)""",
        (list(tables),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [d for _, d in rows]


def _restore_indexes(conn: psycopg.Connection, definitions: list[str]) -> None:
    for d in definitions:
        conn.execute(d)
    conn.execute("SET session_replication_role = origin")


def history(url: str, workload: Workload, incidents: int, *, log: Any = print) -> dict[str, Any]:
    """`incidents` resolved incidents over the workload's keys (the same keys and fingerprints the load uses),
    one every 30 s ending a day ago, each with 1..instances resolved member alerts and its timeline
    (opened, alert_fired and alert_resolved per member, resolved)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        nkeys = _key_table(conn, workload)
        indexes = _drop_indexes(conn, ("incidents", "incident_alerts", "incident_events"))
        inst = max(1, workload.instances)
        conn.execute(f"""
            CREATE TEMP TABLE h AS
            SELECT g AS n, gen_random_uuid() AS id, g % {nkeys} AS k,
                   now() - interval '1 day' - ({incidents} - g) * interval '30 seconds' AS t0,
                   1 + (g / {nkeys}) % {inst} AS members
            FROM generate_series(0, {incidents} - 1) AS g""")
        conn.execute(
            """
            INSERT INTO incidents (id, incident_key, route, kind, severity, status, first_seen, last_seen,
                                   resolved_at, resolved_by, owner, metadata, mapping_rule, escalation_cycle,
                                   escalation_level, escalation_anchor_at, next_escalation_at)
            SELECT h.id, bk.incident_key, bk.route, bk.kind, bk.severity, 'resolved', h.t0, h.t0 + interval '9 min',
                   h.t0 + interval '10 min', 'alertmanager', %s::jsonb,
                   jsonb_build_object('summary', bk.route || ' ' || bk.kind, 'alerts_received', 2 * h.members,
                                      'last_alertname', bk.alertname),
                   'default', 1, 1, h.t0, NULL
            FROM h JOIN bk USING (k)
            ORDER BY h.n""",
            (OWNER,),
        )
        log(f"history: {incidents} incidents ({time.perf_counter() - started:.0f}s)")
        conn.execute("""
            INSERT INTO incident_alerts (incident_id, fingerprint, status, labels, annotations, starts_at, ends_at,
                                         generator_url, first_received_at, last_received_at, receive_count)
            SELECT h.id, bk.fps[i], 'resolved', bk.labels[i], bk.annotations[i], h.t0, h.t0 + interval '9 min',
                   'http://prometheus.example.com:9090/graph?g0.expr=up', h.t0, h.t0 + interval '9 min', 2
            FROM h JOIN bk USING (k), generate_series(1, h.members) AS i
            ORDER BY h.n, i""")
        log(f"history: members ({time.perf_counter() - started:.0f}s)")
        conn.execute("""
            INSERT INTO incident_events (incident_id, at, type, actor, detail)
            SELECT id, at, type, 'alertmanager', detail FROM (
                SELECT h.n, 0 AS step, h.id, h.t0 AS at, 'opened' AS type,
                       jsonb_build_object('route', bk.route, 'kind', bk.kind, 'severity', bk.severity,
                                          'rule', 'default', 'owner', 'default') AS detail
                FROM h JOIN bk USING (k)
                UNION ALL
                SELECT h.n, i, h.id, h.t0, 'alert_fired',
                       jsonb_build_object('fingerprint', bk.fps[i], 'alertname', bk.alertname, 'starts_at', h.t0)
                FROM h JOIN bk USING (k), generate_series(1, h.members) AS i
                UNION ALL
                SELECT h.n, 10 + i, h.id, h.t0 + interval '9 min', 'alert_resolved',
                       jsonb_build_object('fingerprint', bk.fps[i], 'alertname', bk.alertname, 'starts_at', h.t0,
                                          'ends_at', h.t0 + interval '9 min')
                FROM h JOIN bk USING (k), generate_series(1, h.members) AS i
                UNION ALL
                SELECT h.n, 99, h.id, h.t0 + interval '10 min', 'resolved', '{"reason": "all alerts resolved"}'::jsonb
                FROM h
            ) AS e
            ORDER BY n, step""")
        log(f"history: timeline ({time.perf_counter() - started:.0f}s)")
        _restore_indexes(conn, indexes)
        log(f"history: indexes ({time.perf_counter() - started:.0f}s)")
        conn.execute("VACUUM ANALYZE")
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in ("incidents", "incident_alerts", "incident_events")
        }
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]  # type: ignore[index]
    seconds = time.perf_counter() - started
    log(f"history: done, {counts}, {size}, {seconds:.0f}s")
    return {"rows": counts, "size": size, "seconds": seconds}


def active(
    url: str,
    incidents: int,
    *,
    members: int = 2,
    events: int = 3,
    acknowledged: float = 0.1,
    silenced: float = 0.1,
    log: Any = print,
) -> dict[str, Any]:
    """`incidents` active incidents on distinct keys, none due for escalation, none stale: most open (next level
    due tomorrow), some acknowledged, some silenced until tomorrow; each with firing members and a short timeline."""
    started = time.perf_counter()
    ack_every = max(1, round(1 / acknowledged)) if acknowledged > 0 else 0
    sil_every = max(1, round(1 / silenced)) if silenced > 0 else 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"""
            CREATE TEMP TABLE a AS
            SELECT g AS n, gen_random_uuid() AS id,
                   (ARRAY['GET','POST','PUT','DELETE'])[1 + g % 4] || ' /api/v1/svc' || (g / 40) || '/res' || (g % 10)
                       AS route,
                   (ARRAY['error_rate','latency','slo_violation'])[1 + (g / 10) % 3] AS kind,
                   CASE WHEN g % 3 = 0 THEN 'critical' ELSE 'warning' END AS severity,
                   CASE WHEN {ack_every} > 0 AND g % {ack_every or 1} = 1 THEN 'acknowledged'
                        WHEN {sil_every} > 0 AND g % {sil_every or 1} = 2 THEN 'silenced'
                        ELSE 'open' END AS status,
                   now() - interval '6 hours' + g * interval '100 ms' AS t0
            FROM generate_series(0, {incidents} - 1) AS g""")
        conn.execute(
            """
            INSERT INTO incidents (id, incident_key, route, kind, severity, status, first_seen, last_seen,
                                   acknowledged_by, acknowledged_at, silenced_until, silenced_at, silenced_by,
                                   status_before_silence, owner, metadata, mapping_rule, escalation_cycle,
                                   escalation_level, escalated_at, escalation_anchor_at, next_escalation_at)
            SELECT id, route || '::' || kind, route, kind, severity, status, t0, now() - interval '1 minute',
                   CASE WHEN status = 'acknowledged' THEN 'sre' END,
                   CASE WHEN status = 'acknowledged' THEN now() - interval '1 minute' END,
                   CASE WHEN status = 'silenced' THEN now() + interval '1 day' END,
                   CASE WHEN status = 'silenced' THEN now() - interval '1 minute' END,
                   CASE WHEN status = 'silenced' THEN 'sre' END,
                   CASE WHEN status = 'silenced' THEN 'open' END,
                   %s::jsonb,
                   jsonb_build_object('summary', route || ': ' || kind, 'alerts_received', 3),
                   'default', 1, 1, t0, t0, now() + interval '1 day'
            FROM a ORDER BY n""",
            (OWNER,),
        )
        conn.execute(f"""
            INSERT INTO incident_alerts (incident_id, fingerprint, status, labels, annotations, starts_at, ends_at,
                                         generator_url, first_received_at, last_received_at, receive_count)
            SELECT id, left(md5(n::text || ':' || i), 16), 'firing',
                   jsonb_build_object('alertname', 'Bench', 'route', route, 'instance', 'api-' || i),
                   jsonb_build_object('summary', route || ': ' || kind), t0, NULL, '', t0,
                   now() - interval '1 minute', 3
            FROM a, generate_series(1, {members}) AS i ORDER BY n, i""")
        conn.execute(f"""
            INSERT INTO incident_events (incident_id, at, type, actor, detail)
            SELECT id, t0, CASE WHEN i = 1 THEN 'opened' ELSE 'alert_fired' END, 'alertmanager',
                   jsonb_build_object('step', i)
            FROM a, generate_series(1, {events}) AS i ORDER BY n, i""")
        conn.execute("VACUUM ANALYZE")
        counts = dict(conn.execute("SELECT status, count(*) FROM incidents GROUP BY 1").fetchall())
    seconds = time.perf_counter() - started
    log(f"active: {counts} in {seconds:.0f}s")
    return {"statuses": counts, "seconds": seconds}


def grow(url: str, members: int, events: int) -> str:
    """Make the oldest active incident an alert storm on one key: `members` more member alerts (a third of
    them resolved, ~700 bytes of labels and annotations each) and `events` more timeline events. Its id."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id FROM incidents WHERE status <> 'resolved' ORDER BY first_seen, id LIMIT 1"
        ).fetchone()
        assert row is not None, "no active incident to grow"
        incident_id = row[0]
        conn.execute(
            """
            INSERT INTO incident_alerts (incident_id, fingerprint, status, labels, annotations, starts_at, ends_at,
                                         generator_url, first_received_at, last_received_at, receive_count)
            SELECT %(id)s, 'storm-' || g, CASE WHEN g %% 3 = 0 THEN 'resolved' ELSE 'firing' END,
                   jsonb_build_object('alertname', 'Bench', 'instance', 'web-' || g || '.prod.svc.cluster.local:8080',
                                      'job', 'api', 'namespace', 'production', 'severity', 'warning',
                                      'team', 'notifications', 'pod', 'web-' || g || '-7c9d8f6b5-x2x4z'),
                   jsonb_build_object('summary', 'p99 latency above 2s on web-' || g,
                                      'description', repeat('The p99 latency has been high for ten minutes. ', 4),
                                      'runbook_url', 'https://runbooks.example.com/high-latency'),
                   now() - (g %% 700) * interval '1 second', CASE WHEN g %% 3 = 0 THEN now() END,
                   'http://prometheus.example.com:9090/graph?g0.expr=up', now(), now(), 1
            FROM generate_series(1, %(n)s) AS g""",
            {"id": incident_id, "n": members},
        )
        conn.execute(
            """
            INSERT INTO incident_events (incident_id, at, type, actor, detail)
            SELECT %(id)s, now(), 'alert_fired', 'alertmanager', jsonb_build_object('fingerprint', 'storm-' || g)
            FROM generate_series(1, %(n)s) AS g""",
            {"id": incident_id, "n": events},
        )
        conn.execute("VACUUM ANALYZE incident_alerts, incident_events")
    return str(incident_id)
