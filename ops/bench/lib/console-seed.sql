-- ops/bench/console: a catalog as a busy fleet's looks after 30 days.
-- psql -v tenants=N -v jobs=M -v prefix=P against a freshly migrated catalog.
--   tenants       N over 3 servers, the 4 plans, most active;
--   jobs          M over the last 30 days, ids UUIDv7 of their creation time
--                 (as the library writes them), mostly succeeded, some
--                 failed/dead/cancelled, a live backlog of the last 2 hours;
--   backups       30 nightly backups for ~90% of the tenants not deleted (the
--                 last 7 complete, older ones deleted by retention, a few
--                 failed); ~3% of the active ones last backed up 3 days ago
--                 (the overview's "stale" list);
--   audit_log     ~12 entries per tenant;
--   schedule_firings  the default schedules' firings of the last 30 days.
-- Deterministic (setseed) so two runs seed the same catalog.
SELECT setseed(0.15);

-- ---------------------------------------------------------------- tenants
INSERT INTO tenants (slug, name, plan, status, status_reason, db_server, db_name, settings,
                     schema_version, created_at, updated_at, provision_step, provisioned_at)
SELECT 'tenant-' || lpad(g::text, 6, '0'),
       (ARRAY['Acme', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne', 'Tyrell'])[1 + g % 8]
           || ' ' || (ARRAY['Labs', 'Inc.', 'GmbH', 'Ltd', 'Studio', 'Group'])[1 + (g / 8) % 6] || ' ' || g,
       (ARRAY['free', 'free', 'pro', 'pro', 'pro', 'business', 'business', 'enterprise'])[1 + (g * 7) % 8],
       s.status,
       CASE WHEN s.status = 'suspended' THEN 'unpaid invoice' END,
       (ARRAY['default', 'pg2', 'pg3'])[1 + g % 3],
       't_bench_' || g,
       jsonb_build_object('timezone', 'UTC'),
       3,
       c.created_at, c.created_at, 'done', c.created_at
FROM generate_series(1, :tenants) g
CROSS JOIN LATERAL (SELECT now() - interval '730 days' * (1 - g::float8 / :tenants) - interval '31 days' AS created_at) c
CROSS JOIN LATERAL (SELECT CASE
        WHEN g % 100 < 85 THEN 'active'
        WHEN g % 100 < 90 THEN 'inactive'
        WHEN g % 100 < 94 THEN 'suspended'
        WHEN g % 100 < 95 THEN 'provisioning'
        WHEN g % 100 < 96 THEN 'failed'
        ELSE 'deleted' END AS status) s;

-- ------------------------------------------------------------------- jobs
-- One row per job: its outcome, then everything derived from it.
CREATE TEMP TABLE job_gen AS
SELECT g,
       now() - random() * interval '30 days' AS created_at,
       random() AS r_status,
       random() AS r_kind,
       1 + floor(random() * :tenants)::bigint AS tenant_id,
       random() AS r_dur
FROM generate_series(1, :jobs) g;

INSERT INTO jobs (id, kind, queue, tenant_id, args, status, attempts, max_attempts, dedupe_key,
                  lease_owner, lease_expires_at, run_at, last_error, result, origin,
                  created_at, updated_at, started_at, finished_at, last_published_at)
SELECT (lpad(to_hex((extract(epoch FROM x.created_at) * 1000)::bigint), 12, '0') || '7'
          || substr(md5(x.g::text), 1, 3) || '8' || substr(md5(x.g::text), 4, 15))::uuid,
       k.kind, k.queue,
       CASE WHEN k.kind = 'maintenance' AND x.g % 20 = 0 THEN NULL ELSE x.tenant_id END,
       CASE k.kind WHEN 'backup' THEN '{"keep": 7}'::jsonb
                   WHEN 'maintenance' THEN '{"cleanup": true, "days": 365}'::jsonb
                   WHEN 'send_mail' THEN '{"template": "welcome"}'::jsonb
                   ELSE '{}'::jsonb END,
       st.status,
       CASE st.status WHEN 'dead' THEN 5 WHEN 'failed' THEN 1 WHEN 'queued' THEN 0
                      WHEN 'retrying' THEN 2 WHEN 'cancelled' THEN 0 ELSE 1 END,
       5,
       CASE WHEN k.kind = 'backup' AND st.status IN ('succeeded', 'failed', 'dead', 'cancelled')
            THEN 'sched:daily-backup:tenant-' || lpad(x.tenant_id::text, 6, '0') || ':'
                 || to_char(date_trunc('day', x.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') || 'T02:00:00Z'
                 || CASE WHEN x.g % 7 = 0 THEN ':' || x.g ELSE '' END END,
       CASE WHEN st.status = 'running' THEN 'worker-' || (x.g % 4) END,
       CASE WHEN st.status = 'running' THEN now() + interval '5 minutes' END,
       CASE WHEN st.status = 'queued' AND x.g % 3 = 0 THEN now() + random() * interval '1 hour' ELSE x.created_at END,
       CASE WHEN st.status IN ('dead', 'failed', 'retrying')
            THEN (ARRAY['pg_dump: error: connection to server failed: timeout expired',
                        'upload: S3 PutObject 503 SlowDown',
                        'tenant database is locked by another job',
                        'SMTP 451 4.7.1 try again later'])[1 + x.g % 4] END,
       CASE WHEN st.status = 'succeeded' AND k.kind = 'backup'
            THEN jsonb_build_object('bytes', (x.r_dur * 1e8)::bigint) END,
       'catalog',
       x.created_at,
       coalesce(f.finished_at, x.created_at),
       CASE WHEN st.status NOT IN ('queued', 'cancelled') THEN x.created_at + interval '1 second' END,
       f.finished_at,
       x.created_at
FROM (SELECT j.g, j.r_status, j.r_kind, j.tenant_id, j.r_dur,
             -- the live backlog is recent: queued/running/retrying jobs were created in the last 2 hours
             CASE WHEN j.r_status >= 0.98 THEN now() - (j.r_dur * interval '2 hours') ELSE j.created_at END AS created_at
      FROM job_gen j) x
CROSS JOIN LATERAL (SELECT CASE
        WHEN x.r_status < 0.93 THEN 'succeeded'
        WHEN x.r_status < 0.955 THEN 'failed'
        WHEN x.r_status < 0.965 THEN 'dead'
        WHEN x.r_status < 0.98 THEN 'cancelled'
        WHEN x.r_status < 0.995 THEN 'queued'
        WHEN x.r_status < 0.998 THEN 'running'
        ELSE 'retrying' END AS status) st
CROSS JOIN LATERAL (SELECT CASE
        WHEN x.r_kind < 0.60 THEN 'backup'
        WHEN x.r_kind < 0.85 THEN 'maintenance'
        WHEN x.r_kind < 0.95 THEN 'send_mail'
        WHEN x.r_kind < 0.97 THEN 'provision'
        WHEN x.r_kind < 0.98 THEN 'restore'
        WHEN x.r_kind < 0.99 THEN 'verify_backup'
        ELSE 'deprovision' END AS kind) k0
CROSS JOIN LATERAL (SELECT k0.kind,
        CASE k0.kind WHEN 'backup' THEN 'backup' WHEN 'restore' THEN 'backup' WHEN 'verify_backup' THEN 'backup'
                     WHEN 'maintenance' THEN 'maintenance' WHEN 'send_mail' THEN 'mail'
                     ELSE 'provision' END AS queue) k
CROSS JOIN LATERAL (SELECT CASE WHEN st.status IN ('succeeded', 'failed', 'dead', 'cancelled')
        THEN least(x.created_at + interval '1 second' + x.r_dur * interval '10 minutes', now()) END AS finished_at) f;
DROP TABLE job_gen;

-- ---------------------------------------------------------------- backups
-- Nightly at 02:00 + up to 30 min, day d = 1 (last night) .. 30.
INSERT INTO backups (id, tenant_id, job_id, status, store, object_key, manifest_key, format, codec, level,
                     raw_bytes, stored_bytes, sha256, schema_version, server_version, pg_dump_version,
                     error, started_at, completed_at, duration_ms, deleted_at)
SELECT gen_random_uuid(), t.id, NULL, b.status, 's3',
       :'prefix' || '/' || t.slug || '/' || t.slug || '-' || to_char(b.started_at, 'YYYYMMDD"T"HH24MISS') || '.dump.zst',
       :'prefix' || '/' || t.slug || '/' || t.slug || '-' || to_char(b.started_at, 'YYYYMMDD"T"HH24MISS') || '.manifest.json',
       'custom', 'zstd', 3,
       CASE WHEN b.status <> 'failed' THEN (1 + (t.id * 7919) % 5000) * 1048576 + d * 4096 END,
       CASE WHEN b.status <> 'failed' THEN (1 + (t.id * 7919) % 5000) * 262144 END,
       CASE WHEN b.status <> 'failed' THEN md5(t.id || ':' || d) || md5(d || ':' || t.id) END,
       3, '15.20', '15.20',
       CASE WHEN b.status = 'failed' THEN 'pg_dump: error: connection to server failed' END,
       b.started_at,
       CASE WHEN b.status <> 'failed' THEN b.started_at + interval '40 seconds' END,
       CASE WHEN b.status <> 'failed' THEN 40000 END,
       CASE WHEN b.status = 'deleted' THEN b.started_at + interval '7 days' END
FROM tenants t
CROSS JOIN generate_series(CASE WHEN t.id % 33 = 0 THEN 3 ELSE 1 END, 30) d
CROSS JOIN LATERAL (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                             - d * interval '1 day' + interval '2 hours' + ((t.id * 37) % 1800) * interval '1 second'
                             AS started_at) s
CROSS JOIN LATERAL (SELECT s.started_at,
        CASE WHEN (t.id + d) % 97 = 0 THEN 'failed' WHEN d <= 7 + (CASE WHEN t.id % 33 = 0 THEN 2 ELSE 0 END) THEN 'complete'
             ELSE 'deleted' END AS status) b
WHERE t.status NOT IN ('deleted', 'provisioning', 'failed') AND t.id % 10 <> 7;

-- -------------------------------------------------------------- audit_log
INSERT INTO audit_log (at, actor, action, tenant_id, details)
SELECT t.created_at, 'api:admin', 'tenant.created', t.id, jsonb_build_object('plan', t.plan)
FROM tenants t;
INSERT INTO audit_log (at, actor, action, tenant_id, details)
SELECT now() - random() * interval '30 days', 'ui:admin', 'tenant.status_changed', t.id,
       jsonb_build_object('from', 'active', 'to', t.status, 'reason', t.status_reason)
FROM tenants t WHERE t.status IN ('inactive', 'suspended');
INSERT INTO audit_log (at, actor, action, tenant_id, details)
SELECT now() - random() * interval '30 days', 'api:admin',
       (ARRAY['tenant.settings_changed', 'backup.held', 'backup.released', 'job.retried', 'tenant.credentials_rotated'])[1 + (t.id + n) % 5],
       t.id, '{}'::jsonb
FROM tenants t CROSS JOIN generate_series(1, 10) n;

-- ------------------------------------------------------- schedule_firings
INSERT INTO schedule_firings (schedule, fire_at, status, jobs, skipped, leader, started_at, finished_at)
SELECT s.name, f.fire_at, 'done', :tenants * 85 / 100, 0, 'serve-bench', f.fire_at, f.fire_at + interval '31 minutes'
FROM (VALUES ('daily-backup', 2, 1), ('daily-cleanup', 5, 1), ('weekly-maintenance', 4, 7), ('monthly-vacuum', 3, 30)) s(name, hour, every)
CROSS JOIN LATERAL (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                             - d * interval '1 day' + s.hour * interval '1 hour' AS fire_at
                    FROM generate_series(1, 30) d WHERE d % s.every = 0) f;
