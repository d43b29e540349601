//! Compensation (`Job::on_dead`) as persisted work, run only under the
//! tenant's lock and retried until it is done.
//!
//! The transaction that ends a job `dead` (or `failed` under `--sync`) also
//! writes `jobs.compensation = 'pending'` when its kind compensates
//! (`store::fail_as`), or when the writer cannot know (the reaper, a build
//! that lacks the kind: `store::Leftovers::Unknown`). From then on:
//!
//! 1. **At once** ([`after_attempt`]): the attempt that recorded the end runs
//!    it under its own tenant lock if it still holds it, else under a fresh
//!    one if the tenant is free. The end leased the compensation to the
//!    attempt for what was left of its lease; a heartbeat extends it.
//! 2. **Later** ([`run_loop`], in every worker): pending compensations of
//!    kinds this build knows are leased one at a time (`compensate_after`,
//!    `compensation_owner`, `FOR UPDATE SKIP LOCKED`), so two workers never
//!    run one together; the tenant lock is taken (busy: try again after
//!    `busy_delay`, costing no try); `on_dead` runs under its kind's timeout
//!    with the lease heartbeated and the lock checked; then `done`, or the
//!    error is recorded and it is tried again with the retry backoff.
//!    Pending rows of kinds known to compensate nothing are cleared; kinds
//!    unknown to this build are left for a worker that knows them.
//!
//! Besides `store::fail_as`, this module is the only writer of the
//! `compensation*` columns. It must never run `on_dead` without the tenant's
//! lock when the job has a tenant, nor for a lease it does not hold.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    runtime::{
        Executor, sessions,
        store::{self, Claimed},
        tenant_lock::TenantLock,
    },
    tenants::Tenant,
    text_enum::text_enum,
};

text_enum! {
    /// `jobs.compensation`: what is left to undo after a job ended. No value
    /// (NULL): nothing.
    pub enum Compensation("compensation") {
        /// Written with the job's end; a worker runs it under the tenant's
        /// lock, again and again until it succeeds.
        Pending = "pending",
        /// `on_dead` ran to its end (`compensated_at`).
        Done = "done",
    }
}

/// The reason recorded while the tenant's lock is taken by another job.
const TENANT_BUSY: &str = "tenant busy: another job holds its lock; compensating later";

/// A pending compensation leased to `owner`.
struct Leased {
    job: Claimed,
    /// The job's last error, passed to `on_dead`.
    error: String,
    /// Failed tries so far.
    tries: i32,
    owner: String,
}

/// How one try ended.
enum Try {
    Done,
    Failed(String),
    /// The tenant lock could not be had (busy, or the catalog did not answer).
    NoLock(String),
    LockLost,
    /// The lease was not extended for two thirds of it, or went to another.
    LeaseLost,
    /// The worker is shutting down.
    Stopped,
}

/// Runs the compensation of `job`, whose end this attempt has just recorded
/// (which leased the compensation to it), before the attempt lets its tenant
/// lock go. `held` is the attempt's lock, if it has one: used if still held,
/// else a fresh lock is tried. Without a lock, it is left to [`run_loop`].
pub async fn after_attempt(
    exec: &Executor,
    job: &Claimed,
    tenant: Option<Tenant>,
    held: Option<&mut TenantLock>,
    error: &str,
) {
    let leased = Leased {
        job: job.clone(),
        error: error.to_string(),
        tries: 0,
        owner: exec.owner.clone(),
    };
    let held = match held {
        Some(l) => l.still_held().await.then_some(l),
        None => None,
    };
    run_leased(exec, leased, tenant, held, &CancellationToken::new()).await;
}

/// The compensation loop of a worker: every `reap_interval`, runs the
/// pending compensations this build knows, one at a time, until `stop`.
pub async fn run_loop(exec: Executor, stop: CancellationToken) {
    let owner = format!("{}/compensation", exec.owner);
    let (compensating, nothing): (Vec<&str>, Vec<&str>) = exec
        .registry
        .kinds()
        .partition(|k| exec.registry.get(k).is_some_and(|s| s.compensates));
    let compensating: Vec<String> = compensating.into_iter().map(str::to_string).collect();
    let nothing: Vec<String> = nothing.into_iter().map(str::to_string).collect();
    let every = exec.settings.worker.reap_interval;
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        match pass(&exec, &owner, &compensating, &nothing, &stop).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %format!("{e:#}"), "compensation loop failed; retrying");
                }
            }
        }
        tokio::select! { _ = tokio::time::sleep(every) => {}, _ = stop.cancelled() => {} }
    }
}

/// One pass: clears what needs nothing, then runs every due compensation.
async fn pass(
    exec: &Executor,
    owner: &str,
    compensating: &[String],
    nothing: &[String],
    stop: &CancellationToken,
) -> Result<()> {
    let pool = &exec.catalog;
    let cleared = clear(pool, nothing).await?;
    if cleared > 0 {
        tracing::info!(
            count = cleared,
            "cleared pending compensations of kinds that have nothing to undo"
        );
    }
    while !stop.is_cancelled() {
        let Some(leased) =
            lease_next(pool, owner, exec.settings.worker.lease, compensating).await?
        else {
            return Ok(());
        };
        let tenant = match store::tenant_of(pool, &leased.job).await {
            Ok(t) => t,
            Err(e) => {
                let why = format!("tenant unavailable: {e:#}");
                let later = exec.settings.worker.busy_delay;
                release(pool, &leased, &why, later, false).await;
                continue;
            }
        };
        let span = tracing::info_span!(
            "compensation",
            job_id = %leased.job.id,
            kind = %leased.job.kind,
            tenant = tenant.as_ref().map(|t| t.slug.as_str()).unwrap_or("-"),
            tries = leased.tries,
        );
        run_leased(exec, leased, tenant, None, stop)
            .instrument(span)
            .await;
    }
    Ok(())
}

/// Runs a leased compensation under the tenant's lock (`held`, or one taken
/// here) and records how the try ended.
async fn run_leased(
    exec: &Executor,
    leased: Leased,
    tenant: Option<Tenant>,
    held: Option<&mut TenantLock>,
    stop: &CancellationToken,
) {
    let mut own = None;
    let outcome = match (held, leased.job.tenant_id) {
        (Some(l), _) => try_once(exec, &leased, tenant, Some(l), stop).await,
        (None, None) => try_once(exec, &leased, tenant, None, stop).await,
        (None, Some(tid)) => match TenantLock::try_acquire(&exec.catalog, tid).await {
            Ok(Some(l)) => {
                let l = own.insert(l);
                try_once(exec, &leased, tenant, Some(l), stop).await
            }
            Ok(None) => Try::NoLock(TENANT_BUSY.to_string()),
            Err(e) => Try::NoLock(format!("tenant lock unavailable: {e:#}")),
        },
    };
    record(exec, &leased, outcome).await;
    if let Some(l) = own {
        l.release().await;
    }
}

/// Writes how a try ended.
async fn record(exec: &Executor, leased: &Leased, outcome: Try) {
    let pool = &exec.catalog;
    let busy = exec.settings.worker.busy_delay;
    match outcome {
        Try::Done => match done(pool, leased).await {
            Ok(true) => tracing::info!("compensation done"),
            Ok(false) => tracing::warn!("compensation done, but its lease had gone to another"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "compensation done but not recorded; it runs again")
            }
        },
        Try::Failed(why) => {
            let later = exec.policy().delay_after((leased.tries + 1).max(1) as u32);
            tracing::error!(error = %why, retry_in_ms = later.as_millis() as u64, "compensation failed; trying again later");
            release(pool, leased, &why, later, true).await;
        }
        Try::NoLock(why) => {
            tracing::info!(reason = %why, "compensation waits for the tenant's lock");
            release(pool, leased, &why, busy, false).await;
        }
        Try::LockLost => {
            let why = "tenant lock lost while compensating; trying again";
            tracing::warn!("{why}");
            release(pool, leased, why, busy, false).await;
        }
        Try::LeaseLost => tracing::warn!("compensation lease lost; another try will run it"),
        Try::Stopped => {
            release(
                pool,
                leased,
                "interrupted by shutdown",
                Duration::ZERO,
                false,
            )
            .await;
        }
    }
}

/// Runs `on_dead` once, under its kind's timeout, heartbeating the lease and
/// checking `lock`.
async fn try_once(
    exec: &Executor,
    leased: &Leased,
    tenant: Option<Tenant>,
    mut lock: Option<&mut TenantLock>,
    stop: &CancellationToken,
) -> Try {
    let job = &leased.job;
    let Some(spec) = exec.registry.get(&job.kind).copied() else {
        return Try::Failed(format!("this worker does not know job kind {:?}", job.kind));
    };
    let Some(work) = exec.compensate(job, tenant, &leased.error) else {
        return Try::Failed(format!("this worker does not know job kind {:?}", job.kind));
    };
    let timeout = spec.timeout(&job.args, &exec.settings);
    let lease = exec.settings.worker.lease;
    let beat = lease / 3;
    // Its sessions and programs carry the name of the job's last attempt,
    // and are ended before the tenant lock is let go.
    let scope = sessions::Scope::new(&job.kind, job.id, job.attempts as u32);
    let label = scope.label().to_string();
    let mut task = tokio::spawn(scope.run(work).in_current_span());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(beat.min(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    let mut last_beat = Instant::now();
    let outcome = loop {
        tokio::select! {
            biased;
            r = &mut task => break match r {
                Ok(Ok(())) => Try::Done,
                Ok(Err(e)) => Try::Failed(e.to_string()),
                Err(j) => Try::Failed(format!("compensation aborted: {j}")),
            },
            _ = stop.cancelled() => break Try::Stopped,
            _ = &mut deadline => break Try::Failed(format!("compensation timed out after {}s", timeout.as_secs())),
            _ = tick.tick() => {}
        }
        if last_beat.elapsed() >= beat {
            last_beat = Instant::now();
            match extend(&exec.catalog, leased, lease).await {
                Ok(true) => last_ok = last_beat,
                Ok(false) => break Try::LeaseLost,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "compensation heartbeat failed")
                }
            }
        }
        if last_ok.elapsed() >= lease - beat {
            break Try::LeaseLost;
        }
        if let Some(l) = lock.as_deref_mut()
            && !l.still_held().await
        {
            break Try::LockLost;
        }
    };
    let aborted = !task.is_finished();
    if aborted {
        task.abort();
        let _ = (&mut task).await;
    }
    sessions::end_attempt(&exec.settings, &label, aborted).await;
    outcome
}

/// Leases the next due pending compensation of one of `kinds`.
async fn lease_next(
    pool: &PgPool,
    owner: &str,
    lease: Duration,
    kinds: &[String],
) -> Result<Option<Leased>> {
    let row = sqlx::query!(
        r#"UPDATE jobs SET compensate_after = now() + make_interval(secs => $2), compensation_owner = $1
           WHERE id = (SELECT id FROM jobs
                       WHERE compensation = 'pending' AND status IN ('dead', 'failed')
                         AND kind = ANY($3) AND (compensate_after IS NULL OR compensate_after <= now())
                       ORDER BY compensate_after NULLS FIRST LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token,
                     last_error, compensation_tries"#,
        owner,
        lease.as_secs_f64(),
        kinds,
    )
    .fetch_optional(pool)
    .await
    .context("leasing a pending compensation")?;
    Ok(row.map(|r| Leased {
        job: Claimed {
            id: r.id,
            kind: r.kind,
            queue: r.queue,
            tenant_id: r.tenant_id,
            args: r.args,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            claim_token: r.claim_token,
        },
        error: r.last_error.unwrap_or_default(),
        tries: r.compensation_tries,
        owner: owner.to_string(),
    }))
}

/// Clears pending compensations of kinds known to have nothing to undo.
async fn clear(pool: &PgPool, kinds: &[String]) -> Result<u64> {
    let n = sqlx::query!(
        "UPDATE jobs SET compensation = NULL, compensation_error = NULL, compensate_after = NULL, \
         compensation_owner = NULL \
         WHERE compensation = 'pending' AND status IN ('dead', 'failed') AND kind = ANY($1)",
        kinds,
    )
    .execute(pool)
    .await
    .context("clearing compensations with nothing to do")?
    .rows_affected();
    Ok(n)
}

/// Extends the lease. `false`: it is no longer ours.
async fn extend(pool: &PgPool, leased: &Leased, lease: Duration) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE jobs SET compensate_after = now() + make_interval(secs => $3) \
         WHERE id = $1 AND compensation = 'pending' AND compensation_owner = $2",
        leased.job.id,
        leased.owner,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await
    .context("extending the compensation lease")?
    .rows_affected();
    Ok(n == 1)
}

/// Marks the compensation done. `false`: the lease was no longer ours.
async fn done(pool: &PgPool, leased: &Leased) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE jobs SET compensation = 'done', compensated_at = now(), compensation_error = NULL, \
         compensate_after = NULL, compensation_owner = NULL \
         WHERE id = $1 AND compensation = 'pending' AND compensation_owner = $2",
        leased.job.id,
        leased.owner,
    )
    .execute(pool)
    .await
    .context("recording the compensation done")?
    .rows_affected();
    Ok(n == 1)
}

/// Gives the lease up with the reason, for another try after `later`
/// (`failed`: the try counts towards the backoff). A write that fails is
/// logged; the lease then runs out by itself.
async fn release(pool: &PgPool, leased: &Leased, why: &str, later: Duration, failed: bool) {
    let res = sqlx::query!(
        "UPDATE jobs SET compensation_error = $3, compensate_after = now() + make_interval(secs => $4), \
         compensation_owner = NULL, \
         compensation_tries = compensation_tries + CASE WHEN $5 THEN 1 ELSE 0 END \
         WHERE id = $1 AND compensation = 'pending' AND compensation_owner = $2",
        leased.job.id,
        leased.owner,
        crate::message::limit(why),
        later.as_secs_f64(),
        failed,
    )
    .execute(pool)
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not record the compensation's try; its lease runs out by itself");
    }
}
