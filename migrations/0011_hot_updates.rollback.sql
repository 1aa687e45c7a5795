ALTER TABLE incident_alerts RESET (fillfactor);
ALTER TABLE incidents RESET (fillfactor);
DROP INDEX incidents_active_last_seen_minute_idx;
CREATE INDEX incidents_active_last_seen_idx ON incidents (last_seen) WHERE status <> 'resolved';
ALTER TABLE incidents DROP COLUMN last_seen_minute;
