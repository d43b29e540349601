//! Which tenants a command acts on: one named tenant (unknown is bad input),
//! or the `--tenant A,B` / `--all` selection of the per-tenant commands.
//!
//! Read-only: it must never enqueue, nor change a tenant.

use anyhow::Result;
use sqlx::PgPool;

use crate::{
    cli::BadInput,
    tenants::{self, Tenant, TenantStatus},
};

/// The tenant `slug` names; an unknown slug is bad input.
pub(super) async fn tenant(pool: &PgPool, slug: &str) -> Result<Tenant> {
    Ok(tenants::get(pool, slug)
        .await
        .map_err(|e| BadInput(e.to_string()))?)
}

/// With `all`, every active tenant that `keep` accepts; else the `named`
/// ones, each checked to exist before anything is enqueued (bad input
/// changes nothing).
pub(super) async fn slugs(
    pool: &PgPool,
    named: &[String],
    all: bool,
    keep: fn(&Tenant) -> bool,
) -> Result<Vec<String>> {
    if all {
        return Ok(tenants::list(pool, Some(TenantStatus::Active))
            .await?
            .into_iter()
            .filter(keep)
            .map(|t| t.slug)
            .collect());
    }
    for s in named {
        tenant(pool, s).await?;
    }
    Ok(named.to_vec())
}
