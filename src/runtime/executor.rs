//! Runs one claimed attempt: heartbeat, timeout, panic capture, fencing, and
//! recording the outcome. Used by fleet workers and by `--sync` alike, so a
//! job behaves the same wherever it runs.

use std::{
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
        if outcome == "retrying" {
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

    async fn attempt(
        &self,
        job: &Claimed,
        tenant: Option<Tenant>,
        lock: Arc<tokio::sync::Mutex<Option<TenantLock>>>,
        hard_stop: CancellationToken,
        sync: bool,
    ) -> Result<Ending> {
        let Some(spec) = self.registry.get(&job.kind).copied() else {
            let err = JobError::fatal(format!("this worker does not know job kind {:?}", job.kind));
            let policy = self.policy();
            let out = self
                .persist(|| store::fail(&self.catalog, job, &self.owner, &err, &policy, sync))
                .await?;
            return Ok(Ending::Failed(out, err.to_string()));
        };
        let ctx = self.context(job, tenant);
        let (cancel, events) = (ctx.cancel.clone(), ctx.events.clone());

        // Heartbeat: keep the lease (every lease/3) and check the tenant lock
        // (every second). If the row is no longer ours, the lock is gone, or
        // the catalog has been unreachable for two thirds of a lease (the
        // reaper may re-drive at expiry), stop the handler.
        let lost = Arc::new(AtomicU8::new(HELD));
        let hb_stop = CancellationToken::new();
        let heartbeat = {
            let (pool, job, owner, lease) = (
                self.catalog.clone(),
                job.clone(),
                self.owner.clone(),
                self.settings.worker.lease,
            );
            let (lost, cancel, hb_stop, lock) =
                (lost.clone(), cancel.clone(), hb_stop.clone(), lock.clone());
            tokio::spawn(
                async move {
                    let beat = lease / 3;
                    let mut tick = tokio::time::interval(beat.min(Duration::from_secs(1)));
                    tick.tick().await;
                    let mut last_ok = Instant::now();
                    let mut last_beat = Instant::now();
                    loop {
                        tokio::select! {
                            _ = hb_stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        let mut why = HELD;
                        if last_beat.elapsed() >= beat {
                            last_beat = Instant::now();
                            match store::heartbeat(&pool, &job, &owner, lease).await {
                                Ok(true) => last_ok = Instant::now(),
                                Ok(false) => why = LEASE_LOST,
                                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                            }
                        }
                        if why == HELD && last_ok.elapsed() >= lease - beat {
                            why = LEASE_LOST;
                        }
                        if why == HELD
                            && let Some(l) = lock.lock().await.as_mut()
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
                            lost.store(why, Ordering::SeqCst);
                            cancel.cancel();
                            break;
                        }
                    }
                }
                .in_current_span(),
            )
        };

        let timeout = spec.timeout(&job.args, &self.settings);
        let mut handle = tokio::spawn(spec.run(job.args.clone(), ctx.clone()).in_current_span());
        enum Stop {
            Done(Result<Result<serde_json::Value, JobError>, tokio::task::JoinError>),
            Lost,
            Timeout,
            Shutdown,
        }
        let stop = tokio::select! {
            r = &mut handle => Stop::Done(r),
            _ = cancel.cancelled() => Stop::Lost,
            _ = tokio::time::sleep(timeout) => Stop::Timeout,
            _ = hard_stop.cancelled() => Stop::Shutdown,
        };
        if !matches!(stop, Stop::Done(_)) {
            handle.abort();
            let _ = handle.await;
        }
        hb_stop.cancel();
        let _ = heartbeat.await;

        let result: Result<serde_json::Value, JobError> = match stop {
            Stop::Lost if lost.load(Ordering::SeqCst) == LOCK_LOST => {
                Err(JobError::retryable("tenant lock lost during the attempt"))
            }
            Stop::Lost => return Ok(Ending::Lost),
            Stop::Shutdown => {
                return Ok(
                    if store::hand_back(&self.catalog, job, &self.owner).await? {
                        Ending::HandedBack
                    } else {
                        Ending::Lost
                    },
                );
            }
            Stop::Timeout => Err(JobError::retryable(format!(
                "timed out after {}s",
                timeout.as_secs()
            ))),
            Stop::Done(Err(join)) if join.is_panic() => {
                let p = join.into_panic();
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".to_string());
                Err(JobError::retryable(format!("handler panicked: {what}")))
            }
            Stop::Done(Err(join)) => Err(JobError::retryable(format!("handler aborted: {join}"))),
            Stop::Done(Ok(r)) => r,
        };
        if lost.load(Ordering::SeqCst) == LEASE_LOST {
            return Ok(Ending::Lost);
        }
        // Fencing: the tenant lock must still be ours before anything is recorded
        // (the writes themselves are fenced by the claim token).
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
                let evs = events.lock().map(|e| e.clone()).unwrap_or_default();
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
            Err(err) => self.record_failure(job, &spec, ctx, err, sync).await,
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
