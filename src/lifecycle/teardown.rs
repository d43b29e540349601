//! The end of a tenant's database: drop it (and the role landlord made for
//! it) — or, for a shared tenant, delete only its rows — forget its
//! credentials and record the final status with its event.
//! Shared by deletion (`drop_tenant`) and provisioning compensation. Safe to
//! run again: every step tolerates what an earlier run already did.

use anyhow::{Context, Result};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    config::Settings,
    lifecycle::credentials,
    runtime::store,
    tenant_schema,
    tenants::{Isolation, Tenant, TenantStatus},
};

/// What the tenant becomes and how it is announced.
#[derive(Debug, Clone)]
pub struct Retirement<'a> {
    /// `Failed` or `Deleted`.
    pub status: TenantStatus,
    pub reason: Option<&'a str>,
    /// Whether to drop `{db}_app` (only roles landlord made).
    pub drop_role: bool,
    pub event: &'a str,
    pub data: Value,
    pub actor: &'a str,
    pub job_id: Option<Uuid>,
}

/// Drops the database (ending its sessions) and the role, then records the outcome.
pub async fn retire(
    catalog: &PgPool,
    settings: &Settings,
    t: &Tenant,
    r: Retirement<'_>,
) -> Result<()> {
    if t.isolation == Isolation::Shared {
        // Only this tenant's rows go; the shared database stays.
        crate::backup::shared::delete_rows(settings, t, &crate::backup::shared::scope(settings))
            .await
            .context("deleting the shared tenant's rows")?;
    } else {
        let admin = tenant_schema::admin(settings, &t.db_server).await?;
        tenant_schema::drop_database(&admin, &t.db_name).await?;
        admin.close().await;
    }
    if r.drop_role {
        credentials::drop_role(settings, &t.db_server, &t.db_name).await?;
    }
    let mut tx = catalog.begin().await.context("starting transaction")?;
    sqlx::query("DELETE FROM tenant_credentials WHERE tenant_id = $1")
        .bind(t.id)
        .execute(&mut *tx)
        .await
        .context("forgetting credentials")?;
    sqlx::query("UPDATE tenants SET status = $2, status_reason = $3, db_role = NULL, updated_at = now() WHERE id = $1")
        .bind(t.id)
        .bind(r.status)
        .bind(r.reason)
        .execute(&mut *tx)
        .await
        .context("recording the tenant's status")?;
    store::record(&mut tx, r.actor, r.event, (t.id, &t.slug), r.job_id, r.data).await?;
    tx.commit().await.context("committing")?;
    Ok(())
}
