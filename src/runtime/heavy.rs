//! Fleet-wide limit on heavy work per database server (backups, VACUUM,
//! REINDEX): at most `LANDLORD_HEAVY_PER_SERVER` at once, enforced with
//! session advisory locks on the catalog, one per slot. A job that finds
//! every slot taken is postponed without spending an attempt.

use std::time::Duration;

use sqlx::{Postgres, pool::PoolConnection};

use super::{JobContext, JobError};

/// Takes one of the server's slots, held on a dedicated catalog connection
/// until dropped; `None` when all are taken.
pub async fn slot(
    ctx: &JobContext,
    server: &str,
) -> Result<Option<PoolConnection<Postgres>>, JobError> {
    let mut conn = ctx.catalog.acquire().await?;
    // Closing (not pooling) the connection is what releases the lock.
    conn.close_on_drop();
    for slot in 0..ctx.settings.maintenance.heavy_per_server as i32 {
        let got: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('landlord-heavy:' || $1), $2)",
        )
        .bind(server)
        .bind(slot)
        .fetch_one(&mut *conn)
        .await?;
        if got {
            return Ok(Some(conn));
        }
    }
    Ok(None)
}

/// A slot, or [`JobError::Postpone`] when the server is at its limit.
pub async fn slot_or_postpone(
    ctx: &JobContext,
    server: &str,
) -> Result<PoolConnection<Postgres>, JobError> {
    slot(ctx, server).await?.ok_or_else(|| JobError::Postpone {
        delay: Duration::from_millis(1000),
        reason: format!(
            "{} heavy job(s) already run on server {server}",
            ctx.settings.maintenance.heavy_per_server
        ),
    })
}
