//! An operator's changes to one backup, by id: delete it, or put it on legal
//! hold and release it (`landlord backups delete|hold`). Each change writes
//! its audit entry.
//!
//! Never deletes a held backup or one that is not complete; retention's
//! bulk deletes go through [`prune`](super::prune) instead.

use anyhow::Result;
use sqlx::PgPool;
use thiserror::Error;
use uuid::Uuid;

use super::{
    BackupSettings, BackupStatus, Store,
    catalog::{self, Backup},
    prune,
};

/// Why a change to a backup was refused; nothing was changed.
#[derive(Debug, Error)]
pub enum BackupChangeError {
    #[error("no backup {0}")]
    NotFound(Uuid),
    #[error("no complete backup {0}")]
    NotComplete(Uuid),
    #[error("backup {id} is {status}, not complete")]
    NotHoldable { id: Uuid, status: BackupStatus },
    #[error(
        "backup {id} is on legal hold ({}); release it first with `landlord backups hold {id} --release`",
        reason.as_deref().unwrap_or("no reason given")
    )]
    Held { id: Uuid, reason: Option<String> },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Deletes one complete, unheld backup (manifest, object, then the row) and
/// records `backup.deleted`. Returns the row as it was.
pub async fn delete(
    pool: &PgPool,
    settings: &BackupSettings,
    id: Uuid,
    actor: &str,
) -> Result<Backup, BackupChangeError> {
    // Never written, or already deleted: nothing to delete (not found);
    // running or failed: not a backup to delete yet (wrong status).
    let b = match catalog::get(pool, id).await? {
        None => return Err(BackupChangeError::NotFound(id)),
        Some(b) if b.status == BackupStatus::Deleted => {
            return Err(BackupChangeError::NotFound(id));
        }
        Some(b) if !b.status.is_complete() => return Err(BackupChangeError::NotComplete(id)),
        Some(b) => b,
    };
    let store = Store::open(settings).await?;
    match prune::delete(pool, &store, id).await? {
        prune::Deleted::Yes => {}
        prune::Deleted::NotComplete => return Err(BackupChangeError::NotComplete(id)),
        prune::Deleted::Held(reason) => return Err(BackupChangeError::Held { id, reason }),
    }
    audit(
        pool,
        actor,
        "backup.deleted",
        b.tenant_id,
        serde_json::json!({"backup_id": b.id, "key": b.object_key}),
    )
    .await?;
    Ok(b)
}

/// Puts a complete backup on legal hold (`hold`) or releases it, and records
/// `backup.held` or `backup.hold_released` with the reason. Returns the row
/// as it was before the change.
pub async fn set_hold(
    pool: &PgPool,
    id: Uuid,
    hold: bool,
    reason: Option<&str>,
    actor: &str,
) -> Result<Backup, BackupChangeError> {
    let b = catalog::get(pool, id)
        .await?
        .ok_or(BackupChangeError::NotFound(id))?;
    if !catalog::set_held(pool, id, hold, reason).await? {
        return Err(BackupChangeError::NotHoldable {
            id,
            status: b.status,
        });
    }
    let action = if hold {
        "backup.held"
    } else {
        "backup.hold_released"
    };
    audit(
        pool,
        actor,
        action,
        b.tenant_id,
        serde_json::json!({"backup_id": id, "reason": reason}),
    )
    .await?;
    // The row as it is now (the one read above predates the change).
    catalog::get(pool, id)
        .await?
        .ok_or(BackupChangeError::NotFound(id))
}

/// One audit entry in its own transaction.
async fn audit(
    pool: &PgPool,
    actor: &str,
    action: &str,
    tenant_id: i64,
    details: serde_json::Value,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    crate::runtime::store::audit(&mut tx, actor, action, Some(tenant_id), None, details).await?;
    tx.commit().await?;
    Ok(())
}
