//! `drop_tenant`: the end of a deletion. Drops the tenant's database and role
//! once the grace period is over; the tenant becomes `deleted`. Idempotent.
//!
//! The grace period is the handler's own check, not the job's `run_at`: a
//! drop job can be driven early in many ways (`jobs cancel` + `jobs retry`,
//! a republished message, a foreign producer), and none of them may shorten
//! it. Before anything else the handler asks the catalog whether
//! `tenants.delete_after > now()` — the catalog's clock, never this host's —
//! and if so postpones itself ([`JobError::Postpone`]: no attempt spent)
//! until `delete_after`. Postponing rather than failing is what an operator
//! who retried a drop expects: the deletion goes on as scheduled, the job
//! stays queued (visible in `jobs show` with the reason), and nothing needs
//! retrying again after the grace period. A tenant with no `delete_after`
//! (deleted before the column existed) has no grace left.
//!
//! It must never drop a database before `delete_after` or before the
//! requested final backup succeeded.

use serde_json::{Value, json};

use crate::{
    lifecycle::teardown::{self, Retirement},
    runtime::{Job, JobContext, JobError, JobStatus, ResultExt},
    tenants::{self, TenantStatus},
};

pub use crate::lifecycle::jobs::DropTenant;

impl Job for DropTenant {
    const KIND: &'static str = "drop_tenant";
    const QUEUE: &'static str = "provision";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 10;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let slug = ctx.tenant()?.slug.clone();
        let t = tenants::get(&ctx.catalog, &slug).await.retryable()?;
        if t.status == TenantStatus::Deleted {
            return Ok(json!({"tenant": slug, "already_deleted": true}));
        }
        if t.status != TenantStatus::Deleting {
            return Err(JobError::fatal(format!(
                "tenant {slug} is {}, not deleting",
                t.status
            )));
        }
        if let Some(wait) = in_grace(ctx, t.id).await? {
            return Err(wait);
        }
        // A deletion that asked for a final backup drops nothing without it.
        let final_backup: Option<(uuid::Uuid, JobStatus, Option<String>)> = sqlx::query_as(
            "SELECT j.id, j.status, j.last_error FROM tenants t JOIN jobs j ON j.id = t.final_backup_job \
             WHERE t.id = $1",
        )
        .bind(t.id)
        .fetch_optional(&ctx.catalog)
        .await?;
        if let Some((job, status, error)) = &final_backup {
            match status {
                JobStatus::Succeeded => {}
                JobStatus::Dead | JobStatus::Failed | JobStatus::Cancelled => {
                    return Err(JobError::fatal(format!(
                        "the final backup (job {job}) ended {status}: {}; the database is kept. \
                         Retry it with `landlord jobs retry {job}`, then this job",
                        error.as_deref().unwrap_or("no error recorded")
                    )));
                }
                JobStatus::Queued | JobStatus::Running | JobStatus::Retrying => {
                    return Err(JobError::Postpone {
                        delay: std::time::Duration::from_secs(2),
                        reason: format!("waiting for the final backup (job {job})"),
                    });
                }
            }
        }
        teardown::retire(
            &ctx.catalog,
            &ctx.settings,
            &t,
            Retirement {
                status: TenantStatus::Deleted,
                reason: None,
                // Only a role landlord made (adopted tenants bring their own access).
                drop_role: t.db_role.is_some(),
                event: "tenant.deleted",
                data: json!({"database": t.db_name, "server": t.db_server, "final_backup_job": final_backup.as_ref().map(|f| f.0)}),
                actor: "landlord:drop_tenant",
                job_id: Some(ctx.job_id),
            },
        )
        .await
        .retryable()?;
        Ok(json!({"tenant": slug, "dropped": t.db_name}))
    }
}

/// The postponement until `delete_after` if the grace period is not over by
/// the catalog's clock; `None` once it is (or there is none).
async fn in_grace(ctx: &JobContext, tenant_id: i64) -> Result<Option<JobError>, JobError> {
    let left: Option<(chrono::DateTime<chrono::Utc>, f64)> = sqlx::query_as(
        "SELECT delete_after, extract(epoch FROM delete_after - now())::float8 FROM tenants \
         WHERE id = $1 AND delete_after > now()",
    )
    .bind(tenant_id)
    .fetch_optional(&ctx.catalog)
    .await?;
    Ok(left.map(|(until, secs)| JobError::Postpone {
        delay: std::time::Duration::from_secs_f64(secs.max(0.0)),
        reason: format!(
            "in the grace period: the database is dropped at {} (catalog time)",
            until.to_rfc3339()
        ),
    }))
}
