-- depends: 0003_escalation
-- The status page's active list: severity, then age, over active incidents only.
CREATE INDEX incidents_active_page_idx ON incidents (severity, first_seen, id) WHERE status <> 'resolved';
