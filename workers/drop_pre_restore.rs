//! `drop_pre_restore`: drops the database a restore swapped out, once the
//! rollback window (`LANDLORD_RESTORE_KEEP_PRE_HOURS`) is over. Only ever a
//! database the catalog recorded as that restore's pre-restore copy.
//!
//! The window is compared in SQL (`keep_until > now()` on the catalog), never
//! against this host's clock: `keep_until` is written by whichever host ran
//! the restore, and a worker whose clock runs ahead must not drop early.
//! Inside the window the job postpones itself (no attempt spent) until then.

use serde_json::{Value, json};

use crate::{
    backup::{catalog, restore},
    runtime::{Job, JobContext, JobError},
};

pub use crate::backup::jobs::DropPreRestore;

impl Job for DropPreRestore {
    const KIND: &'static str = "drop_pre_restore";
    const QUEUE: &'static str = "backup";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = false;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let t = ctx.tenant()?.clone();
        let r = catalog::get_restore(&ctx.catalog, self.restore_id)
            .await?
            .filter(|r| r.tenant_id == t.id)
            .ok_or_else(|| {
                JobError::fatal(format!(
                    "no restore {} of tenant {}",
                    self.restore_id, t.slug
                ))
            })?;
        let Some(pre) = r.pre_restore_db.clone() else {
            return Ok(json!({"restore_id": r.id, "dropped": null}));
        };
        if r.dropped_at.is_some() {
            return Ok(json!({"restore_id": r.id, "dropped": pre, "already": true}));
        }
        // The window by the catalog's clock: `keep_until` was written by the
        // restoring host, and this one's clock may disagree with it.
        let left: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM keep_until - now())::float8 FROM restores \
             WHERE id = $1 AND keep_until > now()",
        )
        .bind(r.id)
        .fetch_optional(&ctx.catalog)
        .await?;
        if let Some(secs) = left {
            return Err(JobError::Postpone {
                delay: std::time::Duration::from_secs_f64(secs.max(0.0)),
                reason: format!(
                    "{pre} is kept until {} (catalog time)",
                    r.keep_until.map(|u| u.to_rfc3339()).unwrap_or_default()
                ),
            });
        }
        restore::drop_db(&ctx.settings, &t.db_server, &pre).await?;
        sqlx::query("UPDATE restores SET dropped_at = now() WHERE id = $1")
            .bind(r.id)
            .execute(&ctx.catalog)
            .await?;
        Ok(json!({"restore_id": r.id, "dropped": pre}))
    }
}
