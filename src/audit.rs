//! Reading the audit log (`audit_log`): one page of entries, newest first,
//! for all tenants or one, optionally one actor or action, continuing below
//! an entry id (keyset pagination on `audit_log_tenant_id` or the primary key).
//!
//! Entries are written by the operations they record, in the same
//! transaction; this module only reads and must never write or change one.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Largest page.
pub const MAX_PAGE: i64 = 1000;

/// One audit entry, with its tenant's slug.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub tenant: Option<String>,
    pub job_id: Option<Uuid>,
    pub details: serde_json::Value,
}

/// Which entries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant_id: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Entries with a smaller id than this (the previous page's last).
    pub before: Option<i64>,
    pub limit: i64,
}

/// One page, newest first.
pub async fn page(pool: &PgPool, f: &Filter) -> Result<Vec<Entry>> {
    sqlx::query_as!(
        Entry,
        r#"SELECT a.id, a.at, a.actor, a.action, t.slug AS "tenant?", a.job_id, a.details
             FROM audit_log a LEFT JOIN tenants t ON t.id = a.tenant_id
            WHERE ($1::bigint IS NULL OR a.tenant_id = $1)
              AND ($2::text IS NULL OR a.actor = $2)
              AND ($3::text IS NULL OR a.action = $3)
              AND ($4::bigint IS NULL OR a.id < $4)
            ORDER BY a.id DESC LIMIT $5"#,
        f.tenant_id,
        f.actor.as_deref(),
        f.action.as_deref(),
        f.before,
        f.limit.clamp(1, MAX_PAGE),
    )
    .fetch_all(pool)
    .await
    .context("reading the audit log")
}
