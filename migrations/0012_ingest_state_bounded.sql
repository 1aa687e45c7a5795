-- depends: 0011_hot_updates
-- ingest_state as in 0010, sending only what the planner needs of an incident's firing members: `firing` names
-- the batch's fingerprints that fire in it (found by the primary key), `firing_count` counts them all (the
-- planner only asks whether any other fires). It sent every firing fingerprint, so each webhook into an
-- incident of 20,000 firing members carried 20,000 of them to the receiver, which built a set of them.
-- A new name, not a new body for ingest_state: a replica of the previous release, still running during a
-- rolling upgrade, reads `firing` as every firing member (given fewer, it would resolve incidents too soon).
-- A later migration can drop ingest_state.
CREATE FUNCTION ingest_state_v2(p_keys text[], p_fingerprints text[], p_reopen_since timestamptz)
RETURNS TABLE (id uuid, incident_key text, status text, severity text, metadata jsonb, flap_count int,
               resolved_at timestamptz, kind text, first_seen timestamptz, reopenable boolean, firing text[],
               firing_count int, member_fingerprints text[], member_statuses text[],
               member_starts timestamptz[], member_resolvers text[])
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    PERFORM count(pg_advisory_xact_lock(h))
    FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(p_keys) AS k ORDER BY 1) AS ordered;

    RETURN QUERY
    WITH latest AS (
        SELECT f.fingerprint, m.incident_id, m.status, m.starts_at, m.resolved_by
        FROM unnest(p_fingerprints) AS f(fingerprint),
        LATERAL (
            SELECT a.incident_id, a.status, a.starts_at, a.resolved_by
            FROM incident_alerts AS a
            WHERE a.fingerprint = f.fingerprint
            ORDER BY a.starts_at DESC, a.last_received_at DESC
            LIMIT 1
        ) AS m
    ), recent AS (
        SELECT r.id
        FROM unnest(p_keys) AS k,
        LATERAL (
            SELECT i.id FROM incidents AS i
            WHERE i.incident_key = k AND i.status = 'resolved' AND i.resolved_at >= p_reopen_since
            ORDER BY i.resolved_at DESC LIMIT 1
        ) AS r
    ), wanted AS (
        SELECT i.id FROM incidents AS i WHERE i.incident_key = any(p_keys) AND i.status <> 'resolved'
        UNION SELECT l.incident_id FROM latest AS l
        UNION SELECT r.id FROM recent AS r
    )
    SELECT i.id, i.incident_key, i.status, i.severity, i.metadata, i.flap_count, i.resolved_at, i.kind,
           i.first_seen,
           i.id IN (SELECT r.id FROM recent AS r),
           coalesce(
               (SELECT array_agg(a.fingerprint) FROM incident_alerts AS a
                WHERE a.incident_id = i.id AND a.fingerprint = any(p_fingerprints) AND a.status = 'firing'),
               '{}'
           ),
           (SELECT count(*) FROM incident_alerts AS a WHERE a.incident_id = i.id AND a.status = 'firing')::int,
           coalesce(g.fingerprints, '{}'), coalesce(g.statuses, '{}'), coalesce(g.starts, '{}'),
           coalesce(g.resolvers, '{}')
    FROM incidents AS i
    LEFT JOIN (
        SELECT l.incident_id, array_agg(l.fingerprint ORDER BY l.fingerprint) AS fingerprints,
               array_agg(l.status ORDER BY l.fingerprint) AS statuses,
               array_agg(l.starts_at ORDER BY l.fingerprint) AS starts,
               array_agg(l.resolved_by ORDER BY l.fingerprint) AS resolvers
        FROM latest AS l GROUP BY l.incident_id
    ) AS g ON g.incident_id = i.id
    WHERE i.id IN (SELECT w.id FROM wanted AS w)
    ORDER BY i.id
    FOR NO KEY UPDATE OF i;
END
$$;
