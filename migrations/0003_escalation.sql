-- depends: 0002_correlation
-- Escalation timers, silences, and the notification outbox.
ALTER TABLE incidents
    ADD COLUMN next_escalation_at timestamptz,
    ADD COLUMN escalation_anchor_at timestamptz,
    ADD COLUMN escalation_cycle int NOT NULL DEFAULT 0,
    ADD COLUMN silenced_until timestamptz,
    ADD COLUMN silenced_at timestamptz,
    ADD COLUMN silenced_by text,
    ADD COLUMN silence_reason text,
    ADD COLUMN status_before_silence text;

-- Each timer is an index probe, so a tick costs O(due incidents), not O(all).
CREATE INDEX incidents_next_escalation_idx ON incidents (next_escalation_at) WHERE status = 'open';
CREATE INDEX incidents_silenced_until_idx ON incidents (silenced_until) WHERE status = 'silenced';
CREATE INDEX incidents_acknowledged_at_idx ON incidents (acknowledged_at) WHERE status = 'acknowledged';
CREATE INDEX incidents_active_last_seen_idx ON incidents (last_seen) WHERE status <> 'resolved';

-- The outbox: one row per (incident, notification, target), written in the transaction that
-- decides the notification; the unique key makes every page exactly-once across replicas.
CREATE TABLE notifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    notification_key text NOT NULL,
    level int NOT NULL,
    target text NOT NULL,
    target_type text NOT NULL CHECK (target_type IN ('slack', 'webhook')),
    url text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts int NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at timestamptz,
    last_error text,
    UNIQUE (incident_id, notification_key, target)
);
CREATE INDEX notifications_pending_idx ON notifications (next_attempt_at) WHERE status = 'pending';

-- Signed acknowledge links work once.
CREATE TABLE used_links (
    signature text PRIMARY KEY,
    used_at timestamptz NOT NULL
);

-- Settings shared by every replica, such as a generated link-signing secret.
CREATE TABLE settings (
    name text PRIMARY KEY,
    value text NOT NULL
);
