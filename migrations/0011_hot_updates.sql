-- depends: 0010_reconcile
-- Let ingest update its hot rows in place (HOT: no new index entries, no index bloat). A webhook for an open
-- incident rewrites that incident's row (last_seen, metadata, ...) and each member alert's row. PostgreSQL
-- updates a row in place only when no indexed column changed and the page has room for the new version:
-- - incidents.last_seen moved on every webhook and was indexed (the stale timer's index), so every such update
--   wrote a new entry into each of the table's indexes. The stale timer now finds its candidates by
--   last_seen_minute (last_seen rounded down to the minute, maintained by PostgreSQL), which changes at most
--   once a minute per incident; the timer still compares last_seen itself.
-- - fillfactor leaves room on each page for the next versions of its rows. It applies to pages written from
--   now on; existing pages get it as they are rewritten (VACUUM FULL rewrites them all, if wanted).
ALTER TABLE incidents
    ADD COLUMN last_seen_minute timestamptz
        GENERATED ALWAYS AS (date_bin('1 minute', last_seen, timestamptz '2000-01-01 00:00:00+00')) STORED;
DROP INDEX incidents_active_last_seen_idx;
CREATE INDEX incidents_active_last_seen_minute_idx ON incidents (last_seen_minute) WHERE status <> 'resolved';
ALTER TABLE incidents SET (fillfactor = 50);
ALTER TABLE incident_alerts SET (fillfactor = 70);
