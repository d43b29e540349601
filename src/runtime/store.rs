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
//!
//! Dedupe keys are typed ([`DedupeKey`]): a key a caller gave lives in that
//! caller's namespace, and a live job holding a key is "the existing job"
//! only if it is of the same kind and tenant.

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
    runtime::{
        JobError, JobStatus, PendingEvent, Registry, RetryPolicy, compensation::Compensation,
    },
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
    /// What is left to undo after the job ended (`on_dead`): none, pending
    /// (run under the tenant's lock, retried until done) or done.
    pub compensation: Option<Compensation>,
    /// Why the last try of a pending compensation did not finish.
    pub compensation_error: Option<String>,
    pub compensated_at: Option<DateTime<Utc>>,
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
                      j.started_at, j.finished_at, j.compensation AS "compensation: Compensation",
                      j.compensation_error, j.compensated_at
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

/// Longest dedupe key a caller may give, and longest stored key
/// (`jobs.dedupe_key` has the same check).
pub const MAX_DEDUPE_KEY: usize = 500;

/// The prefix of every stored key a caller gave; no key landlord makes
/// itself starts with it.
const CALLER_PREFIX: &str = "caller:";

/// A job's dedupe key: one landlord makes itself (`drop:acme`,
/// `final-backup:acme`, `sched:…`), or one a caller gave, which lives in
/// that caller's own namespace.
///
/// The two never meet: a caller's key is stored as
/// `caller:{actor}:{key}` (the actor is `api:admin`, `api:tenant:acme`,
/// `cli`, `amqp` or a library client's), and an internal key can only be
/// made inside this crate ([`DedupeKey::internal`] is `pub(crate)`), so no
/// request, command line or message can take a key landlord relies on (a
/// tenant posting `final-backup:victim` gets `caller:api:tenant:acme:final-backup:victim`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DedupeKey(KeyRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyRepr {
    Internal(String),
    Caller { actor: String, key: String },
}

impl DedupeKey {
    /// A key landlord makes itself, stored as is. Never from input: use
    /// [`DedupeKey::caller`] for anything a caller gave.
    pub(crate) fn internal(key: impl Into<String>) -> Self {
        let key = key.into();
        debug_assert!(
            !key.starts_with(CALLER_PREFIX),
            "internal dedupe key {key:?} in the callers' namespace"
        );
        Self(KeyRepr::Internal(key))
    }

    /// A key given by `actor` (checked at enqueue: 1-500 bytes).
    pub fn caller(actor: &str, key: impl Into<String>) -> Self {
        Self(KeyRepr::Caller {
            actor: actor.to_string(),
            key: key.into(),
        })
    }

    /// The key as the caller gave it (or the internal key).
    pub fn given(&self) -> &str {
        match &self.0 {
            KeyRepr::Internal(k) | KeyRepr::Caller { key: k, .. } => k,
        }
    }

    /// Whether a caller gave this key.
    pub fn is_caller(&self) -> bool {
        matches!(self.0, KeyRepr::Caller { .. })
    }

    /// The value of `jobs.dedupe_key`. A caller's key that would be longer
    /// than [`MAX_DEDUPE_KEY`] with its namespace is stored as
    /// `caller:sha256:{hex of caller:{actor}:{key}}`.
    pub fn stored(&self) -> String {
        match &self.0 {
            KeyRepr::Internal(k) => k.clone(),
            KeyRepr::Caller { actor, key } => {
                let full = format!("{CALLER_PREFIX}{actor}:{key}");
                if full.len() <= MAX_DEDUPE_KEY {
                    full
                } else {
                    use sha2::{Digest, Sha256};
                    let hex: String = Sha256::digest(full.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("{CALLER_PREFIX}sha256:{hex}")
                }
            }
        }
    }

    /// Refuses a caller's key that is empty or longer than [`MAX_DEDUPE_KEY`] bytes.
    fn check(&self) -> Result<(), EnqueueError> {
        let k = self.given();
        if k.is_empty() || k.len() > MAX_DEDUPE_KEY {
            return Err(EnqueueError::Invalid(format!(
                "dedupe key must be 1-{MAX_DEDUPE_KEY} characters"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&truncate(self.given()))
    }
}

/// What to enqueue.
#[derive(Debug, Clone, Default)]
pub struct EnqueueRequest {
    pub kind: String,
    pub tenant: Option<String>,
    pub args: serde_json::Value,
    /// Family override; defaults to the kind's own.
    pub queue: Option<String>,
    /// A live job of the same kind and tenant with this key is returned
    /// instead of a new one; a live job of another kind or tenant with it
    /// is refused ([`EnqueueError::DedupeTaken`]).
    pub dedupe_key: Option<DedupeKey>,
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
    /// A live job of another kind or tenant holds the key: never returned
    /// as "the existing job", and nothing is written.
    #[error("dedupe key {0:?} is held by a live job of another kind or tenant; use another key")]
    DedupeTaken(String),
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
        Err(EnqueueError::DedupeRace(_)) => {
            // Another producer inserted the same live key between our check and insert.
            drop(tx);
            let mut tx = pool.begin().await.context("starting transaction")?;
            let (Some(key), Some(spec)) = (&req.dedupe_key, registry.get(&req.kind)) else {
                return Err(EnqueueError::Invalid(
                    "a concurrent job took the same dedupe key; enqueue again".into(),
                ));
            };
            let tenant_id = match &req.tenant {
                Some(slug) => Some(tenants::get_in(&mut tx, slug).await?.id),
                None => None,
            };
            match live_by_dedupe(&mut tx, key, spec.kind, tenant_id).await? {
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
    if let Some(k) = &req.dedupe_key {
        k.check()?;
    }
    let max_attempts = req.max_attempts.unwrap_or(spec.max_attempts).clamp(1, 100) as i32;
    let id = Uuid::now_v7();
    // A job whose message a worker would refuse (too large) would only ever be
    // dead-lettered; refuse it here, for every origin (`jobs retry` publishes
    // a `--sync` job too).
    JobMessage::new(
        id,
        spec.kind,
        tenant.as_ref().map(|t| t.slug.as_str()),
        args.clone(),
    )
    .check()
    .map_err(|why| EnqueueError::InvalidArgs(format!("the job cannot be sent: {why}")))?;

    let stored_key = req.dedupe_key.as_ref().map(DedupeKey::stored);
    if let Some(key) = &req.dedupe_key
        && let Some(existing) =
            live_by_dedupe(tx, key, spec.kind, tenant.as_ref().map(|t| t.id)).await?
    {
        return Ok(Enqueued {
            id: existing,
            existing: true,
            outbox_id: None,
        });
    }
    // A span of its own, so the job's trace starts here (or continues the
    // caller's: a job enqueued by a job joins that job's trace).
    let span = tracing::info_span!(
        "enqueue",
        job_id = %id,
        kind = spec.kind,
        tenant = tenant.as_ref().map(|t| t.slug.as_str()).unwrap_or("-"),
    );
    let trace_parent = crate::trace_context::of(&span);
    let inserted = sqlx::query!(
        "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, run_at, origin, trace_parent) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, coalesce($8, now()), $9, $10)",
        id,
        spec.kind,
        &queue,
        tenant.as_ref().map(|t| t.id),
        &args,
        max_attempts,
        stored_key.as_deref(),
        req.run_at,
        origin.as_str(),
        trace_parent.as_deref(),
    )
    .execute(&mut **tx)
    .await;
    if let Err(e) = inserted {
        if let (sqlx::Error::Database(d), Some(key)) = (&e, &req.dedupe_key)
            && d.is_unique_violation()
        {
            return Err(EnqueueError::DedupeRace(key.to_string()));
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

/// The live job holding `key`, if it is of this kind and tenant: the job
/// an enqueue returns instead of a new one. A live job of another kind or
/// tenant with the key is [`EnqueueError::DedupeTaken`], never "the
/// existing job" (a ping must never stand in for a final backup).
async fn live_by_dedupe(
    tx: &mut Transaction<'_, Postgres>,
    key: &DedupeKey,
    kind: &str,
    tenant_id: Option<i64>,
) -> Result<Option<Uuid>, EnqueueError> {
    match live_holder(&mut **tx, &key.stored(), kind, tenant_id)
        .await
        .context("looking for a duplicate job")?
    {
        None => Ok(None),
        Some((id, true)) => Ok(Some(id)),
        Some((_, false)) => Err(EnqueueError::DedupeTaken(key.to_string())),
    }
}

/// The live job holding the stored key `key`, and whether it is of `kind`
/// and `tenant_id`.
async fn live_holder<'e>(
    db: impl sqlx::PgExecutor<'e>,
    key: &str,
    kind: &str,
    tenant_id: Option<i64>,
) -> Result<Option<(Uuid, bool)>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, (kind = $2 AND tenant_id IS NOT DISTINCT FROM $3) AS "same!" FROM jobs
           WHERE dedupe_key = $1 AND status IN ('queued', 'running', 'retrying')"#,
        key,
        kind,
        tenant_id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.same)))
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

/// The actor whose namespace the dedupe keys of adopted messages live in.
pub const FOREIGN_ACTOR: &str = "amqp";

/// Writes the catalog row for a message another program published.
///
/// Anything that can publish to the work exchange is a foreign producer, so
/// only the kinds in `foreign_kinds` (`LANDLORD_FOREIGN_KINDS`) are adopted;
/// any other kind is [`AdoptError::Refused`] and writes nothing. The
/// message's dedupe key lives in the [`FOREIGN_ACTOR`] namespace.
pub async fn adopt(
    pool: &PgPool,
    registry: &Registry,
    msg: &JobMessage,
    family: &str,
    foreign_kinds: &[String],
    trace_parent: Option<&str>,
) -> Result<Adoption, AdoptError> {
    let spec = registry
        .get(&msg.kind)
        .ok_or_else(|| AdoptError::Refused(format!("unknown job kind {:?}", msg.kind)))?;
    if !foreign_kinds.iter().any(|k| k == spec.kind) {
        return Err(AdoptError::Refused(format!(
            "job kind {} is not accepted from foreign producers (LANDLORD_FOREIGN_KINDS allows: {})",
            spec.kind,
            if foreign_kinds.is_empty() {
                "none".to_string()
            } else {
                foreign_kinds.join(", ")
            }
        )));
    }
    spec.validate(&msg.args).map_err(AdoptError::Refused)?;
    // Held to what a tenant token may ask for: no holds, retention or restore tests.
    if let Some(arg) = crate::message::OperatorArg::find(spec.kind, &msg.args) {
        return Err(AdoptError::Refused(format!(
            "{} on {} is an operator's decision; it is not accepted from foreign producers",
            arg.names(),
            spec.kind
        )));
    }
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
    let key = msg
        .dedupe_key
        .as_ref()
        .map(|k| DedupeKey::caller(FOREIGN_ACTOR, k.as_str()));
    let stored_key = key.as_ref().map(DedupeKey::stored);
    // A live twin of the same kind and tenant makes this message a
    // duplicate; a live job of another kind or tenant with the key is not
    // its twin, and the message is refused.
    let holder = |found: Option<(Uuid, bool)>| match found {
        Some((id, _)) if id == msg.job_id => Ok(None),
        Some((id, true)) => Ok(Some(Adoption::Duplicate(id))),
        Some((_, false)) => Err(AdoptError::Refused(format!(
            "dedupe key {:?} is held by a live job of another kind or tenant",
            truncate(msg.dedupe_key.as_deref().unwrap_or_default())
        ))),
        None => Ok(None),
    };
    if let Some(stored) = &stored_key {
        let found = live_holder(pool, stored, spec.kind, tenant_id)
            .await
            .map_err(|e| AdoptError::CatalogUnavailable(e.to_string()))?;
        if let Some(dup) = holder(found)? {
            return Ok(dup);
        }
    }
    let max_attempts = spec.max_attempts as i32;
    let res = sqlx::query!(
        "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, origin, last_published_at, trace_parent) \
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, 'adopted', now(), $8) ON CONFLICT (id) DO NOTHING",
        msg.job_id,
        spec.kind,
        family,
        tenant_id,
        &msg.args,
        max_attempts,
        stored_key.as_deref(),
        trace_parent,
    )
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(Adoption::Adopted),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            // A concurrent adopter wrote a live job with the same dedupe key.
            let found = live_holder(
                pool,
                stored_key.as_deref().unwrap_or_default(),
                spec.kind,
                tenant_id,
            )
            .await
            .map_err(|e| AdoptError::CatalogUnavailable(e.to_string()))?;
            Ok(holder(found)?.unwrap_or(Adoption::Duplicate(msg.job_id)))
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

/// A window of creation times and where a page of it continues.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreatedWindow {
    /// Jobs created at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Jobs created before this.
    pub until: Option<DateTime<Utc>>,
    /// The last job of the previous page (its creation time and id): the
    /// page continues with the jobs older than it.
    pub after_row: Option<(DateTime<Utc>, Uuid)>,
}

/// One page of the jobs created in a window, newest first by creation time
/// (then id). Whatever the other filters, it is a backward range scan of
/// index `jobs_created`, the keyset `(created_at, id)` continuing a page.
/// Creation time, not the id, decides: a job adopted from a foreign
/// producer may carry a UUID of any version.
pub async fn page_created(pool: &PgPool, f: &ListFilter, w: &CreatedWindow) -> Result<Vec<JobRow>> {
    let (upper_at, upper_id) = match (w.after_row, w.until) {
        (Some((at, _)), Some(until)) if until <= at => (Some(until), None),
        (Some((at, id)), _) => (Some(at), Some(id)),
        (None, until) => (until, None),
    };
    let mut tx = crate::db::custom_plans(pool).await?;
    let rows = select_jobs!(
        "WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2) \
         AND ($3::text IS NULL OR t.slug = $3) \
         AND j.created_at >= coalesce($4::timestamptz, '-infinity') \
         AND (j.created_at, j.id) < (coalesce($5::timestamptz, 'infinity'), \
                                     coalesce($6::uuid, '00000000-0000-0000-0000-000000000000')) \
         ORDER BY j.created_at DESC, j.id DESC LIMIT $7",
        f.status.map(JobStatus::as_str),
        f.kind.as_deref(),
        f.tenant.as_deref(),
        w.since,
        upper_at,
        upper_id,
        f.limit.clamp(1, 10_000),
    )
    .fetch_all(&mut *tx)
    .await
    .context("listing jobs by creation time")?;
    tx.commit().await.context("ending the read transaction")?;
    Ok(rows)
}

/// One page of jobs, newest first by id (ids are UUIDv7: creation order),
/// those before `before` when given (keyset pagination on the primary key).
pub async fn page(pool: &PgPool, f: &ListFilter, before: Option<Uuid>) -> Result<Vec<JobRow>> {
    let mut tx = crate::db::custom_plans(pool).await?;
    let rows = select_jobs!(
        "WHERE ($1::text IS NULL OR j.status = $1) AND ($2::text IS NULL OR j.kind = $2) \
         AND ($3::text IS NULL OR t.slug = $3) AND ($4::uuid IS NULL OR j.id < $4) \
         ORDER BY j.id DESC LIMIT $5",
        f.status.map(JobStatus::as_str),
        f.kind.as_deref(),
        f.tenant.as_deref(),
        before,
        f.limit.clamp(1, 10_000),
    )
    .fetch_all(&mut *tx)
    .await
    .context("listing jobs")?;
    tx.commit().await.context("ending the read transaction")?;
    Ok(rows)
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

/// Whether a job that ends now (`dead`, or `failed` under `--sync`) leaves
/// its compensation pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Its kind compensates ([`crate::runtime::Job::COMPENSATES`]).
    Compensate,
    /// Its kind has nothing to undo.
    Nothing,
    /// The writer does not know the kind (the reaper, a worker of a build
    /// that lacks it): pending, for a worker that knows it to run or clear.
    Unknown,
}

/// Records a failed attempt (fenced when `owner` is given): retry later, or
/// dead when the error is fatal or the attempts are spent. The kind is not
/// known here, so an end leaves its compensation pending ([`Leftovers::Unknown`]).
pub async fn fail(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
) -> Result<FailOutcome> {
    fail_as(pool, job, owner, error, policy, sync, Leftovers::Unknown).await
}

/// [`fail`] by a writer that knows whether the kind compensates: an end
/// writes `compensation = 'pending'` in the same transaction when it does,
/// leased to `owner` (the attempt, which runs it at once if it still holds
/// the tenant lock) for what is left of the attempt's lease.
pub async fn fail_as(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
    leftovers: Leftovers,
) -> Result<FailOutcome> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let out = fail_recorded(&mut tx, job, Some(owner), error, policy, sync, leftovers).await?;
    tx.commit().await.context("committing failure")?;
    Ok(out)
}

/// [`fail`] inside a caller's transaction (the reaper's), for a kind the
/// caller does not know ([`Leftovers::Unknown`]).
async fn fail_in_tx(
    tx: &mut Transaction<'_, Postgres>,
    job: &Claimed,
    owner: Option<&str>,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
) -> Result<FailOutcome> {
    fail_recorded(tx, job, owner, error, policy, sync, Leftovers::Unknown).await
}

async fn fail_recorded(
    tx: &mut Transaction<'_, Postgres>,
    job: &Claimed,
    owner: Option<&str>,
    error: &JobError,
    policy: &RetryPolicy,
    sync: bool,
    leftovers: Leftovers,
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
    // An end that leaves compensation pends it in this same transaction,
    // leased to the attempt for what is left of its lease (the reaper's: due now).
    let pends = status != JobStatus::Retrying && leftovers != Leftovers::Nothing;
    let run_at = sqlx::query_scalar!(
        "UPDATE jobs SET status = $4, last_error = $5, updated_at = now(), \
         lease_owner = NULL, lease_expires_at = NULL, \
         run_at = CASE WHEN $4 = 'retrying' THEN now() + make_interval(secs => $6) ELSE run_at END, \
         finished_at = CASE WHEN $4 = 'retrying' THEN NULL ELSE now() END, \
         compensation = CASE WHEN $7 THEN 'pending' ELSE compensation END, \
         compensation_error = CASE WHEN $7 THEN NULL ELSE compensation_error END, \
         compensated_at = CASE WHEN $7 THEN NULL ELSE compensated_at END, \
         compensation_tries = CASE WHEN $7 THEN 0 ELSE compensation_tries END, \
         compensate_after = CASE WHEN $7 THEN greatest(now(), lease_expires_at) ELSE compensate_after END, \
         compensation_owner = CASE WHEN $7 THEN $2 ELSE compensation_owner END \
         WHERE id = $1 AND ($2::text IS NULL OR lease_owner = $2) AND claim_token = $3 AND status = 'running' \
         RETURNING run_at",
        job.id,
        owner,
        job.claim_token,
        status.as_str(),
        &msg,
        delay_secs,
        pends,
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

/// Hands a claimed job back at shutdown: queued again, the attempt not
/// spent (and, like [`give_back`], not published when it is a `--sync` job).
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
/// (the handler found a shared resource busy, or the claim could not be
/// followed up). A `--sync` job is not published: the run that holds it
/// claims it again in-process ([`crate::runtime::sync`]), and the fleet never
/// runs it.
pub async fn give_back(
    pool: &PgPool,
    job: &Claimed,
    owner: &str,
    delay: Duration,
    why: &str,
) -> Result<bool> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let back = sqlx::query!(
        r#"UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_owner = NULL,
           lease_expires_at = NULL, run_at = now() + make_interval(secs => $4), updated_at = now(),
           last_error = $5
           WHERE id = $1 AND lease_owner = $2 AND claim_token = $3 AND status = 'running'
           RETURNING run_at, origin AS "origin: Origin""#,
        job.id,
        owner,
        job.claim_token,
        delay.as_secs_f64(),
        why,
    )
    .fetch_optional(&mut *tx)
    .await
    .context("handing job back")?;
    let Some(back) = back else {
        return Ok(false);
    };
    if runs_in_fleet(back.origin) {
        let slug = slug_of(&mut tx, job.tenant_id).await?;
        insert_job_message(
            &mut tx,
            job.id,
            &job.kind,
            &job.queue,
            slug.as_deref(),
            &job.args,
            Some(back.run_at),
        )
        .await?;
    }
    tx.commit().await.context("committing hand-back")?;
    Ok(true)
}

/// Whether the fleet may run a job of this origin: every job but a `--sync`
/// run's, which only its own process runs and which is never published.
fn runs_in_fleet(origin: Origin) -> bool {
    !matches!(origin, Origin::Sync)
}

/// Re-drives jobs whose lease expired (their worker died or hung): the lost
/// attempt counts as a retryable failure. A `--sync` job is never re-driven:
/// the fleet must not redo a run its operator saw stop, so it ends `failed`
/// ([`SYNC_RUN_STOPPED`]) with no outbox row. Returns the jobs reaped.
pub async fn reap_expired(
    pool: &PgPool,
    policy: &RetryPolicy,
) -> Result<Vec<(Claimed, FailOutcome)>> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let expired = sqlx::query!(
        r#"SELECT id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token,
                  origin AS "origin: Origin"
           FROM jobs WHERE status = 'running' AND lease_expires_at < now()
           ORDER BY lease_expires_at LIMIT 100 FOR UPDATE SKIP LOCKED"#,
    )
    .fetch_all(&mut *tx)
    .await
    .context("finding expired leases")?;
    let lost = JobError::retryable(LEASE_EXPIRED);
    let stopped = JobError::fatal(SYNC_RUN_STOPPED);
    let mut out = Vec::with_capacity(expired.len());
    for r in expired {
        let job = Claimed {
            id: r.id,
            kind: r.kind,
            queue: r.queue,
            tenant_id: r.tenant_id,
            args: r.args,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            claim_token: r.claim_token,
        };
        let outcome = if runs_in_fleet(r.origin) {
            fail_in_tx(&mut tx, &job, None, &lost, policy, false).await?
        } else {
            fail_in_tx(&mut tx, &job, None, &stopped, policy, true).await?
        };
        out.push((job, outcome));
    }
    tx.commit().await.context("committing reaped jobs")?;
    Ok(out)
}

/// The error recorded on a job whose worker stopped heartbeating.
pub const LEASE_EXPIRED: &str = "lease expired: the worker running it stopped heartbeating";

/// The error recorded on a `--sync` job whose process stopped heartbeating.
pub const SYNC_RUN_STOPPED: &str = "the --sync run stopped (its process exited or hung) \
     while running this job; a --sync job is never handed to the fleet: check what it did, \
     then run it again";

/// What one pass of [`republish_stale`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Republished {
    /// Jobs whose message was written to the outbox again.
    pub published: u64,
    /// Jobs ended `dead` because their message could never be delivered.
    pub undeliverable: u64,
    /// `--sync` jobs whose run stopped before running them (cancelled).
    pub abandoned: u64,
}

/// How many jobs one pass of [`republish_stale`] publishes again, at most.
const REPUBLISH_BATCH: i64 = 100;

/// Publishes again, job by job, due jobs whose message went missing (a
/// purged queue, the delivery limit, a broker failover): a job that is due,
/// has no unpublished outbox row and was not claimed within `stale_after` of
/// its last publish gets a new one, whatever its queue's depth, so a lost
/// message is made good even under a steady backlog. Only jobs of
/// `families` (the caller's queues) qualify: a family no worker serves gets
/// no copies piling up.
///
/// A copy of a message that was not lost is harmless: the first copy a worker
/// takes claims the job, and every later one finds it not claimable and is
/// dropped (the catalog decides, not the broker). Copies are still bounded: a
/// job is published again at most once per `stale_after`, and the wait grows
/// with how long it has already waited since it became due (up to 8 ×
/// `stale_after`), so a long backlog gets a few copies per job rather than one
/// per `stale_after`; the oldest go first, [`REPUBLISH_BATCH`] per pass.
///
/// A job whose message a worker would refuse (too large) is never published
/// again: it ends `dead` with the reason, so it cannot loop through the
/// dead-letter queue. `--sync` jobs are never published; one left `queued`
/// by a run that stopped is cancelled.
pub async fn republish_stale(
    pool: &PgPool,
    stale_after: Duration,
    families: &[String],
) -> Result<Republished> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let stale = sqlx::query!(
        "SELECT j.id, j.kind, j.queue, j.tenant_id, j.args, j.attempts FROM jobs j \
         WHERE j.status IN ('queued', 'retrying') AND j.origin <> 'sync' AND j.queue = ANY($3) \
         AND j.run_at < now() - make_interval(secs => $1) \
         AND (j.last_published_at IS NULL OR j.last_published_at < now() - greatest( \
              make_interval(secs => $1), \
              least(j.last_published_at - j.run_at, make_interval(secs => $1 * 8)))) \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_id = j.id AND o.published_at IS NULL \
                         AND o.exchange = 'work') \
         ORDER BY coalesce(j.last_published_at, j.run_at), j.id \
         LIMIT $2 FOR UPDATE OF j SKIP LOCKED",
        stale_after.as_secs_f64(),
        REPUBLISH_BATCH,
        families,
    )
    .fetch_all(&mut *tx)
    .await
    .context("finding stale jobs")?;
    let mut done = Republished::default();
    for j in &stale {
        let slug = slug_of(&mut tx, j.tenant_id).await?;
        let msg = JobMessage::new(j.id, &j.kind, slug.as_deref(), j.args.clone());
        if let Err(why) = msg.check() {
            bury_in_tx(&mut tx, j.id, &j.kind, j.attempts, slug.as_deref(), &why).await?;
            done.undeliverable += 1;
            continue;
        }
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
        done.published += 1;
    }
    // A `--sync` run that stopped with its job queued: before claiming it,
    // or after giving it back (it would have claimed it again once due).
    done.abandoned = sqlx::query!(
        "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), \
         last_error = 'abandoned: the --sync run that wrote this job stopped before running it' \
         WHERE origin = 'sync' AND status = 'queued' \
         AND run_at < now() - make_interval(secs => $1) \
         AND updated_at < now() - make_interval(secs => $1)",
        stale_after.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await
    .context("closing abandoned sync jobs")?
    .rows_affected();
    tx.commit().await.context("committing republish")?;
    Ok(done)
}

/// Ends a waiting job `dead` because its message can never be delivered
/// (`why`: what a worker would refuse it for), with its `job.dead` event.
/// The message is not published again. `false`: the job was not waiting.
async fn bury_in_tx(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    kind: &str,
    attempts: i32,
    slug: Option<&str>,
    why: &str,
) -> Result<bool> {
    let error = crate::message::limit(&format!("its message can never be delivered: {why}"));
    let n = sqlx::query!(
        "UPDATE jobs SET status = 'dead', last_error = $2, finished_at = now(), updated_at = now() \
         WHERE id = $1 AND status IN ('queued', 'retrying')",
        id,
        &error,
    )
    .execute(&mut **tx)
    .await
    .context("ending an undeliverable job")?
    .rows_affected();
    if n == 1 {
        insert_event(
            tx,
            "job.dead",
            slug,
            Some(id),
            serde_json::json!({"kind": kind, "attempts": attempts, "fatal": true, "error": error}),
        )
        .await?;
    }
    Ok(n == 1)
}

/// Called when a worker dead-letters a message that names job `id`: if the
/// job's own message (as the catalog would publish it) cannot be delivered
/// either, the job ends `dead` with the reason instead of waiting to be
/// published again. A job whose own message is fine is left alone (the
/// refused bytes were someone else's). Returns the reason when it ended.
pub async fn bury_undeliverable(pool: &PgPool, id: Uuid) -> Result<Option<String>> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let row = sqlx::query!(
        "SELECT kind, tenant_id, args, attempts FROM jobs \
         WHERE id = $1 AND status IN ('queued', 'retrying') FOR UPDATE",
        id,
    )
    .fetch_optional(&mut *tx)
    .await
    .context("loading job")?;
    let Some(row) = row else {
        return Ok(None);
    };
    let slug = slug_of(&mut tx, row.tenant_id).await?;
    let Err(why) = JobMessage::new(id, &row.kind, slug.as_deref(), row.args).check() else {
        return Ok(None);
    };
    bury_in_tx(&mut tx, id, &row.kind, row.attempts, slug.as_deref(), &why).await?;
    tx.commit().await.context("committing undeliverable job")?;
    Ok(Some(why))
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
    #[error("a live job of another kind or tenant holds this job's dedupe key")]
    DedupeTaken,
    #[error(
        "job {0} still has its compensation pending (undoing what its attempts left); \
         retry it once `jobs show` says the compensation is done"
    )]
    CompensationPending(Uuid),
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
         AND compensation IS DISTINCT FROM 'pending' \
         RETURNING id, kind, queue, tenant_id, args, attempts, max_attempts, claim_token",
        id,
    )
    .fetch_optional(&mut *tx)
    .await;
    let row = match row {
        Ok(r) => r,
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            drop(tx);
            let job = sqlx::query!(
                "SELECT dedupe_key, kind, tenant_id FROM jobs WHERE id = $1",
                id
            )
            .fetch_one(pool)
            .await
            .context("loading job")?;
            let key = job.dedupe_key.unwrap_or_default();
            let other = live_holder(pool, &key, &job.kind, job.tenant_id)
                .await
                .context("finding duplicate")?;
            return Err(match other {
                Some((other, true)) => JobActionError::Duplicate(other),
                // Not this job's twin: its id is none of this job's business.
                Some((_, false)) => JobActionError::DedupeTaken,
                None => JobActionError::Other(anyhow::anyhow!(
                    "the live job holding this job's dedupe key ended meanwhile; retry again"
                )),
            });
        }
        Err(e) => return Err(anyhow::Error::new(e).context("retrying job").into()),
    };
    let Some(job) = row else {
        drop(tx);
        // A retried job must not start while the compensation of its last
        // run may still undo what the retry is about to build.
        let pending = sqlx::query_scalar!(
            "SELECT compensation = 'pending' AS \"pending!\" FROM jobs WHERE id = $1 AND compensation IS NOT NULL",
            id,
        )
        .fetch_optional(pool)
        .await
        .context("loading job")?;
        if pending == Some(true) {
            return Err(JobActionError::CompensationPending(id));
        }
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
