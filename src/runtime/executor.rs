//! Runs one claimed attempt: heartbeat, timeout, panic capture, fencing, and
//! recording the outcome. Used by fleet workers and by `--sync` alike, so a
//! job behaves the same wherever it runs.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::Result;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::Settings,
    metrics,
    runtime::{
        JobContext, JobError, Registry, RetryPolicy,
        store::{self, Claimed, FailOutcome},
        tenant_lock::TenantLock,
    },
    tenants::Tenant,
};

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Succeeded(serde_json::Value),
    Failed(FailOutcome, String),
    /// The attempt lost its lease or its tenant lock; nothing was recorded.
    Lost,
    /// Shutdown deadline passed; the job went back to the queue.
    HandedBack,
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
            let out =
                store::fail(&self.catalog, job, &self.owner, &err, &self.policy(), sync).await?;
            return Ok(Ending::Failed(out, err.to_string()));
        };
        let cancel = CancellationToken::new();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ctx = JobContext {
            job_id: job.id,
            kind: job.kind.clone(),
            attempt: job.attempts as u32,
            tenant,
            catalog: self.catalog.clone(),
            settings: self.settings.clone(),
            cancel: cancel.clone(),
            lease_owner: self.owner.clone(),
            events: events.clone(),
        };

        // Heartbeat: keep the lease and check the tenant lock; if either is
        // gone (or the catalog stayed unreachable for a whole lease), stop the
        // handler: another worker may now own the job.
        let lost = Arc::new(AtomicBool::new(false));
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
                    let mut tick = tokio::time::interval(lease / 3);
                    tick.tick().await;
                    let mut last_ok = Instant::now();
                    loop {
                        tokio::select! {
                            _ = hb_stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        let owned = match store::heartbeat(&pool, &job, &owner, lease).await {
                            Ok(true) => {
                                last_ok = Instant::now();
                                true
                            }
                            Ok(false) => false,
                            Err(e) => {
                                tracing::warn!(error = %e, "heartbeat failed");
                                last_ok.elapsed() < lease
                            }
                        };
                        let locked = match lock.lock().await.as_mut() {
                            Some(l) => l.still_held().await,
                            None => true,
                        };
                        if !owned || !locked {
                            tracing::warn!(
                                lease_owned = owned,
                                tenant_lock_held = locked,
                                "attempt lost the job; stopping it"
                            );
                            lost.store(true, Ordering::SeqCst);
                            cancel.cancel();
                            break;
                        }
                    }
                }
                .in_current_span(),
            )
        };

        let timeout = spec.timeout(&job.args, self.settings.worker.job_timeout);
        let mut handle = tokio::spawn(spec.run(job.args.clone(), ctx).in_current_span());
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
        if lost.load(Ordering::SeqCst) {
            return Ok(Ending::Lost);
        }
        // Fencing: the tenant lock must still be ours before anything is recorded.
        let held = match lock.lock().await.as_mut() {
            Some(l) => l.still_held().await,
            None => true,
        };
        if !held {
            let err = JobError::retryable("tenant lock lost during the attempt");
            let out =
                store::fail(&self.catalog, job, &self.owner, &err, &self.policy(), sync).await?;
            return Ok(Ending::Failed(out, err.to_string()));
        }
        match result {
            Ok(value) => {
                let evs = events.lock().map(|e| e.clone()).unwrap_or_default();
                if store::complete(&self.catalog, job, &self.owner, &value, &evs).await? {
                    Ok(Ending::Succeeded(value))
                } else {
                    Ok(Ending::Lost)
                }
            }
            Err(err) => {
                let out = store::fail(&self.catalog, job, &self.owner, &err, &self.policy(), sync)
                    .await?;
                Ok(Ending::Failed(out, err.to_string()))
            }
        }
    }
}
