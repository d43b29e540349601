//! What a job is: a serde struct plus the [`Job`] trait naming its kind,
//! queue and handler. One file per job under `workers/`.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Settings,
    runtime::{
        JobError, Registry,
        store::{self, DedupeKey, EnqueueError, EnqueueRequest, Enqueued, Origin},
    },
    tenants::Tenant,
};

/// A kind of job.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name in messages and the catalog, e.g. `analyze`.
    const KIND: &'static str;
    /// The job family, i.e. the queue it travels on by default.
    const QUEUE: &'static str;
    /// Whether the job must name a tenant.
    const NEEDS_TENANT: bool;
    /// Whether one run per tenant is meaningful, so that a schedule may fan the
    /// kind out over tenants. Default: when it needs a tenant (a kind that
    /// only takes one optionally, like `ping`, says so itself).
    const PER_TENANT: bool = Self::NEEDS_TENANT;
    /// Whether it changes its tenant's database, and so must never run at the
    /// same time as another such job for the same tenant.
    const TENANT_EXCLUSIVE: bool;
    /// Attempts before the job is dead.
    const MAX_ATTEMPTS: u32 = 5;
    /// Whether [`Job::on_dead`] has something to undo. When true, the
    /// transaction that ends the job `dead` (or `failed` under `--sync`) also
    /// records its compensation `pending`, and a worker runs it under the
    /// tenant's lock until it is done. A kind that overrides `on_dead` must
    /// say true: `on_dead` never runs otherwise.
    const COMPENSATES: bool = false;

    /// Checks arguments beyond their types. Errors are shown to whoever enqueued.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// How long one attempt may take (default `LANDLORD_JOB_TIMEOUT_SECONDS`).
    fn timeout(&self, settings: &Settings) -> Duration {
        settings.worker.job_timeout
    }

    /// Does the work and returns the result recorded on the job.
    fn run(
        &self,
        ctx: &JobContext,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send;

    /// Compensation, run when the job has ended `dead` (or `failed` under
    /// `--sync`) and [`Job::COMPENSATES`] says so: undo what earlier attempts
    /// left behind. It runs under the tenant's lock (never while another
    /// tenant-exclusive job of the tenant runs) and again after a crash or an
    /// error until it succeeds, so it must be idempotent. The default does
    /// nothing.
    fn on_dead(
        &self,
        ctx: &JobContext,
        error: &str,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        let _ = (ctx, error);
        async { Ok(()) }
    }

    /// This job as a request for `store::enqueue`: its kind, its arguments
    /// serialised, the kind's own family and attempts.
    fn request(
        &self,
        tenant: Option<&str>,
        dedupe_key: Option<DedupeKey>,
        run_at: Option<DateTime<Utc>>,
    ) -> Result<EnqueueRequest, EnqueueError> {
        let args = serde_json::to_value(self).map_err(|e| {
            EnqueueError::InvalidArgs(format!("invalid arguments for {}: {e}", Self::KIND))
        })?;
        Ok(EnqueueRequest {
            kind: Self::KIND.to_string(),
            tenant: tenant.map(str::to_string),
            args,
            dedupe_key,
            run_at,
            ..Default::default()
        })
    }

    /// Writes this job (validated like any other enqueue) and the outbox row
    /// that publishes it inside the caller's transaction, so the job commits
    /// with the state that asks for it:
    /// `DropPreRestore { restore_id }.enqueue_in(&mut tx, Some(slug), key, run_at)`.
    /// Needs no registry: the kind is `Self`. On [`EnqueueError::DedupeRace`]
    /// the transaction is aborted and must be rolled back.
    fn enqueue_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: Option<&str>,
        dedupe_key: Option<DedupeKey>,
        run_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Enqueued, EnqueueError>> + Send {
        let req = self.request(tenant, dedupe_key, run_at);
        async move {
            let mut kind = Registry::default();
            kind.register::<Self>();
            store::enqueue_in(tx, &kind, &req?, Origin::Catalog).await
        }
    }
}

/// An event a handler asks to be published when its job succeeds.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub name: String,
    pub data: serde_json::Value,
}

/// What a handler gets: its job, its tenant, the catalog and a way to report.
#[derive(Clone)]
pub struct JobContext {
    pub job_id: Uuid,
    pub kind: String,
    pub attempt: u32,
    pub tenant: Option<Tenant>,
    pub catalog: PgPool,
    pub settings: Arc<Settings>,
    /// Cancelled when the attempt no longer owns the job (lease or tenant lock
    /// lost, job cancelled). Timeouts and shutdown abort the handler instead.
    pub cancel: CancellationToken,
    pub(crate) lease_owner: String,
    pub(crate) claim_token: Option<uuid::Uuid>,
    pub(crate) events: Arc<std::sync::Mutex<Vec<PendingEvent>>>,
    /// The result of an effect committed by [`JobContext::effect_committed`].
    pub(crate) committed: Arc<std::sync::Mutex<Option<serde_json::Value>>>,
}

impl JobContext {
    /// Records progress on the job row, for `--wait` and `jobs show`.
    pub async fn progress(&self, done: u64, total: u64, message: &str) {
        let progress = serde_json::json!({"done": done, "total": total, "message": message});
        let res = sqlx::query(
            "UPDATE jobs SET progress = $1, updated_at = now() \
             WHERE id = $2 AND lease_owner = $3 AND claim_token = $4 AND status = 'running'",
        )
        .bind(progress)
        .bind(self.job_id)
        .bind(&self.lease_owner)
        .bind(self.claim_token)
        .execute(&self.catalog)
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not record progress");
        }
    }

    /// Queues an event to go out (through the outbox) if the job succeeds.
    pub fn emit(&self, name: &str, data: serde_json::Value) {
        if let Ok(mut ev) = self.events.lock() {
            ev.push(PendingEvent {
                name: name.to_string(),
                data,
            });
        }
    }

    /// Says the job's whole effect is durable: `result` is what the attempt
    /// succeeded with. Called right after the transaction that recorded the
    /// effect, fenced by [`JobContext::fence_in`], committed (a backup's row
    /// `complete`). From then on the attempt is recorded as a success with
    /// `result` (or the handler's own result, if it returns one) whatever
    /// stops it before it ends: its tenant lock lost, a timeout, a panic, an
    /// error in a later best-effort step. The lease still decides: an attempt
    /// that lost its job records nothing, and the job's compensation, if it
    /// ends dead, undoes the effect. Only for an effect that is the job's
    /// whole work: a handler with steps after it must not call this.
    pub fn effect_committed(&self, result: serde_json::Value) {
        if let Ok(mut c) = self.committed.lock() {
            *c = Some(result);
        }
    }

    /// The result given to [`JobContext::effect_committed`], if any.
    pub(crate) fn committed_result(&self) -> Option<serde_json::Value> {
        self.committed.lock().ok().and_then(|c| c.clone())
    }

    /// Whether the catalog still gives this attempt its job with at least
    /// `min_left` of the lease to run: asked right before a step that cannot
    /// be undone and is not a catalog write (a restore's swap). A process
    /// stopped past its lease (SIGSTOP, a long pause) may wake up and run a
    /// step before its heartbeat cancels it; the reaper may have ended the job
    /// meanwhile. With `min_left` a third of a lease, the step would need a
    /// pause that long between this check and itself to outlive the lease.
    pub async fn owns_job(&self, min_left: Duration) -> Result<bool, JobError> {
        let owned: Option<bool> = sqlx::query_scalar(
            "SELECT lease_expires_at > now() + make_interval(secs => $4) FROM jobs \
             WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 AND status = 'running'",
        )
        .bind(self.job_id)
        .bind(&self.lease_owner)
        .bind(self.claim_token)
        .bind(min_left.as_secs_f64())
        .fetch_optional(&self.catalog)
        .await
        .map_err(|e| JobError::retryable(format!("checking that the attempt owns its job: {e}")))?;
        Ok(owned == Some(true))
    }

    /// Locks this attempt's job row inside `tx` if the attempt still owns it
    /// and its lease has not run out, so the reaper (which skips locked rows)
    /// cannot end the job while `tx` records the job's effect. `false`: the
    /// attempt lost its job; record nothing.
    pub async fn fence_in(&self, tx: &mut Transaction<'_, Postgres>) -> Result<bool, JobError> {
        let owned: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM jobs WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 \
             AND status = 'running' AND lease_expires_at > now() FOR UPDATE",
        )
        .bind(self.job_id)
        .bind(&self.lease_owner)
        .bind(self.claim_token)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| JobError::retryable(format!("fencing the attempt's write: {e}")))?;
        Ok(owned.is_some())
    }

    /// The tenant, for jobs that need one.
    pub fn tenant(&self) -> Result<&Tenant, JobError> {
        self.tenant
            .as_ref()
            .ok_or_else(|| JobError::fatal(format!("job kind {} needs a tenant", self.kind)))
    }

    /// A one-connection pool on the tenant's database; close it when done.
    pub async fn tenant_db(&self) -> Result<PgPool, JobError> {
        let t = self.tenant()?;
        crate::tenants::connect_tenant_db(&self.settings, t)
            .await
            .map_err(JobError::from)
    }
}
