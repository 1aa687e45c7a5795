-- depends: 0008_alertmanager_silences
-- Heartbeats (receiver/heartbeats.py): one row per heartbeat name, the state every replica shares. The config
-- says which names exist and their timings; a row of a name no longer configured is ignored.
CREATE TABLE heartbeats (
    name text PRIMARY KEY,
    -- when its clock last started without a ping: at the first start with it configured, or at a start after
    -- nobody watched it for longer than its grace (receiver/heartbeats.py: the start-up rule)
    clock_at timestamptz NOT NULL,
    last_ping_at timestamptz,                 -- when the last ping arrived (NULL: none yet)
    last_sender text,                         -- alertmanager, grafana, or api (<token name>)
    last_labels jsonb NOT NULL DEFAULT '{}',  -- the last ping's labels, bounded
    pings bigint NOT NULL DEFAULT 0,
    missed_at timestamptz,       -- the deadline it missed: the missed-heartbeat alert's startsAt (NULL: not missed)
    missed_since timestamptz,    -- its last sign of life when it was missed: the gap starts here
    asserted_at timestamptz,     -- when the missed-heartbeat alert was last ingested
    checked_at timestamptz       -- when a replica last checked it
);
