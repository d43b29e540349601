//! Runs one claimed attempt: heartbeat, timeout, panic capture, fencing, and
//! recording the outcome. Used by fleet workers and by `--sync` alike, so a
//! job behaves the same wherever it runs.
//!
//! `Executor::attempt` goes phase by phase: start (the kind's handler and
//! context), heartbeat (`Heartbeat`), run (`run_handler`), settle (what the
//! stop means) and record. It never writes an outcome for an attempt that
//! lost its lease, nor one that lost its tenant lock before its handler
//! committed the job's effect (`JobContext::effect_committed`; after that
//! the attempt has succeeded, whatever stops it): every write goes through
//! `store`, fenced on lease owner and claim token.

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
        JobContext, JobError, KindSpec, Registry, RetryPolicy, sessions,
        store::{self, Claimed, FailOutcome},
        tenant_lock::{CHECK_TIMEOUT, TenantLock},
    },
    tenants::{Isolation, Tenant},
};

/// Why the heartbeat stopped an attempt: it did not ([`HELD`]); the catalog
/// says the row is no longer ours ([`LEASE_LOST`]); the tenant lock is gone
/// ([`LOCK_LOST`]); or no heartbeat was confirmed for two thirds of a lease,
/// so the reaper may soon re-drive the job ([`FENCED`]).
const HELD: u8 = 0;
const LEASE_LOST: u8 = 1;
const LOCK_LOST: u8 = 2;
const FENCED: u8 = 3;

tokio::task_local! {
    /// The lease of the attempt being recorded, as its heartbeat sees it:
    /// `persist` keeps retrying while it holds. Scoped around `record` in
    /// `attempt` (a task-local, so the recording functions keep their
    /// signatures); unset elsewhere.
    static LEASE: LeaseView;
}

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
        // The attempt's sessions were ended when its handler stopped; if that
        // could not be confirmed, the tenant lock stays until it can (or a
        // bound passes), so the next job does not run beside them.
        let label = sessions::label(&job.kind, job.id, job.attempts as u32);
        let bound = self.settings.worker.lease.max(Duration::from_secs(60));
        sessions::before_release(&self.settings, &label, bound).await;
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
        let fence = self.fence(&spec, job, ctx.tenant.as_ref());
        let stop = run_handler(&spec, job, &ctx, timeout, &hard_stop, fence).await;
        // The heartbeat keeps the lease until the outcome is recorded.
        let ending = match self.settle(job, stop, heartbeat.lost(), timeout).await {
            Ok(ControlFlow::Continue(result)) => {
                crate::failpoint::pause("job.after_handler").await;
                let record = self.record(job, &spec, ctx, &lock, result, sync);
                LEASE.scope(heartbeat.view.clone(), record).await
            }
            Ok(ControlFlow::Break(ending)) => Ok(ending),
            Err(e) => Err(e),
        };
        heartbeat.stop().await;
        ending
    }

    /// What the attempt fences out before its handler runs: for
    /// tenant-exclusive work on a tenant with its own database (the attempt
    /// holds the tenant's lock), the sessions there of attempts that lost
    /// the lock (see [`sessions::fence_out`]).
    fn fence(
        &self,
        spec: &KindSpec,
        job: &Claimed,
        tenant: Option<&Tenant>,
    ) -> Option<sessions::Fence> {
        let t = tenant.filter(|t| spec.tenant_exclusive && t.isolation == Isolation::Database)?;
        Some(sessions::Fence {
            server: t.db_server.clone(),
            database: t.db_name.clone(),
            own: sessions::label(&job.kind, job.id, job.attempts as u32),
            exclusive_kinds: self
                .registry
                .kinds()
                .filter(|k| self.registry.get(k).is_some_and(|s| s.tenant_exclusive))
                .collect(),
        })
    }

    /// A job whose kind this build does not know: no attempt runs. A fleet
    /// worker hands it back, delayed and without spending an attempt, for a
    /// worker that knows the kind (a rolling deploy); `--sync` fails it (its
    /// own build enqueued it, so no other process will know it better).
    async fn refuse_unknown_kind(&self, job: &Claimed, sync: bool) -> Result<Ending> {
        let why = format!("this worker does not know job kind {:?}", job.kind);
        if sync {
            let err = JobError::fatal(why);
            let policy = self.policy();
            let out = self
                .persist(|| store::fail(&self.catalog, job, &self.owner, &err, &policy, sync))
                .await?;
            return Ok(Ending::Failed(out, err.to_string()));
        }
        let delay = self.settings.worker.unknown_kind_delay;
        let back = self
            .persist(|| store::give_back(&self.catalog, job, &self.owner, delay, &why))
            .await?;
        tracing::warn!(
            delay_ms = delay.as_millis() as u64,
            "this worker does not know the job's kind; handed it back for a worker that does"
        );
        Ok(if back {
            Ending::Postponed
        } else {
            Ending::Lost
        })
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
            // Lease taken or self-fenced: the handler was stopped, nothing to record.
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
        // A handler that ended by itself after a self-fence (`FENCED`) is
        // still recorded: the writes are fenced, so they land only if no
        // other attempt took the job meanwhile.
        if lost == LEASE_LOST {
            return Ok(ControlFlow::Break(Ending::Lost));
        }
        Ok(ControlFlow::Continue(result))
    }

    /// Records the attempt's result, fenced: nothing is written unless the
    /// tenant lock is still ours (the writes themselves are fenced by the
    /// claim token). An attempt whose handler committed the job's effect
    /// ([`JobContext::effect_committed`]) has succeeded, lock or not, and
    /// whatever error stopped it afterwards: recording it dead would leave
    /// the effect beside a job that says it never happened.
    async fn record(
        &self,
        job: &Claimed,
        spec: &KindSpec,
        ctx: JobContext,
        lock: &SharedLock,
        result: Result<serde_json::Value, JobError>,
        sync: bool,
    ) -> Result<Ending> {
        crate::failpoint::hit("job.before_record");
        let held = match lock.lock().await.as_mut() {
            Some(l) => l.still_held().await,
            None => true,
        };
        let result = match ctx.committed_result() {
            Some(done) => {
                if let Err(err) = &result {
                    tracing::warn!(error = %err, "the attempt stopped after the job's effect was committed; recording its success");
                } else if !held {
                    tracing::warn!(
                        "tenant lock lost after the job's effect was committed; recording its success"
                    );
                }
                Ok(result.unwrap_or(done))
            }
            None if held => result,
            None => Err(JobError::retryable("tenant lock lost during the attempt")),
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
            Err(err) => self.record_failure(job, spec, ctx, lock, err, sync).await,
        }
    }

    /// Records a failed attempt. When that ends the job (`dead`, or `failed`
    /// under `--sync`) and its kind compensates, the same transaction leaves
    /// the compensation pending, and it runs now under the tenant lock: the
    /// attempt's own if it still holds it, else a fresh one if the tenant is
    /// free. Otherwise the workers' compensation loop runs it later
    /// (`runtime::compensation`).
    async fn record_failure(
        &self,
        job: &Claimed,
        spec: &KindSpec,
        ctx: JobContext,
        lock: &SharedLock,
        err: JobError,
        sync: bool,
    ) -> Result<Ending> {
        let policy = self.policy();
        let leftovers = if spec.compensates {
            store::Leftovers::Compensate
        } else {
            store::Leftovers::Nothing
        };
        let out = self
            .persist(|| {
                store::fail_as(
                    &self.catalog,
                    job,
                    &self.owner,
                    &err,
                    &policy,
                    sync,
                    leftovers,
                )
            })
            .await?;
        if spec.compensates && matches!(out, FailOutcome::Dead | FailOutcome::Failed) {
            tracing::warn!(error = %err, "job ended; compensating");
            let mut held = lock.lock().await;
            crate::runtime::compensation::after_attempt(
                self,
                job,
                ctx.tenant.clone(),
                held.as_mut(),
                &err.to_string(),
            )
            .await;
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
            committed: Arc::default(),
        }
    }

    /// The kind's compensation of `job` as a future to run (`None`: this
    /// build does not know the kind). Callers hold the tenant's lock and a
    /// lease on the compensation (`runtime::compensation`). Failpoint
    /// `compensation.before_run` aborts the process just before it starts.
    pub fn compensate(
        &self,
        job: &Claimed,
        tenant: Option<Tenant>,
        error: &str,
    ) -> Option<futures::future::BoxFuture<'static, Result<(), JobError>>> {
        let spec = self.registry.get(&job.kind)?;
        crate::failpoint::hit("compensation.before_run");
        let ctx = self.context(job, tenant);
        Some(spec.on_dead(job.args.clone(), ctx, error.to_string()))
    }

    /// Retries an outcome write through catalog outages, so a finished
    /// attempt is not re-run just because its result could not be written.
    /// Inside `record` it keeps trying for as long as the attempt's heartbeat
    /// holds the lease (no reaper can have re-driven the job) and gives up
    /// when the lease is really gone: the catalog said the row is not ours,
    /// or a whole lease passed since the last confirmed heartbeat was sent.
    /// Elsewhere (no heartbeat running) it tries for half a lease.
    ///
    /// Each try has a deadline; a write whose answer was lost may have
    /// committed, and its retry then finds the row no longer running (the
    /// fenced write reports the attempt lost, never writes twice).
    async fn persist<T, F, Fut>(&self, write: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let lease = self.settings.worker.lease;
        let view = LEASE.try_with(LeaseView::clone).ok();
        let fallback = Instant::now() + lease / 2;
        let remaining = || match &view {
            Some(v) => v.remaining(),
            None => fallback.saturating_duration_since(Instant::now()),
        };
        let mut wait = Duration::from_millis(100);
        loop {
            let try_for = remaining().clamp(Duration::from_millis(500), lease / 3);
            let err = match tokio::time::timeout(try_for, write()).await {
                Ok(Ok(v)) => {
                    // The outcome is written: the lease no longer matters, and
                    // the heartbeat must not take the ended row for a lost one
                    // (a compensation may still run under the lock).
                    if let Some(lease) = &view {
                        lease.recorded.cancel();
                    }
                    return Ok(v);
                }
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!(
                    "the catalog did not answer within {} ms",
                    try_for.as_millis()
                ),
            };
            let left = remaining();
            if left.is_zero() {
                return Err(err.context("recording the outcome: the lease is lost; giving up"));
            }
            tracing::warn!(
                error = %format!("{err:#}"),
                lease_left_ms = left.as_millis() as u64,
                "recording the outcome failed; retrying while the lease holds"
            );
            tokio::time::sleep(wait.min(left)).await;
            wait = (wait * 2).min(Duration::from_secs(1));
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
    fence: Option<sessions::Fence>,
) -> Stop {
    let scope = sessions::Scope::new(&job.kind, job.id, job.attempts as u32);
    let label = scope.label().to_string();
    let handler = spec.run(job.args.clone(), ctx.clone());
    let settings = ctx.settings.clone();
    let mut handle = tokio::spawn(
        scope
            .run(async move {
                if let Some(f) = fence {
                    fence_out(&settings, &f).await?;
                }
                handler.await
            })
            .in_current_span(),
    );
    // Biased, the handler first: a handler that finished is never taken
    // for a timeout (or a loss) that became due at the same moment.
    let stop = tokio::select! {
        biased;
        r = &mut handle => Stop::Done(r),
        _ = ctx.cancel.cancelled() => Stop::Lost,
        _ = tokio::time::sleep(timeout) => Stop::Timeout,
        _ = hard_stop.cancelled() => Stop::Shutdown,
    };
    let aborted = !matches!(stop, Stop::Done(_));
    if aborted {
        handle.abort();
        // Dropping the handler may wait for a child program it owns; ending
        // the attempt's sessions and programs below is what stops that.
        let _ = tokio::time::timeout(ABORT_WAIT, &mut handle).await;
    }
    // Dropping a future does not stop what PostgreSQL runs for it: end the
    // attempt's sessions and programs before anything is recorded.
    sessions::end_attempt(&ctx.settings, &label, aborted).await;
    if aborted && !handle.is_finished() {
        match tokio::time::timeout(sessions::END_BOUND, handle).await {
            Ok(_) => {}
            Err(_) => tracing::error!("the aborted handler has not finished dropping"),
        }
    }
    stop
}

/// [`sessions::fence_out`] before the handler: sessions that could not be
/// confirmed gone fail the attempt (retryable) rather than run beside them.
async fn fence_out(settings: &Settings, fence: &sessions::Fence) -> Result<(), JobError> {
    match sessions::fence_out(settings, fence).await {
        Ok(ended) if ended.is_empty() => Ok(()),
        Ok(ended) => {
            tracing::warn!(sessions = ?ended, "ended sessions of attempts that lost the tenant lock");
            Ok(())
        }
        Err(e) => Err(JobError::retryable(format!(
            "the tenant's database may still be in use by an attempt that lost the tenant lock: {e:#}"
        ))),
    }
}

/// How long an aborted handler gets to finish dropping before its sessions
/// and programs are ended from outside.
const ABORT_WAIT: Duration = Duration::from_secs(2);

/// The text of a handler's panic.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_string())
}

/// What an attempt's heartbeat knows about its lease, shared with `persist`.
#[derive(Clone)]
struct LeaseView {
    /// When the lease runs out: the send time of the last heartbeat the
    /// catalog confirmed (the claim, at first) plus the lease.
    held_until: Arc<std::sync::Mutex<Instant>>,
    /// Cancelled when the catalog said the row is no longer ours.
    taken: CancellationToken,
    /// Cancelled once the attempt's outcome is written; the heartbeat stops.
    recorded: CancellationToken,
}

impl LeaseView {
    /// How long the lease certainly still holds; zero once it is lost.
    fn remaining(&self) -> Duration {
        if self.taken.is_cancelled() {
            return Duration::ZERO;
        }
        let until = *self.held_until.lock().unwrap_or_else(|e| e.into_inner());
        until.saturating_duration_since(Instant::now())
    }

    fn confirmed(&self, sent: Instant, lease: Duration) {
        *self.held_until.lock().unwrap_or_else(|e| e.into_inner()) = sent + lease;
    }
}

/// An attempt's heartbeat task. It keeps the lease (every lease/3, every
/// second after a failure) and checks the tenant lock (every second), each
/// query under [`CHECK_TIMEOUT`]. It cancels the handler when the row is no
/// longer ours, the lock is gone, or no heartbeat has been confirmed for two
/// thirds of a lease counted from when it was *sent* (the reaper may re-drive
/// at expiry). That deadline is its own `select!` branch, so it fires even
/// while a query hangs. After the handler ended it goes on beating until the
/// outcome is recorded.
struct Heartbeat {
    lost: Arc<AtomicU8>,
    view: LeaseView,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    fn start(exec: &Executor, job: &Claimed, cancel: CancellationToken, lock: SharedLock) -> Self {
        let lost = Arc::new(AtomicU8::new(HELD));
        let stop = CancellationToken::new();
        let lease = exec.settings.worker.lease;
        // The claim set the lease a moment ago; counting from now is off by
        // the time between the claim and this start (one tenant read).
        let view = LeaseView {
            held_until: Arc::new(std::sync::Mutex::new(Instant::now() + lease)),
            taken: CancellationToken::new(),
            recorded: CancellationToken::new(),
        };
        let beat = Beat {
            pool: exec.catalog.clone(),
            job: job.clone(),
            owner: exec.owner.clone(),
            lease,
            lost: lost.clone(),
            view: view.clone(),
            cancel,
            stop: stop.clone(),
            lock,
        };
        let task = tokio::spawn(beat.run().in_current_span());
        Self {
            lost,
            view,
            stop,
            task,
        }
    }

    /// Why the heartbeat stopped the attempt so far ([`HELD`] if it did not).
    fn lost(&self) -> u8 {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops the task.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What the heartbeat task owns.
struct Beat {
    pool: PgPool,
    job: Claimed,
    owner: String,
    lease: Duration,
    lost: Arc<AtomicU8>,
    view: LeaseView,
    cancel: CancellationToken,
    stop: CancellationToken,
    lock: SharedLock,
}

/// When the next heartbeat is due and when the last confirmed one was sent.
struct BeatClock {
    next: Instant,
    last_ok_sent: Instant,
    lock_checked: bool,
}

impl Beat {
    async fn run(self) {
        let beat = self.lease / 3;
        let fence_after = self.lease - beat;
        // Ticks several times per beat: a beat is then sent within a quarter
        // of a beat of being due, well before the self-fence (one beat after
        // the next one is due). With one tick per beat, a tick landing a hair
        // before the due time pushed the beat a whole tick later, onto the
        // fence deadline (short leases fenced themselves on a quiet machine).
        let mut tick = tokio::time::interval((beat / 4).min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let now = Instant::now();
        let mut clock = BeatClock {
            next: now + beat,
            last_ok_sent: now,
            lock_checked: true,
        };
        loop {
            let fence_at = clock.last_ok_sent + fence_after;
            let fenced = self.lost.load(Ordering::SeqCst) != HELD;
            let why = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                _ = self.view.recorded.cancelled() => break,
                _ = tokio::time::sleep_until(fence_at.into()), if !fenced => FENCED,
                why = self.check(&mut tick, &mut clock, beat) => why,
            };
            if why == HELD {
                continue;
            }
            if why == LEASE_LOST {
                self.view.taken.cancel();
            }
            if why == LOCK_LOST {
                clock.lock_checked = false;
            }
            if self.lost.load(Ordering::SeqCst) == HELD {
                tracing::warn!(
                    lease_lost = why == LEASE_LOST,
                    tenant_lock_lost = why == LOCK_LOST,
                    self_fenced = why == FENCED,
                    since_last_heartbeat_ms = clock.last_ok_sent.elapsed().as_millis() as u64,
                    "attempt lost the job; stopping it"
                );
                self.lost.store(why, Ordering::SeqCst);
                self.cancel.cancel();
            }
            // Nothing more to keep once the catalog gave the row to another.
            if why == LEASE_LOST {
                break;
            }
        }
    }

    /// One tick: the heartbeat if due, then the tenant-lock check.
    async fn check(
        &self,
        tick: &mut tokio::time::Interval,
        clock: &mut BeatClock,
        beat: Duration,
    ) -> u8 {
        tick.tick().await;
        let sent = Instant::now();
        if sent >= clock.next {
            let query = store::heartbeat(&self.pool, &self.job, &self.owner, self.lease);
            match tokio::time::timeout(CHECK_TIMEOUT.min(beat), query).await {
                Ok(Ok(true)) => {
                    clock.last_ok_sent = sent;
                    clock.next = sent + beat;
                    self.view.confirmed(sent, self.lease);
                }
                Ok(Ok(false)) => return LEASE_LOST,
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "heartbeat failed");
                    clock.next = Instant::now() + Duration::from_secs(1).min(beat);
                }
                Err(_) => {
                    tracing::warn!("heartbeat did not answer in time");
                    clock.next = Instant::now() + Duration::from_secs(1).min(beat);
                }
            }
        }
        if clock.lock_checked
            && let Some(l) = self.lock.lock().await.as_mut()
            && !l.still_held().await
        {
            return LOCK_LOST;
        }
        HELD
    }
}

#[cfg(test)]
mod run_handler_tests {
    //! `run_handler` on its own: a handler whose result and timeout are both
    //! ready when the select is next polled is a success, never a timeout.

    use std::{sync::Arc, time::Duration};

    use serde::{Deserialize, Serialize};
    use tokio_util::sync::CancellationToken;
    use uuid::Uuid;

    use super::{Stop, run_handler};
    use crate::runtime::{Job, JobContext, JobError, Registry, store::Claimed};

    /// The timeout the test handler gets; it works for longer.
    // Long enough that the OS does not deschedule the test's only thread for
    // longer between the select's first poll and the handler's start (at 2 ms
    // a loaded CI machine did, once in 40: the handler had not even started).
    const TIMEOUT: Duration = Duration::from_millis(25);

    #[derive(Serialize, Deserialize)]
    struct Overran {}

    impl Job for Overran {
        const KIND: &'static str = "test_overran";
        const QUEUE: &'static str = "maintenance";
        const NEEDS_TENANT: bool = false;
        const TENANT_EXCLUSIVE: bool = false;

        async fn run(&self, _ctx: &JobContext) -> Result<serde_json::Value, JobError> {
            // Blocks the runtime's only thread past the timeout, then
            // finishes: the result is ready before the timer is next driven.
            std::thread::sleep(TIMEOUT * 5);
            Ok(serde_json::json!("done"))
        }
    }

    fn attempt(
        settings: &Arc<crate::config::Settings>,
        catalog: &sqlx::PgPool,
    ) -> (Claimed, JobContext) {
        let job = Claimed {
            id: Uuid::new_v4(),
            kind: Overran::KIND.into(),
            queue: Overran::QUEUE.into(),
            tenant_id: None,
            args: serde_json::json!({}),
            attempts: 1,
            max_attempts: 1,
            claim_token: Some(Uuid::new_v4()),
        };
        let ctx = JobContext {
            job_id: job.id,
            kind: job.kind.clone(),
            attempt: 1,
            tenant: None,
            catalog: catalog.clone(),
            settings: settings.clone(),
            cancel: CancellationToken::new(),
            lease_owner: "test".into(),
            claim_token: job.claim_token,
            events: Arc::default(),
            committed: Arc::default(),
        };
        (job, ctx)
    }

    #[test]
    fn a_finished_handler_is_never_taken_for_a_timeout() {
        // One thread, timers driven after every task: when the select is
        // polled again, the handler's result and the timeout are both ready.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .event_interval(1)
            .build()
            .expect("runtime");
        let timeouts = rt.block_on(async {
            let mut registry = Registry::default();
            registry.register::<Overran>();
            let spec = *registry.get(Overran::KIND).expect("registered");
            let mut settings = crate::config::Settings::load().expect("settings");
            // Nothing to sweep: the test is about the select alone.
            settings.servers.clear();
            let settings = Arc::new(settings);
            let catalog = sqlx::PgPool::connect_lazy("postgres://127.0.0.1:1/none").expect("lazy");
            let mut timeouts = 0;
            for _ in 0..40 {
                let (job, ctx) = attempt(&settings, &catalog);
                match run_handler(&spec, &job, &ctx, TIMEOUT, &CancellationToken::new(), None).await
                {
                    Stop::Done(Ok(Ok(_))) => {}
                    Stop::Timeout => timeouts += 1,
                    _ => panic!("the handler neither finished nor timed out"),
                }
            }
            timeouts
        });
        assert_eq!(timeouts, 0, "finished handlers taken for timeouts, of 40");
    }
}
