-- lock_keys --
-- Serialise webhooks per incident key. Locks are taken in one global order (by hash), so two
-- transactions locking overlapping keys queue instead of deadlocking.
SELECT count(pg_advisory_xact_lock(h))
FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS ordered;

-- latest_members --
-- The latest known instance of each fingerprint, across incidents.
SELECT DISTINCT ON (a.fingerprint) a.fingerprint, a.incident_id, a.status, a.starts_at
FROM incident_alerts AS a
WHERE a.fingerprint = any($1::text[])
ORDER BY a.fingerprint, a.starts_at DESC, a.last_received_at DESC;

-- ingest_incidents --
-- Active incidents of the keys, incidents named by members, and per key the latest incident
-- resolved since $3 (reopen candidates); locked for the rest of the transaction.
WITH recent AS (
    SELECT r.id
    FROM unnest($1::text[]) AS k,
    LATERAL (
        SELECT i.id FROM incidents AS i
        WHERE i.incident_key = k AND i.status = 'resolved' AND i.resolved_at >= $3
        ORDER BY i.resolved_at DESC LIMIT 1
    ) AS r
), wanted AS (
    SELECT id FROM incidents WHERE incident_key = any($1::text[]) AND status <> 'resolved'
    UNION SELECT unnest($2::uuid[])
    UNION SELECT id FROM recent
)
SELECT i.id, i.incident_key, i.status, i.severity, i.metadata, i.flap_count, i.resolved_at,
       i.id IN (SELECT id FROM recent) AS reopenable,
       coalesce(
           (SELECT array_agg(a.fingerprint) FROM incident_alerts AS a
            WHERE a.incident_id = i.id AND a.status = 'firing'),
           '{}'
       ) AS firing
FROM incidents AS i
WHERE i.id IN (SELECT id FROM wanted)
ORDER BY i.id
FOR UPDATE OF i;

-- apply_ingest --
-- Write a correlation plan: new incidents, changed incidents, member alerts and timeline events,
-- in one statement. $1 is now.
WITH new_incidents AS (
    INSERT INTO incidents (id, incident_key, route, kind, severity, status, first_seen, last_seen,
                           owner, metadata, mapping_rule, escalation_cycle, escalation_anchor_at, next_escalation_at)
    SELECT n.id, n.incident_key, n.route, n.kind, n.severity, 'open', $1, $1,
           n.owner::jsonb, n.metadata::jsonb, n.mapping_rule, 1, $1, $1
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
         AS n(id, incident_key, route, kind, severity, owner, metadata, mapping_rule)
), changed AS (
    UPDATE incidents AS i
    SET severity = c.severity,
        status = c.status,
        metadata = c.metadata::jsonb,
        flap_count = c.flap_count,
        last_seen = greatest(i.last_seen, $1),
        resolved_at = CASE WHEN c.status = 'resolved' THEN coalesce(i.resolved_at, $1) END,
        resolved_by = CASE WHEN c.status = 'resolved' THEN coalesce(i.resolved_by, 'alertmanager') END,
        acknowledged_by = CASE WHEN c.clear_ack THEN NULL ELSE i.acknowledged_by END,
        acknowledged_at = CASE WHEN c.clear_ack THEN NULL ELSE i.acknowledged_at END,
        escalation_cycle = i.escalation_cycle + CASE WHEN c.rearm THEN 1 ELSE 0 END,
        escalation_level = CASE WHEN c.rearm THEN 0 ELSE i.escalation_level END,
        escalation_anchor_at = CASE WHEN c.rearm THEN $1 ELSE i.escalation_anchor_at END,
        next_escalation_at = CASE WHEN c.status = 'resolved' THEN NULL WHEN c.rearm THEN $1
                                  ELSE i.next_escalation_at END,
        silenced_until = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL ELSE i.silenced_until END,
        silenced_at = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL ELSE i.silenced_at END,
        status_before_silence = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL
                                     WHEN c.clear_ack AND i.status = 'silenced' THEN 'open'
                                     ELSE i.status_before_silence END
    FROM unnest($10::uuid[], $11::text[], $12::text[], $13::text[], $14::int[], $15::bool[], $16::bool[],
                $17::bool[])
         AS c(id, severity, status, metadata, flap_count, reopened, rearm, clear_ack)
    WHERE i.id = c.id
), members AS (
    INSERT INTO incident_alerts AS a (incident_id, fingerprint, status, labels, annotations, starts_at, ends_at,
                                      generator_url, first_received_at, last_received_at, receive_count)
    SELECT m.incident_id, m.fingerprint, m.status, m.labels::jsonb, m.annotations::jsonb, m.starts_at, m.ends_at,
           m.generator_url, $1, $1, 1
    FROM unnest($18::uuid[], $19::text[], $20::text[], $21::text[], $22::text[], $23::timestamptz[],
                $24::timestamptz[], $25::text[])
         AS m(incident_id, fingerprint, status, labels, annotations, starts_at, ends_at, generator_url)
    ON CONFLICT (incident_id, fingerprint) DO UPDATE
    SET status = excluded.status,
        labels = excluded.labels,
        annotations = excluded.annotations,
        starts_at = excluded.starts_at,
        ends_at = excluded.ends_at,
        generator_url = excluded.generator_url,
        last_received_at = greatest(a.last_received_at, excluded.last_received_at),
        receive_count = a.receive_count + 1
), events AS (
    INSERT INTO incident_events (incident_id, at, type, actor, detail)
    SELECT e.incident_id, $1, e.type, e.actor, e.detail::jsonb
    FROM unnest($26::uuid[], $27::text[], $28::text[], $29::text[]) WITH ORDINALITY
         AS e(incident_id, type, actor, detail, ord)
    ORDER BY e.ord
), resolve_notices AS (
    -- everyone who was paged hears that the incident resolved
    INSERT INTO notifications (incident_id, notification_key, level, target, target_type, url, created_at,
                               next_attempt_at)
    SELECT DISTINCT ON (n.incident_id, n.target)
           n.incident_id, 'c' || i.escalation_cycle || ':resolve', -1, n.target, n.target_type, n.url, $1, $1
    FROM notifications AS n JOIN incidents AS i ON i.id = n.incident_id
    WHERE n.incident_id = any($30::uuid[]) AND n.level >= 0
    ORDER BY n.incident_id, n.target, n.id
    ON CONFLICT (incident_id, notification_key, target) DO NOTHING
)
SELECT 1;

-- list_incidents --
-- Newest first, keyset-paginated on (first_seen, id). Empty filter arrays mean "any".
SELECT i.*,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count
FROM incidents AS i
WHERE i.status = any($1::text[])
  AND (cardinality($2::text[]) = 0 OR i.route = any($2::text[]))
  AND (cardinality($3::text[]) = 0 OR i.kind = any($3::text[]))
  AND (cardinality($4::text[]) = 0 OR i.severity = any($4::text[]))
  AND ($5::timestamptz IS NULL OR (i.first_seen, i.id) < ($5::timestamptz, $6::uuid))
ORDER BY i.first_seen DESC, i.id DESC
LIMIT $7;

-- get_incident --
SELECT i.*,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count
FROM incidents AS i
WHERE i.id = $1;

-- incident_alerts --
SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url,
       first_received_at, last_received_at, receive_count
FROM incident_alerts
WHERE incident_id = $1
ORDER BY status, starts_at DESC, fingerprint;

-- incident_events --
SELECT id, at, type, actor, detail
FROM incident_events
WHERE incident_id = $1
ORDER BY id;

-- applied_migrations --
SELECT migration_id FROM _yoyo_migration;
