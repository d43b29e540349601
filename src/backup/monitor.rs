//! Backup health (laravel-backup's backup:monitor): tenants whose newest
//! complete backup is older than a maximum age (or who have none), and
//! tenants whose stored backups exceed a maximum size. Read from the catalog
//! only; the counts also go to the `landlord_backup_monitor_tenants` gauge.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TenantHealth {
    pub slug: String,
    pub newest: Option<DateTime<Utc>>,
    pub stored_bytes: i64,
    pub backups: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub max_age_hours: u64,
    pub max_storage_bytes: Option<u64>,
    pub tenants: usize,
    pub healthy: usize,
    /// (tenant, newest backup or null)
    pub stale: Vec<(String, Option<DateTime<Utc>>)>,
    /// (tenant, stored bytes)
    pub oversize: Vec<(String, i64)>,
}

impl Report {
    pub fn is_healthy(&self) -> bool {
        self.stale.is_empty() && self.oversize.is_empty()
    }
}

/// Checks every active tenant with its own database.
pub async fn run(pool: &PgPool, max_age_hours: u64, max_storage: Option<u64>) -> Result<Report> {
    let rows: Vec<TenantHealth> = sqlx::query_as(
        "SELECT t.slug, max(b.completed_at) AS newest, \
                coalesce(sum(b.stored_bytes), 0)::bigint AS stored_bytes, count(b.id) AS backups \
         FROM tenants t LEFT JOIN backups b ON b.tenant_id = t.id AND b.status = 'complete' \
         WHERE t.status = 'active' AND t.provision_step = 'done' \
         GROUP BY t.slug ORDER BY t.slug",
    )
    .fetch_all(pool)
    .await?;
    let cutoff = Utc::now() - chrono::Duration::hours(max_age_hours as i64);
    let mut report = Report {
        max_age_hours,
        max_storage_bytes: max_storage,
        tenants: rows.len(),
        healthy: 0,
        stale: Vec::new(),
        oversize: Vec::new(),
    };
    for r in rows {
        let stale = r.newest.is_none_or(|n| n < cutoff);
        let over = max_storage.is_some_and(|m| r.stored_bytes as u64 > m);
        if stale {
            report.stale.push((r.slug.clone(), r.newest));
        }
        if over {
            report.oversize.push((r.slug.clone(), r.stored_bytes));
        }
        if !stale && !over {
            report.healthy += 1;
        }
    }
    let g = &crate::metrics::get().backup_monitor;
    g.with_label_values(&["stale"])
        .set(report.stale.len() as i64);
    g.with_label_values(&["oversize"])
        .set(report.oversize.len() as i64);
    g.with_label_values(&["healthy"]).set(report.healthy as i64);
    Ok(report)
}
