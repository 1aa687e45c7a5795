DROP FUNCTION queue_resolve_notices(uuid[], timestamptz);
