-- depends: 0001_incidents
-- What correlation needs: the lifecycle columns, one active incident per key (race-free by the
-- database), the member alerts, and the timeline.
ALTER TABLE incidents
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text,
    ADD COLUMN mapping_rule text NOT NULL DEFAULT 'default',
    ADD COLUMN flap_count int NOT NULL DEFAULT 0,
    ADD CONSTRAINT incidents_status_check
        CHECK (status IN ('open', 'acknowledged', 'silenced', 'resolved')),
    ADD CONSTRAINT incidents_severity_check CHECK (severity IN ('warning', 'critical'));

CREATE UNIQUE INDEX incidents_active_key_uniq ON incidents (incident_key) WHERE status <> 'resolved';
-- Reopen-window lookups and the resolved history list, newest first.
CREATE INDEX incidents_resolved_idx ON incidents (incident_key, resolved_at DESC) WHERE status = 'resolved';
CREATE INDEX incidents_resolved_at_idx ON incidents (resolved_at DESC, id) WHERE status = 'resolved';
CREATE INDEX incidents_first_seen_idx ON incidents (first_seen DESC, id);

CREATE TABLE incident_alerts (
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    fingerprint text NOT NULL,
    status text NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels jsonb NOT NULL,
    annotations jsonb NOT NULL DEFAULT '{}',
    starts_at timestamptz NOT NULL,
    ends_at timestamptz,
    generator_url text NOT NULL DEFAULT '',
    first_received_at timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    receive_count bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (incident_id, fingerprint)
);
-- The latest instance of a fingerprint, across incidents: stale-firing detection.
CREATE INDEX incident_alerts_fingerprint_idx ON incident_alerts (fingerprint, starts_at DESC);

CREATE TABLE incident_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    type text NOT NULL,
    actor text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incident_events_incident_idx ON incident_events (incident_id, id);
