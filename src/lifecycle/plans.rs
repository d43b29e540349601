//! Plans and their per-owner tenant limits (`can-provision`).

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::{Postgres, Transaction};

/// The answer to "may this owner have another tenant on this plan?".
#[derive(Debug, Clone, Serialize)]
pub struct Allowance {
    pub owner: String,
    pub plan: String,
    pub allowed: bool,
    /// Tenants the owner already has on this plan (not failed or deleted).
    pub used: i64,
    /// `None` means unlimited.
    pub limit: Option<i32>,
}

/// Checks the plan exists and counts the owner's tenants on it. Inside a
/// transaction that locked the owner row, the answer holds until commit.
pub async fn allowance(
    tx: &mut Transaction<'_, Postgres>,
    owner_email: &str,
    plan: &str,
) -> Result<Option<Allowance>> {
    // PostgreSQL text cannot hold NUL, so no plan has such a name; asking
    // would fail as a server error instead of an unknown plan.
    if plan.contains('\0') {
        return Ok(None);
    }
    let Some(limit): Option<Option<i32>> =
        sqlx::query_scalar("SELECT max_tenants_per_owner FROM plans WHERE name = $1")
            .bind(plan)
            .fetch_optional(&mut **tx)
            .await
            .context("reading plan")?
    else {
        return Ok(None);
    };
    let used: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tenants t JOIN owners o ON o.id = t.owner_id \
         WHERE o.email = $1 AND t.plan = $2 AND t.status NOT IN ('failed', 'deleted')",
    )
    .bind(owner_email)
    .bind(plan)
    .fetch_one(&mut **tx)
    .await
    .context("counting the owner's tenants")?;
    Ok(Some(Allowance {
        owner: owner_email.to_string(),
        plan: plan.to_string(),
        allowed: limit.is_none_or(|l| used < i64::from(l)),
        used,
        limit,
    }))
}

/// Plan names, for error messages.
pub async fn names(tx: &mut Transaction<'_, Postgres>) -> Result<Vec<String>> {
    sqlx::query_scalar("SELECT name FROM plans ORDER BY name")
        .fetch_all(&mut **tx)
        .await
        .context("reading plans")
}
