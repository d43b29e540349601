-- The console's jobs list filtered by creation time (`/ui/jobs?since=…&until=…`)
-- walks this index backwards: newest first inside the window, keyset on
-- (created_at, id) for the next page.
CREATE INDEX jobs_created ON jobs (created_at, id);
