-- depends: 0006_ingest_state
-- The channels are code (receiver/notify/registry.py) and config: the outbox no longer lists their names, so a
-- new channel needs no migration. A row of a channel the running version lacks is failed by the deliverer.
ALTER TABLE notifications DROP CONSTRAINT notifications_target_type_check;
