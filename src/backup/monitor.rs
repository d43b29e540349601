//! Backup health (laravel-backup's backup:monitor): tenants whose newest
//! complete backup is older than a maximum age (or who have none), and
//! tenants whose stored backups exceed a maximum size. Read from the catalog
//! only; the counts also go to the `landlord_backup_monitor_tenants` gauge,
//! and each tenant's newest backup and stored bytes to
//! `landlord_backup_newest_timestamp_seconds` and
//! `landlord_backup_tenant_stored_bytes`.
//!
//! Every worker (and so `landlord serve`) runs [`refresh_loop`], so those
//! gauges are on its `/metrics` too, not only in `backups monitor
//! --metrics-file`. This module never writes to the catalog or the store.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The default maximum age of a tenant's newest backup (`backups monitor
/// --max-age-hours`), also the one a worker's `stale` count uses; alert
/// rules wanting another age use the per-tenant timestamp gauge instead.
pub const DEFAULT_MAX_AGE_HOURS: u64 = 26;

/// How often a worker refreshes the backup-monitor gauges: one grouped
/// catalog query over the active tenants and their complete backups (on
/// `backups_tenant_idx`), cheap at 10,000 tenants once a minute. A backup
/// this process completes refreshes them at once.
pub const REFRESH_EVERY: Duration = Duration::from_secs(60);

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
    let rows = tenants(pool).await?;
    let report = check(&rows, max_age_hours, max_storage);
    export(&rows, &report);
    Ok(report)
}

/// The active, provisioned tenants with their newest complete backup and
/// its stored bytes.
async fn tenants(pool: &PgPool) -> Result<Vec<TenantHealth>> {
    sqlx::query_as(
        "SELECT t.slug, max(b.completed_at) AS newest, \
                coalesce(sum(b.stored_bytes), 0)::bigint AS stored_bytes, count(b.id) AS backups \
         FROM tenants t LEFT JOIN backups b ON b.tenant_id = t.id AND b.status = 'complete' \
         WHERE t.status = 'active' AND t.provision_step = 'done' \
         GROUP BY t.slug ORDER BY t.slug",
    )
    .fetch_all(pool)
    .await
    .context("reading the tenants' newest backups from the catalog")
}

/// The report on `rows` for a maximum age and an optional size limit.
fn check(rows: &[TenantHealth], max_age_hours: u64, max_storage: Option<u64>) -> Report {
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
    report
}

/// Sets this process's backup-monitor gauges; tenants no longer in `rows`
/// (deleted, suspended) lose their series.
fn export(rows: &[TenantHealth], report: &Report) {
    let m = crate::metrics::get();
    let g = &m.backup_monitor;
    g.with_label_values(&["stale"])
        .set(report.stale.len() as i64);
    g.with_label_values(&["oversize"])
        .set(report.oversize.len() as i64);
    g.with_label_values(&["healthy"]).set(report.healthy as i64);
    m.backup_newest.reset();
    m.backup_tenant_bytes.reset();
    for r in rows {
        let slug = [r.slug.as_str()];
        m.backup_newest
            .with_label_values(&slug)
            .set(r.newest.map_or(0, |n| n.timestamp()));
        m.backup_tenant_bytes
            .with_label_values(&slug)
            .set(r.stored_bytes);
    }
    m.backup_monitor_refreshed.set(Utc::now().timestamp());
}

/// Refreshes the backup-monitor gauges (with [`DEFAULT_MAX_AGE_HOURS`] and
/// no size limit) now, then every [`REFRESH_EVERY`] and after each backup
/// this process completes, until `stop` is cancelled. A failed refresh keeps
/// the previous values (their `refreshed` timestamp ages) and is logged.
pub async fn refresh_loop(pool: PgPool, stop: CancellationToken) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        match tenants(&pool).await {
            Ok(rows) => {
                failures = 0;
                export(&rows, &check(&rows, DEFAULT_MAX_AGE_HOURS, None));
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %format!("{e:#}"), "refreshing the backup monitor gauges failed; keeping the last values");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(REFRESH_EVERY) => {}
            () = crate::metrics::backups_changed() => {}
            () = stop.cancelled() => {}
        }
    }
}
