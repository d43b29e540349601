//! `drop_tenant`: the end of a deletion. Drops the tenant's database and role
//! once the grace period is over; the tenant becomes `deleted`. Idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    lifecycle::teardown::{self, Retirement},
    runtime::{Job, JobContext, JobError},
    tenants,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTenant {}

impl Job for DropTenant {
    const KIND: &'static str = "drop_tenant";
    const QUEUE: &'static str = "provision";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 10;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let slug = ctx.tenant()?.slug.clone();
        let t = tenants::get(&ctx.catalog, &slug)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        if t.status == "deleted" {
            return Ok(json!({"tenant": slug, "already_deleted": true}));
        }
        if t.status != "deleting" {
            return Err(JobError::fatal(format!(
                "tenant {slug} is {}, not deleting",
                t.status
            )));
        }
        // A deletion that asked for a final backup drops nothing without it.
        let final_backup: Option<(uuid::Uuid, String, Option<String>)> = sqlx::query_as(
            "SELECT j.id, j.status, j.last_error FROM tenants t JOIN jobs j ON j.id = t.final_backup_job \
             WHERE t.id = $1",
        )
        .bind(t.id)
        .fetch_optional(&ctx.catalog)
        .await?;
        if let Some((job, status, error)) = &final_backup {
            match status.as_str() {
                "succeeded" => {}
                "dead" | "failed" | "cancelled" => {
                    return Err(JobError::fatal(format!(
                        "the final backup (job {job}) ended {status}: {}; the database is kept. \
                         Retry it with `landlord jobs retry {job}`, then this job",
                        error.as_deref().unwrap_or("no error recorded")
                    )));
                }
                _ => {
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
                status: "deleted",
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
        .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        Ok(json!({"tenant": slug, "dropped": t.db_name}))
    }
}
