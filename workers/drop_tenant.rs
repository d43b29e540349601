//! `drop_tenant`: the end of a deletion. Drops the tenant's database and role
//! once the grace period is over; the tenant becomes `deleted`. Idempotent.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    lifecycle::credentials,
    runtime::{Job, JobContext, JobError, store},
    tenant_schema, tenants,
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
        let admin = tenant_schema::admin(&ctx.settings, &t.db_server)
            .await
            .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        tenant_schema::drop_database(&admin, &t.db_name)
            .await
            .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        admin.close().await;
        // Only a role landlord made (adopted tenants bring their own access).
        if t.db_role.is_some() {
            credentials::drop_role(&ctx.settings, &t.db_server, &t.db_name)
                .await
                .map_err(|e| JobError::retryable(format!("{e:#}")))?;
        }
        let mut tx = ctx.catalog.begin().await?;
        sqlx::query("DELETE FROM tenant_credentials WHERE tenant_id = $1")
            .bind(t.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE tenants SET status = 'deleted', status_reason = NULL, db_role = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(t.id)
        .execute(&mut *tx)
        .await?;
        store::insert_event(
            &mut tx,
            "tenant.deleted",
            Some(&t.slug),
            Some(ctx.job_id),
            json!({"database": t.db_name, "server": t.db_server}),
        )
        .await?;
        store::audit(
            &mut tx,
            "landlord:drop_tenant",
            "tenant.deleted",
            Some(t.id),
            Some(ctx.job_id),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(json!({"tenant": slug, "dropped": t.db_name}))
    }
}
