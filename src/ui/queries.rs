//! The console's own catalog queries: its sessions, and read-only views the
//! library has no function for (the overview's counts, the tenants table
//! with each tenant's last backup, a tenant's audit entries, schedule
//! history). Everything that changes a tenant, a job, a backup or a schedule
//! goes through the library, never through here.
//!
//! Every query is checked by sqlx against the catalog migrations and bounded:
//! counts are indexed group-bys over time windows or over the tenants table,
//! lists have a LIMIT.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A session row that has not expired.
pub struct SessionRow {
    pub scope: String,
    pub actor: String,
    pub csrf_token: String,
}

pub async fn session_find(pool: &PgPool, id_sha256: &[u8]) -> Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        "SELECT scope, actor, csrf_token FROM ui_sessions WHERE id_sha256 = $1 AND expires_at > now()",
        id_sha256
    )
    .fetch_optional(pool)
    .await
    .context("reading the console session")
}

/// Opens a session (and forgets the expired ones).
pub async fn session_create(
    pool: &PgPool,
    id_sha256: &[u8],
    scope: &str,
    actor: &str,
    csrf: &str,
    ttl: Duration,
) -> Result<()> {
    sqlx::query!("DELETE FROM ui_sessions WHERE expires_at < now()")
        .execute(pool)
        .await
        .context("forgetting expired console sessions")?;
    sqlx::query!(
        "INSERT INTO ui_sessions (id_sha256, scope, actor, csrf_token, expires_at) \
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        id_sha256,
        scope,
        actor,
        csrf,
        ttl.as_secs_f64()
    )
    .execute(pool)
    .await
    .context("opening a console session")?;
    Ok(())
}

pub async fn session_delete(pool: &PgPool, id_sha256: &[u8]) -> Result<()> {
    sqlx::query!("DELETE FROM ui_sessions WHERE id_sha256 = $1", id_sha256)
        .execute(pool)
        .await
        .context("closing the console session")?;
    Ok(())
}

/// `(label, count)` rows.
pub struct Count {
    pub label: String,
    pub n: i64,
}

pub async fn tenants_by_status(pool: &PgPool) -> Result<Vec<Count>> {
    sqlx::query_as!(
        Count,
        r#"SELECT status AS "label!", count(*) AS "n!" FROM tenants GROUP BY status ORDER BY status"#
    )
    .fetch_all(pool)
    .await
    .context("counting tenants by status")
}

/// Jobs that finished in one minute with one outcome.
pub struct MinuteCount {
    pub minute: DateTime<Utc>,
    pub status: String,
    pub n: i64,
}

/// Finished jobs per minute and outcome over the hour before `now`
/// (index `jobs_finished_at`).
pub async fn jobs_per_minute(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<MinuteCount>> {
    sqlx::query_as!(
        MinuteCount,
        r#"SELECT date_trunc('minute', finished_at) AS "minute!", status AS "status!", count(*) AS "n!"
           FROM jobs WHERE finished_at IS NOT NULL AND finished_at > $1::timestamptz - interval '60 minutes'
           GROUP BY 1, 2 ORDER BY 1"#,
        now
    )
    .fetch_all(pool)
    .await
    .context("counting finished jobs per minute")
}

/// A job family's backlog as the catalog sees it.
pub struct QueueDepth {
    pub queue: String,
    pub waiting: i64,
    pub running: i64,
    /// The run time of the oldest job due and not yet running.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// Live jobs per family, each count capped at `cap` (a backlog of a
/// million costs what one of `cap` does), the oldest due job first in index
/// `jobs_waiting_queue`.
pub async fn queue_depths(pool: &PgPool, queues: &[String], cap: i64) -> Result<Vec<QueueDepth>> {
    sqlx::query_as!(
        QueueDepth,
        r#"SELECT q.name AS "queue!",
                  (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = q.name
                       AND status IN ('queued', 'retrying') LIMIT $2) w) AS "waiting!",
                  (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE queue = q.name
                       AND status = 'running' LIMIT $2) r) AS "running!",
                  (SELECT min(run_at) FROM jobs WHERE queue = q.name
                       AND status IN ('queued', 'retrying') AND run_at <= now()) AS oldest_due
           FROM unnest($1::text[]) AS q(name) ORDER BY q.name"#,
        queues,
        cap
    )
    .fetch_all(pool)
    .await
    .context("counting live jobs per family")
}

/// A dead job, for the overview.
pub struct DeadJob {
    pub id: Uuid,
    pub kind: String,
    pub tenant: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// How many jobs died in the 24 h before `now`, and the newest of them
/// (index `jobs_dead_finished`).
pub async fn dead_last_day(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<(i64, Vec<DeadJob>)> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM jobs WHERE status = 'dead' AND finished_at > $1::timestamptz - interval '24 hours'"#,
        now
    )
    .fetch_one(pool)
    .await
    .context("counting dead jobs")?;
    let rows = sqlx::query_as!(
        DeadJob,
        r#"SELECT j.id, j.kind, t.slug AS "tenant?", j.finished_at, j.last_error
           FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id
           WHERE j.status = 'dead' AND j.finished_at > $1::timestamptz - interval '24 hours'
           ORDER BY j.finished_at DESC LIMIT $2"#,
        now,
        limit
    )
    .fetch_all(pool)
    .await
    .context("listing dead jobs")?;
    Ok((n, rows))
}

/// The catalog session holding the scheduler's leader lock, if one does.
pub struct Leader {
    pub pid: i32,
    pub client: Option<String>,
    pub application: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

pub async fn scheduler_leader(pool: &PgPool) -> Result<Option<Leader>> {
    // A one-bigint advisory lock: classid holds its high half, objid its low half.
    sqlx::query_as!(
        Leader,
        r#"SELECT a.pid AS "pid!", host(a.client_addr) AS client, a.application_name AS application,
                  a.backend_start AS since
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.objid::text::bigint = (hashtext('landlord-scheduler-leader')::bigint & 4294967295)
             AND l.classid::text::bigint = ((hashtext('landlord-scheduler-leader')::bigint >> 32) & 4294967295)
           LIMIT 1"#
    )
    .fetch_optional(pool)
    .await
    .context("finding the scheduler leader")
}

/// The last firing of a schedule, as the overview and the schedules list
/// show it (a schedule's history is `scheduler::report::history`).
pub struct Firing {
    pub schedule: String,
    pub fire_at: DateTime<Utc>,
    pub status: String,
    pub jobs: i32,
}

/// The latest firing of each named schedule (primary key order).
pub async fn last_firings(pool: &PgPool, names: &[String]) -> Result<Vec<Firing>> {
    sqlx::query_as!(
        Firing,
        r#"SELECT f.schedule AS "schedule!", f.fire_at AS "fire_at!", f.status AS "status!",
                  f.jobs AS "jobs!"
           FROM unnest($1::text[]) AS s(name)
           JOIN LATERAL (SELECT * FROM schedule_firings WHERE schedule = s.name
                         ORDER BY fire_at DESC LIMIT 1) f ON true"#,
        names
    )
    .fetch_all(pool)
    .await
    .context("reading the last firings")
}

/// Active tenants without a complete backup since `since`: how many, and
/// the first by slug. The recent backups are a range of index
/// `backups_completed_at`, hashed once; the tenants table is read once.
pub async fn stale_backups(
    pool: &PgPool,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<(i64, Vec<String>)> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tenants t WHERE t.status = 'active'
           AND t.id NOT IN (SELECT b.tenant_id FROM backups b
                            WHERE b.status = 'complete' AND b.completed_at > $1)"#,
        since
    )
    .fetch_one(pool)
    .await
    .context("counting tenants without a recent backup")?;
    let slugs = sqlx::query_scalar!(
        r#"SELECT t.slug FROM tenants t WHERE t.status = 'active'
           AND t.id NOT IN (SELECT b.tenant_id FROM backups b
                            WHERE b.status = 'complete' AND b.completed_at > $1)
           ORDER BY t.slug LIMIT $2"#,
        since,
        limit
    )
    .fetch_all(pool)
    .await
    .context("listing tenants without a recent backup")?;
    Ok((n, slugs))
}

/// Heavy slots held now per server (the advisory locks of `runtime::heavy`:
/// two int4 keys, the server's hash and the slot number).
pub async fn heavy_in_use(pool: &PgPool, servers: &[String]) -> Result<Vec<Count>> {
    sqlx::query_as!(
        Count,
        r#"SELECT s.name AS "label!", count(l.pid) AS "n!"
           FROM unnest($1::text[]) AS s(name)
           LEFT JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid::text::bigint = (hashtext('landlord-heavy:' || s.name)::bigint & 4294967295)
           GROUP BY s.name ORDER BY s.name"#,
        servers
    )
    .fetch_all(pool)
    .await
    .context("counting heavy slots in use")
}

/// One line of the tenants table.
pub struct TenantLine {
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: String,
    pub db_server: String,
    pub last_backup: Option<DateTime<Utc>>,
    /// The database's size as its last backup read it.
    pub size: Option<i64>,
}

/// Filters and order of the tenants table.
#[derive(Debug, Clone, Default)]
pub struct TenantQuery {
    pub search: Option<String>,
    pub status: Option<String>,
    pub plan: Option<String>,
    pub server: Option<String>,
    /// `slug` (default), `plan`, `status`, `server`, `backup` (oldest first), `size` (largest first).
    pub sort: String,
    pub limit: i64,
    pub offset: i64,
}

/// A page of the tenants table and the number of matching tenants. The
/// matching tenants are sorted (bounded by the tenants table, never the
/// jobs); each one's last backup is one probe of `backups_tenant_idx`.
pub async fn tenant_lines(pool: &PgPool, q: &TenantQuery) -> Result<(i64, Vec<TenantLine>)> {
    // One statement for every filter and order: planned for its parameters each time.
    let mut tx = crate::db::custom_plans(pool).await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM tenants
           WHERE ($1::text IS NULL OR strpos(lower(slug), lower($1)) > 0 OR strpos(lower(name), lower($1)) > 0)
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR plan = $3)
             AND ($4::text IS NULL OR db_server = $4)"#,
        q.search,
        q.status,
        q.plan,
        q.server
    )
    .fetch_one(&mut *tx)
    .await
    .context("counting tenants")?;
    let rows = sqlx::query_as!(
        TenantLine,
        r#"SELECT t.slug, t.name, t.plan, t.status, t.db_server, b.completed_at AS "last_backup?", b.raw_bytes AS "size?"
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
           LIMIT $6 OFFSET $7"#,
        q.search,
        q.status,
        q.plan,
        q.server,
        q.sort,
        q.limit,
        q.offset
    )
    .fetch_all(&mut *tx)
    .await
    .context("listing tenants")?;
    tx.commit().await.context("ending the read transaction")?;
    Ok((total, rows))
}

/// One audit entry.
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub job_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// A tenant's audit entries, newest first (index `audit_log_tenant`);
/// `prefix` keeps only actions starting with it (`tenant.` for its status history).
pub async fn tenant_audit(
    pool: &PgPool,
    tenant_id: i64,
    prefix: &str,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    sqlx::query_as!(
        AuditEntry,
        "SELECT at, actor, action, job_id, details FROM audit_log \
         WHERE tenant_id = $1 AND starts_with(action, $2) ORDER BY at DESC LIMIT $3",
        tenant_id,
        prefix,
        limit
    )
    .fetch_all(pool)
    .await
    .context("reading the audit log")
}
