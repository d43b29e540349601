//! Jobs in the catalog: every state change of a job happens here, in one
//! transaction with the outbox rows that announce it.
//!
//! Changes made on behalf of a running attempt are fenced: they apply only
//! while the row still names that worker as lease owner and that attempt
//! number. A worker that lost its lease can never record a result.
//!
//! Every query is checked at compile time against the catalog migrations
//! (`sqlx::query!` and friends, offline data in `.sqlx/`; run `ops/sqlx
//! prepare` after changing one). None is built at run time.

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use thiserror::Error;
use uuid::Uuid;

use crate::{
    broker::topology,
    message::{JobMessage, truncate},
    runtime::{JobError, JobStatus, PendingEvent, Registry, RetryPolicy},
    tenants::{self, Tenant},
};

pub use crate::runtime::state::Origin;

/// A job as `jobs list/show` report it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub tenant_id: Option<i64>,
    pub tenant: Option<String>,
    pub args: serde_json::Value,
    pub status: JobStatus,
    pub attempts: i32,
    pub max_attempts: i32,
    pub dedupe_key: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub progress: Option<serde_json::Value>,
    pub origin: Origin,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// `query_as!` of [`JobRow`]s: their columns (with the tenant's slug) followed
/// by the rest of the query (`WHERE …`) and its arguments, checked at compile
/// time like every query here.
macro_rules! select_jobs {
    ($rest:literal $($args:tt)*) => {
        sqlx::query_as!(
            JobRow,
            r#"SELECT j.id, j.kind, j.queue, j.tenant_id, t.slug AS "tenant?", j.args,
                      j.status AS "status: JobStatus", j.attempts, j.max_attempts, j.dedupe_key,
                      j.lease_owner, j.lease_expires_at, j.run_at, j.last_error, j.result,
                      j.progress, j.origin AS "origin: Origin", j.created_at, j.updated_at,
                      j.started_at, j.finished_at
               FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id "# + $rest
            $($args)*
        )
    };
}

/// A job an attempt has claimed.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub kind: String,
    pub queue: String,
    pub tenant_id: Option<i64>,
    pub args: serde_json::Value,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Fencing token of this claim; every write of the attempt presents it.
    pub claim_token: Option<Uuid>,
}

/// What to enqueue.
#[derive(Debug, Clone, Default)]
pub struct EnqueueRequest {
    pub kind: String,
    pub tenant: Option<String>,
    pub args: serde_json::Value,
    /// Family override; defaults to the kind's own.
    pub queue: Option<String>,
    pub dedupe_key: Option<String>,
    pub max_attempts: Option<u32>,
    pub run_at: Option<DateTime<Utc>>,
}

/// Why a job could not be enqueued; nothing was written.
#[derive(Debug, Error)]
pub enum EnqueueError {
    #[error("unknown job kind {0:?}; known kinds: {1}")]
    UnknownKind(String, String),
    #[error("{0}")]
    InvalidArgs(String),
    #[error("job kind {0} needs a tenant (--tenant)")]
    TenantRequired(String),
    #[error(transparent)]
    Tenant(#[from] tenants::TenantError),
    #[error("{0}")]
    Invalid(String),
    #[error("a live job with dedupe key {0:?} was written concurrently")]
    DedupeRace(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The job written (or the live duplicate found) and the outbox row to publish.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub id: Uuid,
    /// True when a live job with the same dedupe key was returned instead.
    pub existing: bool,
    pub outbox_id: Option<i64>,
}

/// Checks a request and writes the job row plus its outbox row, in one transaction.
pub async fn enqueue(
    pool: &PgPool,
    registry: &Registry,
    req: &EnqueueRequest,
    origin: Origin,
) -> Result<Enqueued, EnqueueError> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    match enqueue_in(&mut tx, registry, req, origin).await {
        Ok(enq) => {
            tx.commit().await.context("committing job")?;
            Ok(enq)
        }
        Err(EnqueueError::DedupeRace(key)) => {
            // Another producer inserted the same live key between our check and insert.
            drop(tx);
            let mut tx = pool.begin().await.context("starting transaction")?;
            match live_by_dedupe(&mut tx, &key).await? {
                Some(existing) => Ok(Enqueued {
                    id: existing,
                    existing: true,
                    outbox_id: None,
                }),
                None => Err(EnqueueError::Invalid(
                    "a concurrent job with the same dedupe key ended meanwhile; enqueue again"
                        .into(),
                )),
            }
        }
        Err(e) => Err(e),
    }
}

/// [`enqueue`] inside a caller's transaction, so a job can be written
/// atomically with the state that asks for it. On [`EnqueueError::DedupeRace`]
/// the transaction is aborted and must be rolled back.
pub async fn enqueue_in(
    tx: &mut Transaction<'_, Postgres>,
    registry: &Registry,
    req: &EnqueueRequest,
    origin: Origin,
) -> Result<Enqueued, EnqueueError> {
    let spec = registry.get(&req.kind).ok_or_else(|| {
        EnqueueError::UnknownKind(
            truncate(&req.kind),
            registry.kinds().collect::<Vec<_>>().join(", "),
        )
    })?;
    let args = if req.args.is_null() {
        serde_json::json!({})
    } else {
        req.args.clone()
    };
    spec.validate(&args).map_err(EnqueueError::InvalidArgs)?;
    let queue = req.queue.clone().unwrap_or_else(|| spec.queue.to_string());
    crate::config::parse_queues(&queue).map_err(|e| EnqueueError::Invalid(e.to_string()))?;
    let tenant = match (&req.tenant, spec.needs_tenant) {
        (Some(slug), _) => Some(tenants::get_in(tx, slug).await?),
        (None, true) => return Err(EnqueueError::TenantRequired(spec.kind.to_string())),
        (None, false) => None,
    };
    if let Some(k) = &req.dedupe_key
        && (k.is_empty() || k.len() > 500)
    {
        return Err(EnqueueError::Invalid(
            "dedupe key must be 1-500 characters".into(),
        ));
    }
    let max_attempts = req.max_attempts.unwrap_or(spec.max_attempts).clamp(1, 100) as i32;
    let id = Uuid::now_v7();

    if let Some(key) = &req.dedupe_key
        && let Some(existing) = live_by_dedupe(tx, key).await?
    {
        return Ok(Enqueued {
            id: existing,
            existing: true,
            outbox_id: None,
        });
    }
    let inserted = sqlx::query!(
        "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, run_at, origin) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, coalesce($8, now()), $9)",
        id,
        spec.kind,
        &queue,
        tenant.as_ref().map(|t| t.id),
        &args,
        max_attempts,
        req.dedupe_key.as_deref(),
        req.run_at,
        origin.as_str(),
    )
    .execute(&mut **tx)
    .await;
    if let Err(e) = inserted {
        if let (sqlx::Error::Database(d), Some(key)) = (&e, &req.dedupe_key)
            && d.is_unique_violation()
        {
            return Err(EnqueueError::DedupeRace(key.clone()));
        }
        return Err(anyhow::Error::new(e).context("inserting job").into());
    }
    let outbox_id = if origin.publishes_through_outbox() {
        Some(
            insert_job_message(
                tx,
                id,
                spec.kind,
                &queue,
                tenant.as_ref().map(|t| t.slug.as_str()),
                &args,
                req.run_at,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(Enqueued {
        id,
        existing: false,
        outbox_id,
    })
}

async fn live_by_dedupe(tx: &mut Transaction<'_, Postgres>, key: &str) -> Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM jobs WHERE dedupe_key = $1 AND status IN ('queued', 'running', 'retrying')",
        key,
    )
    .fetch_optional(&mut **tx)
    .await
    .context("looking for a duplicate job")
}

/// Writes the outbox row that (re)publishes a job's message.
pub async fn insert_job_message(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    kind: &str,
    queue: &str,
    tenant: Option<&str>,
    args: &serde_json::Value,
    available_at: Option<DateTime<Utc>>,
) -> Result<i64> {
    let msg = JobMessage::new(id, kind, tenant, args.clone());
    let payload = serde_json::to_value(&msg).context("encoding message")?;
    sqlx::query_scalar!(
        "INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id, available_at) \
         VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) RETURNING id",
        topology::WORK,
        queue,
        payload,
        id.to_string(),
        id,
        available_at,
    )
    .fetch_one(&mut **tx)
    .await
    .context("writing outbox")
}

/// Writes the outbox row of one event on `landlord.events`.
pub async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    tenant: Option<&str>,
    job_id: Option<Uuid>,
    data: serde_json::Value,
) -> Result<i64> {
    let event_id = Uuid::now_v7();
    let payload = serde_json::json!({
        "v": 1,
        "event": name,
        "event_id": event_id,
        "at": Utc::now(),
        "tenant": tenant,
        "job_id": job_id,
        "data": data,
    });
    sqlx::query_scalar!(
        "INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        topology::EVENTS,
        name,
        payload,
        event_id.to_string(),
        job_id,
    )
    .fetch_one(&mut **tx)
    .await
    .context("writing event to outbox")
}

async fn slug_of(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: Option<i64>,
) -> Result<Option<String>> {
    match tenant_id {
        None => Ok(None),
        Some(id) => sqlx::query_scalar!("SELECT slug FROM tenants WHERE id = $1", id)
            .fetch_optional(&mut **tx)
            .await
            .context("looking up tenant slug"),
    }
}

/// What became of a message whose job is not in the catalog.
#[derive(Debug)]
pub enum Adoption {
    /// The row now exists (written by us or by a concurrent adopter).
    Adopted,
    /// A live job with the same dedupe key exists; this message is a duplicate.
    Duplicate(Uuid),
}

/// Why a message could not be adopted; its `Display` is the reason logged
/// (and, for [`AdoptError::Refused`], written to the dead-letter queue).
#[derive(Debug, Error)]
pub enum AdoptError {
    /// The message can never become a job (unknown kind, bad arguments,
    /// unknown tenant): dead-letter it.
    #[error("{0}")]
    Refused(String),
    /// The catalog could not be read or written: give the message back.
    #[error("catalog unavailable: {0}")]
    CatalogUnavailable(String),
}

/// Writes the catalog row for a message another program published.
pub async fn adopt(
    pool: &PgPool,
    registry: &Registry,
    msg: &JobMessage,
    family: &str,
) -> Result<Adoption, AdoptError> {
    let spec = registry
        .get(&msg.kind)
        .ok_or_else(|| AdoptError::Refused(format!("unknown job kind {:?}", msg.kind)))?;
    spec.validate(&msg.args).map_err(AdoptError::Refused)?;
    let tenant_id = match (&msg.tenant, spec.needs_tenant) {
        (Some(slug), _) => Some(
            tenants::find(pool, slug)
                .await
                .map_err(|e| AdoptError::CatalogUnavailable(format!("{e:#}")))?
                .ok_or_else(|| AdoptError::Refused(format!("unknown tenant {slug:?}")))?
                .id,
        ),
        (None, true) => {
            return Err(AdoptError::Refused(format!(
                "job kind {} needs a tenant",
                msg.kind
            )));
        }
        (None, false) => None,
    };
    if let Some(key) = &msg.dedupe_key {
        let existing = sqlx::query_scalar!(
            "SELECT id FROM jobs WHERE dedupe_key = $1 AND status IN ('queued','running','retrying') AND id <> $2",
            key,
            msg.job_id,
        )
        .fetch_optional(pool)
        .await
        .map_err(|e| AdoptError::CatalogUnavailable(e.to_string()))?;
        if let Some(id) = existing {
            return Ok(Adoption::Duplicate(id));
        }
    }
    let max_attempts = spec.max_attempts as i32;
    let res = sqlx::query!(
        "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, origin, last_published_at) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, 'adopted', now()) ON CONFLICT (id) DO NOTHING",
        msg.job_id,
        spec.kind,
        family,
        tenant_id,
        &msg.args,
        max_attempts,
        msg.dedupe_key.as_deref(),
    )
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(Adoption::Adopted),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            // A concurrent adopter wrote a live job with the same dedupe key.
            let key = msg.dedupe_key.clone().unwrap_or_default();
            let other = sqlx::query_scalar!(
                "SELECT id FROM jobs WHERE dedupe_key = $1 AND status IN ('queued','running','retrying')",
                key,
            )
            .fetch_optional(pool)
            .await
            .map_err(|e| AdoptError::CatalogUnavailable(e.to_string()))?;
            Ok(Adoption::Duplicate(other.unwrap_or(msg.job_id)))
        }
        Err(e) => Err(AdoptError::CatalogUnavailable(e.to_string())),
    }
}

/// Loads one job.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<JobRow>> {
    select_jobs!("WHERE j.id = $1", id)
        .fetch_optional(pool)
        .await
        .context("loading job")
}

/// Filters for `jobs list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<String>,
    pub tenant: Option<String>,
    pub limit: i64,
}

/// Recent jobs, newest first.
pub async fn list(pool: &PgPool, f: &ListFilter) -> Result<Vec<JobRow>> {
    // Optional filters as NULL-able parameters keep the query static (and checked).
    select_jobs!(
        "WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2) \
         AND ($3::text IS NULL OR t.slug = $3) ORDER BY j.created_at DESC, j.id DESC LIMIT $4",
        f.status.map(JobStatus::as_str),
        f.kind.as_deref(),
        f.tenant.as_deref(),
        f.limit.clamp(1, 10_000),
    )
    .fetch_all(pool)
    .await
    .context("listing jobs")
}

/// Claims a runnable job for one attempt: `running`, leased to `owner`.
pub async fn claim(
    pool: &PgPool,
    id: Uuid,
    owner: &str,
    lease: Duration,
) -> Result<Option<Claimed>> {
    sqlx::query_as!(
        Claimed,
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $2, claim_token = gen_random_uuid(), \
         lease_expires_at = now() + make_interval(secs => $3), started_at = now(), \
         updated_at = now(), progress = NULL \
         WHERE id = $1 AND status IN ('queued', 'retrying') AND run_at <= now() \
         RETURNING id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token",
        id,
        owner,
        lease.as_secs_f64(),
    )
    .fetch_optional(pool)
    .await
    .context("claiming job")
}

/// Extends the lease. `false` means the attempt no longer owns the job.
pub async fn heartbeat(pool: &PgPool, job: &Claimed, owner: &str, lease: Duration) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4) \
         WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 AND status = 'running'",
        job.id,
        owner,
        job.claim_token,
        lease.as_secs_f64(),
    )
    .execute(pool)
    .await
    .context("extending lease")?
    .rows_affected();
    Ok(n == 1)
}

/// Records success (fenced) and its events. `false`: the attempt lost the job.
pub async fn complete(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    result: &serde_json::Value,
    events: &[PendingEvent],
) -> Result<bool> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let n = sqlx::query!(
        "UPDATE jobs SET status = 'succeeded', result = $4, finished_at = now(), updated_at = now(), \
         lease_owner = NULL, lease_expires_at = NULL, last_error = NULL \
         WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 AND status = 'running'",
        job.id,
        owner,
        job.claim_token,
        result,
    )
    .execute(&mut *tx)
    .await
    .context("recording success")?
    .rows_affected();
    if n != 1 {
        return Ok(false);
    }
    let slug = slug_of(&mut tx, job.tenant_id).await?;
    for ev in events {
        insert_event(
            &mut tx,
            &ev.name,
            slug.as_deref(),
            Some(job.id),
            ev.data.clone(),
        )
        .await?;
    }
    insert_event(
        &mut tx,
        "job.succeeded",
        slug.as_deref(),
        Some(job.id),
        serde_json::json!({"kind": job.kind, "attempts": job.attempts, "result": result}),
    )
    .await?;
    tx.commit().await.context("committing success")?;
    Ok(true)
}

/// What became of a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    Retrying {
        delay: Duration,
    },
    Dead,
    /// `--sync` runs end here instead of retrying.
    Failed,
    /// The attempt had lost the job; nothing recorded.
    Lost,
}

/// Records a failed attempt (fenced when `owner` is given): retry later, or
/// dead when the error is fatal or the attempts are spent.
pub async fn fail(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
) -> Result<FailOutcome> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let out = fail_in_tx(&mut tx, job, Some(owner), error, policy, sync).await?;
    tx.commit().await.context("committing failure")?;
    Ok(out)
}

async fn fail_in_tx(
    tx: &mut Transaction<'_, Postgres>,
    job: &Claimed,
    owner: Option<&str>,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
) -> Result<FailOutcome> {
    let msg = error.to_string();
    let exhausted = job.attempts >= job.max_attempts;
    let outcome = if sync {
        FailOutcome::Failed
    } else if error.is_fatal() || exhausted {
        FailOutcome::Dead
    } else {
        FailOutcome::Retrying {
            delay: policy.delay_after(job.attempts.max(1) as u32),
        }
    };
    let (status, delay_secs) = match &outcome {
        FailOutcome::Retrying { delay } => (JobStatus::Retrying, delay.as_secs_f64()),
        FailOutcome::Dead => (JobStatus::Dead, 0.0),
        _ => (JobStatus::Failed, 0.0),
    };
    let run_at = sqlx::query_scalar!(
        "UPDATE jobs SET status = $4, last_error = $5, updated_at = now(), \
         lease_owner = NULL, lease_expires_at = NULL, \
         run_at = CASE WHEN $4 = 'retrying' THEN now() + make_interval(secs => $6) ELSE run_at END, \
         finished_at = CASE WHEN $4 = 'retrying' THEN NULL ELSE now() END \
         WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2) AND claim_token = $3 AND status = 'running' \
         RETURNING run_at",
        job.id,
        owner,
        job.claim_token,
        status.as_str(),
        &msg,
        delay_secs,
    )
    .fetch_optional(&mut **tx)
    .await
    .context("recording failure")?;
    let Some(run_at) = run_at else {
        return Ok(FailOutcome::Lost);
    };
    let slug = slug_of(tx, job.tenant_id).await?;
    match &outcome {
        FailOutcome::Retrying { .. } => {
            insert_job_message(
                tx,
                job.id,
                &job.kind,
                &job.queue,
                slug.as_deref(),
                &job.args,
                Some(run_at),
            )
            .await?;
        }
        FailOutcome::Dead | FailOutcome::Failed => {
            let name = if outcome == FailOutcome::Dead {
                "job.dead"
            } else {
                "job.failed"
            };
            insert_event(
                tx,
                name,
                slug.as_deref(),
                Some(job.id),
                serde_json::json!({
                    "kind": job.kind,
                    "attempts": job.attempts,
                    "fatal": error.is_fatal(),
                    "error": msg,
                }),
            )
            .await?;
        }
        FailOutcome::Lost => {}
    }
    Ok(outcome)
}

/// Puts back a job whose tenant was busy: later, without spending an attempt.
pub async fn postpone(pool: &PgPool, id: Uuid, delay: Duration) -> Result<bool> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let row = sqlx::query!(
        "UPDATE jobs SET run_at = greatest(run_at, now() + make_interval(secs => $2)), updated_at = now() \
         WHERE id = $1 AND status IN ('queued', 'retrying') \
         RETURNING kind, queue, tenant_id, args, run_at",
        id,
        delay.as_secs_f64(),
    )
    .fetch_optional(&mut *tx)
    .await
    .context("postponing job")?;
    let Some(job) = row else {
        return Ok(false);
    };
    let slug = slug_of(&mut tx, job.tenant_id).await?;
    insert_job_message(
        &mut tx,
        id,
        &job.kind,
        &job.queue,
        slug.as_deref(),
        &job.args,
        Some(job.run_at),
    )
    .await?;
    tx.commit().await.context("committing postponement")?;
    Ok(true)
}

/// Hands a claimed job back at shutdown: queued again, the attempt not spent.
pub async fn hand_back(pool: &PgPool, job: &Claimed, owner: &str) -> Result<bool> {
    give_back(
        pool,
        job,
        owner,
        Duration::ZERO,
        "handed back by a worker shutting down",
    )
    .await
}

/// Queues a claimed job again after `delay` without spending its attempt
/// (the handler found a shared resource busy).
pub async fn give_back(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    delay: Duration,
    why: &str,
) -> Result<bool> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let run_at = sqlx::query_scalar!(
        "UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL, \
         lease_expires_at = NULL, run_at = now() + make_interval(secs => $4), updated_at = now(), \
         last_error = $5 \
         WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 AND status = 'running' RETURNING run_at",
        job.id,
        owner,
        job.claim_token,
        delay.as_secs_f64(),
        why,
    )
    .fetch_optional(&mut *tx)
    .await
    .context("handing job back")?;
    let Some(run_at) = run_at else {
        return Ok(false);
    };
    let slug = slug_of(&mut tx, job.tenant_id).await?;
    insert_job_message(
        &mut tx,
        job.id,
        &job.kind,
        &job.queue,
        slug.as_deref(),
        &job.args,
        Some(run_at),
    )
    .await?;
    tx.commit().await.context("committing hand-back")?;
    Ok(true)
}

/// Re-drives jobs whose lease expired (their worker died or hung): the lost
/// attempt counts as a retryable failure. Returns how many were reaped.
pub async fn reap_expired(
    pool: &PgPool,
    policy: &RetryPolicy,
) -> Result<Vec<(Claimed, FailOutcome)>> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let expired = sqlx::query_as!(
        Claimed,
        "SELECT id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token FROM jobs \
         WHERE status = 'running' AND lease_expires_at < now() \
         ORDER BY lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await
    .context("finding expired leases")?;
    let err = JobError::retryable(LEASE_EXPIRED);
    let mut out = Vec::with_capacity(expired.len());
    for job in expired {
        let outcome = fail_in_tx(&mut tx, &job, None, &err, policy, false).await?;
        out.push((job, outcome));
    }
    tx.commit().await.context("committing reaped jobs")?;
    Ok(out)
}

/// The error recorded on a job whose worker stopped heartbeating.
pub const LEASE_EXPIRED: &str = "lease expired: the worker running it stopped heartbeating";

/// Publishes again runnable jobs whose message has not been seen for
/// `stale_after` and that have no unpublished outbox row (a purged queue,
/// a message dead-lettered while the catalog was down). Only jobs of
/// families whose queue is empty qualify (`empty_queues`): a job waiting
/// behind a backlog still has its message and must not get another.
pub async fn republish_stale(
    pool: &PgPool,
    stale_after: Duration,
    empty_queues: &[String],
) -> Result<u64> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let stale = sqlx::query!(
        "SELECT j.id, j.kind, j.queue, j.tenant_id, j.args FROM jobs j \
         WHERE j.status IN ('queued', 'retrying') AND j.origin <> 'sync' AND j.queue = ANY($2) \
         AND j.run_at < now() - make_interval(secs => $1) \
         AND (j.last_published_at IS NULL OR j.last_published_at < now() - make_interval(secs => $1)) \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.published_at IS NULL \
                         AND o.exchange = 'work') \
         LIMIT 100 FOR UPDATE OF j SKIP LOCKED",
        stale_after.as_secs_f64(),
        empty_queues,
    )
    .fetch_all(&mut *tx)
    .await
    .context("finding stale jobs")?;
    for j in &stale {
        let slug = slug_of(&mut tx, j.tenant_id).await?;
        insert_job_message(
            &mut tx,
            j.id,
            &j.kind,
            &j.queue,
            slug.as_deref(),
            &j.args,
            None,
        )
        .await?;
    }
    // A `--sync` run that died between writing its row and claiming it.
    let abandoned = sqlx::query!(
        "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), \
         last_error = 'abandoned: the --sync run that wrote this job never started it' \
         WHERE origin = 'sync' AND status = 'queued' AND created_at < now() - make_interval(secs => $1)",
        stale_after.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await
    .context("closing abandoned sync jobs")?
    .rows_affected();
    tx.commit().await.context("committing republish")?;
    Ok(stale.len() as u64 + abandoned)
}

/// Why an operator action on a job was refused.
#[derive(Debug, Error)]
pub enum JobActionError {
    #[error("no job {0}")]
    NotFound(Uuid),
    #[error("job {id} is {status}; {action} applies only to {allowed} jobs")]
    WrongStatus {
        id: Uuid,
        status: JobStatus,
        action: &'static str,
        allowed: &'static str,
    },
    #[error("another live job ({0}) has the same dedupe key")]
    Duplicate(Uuid),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Cancels a queued, retrying or running job. A running attempt notices at its
/// next heartbeat and stops; its result is never recorded.
pub async fn cancel(pool: &PgPool, id: Uuid, actor: &str) -> Result<(), JobActionError> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let row = sqlx::query_scalar!(
        "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $1 AND status IN ('queued', 'retrying', 'running') RETURNING tenant_id",
        id,
    )
    .fetch_optional(&mut *tx)
    .await
    .context("cancelling job")?;
    let Some(tenant_id) = row else {
        return Err(refusal(pool, id, "cancel", "queued, retrying or running").await);
    };
    let slug = slug_of(&mut tx, tenant_id).await?;
    insert_event(
        &mut tx,
        "job.cancelled",
        slug.as_deref(),
        Some(id),
        serde_json::json!({"by": actor}),
    )
    .await?;
    audit(
        &mut tx,
        actor,
        "job.cancelled",
        tenant_id,
        Some(id),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await.context("committing cancel")?;
    Ok(())
}

/// Queues again a dead, failed or cancelled job, with its attempts reset.
pub async fn retry(pool: &PgPool, id: Uuid, actor: &str) -> Result<Option<i64>, JobActionError> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let row = sqlx::query_as!(
        Claimed,
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), updated_at = now(), \
         finished_at = NULL, result = NULL, progress = NULL, origin = CASE WHEN origin = 'sync' THEN 'catalog' ELSE origin END \
         WHERE id = $1 AND status IN ('dead', 'failed', 'cancelled') \
         RETURNING id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token",
        id,
    )
    .fetch_optional(&mut *tx)
    .await;
    let row = match row {
        Ok(r) => r,
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            drop(tx);
            let key = sqlx::query_scalar!("SELECT dedupe_key FROM jobs WHERE id = $1", id)
                .fetch_one(pool)
                .await
                .context("loading job")?;
            let other = sqlx::query_scalar!(
                "SELECT id FROM jobs WHERE dedupe_key = $1 AND status IN ('queued','running','retrying')",
                key,
            )
            .fetch_one(pool)
            .await
            .context("finding duplicate")?;
            return Err(JobActionError::Duplicate(other));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("retrying job").into()),
    };
    let Some(job) = row else {
        return Err(refusal(pool, id, "retry", "dead, failed or cancelled").await);
    };
    let slug = slug_of(&mut tx, job.tenant_id).await?;
    let outbox = insert_job_message(
        &mut tx,
        id,
        &job.kind,
        &job.queue,
        slug.as_deref(),
        &job.args,
        None,
    )
    .await?;
    audit(
        &mut tx,
        actor,
        "job.retried",
        job.tenant_id,
        Some(id),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await.context("committing retry")?;
    Ok(Some(outbox))
}

async fn refusal(
    pool: &PgPool,
    id: Uuid,
    action: &'static str,
    allowed: &'static str,
) -> JobActionError {
    match get(pool, id).await {
        Ok(Some(j)) => JobActionError::WrongStatus {
            id,
            status: j.status,
            action,
            allowed,
        },
        Ok(None) => JobActionError::NotFound(id),
        Err(e) => JobActionError::Other(e),
    }
}

/// A tenant change as both an event (through the outbox) and an audit entry,
/// in the caller's transaction.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    name: &str,
    tenant: (i64, &str),
    job_id: Option<Uuid>,
    data: serde_json::Value,
) -> Result<()> {
    insert_event(tx, name, Some(tenant.1), job_id, data.clone()).await?;
    audit(tx, actor, name, Some(tenant.0), job_id, data).await
}

/// Appends to the audit log.
pub async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    action: &str,
    tenant_id: Option<i64>,
    job_id: Option<Uuid>,
    details: serde_json::Value,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO audit_log (actor, action, tenant_id, job_id, details) VALUES ($1, $2, $3, $4, $5)",
        actor,
        action,
        tenant_id,
        job_id,
        details,
    )
    .execute(&mut **tx)
    .await
    .context("writing audit log")?;
    Ok(())
}

/// The tenant of a claimed job, if it has one.
pub async fn tenant_of(pool: &PgPool, job: &Claimed) -> Result<Option<Tenant>> {
    match job.tenant_id {
        None => Ok(None),
        Some(id) => tenants::by_id(pool, id).await,
    }
}

#[cfg(test)]
mod tests;
