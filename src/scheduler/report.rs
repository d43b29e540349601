//! What the schedules did and will do, for `schedule list|history|run`, the
//! API and the console: each schedule with its next fire time (in its own
//! zone) and its last firing with the outcomes of that firing's jobs, a
//! schedule's past firings, and firing one now.
//!
//! Reads `schedule_firings` and `jobs`; the only write is [`run_now`], which
//! goes through [`fan_out`] like the scheduler itself. Times are the
//! catalog's ([`catalog_now`]), never this host's.

use std::collections::BTreeMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::{FanOut, FiringStatus, IfBusy, Schedule, catalog_now, fan_out, firing_pattern};
use crate::runtime::{JobStatus, Registry};

/// Most firings [`history`] returns.
pub const MAX_HISTORY: i64 = 10_000;

/// One recorded firing of a schedule.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Firing {
    pub fire_at: DateTime<Utc>,
    pub status: FiringStatus,
    pub jobs: i32,
    pub skipped: i32,
    pub leader: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A schedule as configured, with its next fire time and its last firing.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub args: serde_json::Value,
    /// The next fire time after the catalog's now, in the schedule's zone.
    pub next: Option<String>,
    pub last: Option<Firing>,
    /// Jobs of the last firing by status.
    pub last_outcomes: BTreeMap<JobStatus, i64>,
}

/// What [`run_now`] fired.
#[derive(Debug, Clone, Serialize)]
pub struct Fired {
    pub schedule: String,
    pub fire_at: DateTime<Utc>,
    pub jobs: i64,
    pub skipped: i64,
}

/// The schedule named `name`, or an error naming the configured ones.
pub fn find<'a>(schedules: &'a [Schedule], name: &str) -> Result<&'a Schedule, String> {
    schedules.iter().find(|s| s.name() == name).ok_or_else(|| {
        format!(
            "unknown schedule {:?}; schedules: {}",
            crate::message::truncate(name),
            schedules
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Every schedule with its next fire time and last firing.
pub async fn list(pool: &PgPool, schedules: &[Schedule]) -> Result<Vec<ScheduleReport>> {
    let now = catalog_now(pool).await?;
    let mut out = Vec::with_capacity(schedules.len());
    for s in schedules {
        let last = history(pool, s.name(), 1).await?.into_iter().next();
        let last_outcomes = match &last {
            Some(f) => outcomes(pool, s.name(), f.fire_at).await?,
            None => BTreeMap::new(),
        };
        out.push(ScheduleReport {
            name: s.name().to_string(),
            cron: s.spec.cron.clone(),
            timezone: s.spec.timezone.clone(),
            kind: s.spec.kind.clone(),
            args: s.spec.args.clone(),
            next: s.next_local(now),
            last,
            last_outcomes,
        });
    }
    Ok(out)
}

/// A schedule's firings, newest first, at most `limit` (clamped to 1..=10000).
pub async fn history(pool: &PgPool, schedule: &str, limit: i64) -> Result<Vec<Firing>> {
    let rows = sqlx::query_as!(
        Firing,
        r#"SELECT fire_at, status AS "status: FiringStatus", jobs, skipped, leader, finished_at
             FROM schedule_firings WHERE schedule = $1 ORDER BY fire_at DESC LIMIT $2"#,
        schedule,
        limit.clamp(1, MAX_HISTORY)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The jobs of one firing by status (their dedupe keys name the firing).
pub async fn outcomes(
    pool: &PgPool,
    schedule: &str,
    fire_at: DateTime<Utc>,
) -> Result<BTreeMap<JobStatus, i64>> {
    let rows = sqlx::query!(
        r#"SELECT status AS "status!: JobStatus", count(*) AS "n!" FROM jobs
            WHERE dedupe_key LIKE $1 GROUP BY status"#,
        firing_pattern(schedule, fire_at)
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.status, r.n)).collect())
}

/// Fires `s` at the catalog's now (to the second, as fire times in dedupe
/// keys are), with the scheduler's dedupe rules; waits while another process
/// fans the same schedule out. The caller relays the outbox.
pub async fn run_now(
    pool: &PgPool,
    registry: &Registry,
    s: &Schedule,
    owner: &str,
) -> Result<Fired> {
    let now = catalog_now(pool).await?;
    let fire_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let f: FanOut = fan_out(pool, registry, s, fire_at, owner, IfBusy::Wait)
        .await?
        .unwrap_or_default();
    Ok(Fired {
        schedule: s.name().to_string(),
        fire_at,
        jobs: f.jobs,
        skipped: f.skipped,
    })
}
