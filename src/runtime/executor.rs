//! Runs one claimed attempt: heartbeat, timeout, panic capture, fencing, and
//! recording the outcome. Used by fleet workers and by `--sync` alike, so a
//! job behaves the same wherever it runs.
//!
//! `Executor::attempt` goes phase by phase: start (the kind's handler and
//! context), heartbeat (`Heartbeat`), run (`run_handler`), settle (what the
//! stop means) and record. It never writes an outcome for an attempt that
//! lost its lease or its tenant lock: every write goes through `store`,
//! fenced on lease owner and claim token.

use std::{
    ops::ControlFlow,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::Settings,
    metrics,
    runtime::{
        JobContext, JobError, KindSpec, Registry, RetryPolicy,
        store::{self, Claimed, FailOutcome},
        tenant_lock::TenantLock,
    },
    tenants::Tenant,
};

/// Why the heartbeat stopped an attempt.
const HELD: u8 = 0;
const LEASE_LOST: u8 = 1;
const LOCK_LOST: u8 = 2;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Succeeded(serde_json::Value),
    Failed(FailOutcome, String),
    /// The attempt lost its lease or its tenant lock; nothing was recorded.
    Lost,
    /// Shutdown deadline passed; the job went back to the queue.
    HandedBack,
    /// The handler found a shared resource busy; the job runs again later
    /// without spending an attempt.
    Postponed,
}

/// Everything needed to run attempts.
#[derive(Clone)]
pub struct Executor {
    pub catalog: PgPool,
    pub settings: Arc<Settings>,
    pub registry: Arc<Registry>,
    /// Lease owner id of this process.
    pub owner: String,
}

impl Executor {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.settings.worker.retry_base,
            max: self.settings.worker.retry_max,
        }
    }

    /// Runs one claimed attempt to its end and records it.
    pub async fn execute(
        &self,
        job: Claimed,
        tenant: Option<Tenant>,
        lock: Option<TenantLock>,
        hard_stop: CancellationToken,
        sync: bool,
    ) -> Result<Ending> {
        let lock = Arc::new(tokio::sync::Mutex::new(lock));
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            kind = %job.kind,
            tenant = tenant.as_ref().map(|t| t.slug.as_str()).unwrap_or("-"),
            attempt = job.attempts,
        );
        let m = metrics::get();
        m.in_flight.inc();
        let started = Instant::now();
        let ending = self
            .attempt(&job, tenant, lock.clone(), hard_stop, sync)
            .instrument(span.clone())
            .await;
        m.in_flight.dec();
        m.job_duration
            .with_label_values(&[job.kind.as_str()])
            .observe(started.elapsed().as_secs_f64());
        if let Some(l) = lock.lock().await.take() {
            l.release().await;
        }
        let ending = ending?;
        let outcome = match &ending {
            Ending::Succeeded(_) => "succeeded",
            Ending::Failed(FailOutcome::Retrying { .. }, _) => "retrying",
            Ending::Failed(FailOutcome::Dead, _) => "dead",
            Ending::Failed(FailOutcome::Failed, _) => "failed",
            Ending::Failed(FailOutcome::Lost, _) | Ending::Lost => "lost",
            Ending::HandedBack => "handed_back",
            Ending::Postponed => "postponed",
        };
        m.jobs
            .with_label_values(&[job.kind.as_str(), outcome])
            .inc();
        if matches!(ending, Ending::Failed(FailOutcome::Retrying { .. }, _)) {
            m.retries.with_label_values(&[job.kind.as_str()]).inc();
        }
        let _e = span.enter();
        match &ending {
            Ending::Succeeded(_) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "job succeeded"
            ),
            Ending::Failed(o, err) => {
                tracing::warn!(outcome = ?o, error = %err, "job attempt failed")
            }
            Ending::Lost => {
                tracing::warn!("attempt lost its lease or tenant lock; result discarded")
            }
            Ending::HandedBack => tracing::warn!("job handed back at shutdown"),
            Ending::Postponed => tracing::info!("job postponed: a shared resource is busy"),
        }
        Ok(ending)
    }

    /// One attempt, phase by phase: start (the kind's handler and context),
    /// heartbeat, run (the handler under its timeout), then record.
    async fn attempt(
        &self,
        job: &Claimed,
        tenant: Option<Tenant>,
        lock: SharedLock,
        hard_stop: CancellationToken,
        sync: bool,
    ) -> Result<Ending> {
        let Some(spec) = self.registry.get(&job.kind).copied() else {
            return self.refuse_unknown_kind(job, sync).await;
        };
        let ctx = self.context(job, tenant);
        let heartbeat = Heartbeat::start(self, job, ctx.cancel.clone(), lock.clone());
        let timeout = spec.timeout(&job.args, &self.settings);
        let stop = run_handler(&spec, job, &ctx, timeout, &hard_stop).await;
        let lost = heartbeat.stop().await;
        let result = match self.settle(job, stop, lost, timeout).await? {
            ControlFlow::Break(ending) => return Ok(ending),
            ControlFlow::Continue(result) => result,
        };
        self.record(job, &spec, ctx, &lock, result, sync).await
    }

    /// Fails a job whose kind this build does not know; no attempt runs.
    async fn refuse_unknown_kind(&self, job: &Claimed, sync: bool) -> Result<Ending> {
        let err = JobError::fatal(format!("this worker does not know job kind {:?}", job.kind));
        let policy = self.policy();
        let out = self
            .persist(|| store::fail(&self.catalog, job, &self.owner, &err, &policy, sync))
            .await?;
        Ok(Ending::Failed(out, err.to_string()))
    }

    /// What the attempt's stop means: the handler's result to record, or an
    /// ending with nothing to record (lease lost, handed back at shutdown).
    /// `lost` is why the heartbeat stopped the attempt, if it did.
    async fn settle(
        &self,
        job: &Claimed,
        stop: Stop,
        lost: u8,
        timeout: Duration,
    ) -> Result<ControlFlow<Ending, Result<serde_json::Value, JobError>>> {
        let result: Result<serde_json::Value, JobError> = match stop {
            Stop::Lost if lost == LOCK_LOST => {
                Err(JobError::retryable("tenant lock lost during the attempt"))
            }
            Stop::Lost => return Ok(ControlFlow::Break(Ending::Lost)),
            Stop::Shutdown => {
                return Ok(ControlFlow::Break(
                    if store::hand_back(&self.catalog, job, &self.owner).await? {
                        Ending::HandedBack
                    } else {
                        Ending::Lost
                    },
                ));
            }
            Stop::Timeout => Err(JobError::retryable(format!(
                "timed out after {}s",
                timeout.as_secs()
            ))),
            Stop::Done(Err(join)) if join.is_panic() => Err(JobError::retryable(format!(
                "handler panicked: {}",
                panic_message(join.into_panic())
            ))),
            Stop::Done(Err(join)) => Err(JobError::retryable(format!("handler aborted: {join}"))),
            Stop::Done(Ok(r)) => r,
        };
        if lost == LEASE_LOST {
            return Ok(ControlFlow::Break(Ending::Lost));
        }
        Ok(ControlFlow::Continue(result))
    }

    /// Records the attempt's result, fenced: nothing is written unless the
    /// tenant lock is still ours (the writes themselves are fenced by the
    /// claim token).
    async fn record(
        &self,
        job: &Claimed,
        spec: &KindSpec,
        ctx: JobContext,
        lock: &SharedLock,
        result: Result<serde_json::Value, JobError>,
        sync: bool,
    ) -> Result<Ending> {
        let held = match lock.lock().await.as_mut() {
            Some(l) => l.still_held().await,
            None => true,
        };
        let result = if held {
            result
        } else {
            Err(JobError::retryable("tenant lock lost during the attempt"))
        };
        match result {
            Ok(value) => {
                let evs = ctx.events.lock().map(|e| e.clone()).unwrap_or_default();
                let done = self
                    .persist(|| store::complete(&self.catalog, job, &self.owner, &value, &evs))
                    .await?;
                Ok(if done {
                    Ending::Succeeded(value)
                } else {
                    Ending::Lost
                })
            }
            Err(JobError::Postpone { delay, reason }) => {
                let back = self
                    .persist(|| store::give_back(&self.catalog, job, &self.owner, delay, &reason))
                    .await?;
                Ok(if back {
                    Ending::Postponed
                } else {
                    Ending::Lost
                })
            }
            Err(err) => self.record_failure(job, spec, ctx, err, sync).await,
        }
    }

    /// Records a failed attempt and, when the job is now dead (or failed
    /// under `--sync`), runs the kind's compensation.
    async fn record_failure(
        &self,
        job: &Claimed,
        spec: &KindSpec,
        ctx: JobContext,
        err: JobError,
        sync: bool,
    ) -> Result<Ending> {
        let policy = self.policy();
        let out = self
            .persist(|| store::fail(&self.catalog, job, &self.owner, &err, &policy, sync))
            .await?;
        if matches!(out, FailOutcome::Dead | FailOutcome::Failed) {
            tracing::warn!(error = %err, "job ended; running its compensation");
            if let Err(e) = spec.on_dead(job.args.clone(), ctx, err.to_string()).await {
                tracing::error!(error = %e, "compensation failed; the job's leftovers need an operator");
            }
        }
        Ok(Ending::Failed(out, err.to_string()))
    }

    /// The context a handler (or its compensation) gets for `job`.
    fn context(&self, job: &Claimed, tenant: Option<Tenant>) -> JobContext {
        JobContext {
            job_id: job.id,
            kind: job.kind.clone(),
            attempt: job.attempts as u32,
            tenant,
            catalog: self.catalog.clone(),
            settings: self.settings.clone(),
            cancel: CancellationToken::new(),
            lease_owner: self.owner.clone(),
            claim_token: job.claim_token,
            events: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    /// Runs a dead job's compensation outside any attempt (the reaper found
    /// it dead after its last worker vanished).
    pub async fn compensate(&self, job: &Claimed, error: &str) {
        let Some(spec) = self.registry.get(&job.kind).copied() else {
            return;
        };
        let tenant = match store::tenant_of(&self.catalog, job).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(job_id = %job.id, error = %format!("{e:#}"), "compensation skipped: tenant unavailable");
                return;
            }
        };
        let ctx = self.context(job, tenant);
        if let Err(e) = spec.on_dead(job.args.clone(), ctx, error.to_string()).await {
            tracing::error!(job_id = %job.id, error = %e, "compensation failed; the job's leftovers need an operator");
        }
    }

    /// Retries an outcome write through short catalog outages, so a finished
    /// attempt is not re-run just because its result could not be written.
    async fn persist<T, F, Fut>(&self, write: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.settings.worker.lease / 2;
        let mut wait = Duration::from_millis(100);
        loop {
            match write().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() + wait < deadline => {
                    tracing::warn!(error = %format!("{e:#}"), "recording the outcome failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The tenant lock an attempt holds, shared with its heartbeat.
type SharedLock = Arc<tokio::sync::Mutex<Option<TenantLock>>>;

/// Why the handler's task stopped.
enum Stop {
    Done(Result<Result<serde_json::Value, JobError>, tokio::task::JoinError>),
    /// The heartbeat cancelled the attempt (lease or tenant lock lost).
    Lost,
    Timeout,
    /// The shutdown deadline passed.
    Shutdown,
}

/// Runs the handler in its own task until it ends, the attempt loses the job
/// (`ctx.cancel`), `timeout` passes or the shutdown deadline comes; a handler
/// that did not end by itself is aborted before this returns.
async fn run_handler(
    spec: &KindSpec,
    job: &Claimed,
    ctx: &JobContext,
    timeout: Duration,
    hard_stop: &CancellationToken,
) -> Stop {
    let mut handle = tokio::spawn(spec.run(job.args.clone(), ctx.clone()).in_current_span());
    let stop = tokio::select! {
        r = &mut handle => Stop::Done(r),
        _ = ctx.cancel.cancelled() => Stop::Lost,
        _ = tokio::time::sleep(timeout) => Stop::Timeout,
        _ = hard_stop.cancelled() => Stop::Shutdown,
    };
    if !matches!(stop, Stop::Done(_)) {
        handle.abort();
        let _ = handle.await;
    }
    stop
}

/// The text of a handler's panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_string())
}

/// An attempt's heartbeat task. It keeps the lease (every lease/3) and checks
/// the tenant lock (every second). If the row is no longer ours, the lock is
/// gone, or the catalog has been unreachable for two thirds of a lease (the
/// reaper may re-drive at expiry), it cancels the handler.
struct Heartbeat {
    lost: Arc<AtomicU8>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn start(exec: &Executor, job: &Claimed, cancel: CancellationToken, lock: SharedLock) -> Self {
        let lost = Arc::new(AtomicU8::new(HELD));
        let stop = CancellationToken::new();
        let beat = Beat {
            pool: exec.catalog.clone(),
            job: job.clone(),
            owner: exec.owner.clone(),
            lease: exec.settings.worker.lease,
            lost: lost.clone(),
            cancel,
            stop: stop.clone(),
            lock,
        };
        let task = tokio::spawn(beat.run().in_current_span());
        Self { lost, stop, task }
    }

    /// Stops the task; returns why it stopped the attempt ([`HELD`] if it did not).
    async fn stop(self) -> u8 {
        self.stop.cancel();
        let _ = self.task.await;
        self.lost.load(Ordering::SeqCst)
    }
}

/// What the heartbeat task owns.
struct Beat {
    pool: PgPool,
    job: Claimed,
    owner: String,
    lease: Duration,
    lost: Arc<AtomicU8>,
    cancel: CancellationToken,
    stop: CancellationToken,
    lock: SharedLock,
}

impl Beat {
    async fn run(self) {
        let beat = self.lease / 3;
        let mut tick = tokio::time::interval(beat.min(Duration::from_secs(1)));
        tick.tick().await;
        let mut last_ok = Instant::now();
        let mut last_beat = Instant::now();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let mut why = HELD;
            if last_beat.elapsed() >= beat {
                last_beat = Instant::now();
                match store::heartbeat(&self.pool, &self.job, &self.owner, self.lease).await {
                    Ok(true) => last_ok = Instant::now(),
                    Ok(false) => why = LEASE_LOST,
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
            if why == HELD && last_ok.elapsed() >= self.lease - beat {
                why = LEASE_LOST;
            }
            if why == HELD
                && let Some(l) = self.lock.lock().await.as_mut()
                && !l.still_held().await
            {
                why = LOCK_LOST;
            }
            if why != HELD {
                tracing::warn!(
                    lease_lost = why == LEASE_LOST,
                    tenant_lock_lost = why == LOCK_LOST,
                    "attempt lost the job; stopping it"
                );
                self.lost.store(why, Ordering::SeqCst);
                self.cancel.cancel();
                break;
            }
        }
    }
}
