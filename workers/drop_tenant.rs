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
                data: json!({"database": t.db_name, "server": t.db_server}),
                actor: "landlord:drop_tenant",
                job_id: Some(ctx.job_id),
            },
        )
        .await
        .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        Ok(json!({"tenant": slug, "dropped": t.db_name}))
    }
}
