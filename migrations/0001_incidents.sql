-- The incidents table of the original schema: every column, default and index.
CREATE TABLE incidents (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    incident_key text NOT NULL,
    route text NOT NULL,
    kind text NOT NULL,
    severity text NOT NULL,
    status text NOT NULL DEFAULT 'open',
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    acknowledged_by text,
    acknowledged_at timestamptz,
    escalation_level int NOT NULL DEFAULT 0,
    escalated_at timestamptz,
    owner jsonb,
    metadata jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX incidents_incident_key_idx ON incidents (incident_key);
CREATE INDEX incidents_status_idx ON incidents (status);
CREATE INDEX incidents_route_kind_idx ON incidents (route, kind);
