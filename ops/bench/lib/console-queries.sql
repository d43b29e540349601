-- ops/bench/console: every catalog query the console's overview, tenants
-- list, jobs list and tenant page run, with their SQL text as in the source
-- (src/ui/queries.rs, src/runtime/store.rs `page`, src/backup/catalog.rs
-- `complete_of`, src/tenants.rs `find`, src/ui/session.rs), each PREPAREd
-- with the same $n parameters sqlx binds and EXPLAINed with representative
-- values. Keep the text here in step with the source.
--
-- psql variables (ops/bench/console sets them):
--   now          the catalog's now() as the page reads it (timestamptz)
--   slug, tid    one active tenant with jobs, backups and audit entries
--   search       a search term of the tenants table
--   deep_offset  the OFFSET of a deep page of the tenants table
--   before       a job id (the jobs list's second page of dead jobs)
-- Run once with plan_cache_mode = force_custom_plan (what the first five
-- executions of a prepared statement get) and once with force_generic_plan
-- (what a pooled connection may switch to after that); each EXPLAIN is
-- preceded by a line "== NAME" that the script's flagger reads.

\set ON_ERROR_STOP 1

-- ---------------------------------------------------------- every page
PREPARE session_find(bytea) AS
  SELECT scope, actor, csrf_token FROM ui_sessions WHERE id_sha256 = $1 AND expires_at > now();
PREPARE catalog_now AS SELECT now();

-- ------------------------------------------------------------ overview
PREPARE tenants_by_status AS
  SELECT status AS "label!", count(*) AS "n!" FROM tenants GROUP BY status ORDER BY status;
PREPARE jobs_per_minute(timestamptz) AS
  SELECT date_trunc('minute', finished_at) AS "minute!", status AS "status!", count(*) AS "n!"
           FROM jobs WHERE finished_at IS NOT NULL AND finished_at > $1::timestamptz - interval '60 minutes'
           GROUP BY 1, 2 ORDER BY 1;
PREPARE queue_depths(text[], bigint) AS
  SELECT q.name AS "queue!",
                  (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = q.name
                       AND status IN ('queued', 'retrying') LIMIT $2) w) AS "waiting!",
                  (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = q.name
                       AND status = 'running' LIMIT $2) r) AS "running!",
                  (SELECT min(run_at) FROM jobs WHERE queue = q.name
                       AND status IN ('queued', 'retrying') AND run_at <= now()) AS oldest_due
           FROM unnest($1::text[]) AS q(name) ORDER BY q.name;
PREPARE dead_count(timestamptz) AS
  SELECT count(*) AS "n!" FROM jobs WHERE status = 'dead' AND finished_at > $1::timestamptz - interval '24 hours';
PREPARE dead_list(timestamptz, bigint) AS
  SELECT j.id, j.kind, t.slug AS "tenant?", j.finished_at, j.last_error
           FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id
           WHERE j.status = 'dead' AND j.finished_at > $1::timestamptz - interval '24 hours'
           ORDER BY j.finished_at DESC LIMIT $2;
PREPARE scheduler_leader AS
  SELECT a.pid AS "pid!", host(a.client_addr) AS client, a.application_name AS application,
                  a.backend_start AS since
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.objid::text::bigint = (hashtext('landlord-scheduler-leader')::bigint & 4294967295)
             AND l.classid::text::bigint = ((hashtext('landlord-scheduler-leader')::bigint >> 32) & 4294967295)
           LIMIT 1;
PREPARE last_firings(text[]) AS
  SELECT f.schedule AS "schedule!", f.fire_at AS "fire_at!", f.status AS "status!",
                  f.jobs AS "jobs!", f.skipped AS "skipped!", f.leader, f.finished_at
           FROM unnest($1::text[]) AS s(name)
           JOIN LATERAL (SELECT * FROM schedule_firings WHERE schedule = s.name
                         ORDER BY fire_at DESC LIMIT 1) f ON true;
PREPARE stale_count(timestamptz) AS
  SELECT count(*) AS "n!" FROM tenants t WHERE t.status = 'active'
           AND t.id NOT IN (SELECT b.tenant_id FROM backups b
                            WHERE b.status = 'complete' AND b.completed_at > $1);
PREPARE stale_list(timestamptz, bigint) AS
  SELECT t.slug FROM tenants t WHERE t.status = 'active'
           AND t.id NOT IN (SELECT b.tenant_id FROM backups b
                            WHERE b.status = 'complete' AND b.completed_at > $1)
           ORDER BY t.slug LIMIT $2;
PREPARE heavy_in_use(text[]) AS
  SELECT s.name AS "label!", count(l.pid) AS "n!"
           FROM unnest($1::text[]) AS s(name)
           LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid::text::bigint = (hashtext('landlord-heavy:' || s.name)::bigint & 4294967295)
           GROUP BY s.name ORDER BY s.name;

-- ------------------------------------------------------- tenants list
PREPARE tenant_count(text, text, text, text) AS
  SELECT count(*) AS "n!" FROM tenants
           WHERE ($1::text IS NULL OR strpos(lower(slug), lower($1)) > 0 OR strpos(lower(name), lower($1)) > 0)
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR plan = $3)
             AND ($4::text IS NULL OR db_server = $4);
PREPARE tenant_lines(text, text, text, text, text, bigint, bigint) AS
  SELECT t.slug, t.name, t.plan, t.status, t.db_server, b.completed_at AS "last_backup?", b.raw_bytes AS "size?"
           FROM tenants t
           LEFT JOIN LATERAL (SELECT completed_at, raw_bytes FROM backups
                              WHERE tenant_id = t.id AND status = 'complete'
                              ORDER BY completed_at DESC LIMIT 1) b ON true
           WHERE ($1::text IS NULL OR strpos(lower(t.slug), lower($1)) > 0 OR strpos(lower(t.name), lower($1)) > 0)
             AND ($2::text IS NULL OR t.status = $2) AND ($3::text IS NULL OR t.plan = $3)
             AND ($4::text IS NULL OR t.db_server = $4)
           ORDER BY CASE WHEN $5 = 'plan' THEN t.plan END,
                    CASE WHEN $5 = 'status' THEN t.status END,
                    CASE WHEN $5 = 'server' THEN t.db_server END,
                    CASE WHEN $5 = 'backup' THEN b.completed_at END ASC NULLS FIRST,
                    CASE WHEN $5 = 'size' THEN b.raw_bytes END DESC NULLS LAST,
                    t.slug
           LIMIT $6 OFFSET $7;

-- ---------------------------------------------------------- jobs list
-- store::page: select_jobs! + its WHERE (the tenant page runs it too, limit 15).
PREPARE jobs_page(text, text, text, uuid, bigint) AS
  SELECT j.id, j.kind, j.queue, j.tenant_id, t.slug AS "tenant?", j.args,
                      j.status AS "status: JobStatus", j.attempts, j.max_attempts, j.dedupe_key,
                      j.lease_owner, j.lease_expires_at, j.run_at, j.last_error, j.result,
                      j.progress, j.origin AS "origin: Origin", j.created_at, j.updated_at,
                      j.started_at, j.finished_at, j.compensation AS "compensation: Compensation",
                      j.compensation_error, j.compensated_at
               FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id
  WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2)
         AND ($3::text IS NULL OR t.slug = $3) AND ($4::uuid IS NULL OR j.id < $4)
         ORDER BY j.id DESC LIMIT $5;

-- -------------------------------------------------------- tenant page
PREPARE tenant_find(text) AS SELECT * FROM tenants WHERE slug = $1;
PREPARE backups_complete_of(bigint) AS
  SELECT id, tenant_id, job_id, status, store, object_key,
                      manifest_key, upload_id, format,
                      codec, level, encrypted, raw_bytes, stored_bytes, sha256,
                      schema_version, server_version, pg_dump_version, held, held_reason,
                      imported, error, started_at, completed_at, duration_ms, deleted_at
               FROM backups WHERE tenant_id = $1 AND status = 'complete' ORDER BY completed_at DESC, id DESC;
PREPARE tenant_audit(bigint, text, bigint) AS
  SELECT at, actor, action, job_id, details FROM audit_log
         WHERE tenant_id = $1 AND starts_with(action, $2) ORDER BY at DESC LIMIT $3;

-- ------------------------------------------------------------- explain
\set X 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON)'
\echo == session_find
:X EXECUTE session_find(sha256('bench'::bytea));
\echo == tenants_by_status
:X EXECUTE tenants_by_status;
\echo == jobs_per_minute
:X EXECUTE jobs_per_minute(:'now');
\echo == queue_depths
:X EXECUTE queue_depths('{provision,backup,maintenance,mail}', 10000);
\echo == dead_count
:X EXECUTE dead_count(:'now');
\echo == dead_list
:X EXECUTE dead_list(:'now', 8);
\echo == scheduler_leader
:X EXECUTE scheduler_leader;
\echo == last_firings
:X EXECUTE last_firings('{daily-backup,weekly-maintenance,monthly-vacuum,daily-cleanup}');
\echo == stale_count
:X EXECUTE stale_count(:'now'::timestamptz - interval '26 hours');
\echo == stale_list
:X EXECUTE stale_list(:'now'::timestamptz - interval '26 hours', 10);
\echo == heavy_in_use
:X EXECUTE heavy_in_use('{default}');
\echo == tenant_count (no filter)
:X EXECUTE tenant_count(NULL, NULL, NULL, NULL);
\echo == tenant_count (search)
:X EXECUTE tenant_count(:'search', NULL, NULL, NULL);
\echo == tenant_lines (first page, by slug)
:X EXECUTE tenant_lines(NULL, NULL, NULL, NULL, 'slug', 50, 0);
\echo == tenant_lines (search)
:X EXECUTE tenant_lines(:'search', NULL, NULL, NULL, 'slug', 50, 0);
\echo == tenant_lines (sort by oldest backup)
:X EXECUTE tenant_lines(NULL, NULL, NULL, NULL, 'backup', 50, 0);
\echo == tenant_lines (deep page)
:X EXECUTE tenant_lines(NULL, NULL, NULL, NULL, 'slug', 50, :deep_offset);
\echo == jobs_page (first page)
:X EXECUTE jobs_page(NULL, NULL, NULL, NULL, 50);
\echo == jobs_page (status=dead)
:X EXECUTE jobs_page('dead', NULL, NULL, NULL, 50);
\echo == jobs_page (status=dead, next page)
:X EXECUTE jobs_page('dead', NULL, NULL, :'before', 50);
\echo == jobs_page (tenant)
:X EXECUTE jobs_page(NULL, NULL, :'slug', NULL, 50);
\echo == jobs_page (tenant page: its 15 latest)
:X EXECUTE jobs_page(NULL, NULL, :'slug', NULL, 15);
\echo == tenant_find
:X EXECUTE tenant_find(:'slug');
\echo == backups_complete_of
:X EXECUTE backups_complete_of(:tid);
\echo == tenant_audit (status history)
:X EXECUTE tenant_audit(:tid, 'tenant.', 20);
\echo == tenant_audit (all)
:X EXECUTE tenant_audit(:tid, '', 30);
