-- ingest_state --
-- Lock the keys, then read the incidents to plan with and the latest instance of each fingerprint:
-- one round trip (the function is in migrations/0012_ingest_state_bounded.sql). $3: reopen window start.
SELECT * FROM ingest_state_v2($1::text[], $2::text[], $3::timestamptz);

-- apply_ingest --
-- Write correlation plans in one statement: JSON arrays of records ($1 new incidents, $2 changed incidents,
-- $3 member alerts, $4 timeline events in order, $5 the resolved incidents to send resolve notices for) whose
-- fields are named here and in the store's _plan_records. Each record carries its webhook's time (`at`), so one
-- statement can write the plans of several webhooks of a batch, provided no row is written twice (the store
-- groups them so; the CTEs below do not see each other's rows).
WITH new_incidents AS (
    INSERT INTO incidents (id, incident_key, route, kind, severity, status, first_seen, last_seen,
                           owner, metadata, mapping_rule, escalation_cycle, escalation_anchor_at, next_escalation_at)
    SELECT n.id, n.incident_key, n.route, n.kind, n.severity, 'open', n.at, n.at,
           n.owner, n.metadata, n.mapping_rule, 1, n.at, n.at
    FROM jsonb_to_recordset($1::text::jsonb)
         AS n(id uuid, incident_key text, route text, kind text, severity text, owner jsonb, metadata jsonb,
              mapping_rule text, at timestamptz)
), changed AS (
    UPDATE incidents AS i
    SET severity = c.severity,
        status = c.status,
        metadata = c.metadata,
        flap_count = c.flap_count,
        last_seen = greatest(i.last_seen, c.at),
        resolved_at = CASE WHEN c.status = 'resolved' THEN coalesce(i.resolved_at, c.at) END,
        resolved_by = CASE WHEN c.status = 'resolved' THEN coalesce(i.resolved_by, c.resolved_by, 'alertmanager') END,
        acknowledged_by = CASE WHEN c.clear_ack THEN NULL ELSE i.acknowledged_by END,
        acknowledged_at = CASE WHEN c.clear_ack THEN NULL ELSE i.acknowledged_at END,
        escalation_cycle = i.escalation_cycle + CASE WHEN c.rearm THEN 1 ELSE 0 END,
        escalation_level = CASE WHEN c.rearm THEN 0 ELSE i.escalation_level END,
        escalation_anchor_at = CASE WHEN c.rearm THEN c.at ELSE i.escalation_anchor_at END,
        next_escalation_at = CASE WHEN c.status = 'resolved' THEN NULL WHEN c.rearm THEN c.at
                                  ELSE i.next_escalation_at END,
        silenced_until = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL ELSE i.silenced_until END,
        -- what Alertmanager suppressed is looked at again by the next reconciliation; until then it pages
        suppressed = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL ELSE i.suppressed END,
        silenced_at = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL ELSE i.silenced_at END,
        status_before_silence = CASE WHEN c.reopened OR c.status = 'resolved' THEN NULL
                                     WHEN c.clear_ack AND i.status = 'silenced' THEN 'open'
                                     ELSE i.status_before_silence END
    FROM jsonb_to_recordset($2::text::jsonb)
         AS c(id uuid, severity text, status text, metadata jsonb, flap_count int, reopened bool, rearm bool,
              clear_ack bool, resolved_by text, at timestamptz)
    WHERE i.id = c.id
), members AS (
    INSERT INTO incident_alerts AS a (incident_id, fingerprint, status, labels, annotations, starts_at, ends_at,
                                      generator_url, first_received_at, last_received_at, receive_count,
                                      resolved_by, source)
    SELECT m.incident_id, m.fingerprint, m.status, m.labels, m.annotations, m.starts_at, m.ends_at,
           m.generator_url, m.at, m.at, 1, m.resolved_by, m.source
    FROM jsonb_to_recordset($3::text::jsonb)
         AS m(incident_id uuid, fingerprint text, status text, labels jsonb, annotations jsonb, starts_at timestamptz,
              ends_at timestamptz, generator_url text, resolved_by text, source text, at timestamptz)
    ON CONFLICT (incident_id, fingerprint) DO UPDATE
    SET status = excluded.status,
        resolved_by = excluded.resolved_by,
        source = coalesce(excluded.source, a.source),
        absent_since = NULL,
        labels = excluded.labels,
        annotations = excluded.annotations,
        starts_at = excluded.starts_at,
        ends_at = excluded.ends_at,
        generator_url = excluded.generator_url,
        last_received_at = greatest(a.last_received_at, excluded.last_received_at),
        receive_count = a.receive_count + 1
), events AS (
    INSERT INTO incident_events (incident_id, at, type, actor, detail)
    SELECT e.incident_id, e.at, e.type, e.actor, e.detail
    FROM ROWS FROM (jsonb_to_recordset($4::text::jsonb)
                    AS (incident_id uuid, type text, actor text, detail jsonb, at timestamptz))
         WITH ORDINALITY AS e(incident_id, type, actor, detail, at, ord)
    ORDER BY e.ord
)
SELECT coalesce(sum(queue_resolve_notices(r.ids, r.at)), 0)::int AS queued
FROM (SELECT array_agg(n.id) AS ids, n.at FROM jsonb_to_recordset($5::text::jsonb) AS n(id uuid, at timestamptz)
      GROUP BY n.at) AS r;

-- list_incidents --
-- The read API's list (IncidentView): newest first, keyset-paginated on (first_seen, id). Empty filter arrays
-- mean "any".
SELECT i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.acknowledged_by,
       i.acknowledged_at, i.escalation_level, i.escalated_at, i.owner, i.metadata, i.resolved_at, i.resolved_by,
       i.mapping_rule, i.flap_count, i.next_escalation_at, i.escalation_anchor_at, i.escalation_cycle,
       i.silenced_until, i.silenced_at, i.silenced_by, i.silence_reason, i.status_before_silence,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count,
       i.suppressed
FROM incidents AS i
WHERE i.status = any($1::text[])
  AND (cardinality($2::text[]) = 0 OR i.route = any($2::text[]))
  AND (cardinality($3::text[]) = 0 OR i.kind = any($3::text[]))
  AND (cardinality($4::text[]) = 0 OR i.severity = any($4::text[]))
  AND ($5::timestamptz IS NULL OR (i.first_seen, i.id) < ($5::timestamptz, $6::uuid))
ORDER BY i.first_seen DESC, i.id DESC
LIMIT $7;

-- get_incident --
-- One incident with its member counts (IncidentView).
SELECT i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.acknowledged_by,
       i.acknowledged_at, i.escalation_level, i.escalated_at, i.owner, i.metadata, i.resolved_at, i.resolved_by,
       i.mapping_rule, i.flap_count, i.next_escalation_at, i.escalation_anchor_at, i.escalation_cycle,
       i.silenced_until, i.silenced_at, i.silenced_by, i.silence_reason, i.status_before_silence,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count,
       i.suppressed
FROM incidents AS i
WHERE i.id = $1;

-- incident_alerts_page --
-- One page of an incident's member alerts, firing first, then newest first: keyset after ($2 status,
-- $3 starts_at, $4 fingerprint; $2 NULL for the first page), at most $5 rows and about $6 bytes of labels,
-- annotations and links (the first row always comes, so paging always moves on), whatever the members hold.
-- The sizes are measured only on the $5 rows of the page; page_bytes is the running total, fetched the rows
-- before the byte bound (more than returned: there is a next page).
SELECT fingerprint, status, labels, annotations, starts_at, ends_at, generator_url, first_received_at,
       last_received_at, receive_count, page_bytes, fetched
FROM (
    SELECT p.*, b.bytes, count(*) OVER () AS fetched,
           sum(b.bytes) OVER (ORDER BY p.status, p.starts_at DESC, p.fingerprint ROWS UNBOUNDED PRECEDING)
               AS page_bytes
    FROM (
        SELECT a.fingerprint, a.status, a.labels, a.annotations, a.starts_at, a.ends_at, a.generator_url,
               a.first_received_at, a.last_received_at, a.receive_count
        FROM incident_alerts AS a
        WHERE a.incident_id = $1
          AND ($2::text IS NULL OR a.status > $2 OR (a.status = $2 AND (a.starts_at < $3::timestamptz
               OR (a.starts_at = $3::timestamptz AND a.fingerprint > $4::text))))
        ORDER BY a.status, a.starts_at DESC, a.fingerprint
        LIMIT $5
    ) AS p,
    LATERAL (SELECT octet_length(p.labels::text) + octet_length(p.annotations::text)
                    + octet_length(p.generator_url) AS bytes) AS b
) AS q
WHERE q.page_bytes - q.bytes < $6
ORDER BY q.status, q.starts_at DESC, q.fingerprint;

-- incident_events_page --
-- One page of an incident's timeline, oldest first: ids above $2 (0 for the first page), at most $3 rows and
-- about $4 bytes of detail (the first row always comes).
SELECT id, at, type, actor, detail, page_bytes, fetched
FROM (
    SELECT p.*, b.bytes, count(*) OVER () AS fetched,
           sum(b.bytes) OVER (ORDER BY p.id ROWS UNBOUNDED PRECEDING) AS page_bytes
    FROM (SELECT e.id, e.at, e.type, e.actor, e.detail FROM incident_events AS e
          WHERE e.incident_id = $1 AND e.id > $2 ORDER BY e.id LIMIT $3) AS p,
    LATERAL (SELECT octet_length(p.detail::text) + octet_length(p.actor) + octet_length(p.type) AS bytes) AS b
) AS q
WHERE q.page_bytes - q.bytes < $4
ORDER BY q.id;

-- incident_events_page_desc --
-- The same, newest first: ids below $2.
SELECT id, at, type, actor, detail, page_bytes, fetched
FROM (
    SELECT p.*, b.bytes, count(*) OVER () AS fetched,
           sum(b.bytes) OVER (ORDER BY p.id DESC ROWS UNBOUNDED PRECEDING) AS page_bytes
    FROM (SELECT e.id, e.at, e.type, e.actor, e.detail FROM incident_events AS e
          WHERE e.incident_id = $1 AND e.id < $2 ORDER BY e.id DESC LIMIT $3) AS p,
    LATERAL (SELECT octet_length(p.detail::text) + octet_length(p.actor) + octet_length(p.type) AS bytes) AS b
) AS q
WHERE q.page_bytes - q.bytes < $4
ORDER BY q.id DESC;

-- incident_event_count --
-- How many events the incident's timeline holds.
SELECT count(*) FROM incident_events WHERE incident_id = $1;

-- incident_common_labels --
-- The labels (name and value) every member alert of the incident carries: the first member's labels that no
-- member lacks. Computed here because the page holds only one page of members.
SELECT l.key, l.value
FROM (SELECT a.labels FROM incident_alerts AS a WHERE a.incident_id = $1 LIMIT 1) AS f,
     jsonb_each_text(f.labels) AS l
WHERE NOT EXISTS (SELECT 1 FROM incident_alerts AS a
                  WHERE a.incident_id = $1 AND NOT a.labels @> jsonb_build_object(l.key, l.value));

-- applied_migrations --
-- The ids of the migrations yoyo applied (readiness compares them with the shipped ones).
SELECT migration_id FROM _yoyo_migration;

-- tick_timers --
-- One statement per tick for every timer but escalation: silences that expired (restore the earlier
-- state, shift escalation by the pause), acknowledgements that timed out while alerts still fire
-- (re-arm escalation), incidents no webhook touched since $2 (stale-resolve, notify who was paged).
-- It also says whether escalations or deliveries are due, so an idle tick is this one query.
-- $1 now, $2 stale before, $3 ack before (NULL: no timeout), $4 batch, $5 stale_after seconds,
-- $6 severities whose policy notifies on resolve.
WITH expired_silences AS (
    SELECT id FROM incidents
    WHERE status = 'silenced' AND silenced_until <= $1
    ORDER BY silenced_until LIMIT $4
    FOR NO KEY UPDATE SKIP LOCKED
), unsilenced AS (
    UPDATE incidents AS i
    SET status = coalesce(i.status_before_silence, 'open'),
        escalation_anchor_at = i.escalation_anchor_at + ($1 - i.silenced_at),
        next_escalation_at = i.next_escalation_at + ($1 - i.silenced_at),
        silenced_until = NULL, silenced_at = NULL, silenced_by = NULL, silence_reason = NULL,
        status_before_silence = NULL
    FROM expired_silences AS e
    WHERE i.id = e.id
    RETURNING i.id
), timed_out AS (
    SELECT i.id FROM incidents AS i
    WHERE $3::timestamptz IS NOT NULL AND i.status = 'acknowledged' AND i.acknowledged_at <= $3
      AND EXISTS (SELECT 1 FROM incident_alerts AS a WHERE a.incident_id = i.id AND a.status = 'firing')
    ORDER BY i.acknowledged_at LIMIT $4
    FOR NO KEY UPDATE SKIP LOCKED
), ack_timeouts AS (
    UPDATE incidents AS i
    SET status = 'open', acknowledged_by = NULL, acknowledged_at = NULL,
        escalation_cycle = i.escalation_cycle + 1, escalation_level = 0,
        escalation_anchor_at = $1, next_escalation_at = $1
    FROM timed_out AS t
    WHERE i.id = t.id
    RETURNING i.id
), stale AS (
    SELECT id FROM incidents
    -- last_seen_minute (indexed; <= last_seen) finds the candidates, last_seen decides
    WHERE status <> 'resolved' AND last_seen_minute <= $2 AND last_seen <= $2
      AND id NOT IN (SELECT id FROM expired_silences) AND id NOT IN (SELECT id FROM timed_out)
    ORDER BY last_seen_minute, last_seen LIMIT $4
    FOR NO KEY UPDATE SKIP LOCKED
), stale_resolved AS (
    UPDATE incidents AS i
    SET status = 'resolved', resolved_at = $1, resolved_by = 'receiver', next_escalation_at = NULL,
        silenced_until = NULL, silenced_at = NULL, status_before_silence = NULL
    FROM stale AS s
    WHERE i.id = s.id
    RETURNING i.id, i.kind, i.severity, i.escalation_cycle, i.first_seen
), stale_members AS (
    -- an inferred resolve (correlation.INFERRED_RESOLVERS): the instance re-fired reopens or opens an incident
    UPDATE incident_alerts AS a SET status = 'resolved', resolved_by = 'stale', ends_at = $1
    FROM stale_resolved AS s
    WHERE a.incident_id = s.id AND a.status = 'firing'
), events AS (
    INSERT INTO incident_events (incident_id, at, type, actor, detail)
    SELECT id, $1, 'unsilenced', 'receiver', '{"reason": "silence expired"}'::jsonb FROM unsilenced
    UNION ALL
    SELECT id, $1, 'ack_timeout', 'receiver', '{"reason": "acknowledgement timed out while alerts fire"}'::jsonb
    FROM ack_timeouts
    UNION ALL
    SELECT id, $1, 'stale_resolved', 'receiver',
           jsonb_build_object('reason', 'no webhook touched any member alert', 'stale_after_seconds', $5::int)
    FROM stale_resolved
), notices AS (
    SELECT queue_resolve_notices(
        (SELECT coalesce(array_agg(id), '{}') FROM stale_resolved WHERE severity = any($6::text[])), $1) AS queued
)
SELECT (SELECT count(*) FROM unsilenced)::int AS unsilenced,
       (SELECT count(*) FROM ack_timeouts)::int AS ack_timeouts,
       (SELECT array_agg(ARRAY[kind, severity, extract(epoch FROM $1 - first_seen)::text])
        FROM stale_resolved) AS stale,
       EXISTS (SELECT 1 FROM incidents WHERE status = 'open' AND next_escalation_at <= $1 AND suppressed IS NULL)
           OR EXISTS (SELECT 1 FROM unsilenced) OR EXISTS (SELECT 1 FROM ack_timeouts) AS escalation_due,
       EXISTS (SELECT 1 FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1)
           OR (SELECT queued FROM notices) > 0 AS delivery_due;

-- claim_escalations --
-- Claim open incidents whose escalation timer has passed ($1 now), at most $2, locked for the transaction;
-- other replicas skip them. An incident Alertmanager suppresses (silenced or inhibited there) waits.
SELECT id, severity, escalation_level, escalation_anchor_at, escalation_cycle, owner
FROM incidents
WHERE status = 'open' AND next_escalation_at <= $1 AND suppressed IS NULL
ORDER BY next_escalation_at
LIMIT $2
FOR NO KEY UPDATE SKIP LOCKED;

-- apply_escalations --
-- Write escalation plans: $1 now; JSON arrays of records named here and in the store's _escalation_records:
-- $2 levels and timers, $3 outbox items (the unique key makes a page exactly-once), $4 timeline events.
WITH raised AS (
    UPDATE incidents AS i
    SET escalation_level = u.level,
        escalated_at = CASE WHEN u.level > i.escalation_level THEN $1 ELSE i.escalated_at END,
        next_escalation_at = u.next_at
    FROM jsonb_to_recordset($2::text::jsonb) AS u(id uuid, level int, next_at timestamptz)
    WHERE i.id = u.id
), outbox AS (
    INSERT INTO notifications (incident_id, notification_key, level, target, target_type, url, created_at,
                               next_attempt_at)
    SELECT o.incident_id, o.notification_key, o.level, o.target, o.target_type, o.url, $1, $1
    FROM jsonb_to_recordset($3::text::jsonb)
         AS o(incident_id uuid, notification_key text, level int, target text, target_type text, url text)
    ON CONFLICT (incident_id, notification_key, target) DO NOTHING
), events AS (
    INSERT INTO incident_events (incident_id, at, type, actor, detail)
    SELECT e.incident_id, $1, e.type, 'receiver', e.detail
    FROM jsonb_to_recordset($4::text::jsonb) AS e(incident_id uuid, type text, detail jsonb)
)
SELECT 1;

-- claim_notifications --
-- Lease due outbox rows, each with its incident as it is now (an OutboxItem); `url` is the target's destination.
-- Lease them: other replicas skip them until the lease ends ($3, which outlasts an attempt).
-- The incremented attempt number is the lease's token: record_deliveries writes only under it.
WITH due AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE notifications AS n
SET attempts = n.attempts + 1, next_attempt_at = $1 + $3::interval
FROM due, incidents AS i
WHERE n.id = due.id AND i.id = n.incident_id
RETURNING n.id, n.incident_id, n.notification_key, n.level, n.target, n.target_type, n.url, n.attempts,
          n.created_at, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.resolved_at,
          i.acknowledged_by, i.escalation_level, i.owner ->> 'name' AS owner_name, i.metadata,
          (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
           WHERE a.incident_id = i.id) AS firing_count,
          (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count;

-- record_deliveries --
-- Record delivery outcomes ($2: a JSON array of {id, attempt, status, next_at, error}) and their events.
-- Outcomes are written only by the attempt that holds the row's lease (`attempt`: the number it claimed),
-- so a late outcome never overwrites a newer attempt's; every attempt's event goes on the timeline.
-- Returns how many outcomes were written.
WITH outcome AS (
    UPDATE notifications AS n
    SET status = r.status,
        next_attempt_at = coalesce(r.next_at, n.next_attempt_at),
        delivered_at = CASE WHEN r.status = 'delivered' THEN $1 ELSE n.delivered_at END,
        last_error = r.error
    FROM jsonb_to_recordset($2::text::jsonb) AS r(id bigint, attempt int, status text, next_at timestamptz, error text)
    WHERE n.id = r.id AND n.attempts = r.attempt AND n.status = 'pending'
    RETURNING n.id
), events AS (
    INSERT INTO incident_events (incident_id, at, type, actor, detail)
    SELECT e.incident_id, $1, e.type, 'receiver', e.detail::jsonb
    FROM unnest($3::uuid[], $4::text[], $5::text[]) AS e(incident_id, type, detail)
)
SELECT count(*)::int AS recorded FROM outcome;

-- lock_incident --
-- One incident (Incident), locked for a lifecycle action's transaction.
SELECT i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.acknowledged_by,
       i.acknowledged_at, i.escalation_level, i.escalated_at, i.owner, i.metadata, i.resolved_at, i.resolved_by,
       i.mapping_rule, i.flap_count, i.next_escalation_at, i.escalation_anchor_at, i.escalation_cycle,
       i.silenced_until, i.silenced_at, i.silenced_by, i.silence_reason, i.status_before_silence
FROM incidents AS i WHERE i.id = $1 FOR NO KEY UPDATE;

-- update_lifecycle --
-- Write one incident's lifecycle columns ($2: a JSON record of Lifecycle's fields); returns it as written.
UPDATE incidents AS i
SET status = s.status, acknowledged_by = s.acknowledged_by, acknowledged_at = s.acknowledged_at,
    resolved_at = s.resolved_at, resolved_by = s.resolved_by, silenced_until = s.silenced_until,
    silenced_at = s.silenced_at, silenced_by = s.silenced_by, silence_reason = s.silence_reason,
    status_before_silence = s.status_before_silence, escalation_anchor_at = s.escalation_anchor_at,
    next_escalation_at = s.next_escalation_at
FROM jsonb_to_record($2::text::jsonb)
     AS s(status text, acknowledged_by text, acknowledged_at timestamptz, resolved_at timestamptz, resolved_by text,
          silenced_until timestamptz, silenced_at timestamptz, silenced_by text, silence_reason text,
          status_before_silence text, escalation_anchor_at timestamptz, next_escalation_at timestamptz)
WHERE i.id = $1
RETURNING i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.acknowledged_by,
          i.acknowledged_at, i.escalation_level, i.escalated_at, i.owner, i.metadata, i.resolved_at, i.resolved_by,
          i.mapping_rule, i.flap_count, i.next_escalation_at, i.escalation_anchor_at, i.escalation_cycle,
          i.silenced_until, i.silenced_at, i.silenced_by, i.silence_reason, i.status_before_silence;

-- insert_event --
-- Append one event to an incident's timeline.
INSERT INTO incident_events (incident_id, at, type, actor, detail) VALUES ($1, $2, $3, $4, $5);

-- queue_resolve_notices --
-- Queue resolve notices for one incident (the function is in migrations/0005_resolve_notices.sql).
SELECT queue_resolve_notices(ARRAY[$1::uuid], $2);

-- use_link --
-- Spend a signed link: returns its signature only the first time.
INSERT INTO used_links (signature, used_at) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING signature;

-- link_secret --
-- The secret that signs links, stored by the first replica to start ($1, its candidate).
WITH created AS (
    INSERT INTO settings (name, value) VALUES ('link_signing_secret', $1)
    ON CONFLICT (name) DO NOTHING
    RETURNING value
)
SELECT value FROM created UNION ALL SELECT value FROM settings WHERE name = 'link_signing_secret' LIMIT 1;

-- page_incidents --
-- The status page lists: $1 statuses, $2-$5 filters (empty = any), keyset after ($6, $7, $8), $9 limit.
-- Active incidents sort by severity (critical < warning) then age, oldest first; resolved ones newest first.
-- Both orders match a partial index.
SELECT i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.resolved_at,
       i.escalation_level, i.owner ->> 'name' AS owner_name, i.acknowledged_by, i.silenced_until,
       i.metadata ->> 'summary' AS summary,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count
FROM incidents AS i
WHERE i.status <> 'resolved' AND i.status = any($1::text[])
  AND (cardinality($2::text[]) = 0 OR i.severity = any($2::text[]))
  AND (cardinality($3::text[]) = 0 OR i.route = any($3::text[]))
  AND (cardinality($4::text[]) = 0 OR i.kind = any($4::text[]))
  AND (cardinality($5::text[]) = 0 OR i.owner ->> 'name' = any($5::text[]))
  AND ($6::text IS NULL OR (i.severity, i.first_seen, i.id) > ($6::text, $7::timestamptz, $8::uuid))
ORDER BY i.severity, i.first_seen, i.id
LIMIT $9;

-- page_resolved --
-- The status page's resolved incidents (IncidentSummary): $1-$4 filters (empty = any), keyset before ($5, $6),
-- $7 limit; newest first.
SELECT i.id, i.incident_key, i.route, i.kind, i.severity, i.status, i.first_seen, i.last_seen, i.resolved_at,
       i.escalation_level, i.owner ->> 'name' AS owner_name, i.acknowledged_by, i.silenced_until,
       i.resolved_by, i.metadata ->> 'summary' AS summary,
       (SELECT count(*) FILTER (WHERE a.status = 'firing') FROM incident_alerts AS a
        WHERE a.incident_id = i.id) AS firing_count,
       (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id) AS alert_count
FROM incidents AS i
WHERE i.status = 'resolved'
  AND (cardinality($1::text[]) = 0 OR i.severity = any($1::text[]))
  AND (cardinality($2::text[]) = 0 OR i.route = any($2::text[]))
  AND (cardinality($3::text[]) = 0 OR i.kind = any($3::text[]))
  AND (cardinality($4::text[]) = 0 OR i.owner ->> 'name' = any($4::text[]))
  AND ($5::timestamptz IS NULL OR (i.resolved_at, i.id) < ($5::timestamptz, $6::uuid))
ORDER BY i.resolved_at DESC, i.id DESC
LIMIT $7;

-- page_counts --
-- Active incidents counted by severity and status, for the status page's header.
SELECT severity, status, count(*)::int AS n
FROM incidents
WHERE status <> 'resolved'
GROUP BY severity, status;

-- active_incidents --
-- Active incidents counted by status, severity and kind for the metrics, with the oldest open one's first_seen
-- (Unix time): one scan, which the partial indexes on status <> 'resolved' keep off the resolved history.
SELECT status, severity, kind, NULL::text AS route, count(*)::int AS n,
       extract(epoch FROM min(first_seen) FILTER (WHERE status = 'open'))::float8 AS oldest_open
FROM incidents
WHERE status <> 'resolved'
GROUP BY status, severity, kind;

-- active_incidents_by_route --
-- The same and, in the same scan (GROUPING SETS), the counts by route: those rows have a NULL status.
SELECT status, severity, kind, route, count(*)::int AS n,
       extract(epoch FROM min(first_seen) FILTER (WHERE status = 'open'))::float8 AS oldest_open
FROM incidents
WHERE status <> 'resolved'
GROUP BY GROUPING SETS ((status, severity, kind), (route));

-- ping --
-- The cheapest statement: is the database there?
SELECT 1;

-- schema_columns --
-- The schema snapshot (receiver/schema.py): every column of the receiver's tables ($1: tables left out), in order,
-- with its table's storage options.
SELECT c.relname AS table_name, a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       CASE a.attidentity WHEN 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                          WHEN 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY' END AS identity,
       a.attgenerated = 's' AS generated, array_to_string(c.reloptions, ', ') AS table_options
FROM pg_class AS c
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' AND c.relname <> all($1::text[])
ORDER BY c.relname, a.attnum;

-- schema_constraints --
-- The schema snapshot: every constraint of the receiver's tables ($1: tables left out), by table and name.
SELECT c.relname AS table_name, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint AS k
JOIN pg_class AS c ON c.oid = k.conrelid
WHERE c.relnamespace = current_schema()::regnamespace AND c.relname <> all($1::text[])
  AND k.contype <> 'n'  -- NOT NULL (a constraint row since PostgreSQL 18) is on the column
ORDER BY c.relname, k.conname;

-- schema_indexes --
-- The schema snapshot: the indexes no constraint makes ($1: tables left out), by table and name.
SELECT t.relname AS table_name, i.relname AS name, pg_get_indexdef(i.oid) AS definition
FROM pg_index AS x
JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS t ON t.oid = x.indrelid
WHERE t.relnamespace = current_schema()::regnamespace AND t.relname <> all($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = x.indexrelid AND k.conrelid = t.oid)
ORDER BY t.relname, i.relname;

-- schema_functions --
-- The schema snapshot: the receiver's SQL functions with their full definitions, by name and arguments.
SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_get_functiondef(p.oid) AS definition
FROM pg_proc AS p
WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind = 'f'
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid);

-- schema_triggers --
-- The schema snapshot: triggers on the receiver's tables ($1: tables left out), by table and name.
SELECT c.relname AS table_name, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition
FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal AND c.relname <> all($1::text[])
ORDER BY c.relname, t.tgname;

-- incident_firing_labels --
-- The label sets of one incident's ($1) firing members, at most $2: what its Alertmanager silence covers.
SELECT labels FROM incident_alerts WHERE incident_id = $1 AND status = 'firing' ORDER BY fingerprint LIMIT $2;

-- other_incident_labels --
-- The label sets of every member alert (firing or resolved) of every active incident but $1 whose alertname is
-- one of $2 ('' for none), at most $3: what an Alertmanager silence for incident $1 must not match.
SELECT a.labels
FROM incidents AS i JOIN incident_alerts AS a ON a.incident_id = i.id
WHERE i.status <> 'resolved' AND i.id <> $1 AND coalesce(a.labels ->> 'alertname', '') = any($2::text[])
LIMIT $3;

-- record_alertmanager_silences --
-- Keep the Alertmanager silences made for incident $1 at $2 ($3: a JSON array of {silence_id, peer, matchers,
-- created_by, ends_at}) and append the timeline events ($4: a JSON array of {type, actor, detail}), in order.
WITH kept AS (
    INSERT INTO alertmanager_silences (silence_id, incident_id, peer, matchers, created_by, created_at, ends_at)
    SELECT s.silence_id, $1, s.peer, s.matchers, s.created_by, $2, s.ends_at
    FROM jsonb_to_recordset($3::text::jsonb)
         AS s(silence_id text, peer text, matchers jsonb, created_by text, ends_at timestamptz)
    ON CONFLICT (silence_id) DO NOTHING
)
INSERT INTO incident_events (incident_id, at, type, actor, detail)
SELECT $1, $2, e.type, e.actor, e.detail
FROM ROWS FROM (jsonb_to_recordset($4::text::jsonb) AS (type text, actor text, detail jsonb))
     WITH ORDINALITY AS e(type, actor, detail, n)
ORDER BY e.n;

-- alertmanager_silences_to_expire --
-- The Alertmanager silences we made that must end now ($1), of incident $2 (NULL: any), at most $3, oldest
-- first, with why: their incident is no longer silenced here, its silence here ends sooner, or a newer silence
-- replaced them. Silences past their end are marked expired on the way (Alertmanager ended them itself).
WITH ended AS (
    UPDATE alertmanager_silences SET expired_at = ends_at
    WHERE expired_at IS NULL AND ends_at <= $1 AND ($2::uuid IS NULL OR incident_id = $2)
)
SELECT s.silence_id, s.incident_id, s.peer,
       CASE WHEN i.status = 'resolved' THEN 'the incident resolved'
            WHEN i.status <> 'silenced' THEN 'the incident was unsilenced'
            WHEN s.ends_at > i.silenced_until THEN 'the silence here ends sooner'
            ELSE 'replaced by a newer silence' END AS why
FROM alertmanager_silences AS s JOIN incidents AS i ON i.id = s.incident_id
WHERE s.expired_at IS NULL AND s.ends_at > $1 AND ($2::uuid IS NULL OR s.incident_id = $2)
  AND (i.status <> 'silenced' OR s.ends_at > i.silenced_until
       OR EXISTS (SELECT 1 FROM alertmanager_silences AS n
                  WHERE n.incident_id = s.incident_id AND n.expired_at IS NULL AND n.created_at > s.created_at))
ORDER BY s.created_at, s.silence_id
LIMIT $3;

-- record_alertmanager_expiries --
-- Mark Alertmanager silences expired at $1 ($2: a JSON array of {silence_id, why}) and say so on each
-- incident's timeline (actor $3), once: a silence another replica marked first adds no event.
WITH done AS (
    UPDATE alertmanager_silences AS s SET expired_at = $1, expire_error = NULL
    FROM jsonb_to_recordset($2::text::jsonb) AS x(silence_id text, why text)
    WHERE s.silence_id = x.silence_id AND s.expired_at IS NULL
    RETURNING s.incident_id, s.silence_id, x.why
)
INSERT INTO incident_events (incident_id, at, type, actor, detail)
SELECT incident_id, $1, 'alertmanager_silence_expired', $3,
       jsonb_build_object('silences', jsonb_agg(silence_id ORDER BY silence_id), 'reason', why)
FROM done GROUP BY incident_id, why;

-- record_alertmanager_expiry_failures --
-- Note why expiring Alertmanager silences failed at $1 ($2: a JSON array of {silence_id, error}); the timeline
-- (actor $3) says it when a silence's expiry first fails, not at every retry.
WITH before AS (
    SELECT s.silence_id, s.incident_id, s.expire_error, x.error
    FROM alertmanager_silences AS s JOIN jsonb_to_recordset($2::text::jsonb) AS x(silence_id text, error text)
         ON x.silence_id = s.silence_id
    WHERE s.expired_at IS NULL
    FOR UPDATE OF s
), noted AS (
    UPDATE alertmanager_silences AS s SET expire_error = b.error FROM before AS b WHERE s.silence_id = b.silence_id
)
INSERT INTO incident_events (incident_id, at, type, actor, detail)
SELECT incident_id, $1, 'alertmanager_silence_expiry_failed', $3,
       jsonb_build_object('silences', jsonb_agg(silence_id ORDER BY silence_id), 'reason', min(error),
                          'retry', 'every reconcile interval until Alertmanager answers')
FROM before WHERE expire_error IS NULL GROUP BY incident_id;

-- incident_alertmanager_silences --
-- The Alertmanager silences made for incident $1, newest first, at most $2.
SELECT silence_id, peer, matchers, created_by, created_at, ends_at, expired_at, expire_error
FROM alertmanager_silences WHERE incident_id = $1
ORDER BY created_at DESC, silence_id
LIMIT $2;

-- last_alertmanager_silence_attempt --
-- The newest alertmanager_silenced or alertmanager_silence_failed event of incident $1: did the latest attempt
-- to silence its alerts in Alertmanager fail?
SELECT type, detail FROM incident_events
WHERE incident_id = $1 AND type IN ('alertmanager_silenced', 'alertmanager_silence_failed')
ORDER BY id DESC
LIMIT 1;

-- register_heartbeats --
-- At start ($1), for each configured heartbeat ($2 names, $3 their grace in seconds): a row whose clock starts
-- now, or, for an existing row that no replica checked for longer than its grace (the receiver was down, so
-- pings sent meanwhile were lost, not missed), its clock restarts now (receiver/heartbeats.py: the start-up rule).
WITH wanted AS (
    SELECT w.name, w.grace FROM unnest($2::text[], $3::float8[]) AS w(name, grace)
), restarted AS (
    UPDATE heartbeats AS h
    SET clock_at = greatest(h.clock_at, $1::timestamptz)
    FROM wanted AS w
    WHERE h.name = w.name AND (h.checked_at IS NULL OR h.checked_at < $1::timestamptz - w.grace * interval '1 second')
    RETURNING h.name
)
INSERT INTO heartbeats (name, clock_at)
SELECT w.name, $1::timestamptz FROM wanted AS w
WHERE w.name NOT IN (SELECT name FROM heartbeats)
ON CONFLICT (name) DO NOTHING;

-- record_pings --
-- Pings arriving at $1 ($2: a JSON array of {name, sender, labels}, one per heartbeat, locked in name order): the
-- last ping only moves forward; a heartbeat without a row yet starts with this ping. Returns each heartbeat's
-- missed_at (not NULL: it was missed, and the next check resolves its incident).
INSERT INTO heartbeats AS h (name, clock_at, last_ping_at, last_sender, last_labels, pings)
SELECT p.name, $1, $1, p.sender, p.labels, 1
FROM jsonb_to_recordset($2::text::jsonb) AS p(name text, sender text, labels jsonb)
ORDER BY p.name
ON CONFLICT (name) DO UPDATE
SET last_ping_at = greatest(h.last_ping_at, excluded.last_ping_at),
    last_sender = CASE WHEN h.last_ping_at > excluded.last_ping_at THEN h.last_sender ELSE excluded.last_sender END,
    last_labels = CASE WHEN h.last_ping_at > excluded.last_ping_at THEN h.last_labels ELSE excluded.last_labels END,
    pings = h.pings + 1
RETURNING h.name, h.missed_at;

-- check_heartbeats --
-- The state of the heartbeats $2 (HeartbeatState) for one check at $1, noting that a replica watched them then.
UPDATE heartbeats
SET checked_at = greatest(checked_at, $1)
WHERE name = any($2::text[])
RETURNING name, clock_at, last_ping_at, last_sender, last_labels, pings, missed_at, missed_since, asserted_at,
          checked_at;

-- heartbeats --
-- The state of the heartbeats $1 (HeartbeatState), for the API, the page and the metrics.
SELECT name, clock_at, last_ping_at, last_sender, last_labels, pings, missed_at, missed_since, asserted_at,
       checked_at
FROM heartbeats
WHERE name = any($1::text[]);

-- mark_heartbeat_missed --
-- Heartbeat $2 missed its deadline $3 (silent since $4), and its missed-heartbeat alert was ingested at $1.
-- Only the first mark counts (another replica may have marked it already).
UPDATE heartbeats SET missed_at = $3, missed_since = $4, asserted_at = $1
WHERE name = $2 AND missed_at IS NULL;

-- assert_heartbeat_missed --
-- The missed-heartbeat alert of heartbeat $2 (deadline $3) was ingested again at $1.
UPDATE heartbeats SET asserted_at = $1 WHERE name = $2 AND missed_at = $3;

-- clear_heartbeat_missed --
-- Heartbeat $1 pinged again after missing deadline $2, and its alert was resolved: healthy again.
UPDATE heartbeats SET missed_at = NULL, missed_since = NULL, asserted_at = NULL
WHERE name = $1 AND missed_at = $2;

-- claim_reconcile_lease --
-- Take the lease $1 for holder $2 at $3 until $4, if it is free (its lease ended) and its last run started at
-- or before $5: one reconciliation at a time across replicas, and one per interval. Returns a row when taken.
INSERT INTO reconcile_leases AS l (name, holder, started_at, lease_until) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, started_at = excluded.started_at, lease_until = excluded.lease_until
WHERE l.lease_until <= $3 AND l.started_at <= $5
RETURNING l.started_at;

-- release_reconcile_lease --
-- End lease $1 of holder $2 at $3 (its start stays, so the next run still waits for the interval).
UPDATE reconcile_leases SET lease_until = $3 WHERE name = $1 AND holder = $2 AND lease_until > $3;

-- reconcile_members --
-- Every firing member of every active incident, with what reconciliation compares: where its webhooks came from
-- (source), since when no Alertmanager peer listed it (absent_since), and the incident's suppression. No labels:
-- decoding 10,000 label sets would hold the event loop; `reconcile_member_alerts` reads those it resolves.
SELECT a.incident_id, a.fingerprint, a.starts_at, a.source, a.absent_since, i.suppressed
FROM incidents AS i JOIN incident_alerts AS a ON a.incident_id = i.id
WHERE i.status <> 'resolved' AND a.status = 'firing';

-- reconcile_member_alerts --
-- The stored alert of members ($1 incident ids, $2 fingerprints) that reconciliation resolves.
SELECT a.incident_id, a.fingerprint, a.labels, a.annotations, a.generator_url, a.starts_at
FROM unnest($1::uuid[], $2::text[]) AS x(incident_id, fingerprint)
JOIN incident_alerts AS a ON a.incident_id = x.incident_id AND a.fingerprint = x.fingerprint;

-- mark_absence --
-- Members no peer lists ($2 incident ids, $3 fingerprints) become absent since $1, unless already; members
-- listed again ($4, $5) are absent no more. Only rows that change are written.
WITH absent AS (
    UPDATE incident_alerts AS a SET absent_since = $1
    FROM unnest($2::uuid[], $3::text[]) AS x(incident_id, fingerprint)
    WHERE a.incident_id = x.incident_id AND a.fingerprint = x.fingerprint AND a.status = 'firing'
      AND a.absent_since IS NULL
), present AS (
    UPDATE incident_alerts AS a SET absent_since = NULL
    FROM unnest($4::uuid[], $5::text[]) AS x(incident_id, fingerprint)
    WHERE a.incident_id = x.incident_id AND a.fingerprint = x.fingerprint AND a.absent_since IS NOT NULL
)
SELECT 1;

-- unseen_instances --
-- Of the instances ($1 fingerprints, $2 startsAt), those never seen: no member has that fingerprint with that
-- startsAt or a later one, except an instance whose resolve was inferred (stale timer, reconciliation).
SELECT x.fingerprint, x.starts_at
FROM unnest($1::text[], $2::timestamptz[]) AS x(fingerprint, starts_at)
WHERE NOT EXISTS (
    SELECT 1 FROM incident_alerts AS a
    WHERE a.fingerprint = x.fingerprint AND a.starts_at >= x.starts_at
      AND NOT (a.starts_at = x.starts_at AND a.status = 'resolved' AND a.resolved_by IN ('stale', 'reconciler'))
);

-- set_suppressed --
-- Record what Alertmanager suppresses ($2: a JSON array of {id, suppressed}; suppressed NULL: nothing), at $1,
-- for active incidents where it changed, with a timeline event each (actor $3). Suppression keeps its `since`
-- across changes of which silences; when it ends, escalation timers move on by the pause, as after a silence.
WITH x AS (
    SELECT * FROM jsonb_to_recordset($2::text::jsonb) AS x(id uuid, suppressed jsonb)
), changed AS (
    UPDATE incidents AS i
    SET suppressed = CASE WHEN x.suppressed IS NULL THEN NULL
                          ELSE x.suppressed || jsonb_build_object('since', coalesce(i.suppressed -> 'since',
                                                                                    to_jsonb($1::timestamptz))) END,
        escalation_anchor_at = CASE WHEN x.suppressed IS NULL AND i.suppressed IS NOT NULL
                                    THEN i.escalation_anchor_at + ($1 - (i.suppressed ->> 'since')::timestamptz)
                                    ELSE i.escalation_anchor_at END,
        next_escalation_at = CASE WHEN x.suppressed IS NULL AND i.suppressed IS NOT NULL
                                  THEN i.next_escalation_at + ($1 - (i.suppressed ->> 'since')::timestamptz)
                                  ELSE i.next_escalation_at END
    FROM x
    WHERE i.id = x.id AND i.status <> 'resolved'
      AND (i.suppressed - 'since') IS DISTINCT FROM x.suppressed
    RETURNING i.id, x.suppressed
)
INSERT INTO incident_events (incident_id, at, type, actor, detail)
SELECT c.id, $1, CASE WHEN c.suppressed IS NULL THEN 'unsuppressed' ELSE 'suppressed' END, $3,
       coalesce(c.suppressed, '{"reason": "no firing alert is silenced or inhibited in Alertmanager any more"}')
FROM changed AS c
RETURNING incident_id, type;
