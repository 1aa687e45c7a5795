DROP FUNCTION ingest_state(text[], text[], timestamptz);
