-- ops/bench/lib/profile-floor.sql — used by ops/bench/profile (pgbench -f).
-- One transaction of this script = the catalog statements one durable ping
-- makes on the worker side today (docs/profile.md lists them with their
-- functions), in the same order, on the real catalog tables, back to back on
-- one connection (or a new one per job with pgbench -C): the floor the
-- engine is measured against. Taken out: the pool's per-connection SETs and
-- the extra connections (the -C run shows what one connection per job
-- costs). The relay's read and stamp run once per job here (the worker
-- batches them), so this floor is, if anything, slow.
-- Variables: tmin, tmax (tenant ids; tmax = 0: pings without a tenant).
\set tid random(:tmin, greatest(:tmin, :tmax))
-- The job row (adopted path: store::adopt; catalog path: the CLI's enqueue).
\if :tmax > 0
INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, origin, last_published_at)
VALUES (gen_random_uuid(), 'ping', 'maintenance', :tid, '{}', 'queued', 3, 'adopted', now()) RETURNING id AS job \gset
\else
INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, origin, last_published_at)
VALUES (gen_random_uuid(), 'ping', 'maintenance', NULL, '{}', 'queued', 3, 'adopted', now()) RETURNING id AS job \gset
\endif
-- store::get
SELECT j.*, t.slug FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id WHERE j.id = ':job';
\if :tmax > 0
-- TenantLock::try_acquire
SELECT pg_try_advisory_lock(19532, :tid), pg_backend_pid();
\endif
-- store::claim
UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = 'floor', claim_token = gen_random_uuid(),
       lease_expires_at = now() + make_interval(secs => 30), started_at = now(), updated_at = now(), progress = NULL
 WHERE id = ':job' AND status IN ('queued', 'retrying') AND run_at <= now()
 RETURNING claim_token \gset
\if :tmax > 0
-- store::tenant_of
SELECT id, slug, name, plan, status, isolation, db_server, db_name, settings FROM tenants WHERE id = :tid;
-- sessions::fence_out (on its own new connection to the server today)
SELECT pid, application_name FROM pg_stat_activity
 WHERE datname = 'prof_t1' AND application_name LIKE 'landlord/%' AND application_name <> 'floor' AND pid <> pg_backend_pid();
\endif
-- sessions::end_attempt (on its own new connection to each server today)
WITH mine AS MATERIALIZED (SELECT pid FROM pg_stat_activity WHERE application_name = 'landlord/ping/floor' AND pid <> pg_backend_pid())
SELECT pid FROM mine, LATERAL pg_cancel_backend(pid);
\if :tmax > 0
-- TenantLock::still_held (Executor::record)
SELECT pg_backend_pid() = pg_backend_pid() AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
   AND pid = pg_backend_pid() AND classid = 19532::int::oid AND objid = :tid::int::oid AND objsubid = 2 AND granted);
\endif
-- store::complete: the row, the job.succeeded event in the outbox
BEGIN;
UPDATE jobs SET status = 'succeeded', result = '{"pong": true}', finished_at = now(), updated_at = now(),
       lease_owner = NULL, lease_expires_at = NULL, last_error = NULL
 WHERE id = ':job' AND lease_owner = 'floor' AND claim_token = ':claim_token' AND status = 'running';
\if :tmax > 0
SELECT slug FROM tenants WHERE id = :tid;
\endif
INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id)
VALUES ('events', 'job.succeeded', '{"type": "job.succeeded", "job_id": "x"}', gen_random_uuid()::text, ':job')
RETURNING id AS outbox_id \gset
COMMIT;
\if :tmax > 0
-- TenantLock::release
SELECT pg_advisory_unlock(19532, :tid);
\endif
-- relay::relay_once (batched by the worker; once per job here)
BEGIN;
SELECT o.id, o.exchange, o.routing_key, o.payload, o.message_id, o.job_id, j.trace_parent
  FROM outbox o LEFT JOIN jobs j ON j.id = o.job_id
 WHERE o.published_at IS NULL AND o.available_at <= now() AND o.id = :outbox_id
 ORDER BY o.available_at, o.id LIMIT 200 FOR UPDATE OF o SKIP LOCKED;
UPDATE outbox SET published_at = now(), publish_attempts = publish_attempts + 1 WHERE id = ANY(ARRAY[:outbox_id]::bigint[]);
COMMIT;
