-- depends: 0004_status_page
-- Everyone who was paged about an incident hears that it resolved: one outbox row per target, keyed by
-- the escalation cycle so a reopened incident's next resolve is announced again. Used by ingest, the
-- tick (stale resolves) and manual resolves, so it lives in one place.
CREATE FUNCTION queue_resolve_notices(p_ids uuid[], p_now timestamptz) RETURNS int
LANGUAGE sql VOLATILE AS $$
    WITH queued AS (
        INSERT INTO notifications (incident_id, notification_key, level, target, target_type, url, created_at,
                                   next_attempt_at)
        SELECT DISTINCT ON (n.incident_id, n.target)
               n.incident_id, 'c' || i.escalation_cycle || ':resolve', -1, n.target, n.target_type, n.url,
               p_now, p_now
        FROM notifications AS n JOIN incidents AS i ON i.id = n.incident_id
        WHERE n.incident_id = any(p_ids) AND n.level >= 0
        ORDER BY n.incident_id, n.target, n.id
        ON CONFLICT (incident_id, notification_key, target) DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::int FROM queued
$$;
