-- The console's jobs list filtered by status pages newest first on the id
-- (`store::page`: WHERE status = $1 [AND id < $before] ORDER BY id DESC LIMIT 50).
-- Without it the list walks the primary key backwards past every job of
-- another status (ops/bench/console, 1M jobs: 25,000 rows for the first 50
-- dead ones); with it, each page is a range of this index.
CREATE INDEX jobs_status_id ON jobs (status, id);
