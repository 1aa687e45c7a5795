DROP INDEX incidents_active_page_idx;
