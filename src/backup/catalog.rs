//! The catalog's record of backups and restores. A backup row is listed,
//! restored or counted only once it is `complete`, which happens after its
//! object and manifest are in the store.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// One backup row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Backup {
    pub id: Uuid,
    pub tenant_id: i64,
    pub job_id: Option<Uuid>,
    pub status: String,
    pub store: String,
    pub object_key: String,
    pub manifest_key: Option<String>,
    pub upload_id: Option<String>,
    pub format: String,
    pub codec: String,
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

/// What a new backup row records before any byte is written.
pub struct NewBackup<'a> {
    pub id: Uuid,
    pub tenant_id: i64,
    pub job_id: Option<Uuid>,
    pub store: &'a str,
    pub object_key: &'a str,
    pub manifest_key: Option<&'a str>,
    pub format: &'a str,
    pub codec: &'a str,
    pub level: Option<i32>,
    pub encrypted: bool,
}

pub async fn insert(pool: &PgPool, b: &NewBackup<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO backups (id, tenant_id, job_id, store, object_key, manifest_key, format, codec, level, encrypted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(b.id)
    .bind(b.tenant_id)
    .bind(b.job_id)
    .bind(b.store)
    .bind(b.object_key)
    .bind(b.manifest_key)
    .bind(b.format)
    .bind(b.codec)
    .bind(b.level)
    .bind(b.encrypted)
    .execute(pool)
    .await
    .context("recording the backup")?;
    Ok(())
}

pub async fn set_upload_id(pool: &PgPool, id: Uuid, upload_id: &str) -> Result<()> {
    sqlx::query("UPDATE backups SET upload_id = $2 WHERE id = $1")
        .bind(id)
        .bind(upload_id)
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
    sqlx::query(
        "UPDATE backups SET status = 'complete', upload_id = NULL, raw_bytes = $2, stored_bytes = $3, \
         sha256 = $4, schema_version = $5, server_version = $6, pg_dump_version = $7, \
         duration_ms = $8, completed_at = now(), error = NULL WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(c.raw_bytes as i64)
    .bind(c.stored_bytes as i64)
    .bind(c.sha256)
    .bind(c.schema_version)
    .bind(c.server_version)
    .bind(c.pg_dump_version)
    .bind(c.duration_ms)
    .execute(&mut **tx)
    .await
    .context("marking the backup complete")?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: Uuid, error: &str) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET status = 'failed', upload_id = NULL, error = $2, completed_at = now() \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await
    .context("marking the backup failed")?;
    Ok(())
}

/// Rows an earlier attempt of this job left `running` (it was killed).
pub async fn leftovers(pool: &PgPool, job_id: Uuid) -> Result<Vec<Backup>> {
    sqlx::query_as("SELECT * FROM backups WHERE job_id = $1 AND status = 'running'")
        .bind(job_id)
        .fetch_all(pool)
        .await
        .context("looking up earlier attempts")
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Backup>> {
    sqlx::query_as("SELECT * FROM backups WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .context("looking up the backup")
}

/// Complete backups of a tenant, newest first.
pub async fn complete_of(pool: &PgPool, tenant_id: i64) -> Result<Vec<Backup>> {
    sqlx::query_as(
        "SELECT * FROM backups WHERE tenant_id = $1 AND status = 'complete' \
         ORDER BY completed_at DESC, id DESC",
    )
    .bind(tenant_id)
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
    let n = sqlx::query(
        "UPDATE backups SET held = $2, held_reason = $3 WHERE id = $1 AND status = 'complete'",
    )
    .bind(id)
    .bind(held)
    .bind(reason)
    .execute(pool)
    .await
    .context("changing the hold")?
    .rows_affected();
    Ok(n == 1)
}

/// A complete backup, its row locked until `tx` ends.
pub async fn lock_complete(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
) -> Result<Option<Backup>> {
    sqlx::query_as("SELECT * FROM backups WHERE id = $1 AND status = 'complete' FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .context("locking the backup")
}

pub async fn mark_deleted(
    db: impl sqlx::Executor<'_, Database = sqlx::Postgres>,
    id: Uuid,
) -> Result<()> {
    sqlx::query("UPDATE backups SET status = 'deleted', deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .context("marking the backup deleted")?;
    Ok(())
}

/// Every row that claims an object in the store (for reconcile).
pub async fn live_keys(pool: &PgPool, store: &str) -> Result<Vec<Backup>> {
    sqlx::query_as("SELECT * FROM backups WHERE store = $1 AND status IN ('complete', 'running')")
        .bind(store)
        .fetch_all(pool)
        .await
        .context("listing backup rows")
}

/// Per-tenant figures from the catalog (no store listing).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'complete') AS count, \
                coalesce(sum(stored_bytes) FILTER (WHERE status = 'complete'), 0)::bigint AS stored_bytes, \
                coalesce(sum(raw_bytes) FILTER (WHERE status = 'complete'), 0)::bigint AS raw_bytes, \
                min(completed_at) FILTER (WHERE status = 'complete') AS oldest, \
                max(completed_at) FILTER (WHERE status = 'complete') AS newest, \
                (SELECT duration_ms FROM backups b2 WHERE b2.tenant_id = $1 AND b2.status = 'complete' \
                 ORDER BY completed_at DESC LIMIT 1) AS last_duration_ms, \
                count(*) FILTER (WHERE status = 'complete' AND held) AS held, \
                count(*) FILTER (WHERE status = 'failed' AND started_at > now() - interval '7 days') AS failed_last_7d \
         FROM backups WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_one(pool)
    .await
    .context("computing backup stats")
}

/// A restore row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Restore {
    pub id: Uuid,
    pub tenant_id: i64,
    pub backup_id: Option<Uuid>,
    pub job_id: Option<Uuid>,
    pub status: String,
    pub scratch_db: String,
    pub pre_restore_db: Option<String>,
    pub keep_until: Option<DateTime<Utc>>,
    pub dropped_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub async fn restore_leftovers(pool: &PgPool, job_id: Uuid) -> Result<Vec<Restore>> {
    sqlx::query_as("SELECT * FROM restores WHERE job_id = $1 AND status = 'running'")
        .bind(job_id)
        .fetch_all(pool)
        .await
        .context("looking up earlier restore attempts")
}

pub async fn get_restore(pool: &PgPool, id: Uuid) -> Result<Option<Restore>> {
    sqlx::query_as("SELECT * FROM restores WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .context("looking up the restore")
}
