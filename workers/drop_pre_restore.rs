//! `drop_pre_restore`: drops the database a restore swapped out, once the
//! rollback window (`LANDLORD_RESTORE_KEEP_PRE_HOURS`) is over. Only ever a
//! database the catalog recorded as that restore's pre-restore copy.

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
        if let Some(until) = r.keep_until {
            let left = until - chrono::Utc::now();
            if left > chrono::Duration::zero() {
                return Err(JobError::Postpone {
                    delay: left.to_std().unwrap_or_default(),
                    reason: format!("{pre} is kept until {until}"),
                });
            }
        }
        restore::drop_db(&ctx.settings, &t.db_server, &pre).await?;
        sqlx::query("UPDATE restores SET dropped_at = now() WHERE id = $1")
            .bind(r.id)
            .execute(&ctx.catalog)
            .await?;
        Ok(json!({"restore_id": r.id, "dropped": pre}))
    }
}
