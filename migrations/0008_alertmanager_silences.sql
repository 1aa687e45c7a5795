-- depends: 0007_channels_in_code
-- The Alertmanager silences that mirror incidents' silences (receiver/silences.py): one row per silence we
-- created, kept after it is expired for the page's history. Only these ids are ever expired by the receiver:
-- a silence someone made in Alertmanager is never touched. `expired_at` is set once Alertmanager confirmed the
-- expiry (or no longer knew the silence); `ends_at` is the end we asked for, the incident's silenced_until then.
CREATE TABLE alertmanager_silences (
    silence_id text PRIMARY KEY,
    incident_id uuid NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    peer text NOT NULL,
    matchers jsonb NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    expired_at timestamptz,
    expire_error text  -- why the last attempt to expire it failed (the timeline says it once, not every retry)
);
-- the silences still to expire, per incident: small, rows leave it when expired
CREATE INDEX alertmanager_silences_live_idx ON alertmanager_silences (incident_id, created_at)
    WHERE expired_at IS NULL;
