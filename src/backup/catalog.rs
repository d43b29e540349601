//! The catalog's record of backups and restores. A backup row is listed,
//! restored or counted only once it is `complete`, which happens after its
//! object and manifest are in the store.
//!
//! Every query is checked at compile time against the catalog migrations
//! (`sqlx::query!` and friends, offline data in `.sqlx/`; run `ops/sqlx
//! prepare` after changing one). None is built at run time.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::state::{BackupFormat, BackupStatus, RestoreStatus};
use crate::config::backup::Codec;

/// One backup row.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub id: Uuid,
    pub tenant_id: i64,
    pub job_id: Option<Uuid>,
    pub status: BackupStatus,
    pub store: String,
    pub object_key: String,
    pub manifest_key: Option<String>,
    pub upload_id: Option<String>,
    pub format: BackupFormat,
    pub codec: Codec,
    pub level: Option<i32>,
    pub encrypted: bool,
    pub raw_bytes: Option<i64>,
    pub stored_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub schema_version: Option<i64>,
    pub server_version: Option<String>,
    pub pg_dump_version: Option<String>,
    pub held: bool,
    pub held_reason: Option<String>,
    pub imported: bool,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl Backup {
    /// The object's file name (what `restore --backup NAME` takes).
    pub fn name(&self) -> &str {
        self.object_key
            .rsplit('/')
            .next()
            .unwrap_or(&self.object_key)
    }
}

/// `query_as!` of [`Backup`]s: every column, the states decoded as enums,
/// followed by the rest of the query (`WHERE …`) and its arguments.
macro_rules! select_backups {
    ($rest:literal $($args:tt)*) => {
        sqlx::query_as!(
            Backup,
            r#"SELECT id, tenant_id, job_id, status AS "status: BackupStatus", store, object_key,
                      manifest_key, upload_id, format AS "format: BackupFormat",
                      codec AS "codec: Codec", level, encrypted, raw_bytes, stored_bytes, sha256,
                      schema_version, server_version, pg_dump_version, held, held_reason,
                      imported, error, started_at, completed_at, duration_ms, deleted_at
               FROM backups "# + $rest
            $($args)*
        )
    };
}

/// What a new backup row records before any byte is written.
pub struct NewBackup<'a> {
    pub id: Uuid,
    pub tenant_id: i64,
    pub job_id: Option<Uuid>,
    pub store: &'a str,
    pub object_key: &'a str,
    pub manifest_key: Option<&'a str>,
    pub format: BackupFormat,
    pub codec: Codec,
    pub level: Option<i32>,
    pub encrypted: bool,
}

pub async fn insert(pool: &PgPool, b: &NewBackup<'_>) -> Result<()> {
    sqlx::query!(
        "INSERT INTO backups (id, tenant_id, job_id, store, object_key, manifest_key, format, codec, level, encrypted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        b.id,
        b.tenant_id,
        b.job_id,
        b.store,
        b.object_key,
        b.manifest_key,
        b.format.as_str(),
        b.codec.as_str(),
        b.level,
        b.encrypted,
    )
    .execute(pool)
    .await
    .context("recording the backup")?;
    Ok(())
}

pub async fn set_upload_id(pool: &PgPool, id: Uuid, upload_id: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE backups SET upload_id = $2 WHERE id = $1",
        id,
        upload_id
    )
    .execute(pool)
    .await
    .context("recording the upload id")?;
    Ok(())
}

/// Figures recorded when a backup completes.
pub struct Completion<'a> {
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: &'a str,
    pub schema_version: Option<i64>,
    pub server_version: &'a str,
    pub pg_dump_version: &'a str,
    pub duration_ms: i64,
}

pub async fn complete(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    c: &Completion<'_>,
) -> Result<()> {
    // Bound as locals: an `as` cast in the argument list would turn off its type check.
    let (raw_bytes, stored_bytes) = (c.raw_bytes as i64, c.stored_bytes as i64);
    sqlx::query!(
        "UPDATE backups SET status = 'complete', upload_id = NULL, raw_bytes = $2, stored_bytes = $3, \
         sha256 = $4, schema_version = $5, server_version = $6, pg_dump_version = $7, \
         duration_ms = $8, completed_at = now(), error = NULL WHERE id = $1 AND status = 'running'",
        id,
        raw_bytes,
        stored_bytes,
        c.sha256,
        c.schema_version,
        c.server_version,
        c.pg_dump_version,
        c.duration_ms,
    )
    .execute(&mut **tx)
    .await
    .context("marking the backup complete")?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: Uuid, error: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE backups SET status = 'failed', upload_id = NULL, error = $2, completed_at = now() \
         WHERE id = $1 AND status = 'running'",
        id,
        error,
    )
    .execute(pool)
    .await
    .context("marking the backup failed")?;
    Ok(())
}

/// Rows an earlier attempt of this job left `running` (it was killed).
pub async fn leftovers(pool: &PgPool, job_id: Uuid) -> Result<Vec<Backup>> {
    select_backups!("WHERE job_id = $1 AND status = 'running'", job_id)
        .fetch_all(pool)
        .await
        .context("looking up earlier attempts")
}

/// The complete backup an earlier attempt of `job_id` already took, if any
/// (its success was not recorded, or it finished after losing its lock).
pub async fn completed_by_job(pool: &PgPool, job_id: Uuid) -> Result<Option<Backup>> {
    select_backups!(
        "WHERE job_id = $1 AND status = 'complete' ORDER BY completed_at LIMIT 1",
        job_id,
    )
    .fetch_optional(pool)
    .await
    .context("looking up what earlier attempts completed")
}

/// The complete backups of `job_id`, their rows locked until `tx` ends (a
/// dead job's, for [`super::withdraw`]).
pub async fn lock_completed_by_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> Result<Vec<Backup>> {
    select_backups!(
        "WHERE job_id = $1 AND status = 'complete' ORDER BY completed_at FOR UPDATE",
        job_id,
    )
    .fetch_all(&mut **tx)
    .await
    .context("locking the backups of the job")
}

/// Marks a complete backup `failed` with `error` once its objects are gone
/// (a dead job's backup, withdrawn): no longer listed, restored or held.
pub async fn withdraw_in(tx: &mut Transaction<'_, Postgres>, id: Uuid, error: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE backups SET status = 'failed', error = $2, held = false, held_reason = NULL \
         WHERE id = $1 AND status = 'complete'",
        id,
        error,
    )
    .execute(&mut **tx)
    .await
    .context("withdrawing the backup")?;
    Ok(())
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Backup>> {
    select_backups!("WHERE id = $1", id)
        .fetch_optional(pool)
        .await
        .context("looking up the backup")
}

/// Complete backups of a tenant, newest first.
pub async fn complete_of(pool: &PgPool, tenant_id: i64) -> Result<Vec<Backup>> {
    select_backups!(
        "WHERE tenant_id = $1 AND status = 'complete' ORDER BY completed_at DESC, id DESC",
        tenant_id,
    )
    .fetch_all(pool)
    .await
    .context("listing backups")
}

/// A complete backup of the tenant by id, object key or file name.
pub async fn find(pool: &PgPool, tenant_id: i64, name: &str) -> Result<Option<Backup>> {
    let all = complete_of(pool, tenant_id).await?;
    let name = name.trim();
    Ok(all.into_iter().find(|b| {
        b.name() == name
            || b.object_key == name
            || b.id.to_string() == name
            || b.id.simple().to_string() == name
    }))
}

pub async fn set_held(pool: &PgPool, id: Uuid, held: bool, reason: Option<&str>) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE backups SET held = $2, held_reason = $3 WHERE id = $1 AND status = 'complete'",
        id,
        held,
        reason,
    )
    .execute(pool)
    .await
    .context("changing the hold")?
    .rows_affected();
    Ok(n == 1)
}

/// Puts a backup just completed in `tx` on legal hold (`backup --hold`).
pub async fn hold_in(tx: &mut Transaction<'_, Postgres>, id: Uuid, reason: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE backups SET held = true, held_reason = $2 WHERE id = $1",
        id,
        reason,
    )
    .execute(&mut **tx)
    .await
    .context("putting the backup on hold")?;
    Ok(())
}

/// A complete backup, its row locked until `tx` ends.
pub async fn lock_complete(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
) -> Result<Option<Backup>> {
    select_backups!("WHERE id = $1 AND status = 'complete' FOR UPDATE", id)
        .fetch_optional(&mut **tx)
        .await
        .context("locking the backup")
}

pub async fn mark_deleted(
    db: impl sqlx::Executor<'_, Database = sqlx::Postgres>,
    id: Uuid,
) -> Result<()> {
    sqlx::query!(
        "UPDATE backups SET status = 'deleted', deleted_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await
    .context("marking the backup deleted")?;
    Ok(())
}

/// Every row that claims an object in the store (for reconcile).
pub async fn live_keys(pool: &PgPool, store: &str) -> Result<Vec<Backup>> {
    select_backups!(
        "WHERE store = $1 AND status IN ('complete', 'running')",
        store
    )
    .fetch_all(pool)
    .await
    .context("listing backup rows")
}

/// Slugs of the tenants with at least one complete backup, in order.
pub async fn tenants_with_backups(pool: &PgPool) -> Result<Vec<String>> {
    sqlx::query_scalar!(
        "SELECT DISTINCT t.slug FROM tenants t JOIN backups b ON b.tenant_id = t.id \
         WHERE b.status = 'complete' ORDER BY 1"
    )
    .fetch_all(pool)
    .await
    .context("listing the tenants with backups")
}

/// Per-tenant figures from the catalog (no store listing).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub count: i64,
    pub stored_bytes: i64,
    pub raw_bytes: i64,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<i64>,
    pub held: i64,
    pub failed_last_7d: i64,
}

pub async fn stats(pool: &PgPool, tenant_id: i64) -> Result<Stats> {
    // Aggregates are never NULL here (count, coalesce); `!` tells the macro so.
    sqlx::query_as!(
        Stats,
        r#"SELECT count(*) FILTER (WHERE status = 'complete') AS "count!",
                coalesce(sum(stored_bytes) FILTER (WHERE status = 'complete'), 0)::bigint AS "stored_bytes!",
                coalesce(sum(raw_bytes) FILTER (WHERE status = 'complete'), 0)::bigint AS "raw_bytes!",
                min(completed_at) FILTER (WHERE status = 'complete') AS oldest,
                max(completed_at) FILTER (WHERE status = 'complete') AS newest,
                (SELECT duration_ms FROM backups b2 WHERE b2.tenant_id = $1 AND b2.status = 'complete'
                 ORDER BY completed_at DESC LIMIT 1) AS last_duration_ms,
                count(*) FILTER (WHERE status = 'complete' AND held) AS "held!",
                count(*) FILTER (WHERE status = 'failed' AND started_at > now() - interval '7 days') AS "failed_last_7d!"
         FROM backups WHERE tenant_id = $1"#,
        tenant_id,
    )
    .fetch_one(pool)
    .await
    .context("computing backup stats")
}

/// A restore row.
#[derive(Debug, Clone, Serialize)]
pub struct Restore {
    pub id: Uuid,
    pub tenant_id: i64,
    pub backup_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub status: RestoreStatus,
    pub scratch_db: String,
    pub pre_restore_db: Option<String>,
    pub keep_until: Option<DateTime<Utc>>,
    pub dropped_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// `query_as!` of [`Restore`]s: every column, the state decoded as an enum,
/// followed by the rest of the query (`WHERE …`) and its arguments.
macro_rules! select_restores {
    ($rest:literal $($args:tt)*) => {
        sqlx::query_as!(
            Restore,
            r#"SELECT id, tenant_id, backup_id, job_id, status AS "status: RestoreStatus",
                      scratch_db, pre_restore_db, keep_until, dropped_at, error, started_at,
                      completed_at
               FROM restores "# + $rest
            $($args)*
        )
    };
}

pub async fn restore_leftovers(pool: &PgPool, job_id: Uuid) -> Result<Vec<Restore>> {
    select_restores!("WHERE job_id = $1 AND status = 'running'", job_id)
        .fetch_all(pool)
        .await
        .context("looking up earlier restore attempts")
}

pub async fn get_restore(pool: &PgPool, id: Uuid) -> Result<Option<Restore>> {
    select_restores!("WHERE id = $1", id)
        .fetch_optional(pool)
        .await
        .context("looking up the restore")
}

#[cfg(test)]
mod tests;
