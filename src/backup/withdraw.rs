//! The backup a dead `backup` job completed but never announced: its last
//! attempt marked the row `complete`, then died or lost its job before
//! recording its success (an attempt still alive records the success,
//! `JobContext::effect_committed`). The job ended `dead` (or `failed` under
//! `--sync`) and `backup.completed` never went out, so the backup is
//! withdrawn: manifest, then object deleted, the row marked `failed` with
//! why, `backup.failed` recorded. The job's status and its backups then tell
//! one story, as a dead restore's does (its compensation puts the database
//! back).
//!
//! Runs as the job's compensation (`Backup::on_dead`), under the tenant's
//! lock, so no restore of the tenant reads the backup meanwhile; idempotent
//! (the row stays `complete` until its objects are gone). Never touches a
//! backup of another job, nor one whose job succeeded.

use anyhow::Result;

use super::{catalog, create, store::Store};
use crate::runtime::JobContext;

/// Why a withdrawn backup's row is `failed`.
const WHY: &str =
    "withdrawn: its job ended dead before recording its success, so the backup was never announced";

/// Withdraws the complete backups of `ctx`'s job (a dead job: at most the
/// one its last attempt completed). Returns how many it withdrew.
pub async fn withdraw(ctx: &JobContext, store: &Store) -> Result<usize> {
    let mut tx = ctx.catalog.begin().await?;
    let rows = catalog::lock_completed_by_job(&mut tx, ctx.job_id).await?;
    for b in &rows {
        // Manifest first: an object without a manifest is debris, never a backup.
        if let Some(m) = &b.manifest_key {
            store.delete(m).await?;
        }
        store.delete(&b.object_key).await?;
        catalog::withdraw_in(&mut tx, b.id, WHY).await?;
    }
    tx.commit().await?;
    for b in &rows {
        if let Ok(t) = ctx.tenant() {
            create::record_failure(ctx, t, b.id, WHY).await;
        }
        tracing::warn!(backup = %b.id, key = %b.object_key, "withdrew the backup of a dead backup job");
    }
    Ok(rows.len())
}
