//! Deleting a tenant: it stops at once (status `deleting`, its role may no
//! longer log in) and its database is dropped by a `drop_tenant` job that
//! runs after the grace period (`--now` for immediately).
//!
//! `delete_after` is the catalog's clock (this transaction's `now()`) plus
//! the grace, never the calling host's clock: `drop_tenant` compares it with
//! the catalog's `now()`, so a CLI or API host whose clock is off cannot
//! shorten or lengthen the grace period.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::{
    backup::jobs::Backup,
    config::Settings,
    lifecycle::{LifecycleError, jobs::DropTenant},
    runtime::{
        Job,
        store::{self, DedupeKey, EnqueueError, Enqueued},
    },
    tenants,
};

/// How a deletion goes.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    /// Skip the final backup.
    pub no_final_backup: bool,
    /// How long before the database is dropped.
    pub grace: Duration,
}

/// Longest grace period accepted (100 years; the catalog's timestamps end
/// far later, but a grace beyond this is a typo, refused as bad input).
const MAX_GRACE: Duration = Duration::from_secs(36_500 * 86_400);

/// When the database may be dropped: the catalog's `now()` (the deletion's
/// own transaction time) plus `grace`.
async fn drop_at(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    grace: Duration,
) -> Result<chrono::DateTime<chrono::Utc>, LifecycleError> {
    if grace > MAX_GRACE {
        return Err(LifecycleError::Invalid(format!(
            "grace period: {} days is more than {} days",
            grace.as_secs() / 86_400,
            MAX_GRACE.as_secs() / 86_400
        )));
    }
    let at = sqlx::query_scalar("SELECT now() + make_interval(secs => $1)")
        .bind(grace.as_secs_f64())
        .fetch_one(&mut **tx)
        .await?;
    Ok(at)
}

/// Schedules a tenant's deletion; returns the `drop_tenant` job.
pub async fn delete(
    pool: &PgPool,
    settings: &Settings,
    slug: &str,
    opts: &DeleteOptions,
    actor: &str,
) -> Result<Enqueued, LifecycleError> {
    let mut tx = pool.begin().await?;
    let t = tenants::lock_in(&mut tx, slug).await?;
    if !t.status.is_deletable() {
        return Err(LifecycleError::Conflict(format!(
            "tenant {slug} is {}; only active, inactive, suspended or failed tenants can be deleted",
            t.status
        )));
    }
    let drop_at = drop_at(&mut tx, opts.grace).await?;
    if let Some(role) = &t.db_role {
        crate::lifecycle::credentials::set_login(settings, &t.db_server, role, false).await?;
    }
    sqlx::query(
        "UPDATE tenants SET status = 'deleting', status_reason = $2, delete_after = $3, updated_at = now() WHERE id = $1",
    )
    .bind(t.id)
    .bind(format!("database drops at {}", drop_at.to_rfc3339()))
    .bind(drop_at)
    .execute(&mut *tx)
    .await?;
    let job = DropTenant {}
        .enqueue_in(
            &mut tx,
            Some(&t.slug),
            Some(DedupeKey::internal(format!("drop:{}", t.slug))),
            Some(drop_at),
        )
        .await
        .map_err(|e| match e {
            EnqueueError::Other(e) => LifecycleError::Other(e),
            // Only a job written before callers' keys had their own
            // namespace can hold it; nothing is changed.
            e @ EnqueueError::DedupeTaken(_) => LifecycleError::Conflict(format!(
                "cannot schedule the drop of tenant {slug}: {e}; cancel that job first"
            )),
            other => LifecycleError::Other(anyhow::anyhow!("enqueueing drop_tenant: {other}")),
        })?;
    // The final backup, held forever; drop_tenant waits for it to succeed.
    let final_backup = if opts.no_final_backup || !t.is_provisioned() {
        None
    } else {
        let backup = Backup {
            hold: Some(format!("final backup before deletion ({actor})")),
            ..Default::default()
        };
        let b = backup
            .enqueue_in(
                &mut tx,
                Some(&t.slug),
                Some(DedupeKey::internal(format!("final-backup:{}", t.slug))),
                None,
            )
            .await
            .map_err(|e| match e {
                EnqueueError::Other(e) => LifecycleError::Other(e),
                // Never take another job for the final backup.
                e @ EnqueueError::DedupeTaken(_) => LifecycleError::Conflict(format!(
                    "cannot take the final backup of tenant {slug}: {e}; cancel that job first"
                )),
                other => {
                    LifecycleError::Other(anyhow::anyhow!("enqueueing the final backup: {other}"))
                }
            })?;
        sqlx::query("UPDATE tenants SET final_backup_job = $2 WHERE id = $1")
            .bind(t.id)
            .bind(b.id)
            .execute(&mut *tx)
            .await?;
        Some(b)
    };
    let data = serde_json::json!({"from": t.status, "drop_at": drop_at, "final_backup_job": final_backup.as_ref().map(|b| b.id), "actor": actor});
    store::record(
        &mut tx,
        actor,
        "tenant.deletion_scheduled",
        (t.id, &t.slug),
        Some(job.id),
        data,
    )
    .await?;
    tx.commit().await.context("committing deletion")?;
    Ok(job)
}
