//! Status changes (activate, deactivate, suspend) and settings updates.
//! An inactive or suspended tenant's role loses LOGIN and its sessions are
//! ended; reactivation gives LOGIN back.

use anyhow::Context;
use serde_json::{Map, Value};
use sqlx::PgPool;

use crate::{
    config::Settings,
    lifecycle::{LifecycleError, settings as tenant_settings},
    runtime::store,
    tenants::{self, Tenant, TenantStatus},
};

crate::text_enum::text_enum! {
    /// Statuses an operator can set.
    pub enum TargetStatus("status") {
        Active = "active",
        Inactive = "inactive",
        Suspended = "suspended",
    }
}

impl From<TargetStatus> for TenantStatus {
    fn from(s: TargetStatus) -> Self {
        match s {
            TargetStatus::Active => Self::Active,
            TargetStatus::Inactive => Self::Inactive,
            TargetStatus::Suspended => Self::Suspended,
        }
    }
}

/// Moves a tenant between active, inactive and suspended, with its event.
/// Setting the status it already has changes nothing and emits nothing.
pub async fn change_status(
    pool: &PgPool,
    settings: &Settings,
    slug: &str,
    to: TargetStatus,
    reason: Option<&str>,
    actor: &str,
) -> Result<Tenant, LifecycleError> {
    if to == TargetStatus::Suspended && reason.is_none_or(|r| r.trim().is_empty()) {
        return Err(LifecycleError::Invalid(
            "suspending needs a reason (--reason)".into(),
        ));
    }
    if let Some(r) = reason
        && r.chars().count() > 1000
    {
        return Err(LifecycleError::Invalid(
            "the reason is longer than 1000 characters".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    let t = tenants::lock_in(&mut tx, slug).await?;
    if !t.status.is_in_service() {
        return Err(LifecycleError::Conflict(format!(
            "tenant {slug} is {}; only active, inactive or suspended tenants change status",
            t.status
        )));
    }
    if t.status == TenantStatus::from(to) && t.status_reason.as_deref() == reason {
        return Ok(t);
    }
    if let Some(role) = &t.db_role {
        crate::lifecycle::credentials::set_login(
            settings,
            &t.db_server,
            role,
            to == TargetStatus::Active,
        )
        .await?;
    }
    let reason = if to == TargetStatus::Active {
        None
    } else {
        reason
    };
    sqlx::query(
        "UPDATE tenants SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1",
    )
    .bind(t.id)
    .bind(to.as_str())
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    let data =
        serde_json::json!({"from": t.status, "to": to.as_str(), "reason": reason, "actor": actor});
    store::record(
        &mut tx,
        actor,
        "tenant.status_changed",
        (t.id, &t.slug),
        None,
        data,
    )
    .await?;
    tx.commit().await.context("committing status change")?;
    Ok(tenants::get(pool, slug).await?)
}

/// Sets (`Some`) or removes (`None`) settings keys, validated, with an event.
pub async fn update_settings(
    pool: &PgPool,
    slug: &str,
    changes: &Map<String, Value>,
    unset: &[String],
    actor: &str,
) -> Result<Tenant, LifecycleError> {
    tenant_settings::validate(pool, changes)
        .await
        .map_err(LifecycleError::Invalid)?;
    for k in unset {
        if !tenant_settings::KEYS.contains(&k.as_str()) {
            return Err(LifecycleError::Invalid(format!(
                "unknown setting {:?}; known settings: {}",
                crate::message::truncate(k),
                tenant_settings::KEYS.join(", ")
            )));
        }
    }
    let mut tx = pool.begin().await?;
    let t = tenants::lock_in(&mut tx, slug).await?;
    let mut settings = t.settings.as_object().cloned().unwrap_or_default();
    let before = Value::Object(settings.clone());
    for (k, v) in changes {
        settings.insert(k.clone(), v.clone());
    }
    for k in unset {
        settings.remove(k);
    }
    let after = Value::Object(settings);
    if after == before {
        return Ok(t);
    }
    sqlx::query("UPDATE tenants SET settings = $2, updated_at = now() WHERE id = $1")
        .bind(t.id)
        .bind(&after)
        .execute(&mut *tx)
        .await?;
    let data = serde_json::json!({"before": before, "after": after, "actor": actor});
    store::record(
        &mut tx,
        actor,
        "tenant.settings_changed",
        (t.id, &t.slug),
        None,
        data,
    )
    .await?;
    tx.commit().await.context("committing settings")?;
    Ok(tenants::get(pool, slug).await?)
}
