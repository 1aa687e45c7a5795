DROP FUNCTION ingest_state_v2(text[], text[], timestamptz);
