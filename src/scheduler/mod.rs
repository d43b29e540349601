//! The scheduler role (`landlord scheduler`): fires configured schedules and
//! fans each firing out into one job per tenant.
//!
//! Run several for availability: exactly one leads, by holding a session
//! advisory lock in the catalog on a dedicated connection. If the leader dies
//! its connection closes, the lock is free, and another replica takes over
//! within a second. Firings are rows keyed by schedule and fire time, and each
//! tenant's job has a dedupe key built from both, so a change of leader or a
//! crash in the middle of a fan-out never doubles a job. One process at a time
//! fans a schedule out (a lock per schedule, see `fanout.rs`): the leader leaves
//! alone a firing that `schedule run` or a previous leader is still fanning
//! out. This module never runs jobs itself. A standalone scheduler serves
//! `/metrics` (`landlord_scheduler_leader`: 1 on the leader, 0 elsewhere),
//! `/healthz` and `/readyz` on `LANDLORD_LISTEN`, like a worker.
//!
//! Each tick the leader re-checks its lock, finishes firings left
//! `fanning_out` by a crashed leader, then per schedule computes the fire
//! times since its last recorded firing (or the process start): all but the
//! latest are recorded `missed`, and the latest fans out if it is still within
//! the schedule's `starting_deadline_seconds` (else it is `missed` too).
//! Afterwards it relays the outbox itself, so the jobs go out at once.
//!
//! Every time a decision rests on is the catalog's clock, never the
//! process's: "now" of a tick and the start of the scheduler are one
//! `SELECT now()` each ([`catalog_now`]), and `schedule run` fires at the
//! catalog's now too. Fire times from different hosts land in one table and
//! are compared with one another (`max(fire_at)` decides what is due), so a
//! host whose clock runs ahead would otherwise record a firing in the future
//! and silently suppress every real firing until then, with none recorded
//! `missed`. The process clock is used only for timers (tokio's monotonic
//! clock).
//!
//! Files: `schedule` (parsing and checking `[[schedules]]`: cron, time zone,
//! kind, arguments; any error stops the start naming the schedule), `fanout`
//! (one firing into one job per tenant), `state` (a firing's status),
//! `report` (what the schedules did and will do; firing one now).

mod fanout;
pub mod report;
mod schedule;
mod state;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, pool::PoolConnection};

pub use fanout::{FanOut, IfBusy, fan_out, firing_pattern, job_key};
pub use schedule::{Schedule, parse_all};
pub use state::FiringStatus;

use crate::{
    config::Settings,
    connections::Connections,
    metrics,
    runtime::{Registry, relay, worker::owner_id},
};

/// Most occurrences looked at per schedule and tick (a long outage of a
/// per-second schedule must not stall the loop).
const MAX_DUE: usize = 1000;

/// The catalog's clock: the one source of "now" for every scheduling
/// decision (fire times, lateness, the start of a scheduler, `schedule run`).
pub async fn catalog_now(pool: &PgPool) -> Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(pool)
        .await
        .context("reading the catalog's clock")
}

/// Tries to become leader; keeps the lock's connection while leading.
async fn try_lead(pool: &PgPool) -> Result<Option<PoolConnection<Postgres>>> {
    let mut conn = pool.acquire().await.context("scheduler lock connection")?;
    conn.close_on_drop();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('landlord-scheduler-leader'))")
            .fetch_one(&mut *conn)
            .await
            .context("taking the leader lock")?;
    Ok(got.then_some(conn))
}

/// Fire times of `s` in `(after, now]`, oldest first, at most [`MAX_DUE`].
fn due(s: &Schedule, after: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = after;
    while let Some(next) = s.next_after(t) {
        if next > now || out.len() >= MAX_DUE {
            break;
        }
        out.push(next);
        t = next;
    }
    out
}

/// Whether the leader lock's connection still answers (the lock is held as
/// long as it does).
async fn still_leader(lock: &mut PoolConnection<Postgres>) -> bool {
    sqlx::query("SELECT 1").execute(&mut **lock).await.is_ok()
}

/// One pass of the leader: finish interrupted fan-outs, then fire what is due.
/// A firing another process is fanning out (`schedule run`, a previous
/// leader still finishing) is left to it; the pass stops as soon as the
/// leader lock is lost.
async fn tick(
    pool: &PgPool,
    lock: &mut PoolConnection<Postgres>,
    registry: &Registry,
    schedules: &[Schedule],
    since: DateTime<Utc>,
    leader: &str,
) -> Result<()> {
    let now = catalog_now(pool).await?;
    let open: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT schedule, fire_at FROM schedule_firings WHERE status = 'fanning_out' ORDER BY fire_at")
            .fetch_all(pool)
            .await
            .context("finding interrupted fan-outs")?;
    for (name, fire_at) in open {
        if let Some(s) = schedules.iter().find(|s| s.name() == name) {
            if !still_leader(lock).await {
                bail!("lost the leader lock");
            }
            match fan_out(pool, registry, s, fire_at, leader, IfBusy::Skip).await? {
                Some(f) => {
                    tracing::info!(schedule = %name, %fire_at, jobs = f.jobs, "finished an interrupted fan-out")
                }
                None => {
                    tracing::debug!(schedule = %name, %fire_at, "another process is fanning this schedule out")
                }
            }
        }
    }
    for s in schedules {
        let last: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(fire_at) FROM schedule_firings WHERE schedule = $1")
                .bind(s.name())
                .fetch_one(pool)
                .await
                .context("reading the last firing")?;
        let times = due(s, last.unwrap_or(since), now);
        let Some((&latest, earlier)) = times.split_last() else {
            continue;
        };
        // Missed while no scheduler ran: only the latest may still run.
        for &t in earlier {
            if fanout::record_missed(pool, s.name(), t, leader).await? {
                metrics::get()
                    .firings
                    .with_label_values(&[s.name(), "missed"])
                    .inc();
                tracing::warn!(schedule = s.name(), fire_at = %t, "firing missed");
            }
        }
        let late = (now - latest).num_seconds();
        if late > i64::from(s.spec.starting_deadline_seconds) {
            if fanout::record_missed(pool, s.name(), latest, leader).await? {
                metrics::get()
                    .firings
                    .with_label_values(&[s.name(), "missed"])
                    .inc();
                tracing::warn!(schedule = s.name(), fire_at = %latest, late_s = late, "firing missed its starting deadline");
            }
            continue;
        }
        if !still_leader(lock).await {
            bail!("lost the leader lock");
        }
        // Busy: someone else fans this schedule out now; due again next pass.
        let Some(f) = fan_out(pool, registry, s, latest, leader, IfBusy::Skip).await? else {
            tracing::debug!(schedule = s.name(), fire_at = %latest, "another process is fanning this schedule out");
            continue;
        };
        metrics::get()
            .firings
            .with_label_values(&[s.name(), "fired"])
            .inc();
        tracing::info!(schedule = s.name(), fire_at = %latest, jobs = f.jobs, skipped = f.skipped, "schedule fired");
    }
    Ok(())
}

/// Runs the scheduler role until `shutdown` resolves, firing `schedules`
/// (parsed by the caller with [`parse_all`]).
pub async fn run(
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    schedules: Vec<Schedule>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let me = owner_id("scheduler");
    let conns = Connections::for_sessions(&settings, &me).await?;
    // `/metrics` (`landlord_scheduler_leader`, firings), `/healthz`, `/readyz`.
    let health = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = &settings.observability.listen {
        crate::http::serve(
            addr,
            conns.catalog.clone(),
            Some(conns.broker.clone()),
            health.clone(),
        )
        .await?;
    }
    if let Err(e) = conns.broker.connect().await {
        tracing::warn!(error = %format!("{e:#}"), "RabbitMQ not reachable yet; fan-outs wait in the outbox");
    }
    let ran = run_on(registry, schedules, &conns, me, shutdown).await;
    health.cancel();
    conns.close().await;
    ran
}

/// [`run`] on connections it was handed (and leaves open), as `me`.
pub async fn run_on(
    registry: Arc<Registry>,
    schedules: Vec<Schedule>,
    conns: &Connections,
    me: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (pool, broker) = (&conns.catalog, &conns.broker);
    let since = catalog_now(pool).await?;
    let mut lock: Option<PoolConnection<Postgres>> = None;
    tokio::pin!(shutdown);
    tracing::info!(schedules = schedules.len(), owner = %me, "scheduler started");
    loop {
        if lock.is_none() {
            match try_lead(pool).await {
                Ok(Some(c)) => {
                    tracing::info!(owner = %me, "became leader");
                    metrics::get().scheduler_leader.set(1);
                    lock = Some(c);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot reach the catalog"),
            }
        } else if let Some(c) = lock.as_mut()
            && !still_leader(c).await
        {
            tracing::warn!("lost the leader lock's connection; no longer leader");
            metrics::get().scheduler_leader.set(0);
            lock = None;
        }
        if let Some(c) = lock.as_mut() {
            match tick(pool, c, &registry, &schedules, since, &me).await {
                Ok(()) => {
                    // Publish what the fan-outs wrote now; workers' relays would too.
                    relay::drain(pool, broker).await;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "scheduler tick failed; retrying")
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    drop(lock);
    tracing::info!("scheduler stopped");
    Ok(())
}
