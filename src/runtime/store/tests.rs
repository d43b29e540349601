//! In-process tests of the job state machine against a fresh, migrated
//! catalog per test (`#[sqlx::test]` creates and drops it). Each test drives
//! one transition and asserts the row it leaves behind, the outbox rows it
//! writes, and that a stale claim can no longer write.
//!
//! Needs `DATABASE_URL` at run time: a server where the tests may create
//! databases (`ops/test` exports it for the test run only).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::*;

const OWNER: &str = "worker-a";
const LEASE: Duration = Duration::from_secs(30);

/// Retries at once, so a retried job is claimable again right away.
const NO_WAIT: RetryPolicy = RetryPolicy {
    base: Duration::ZERO,
    max: Duration::ZERO,
};

/// A policy whose first delay is at least a minute.
const MINUTE: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(60),
    max: Duration::from_secs(600),
};

/// The job kind these tests enqueue: shaped like the `ping` worker (no
/// tenant, the maintenance queue, at most three attempts) but defined here, so
/// the runtime's tests never name the job handlers that build on the runtime.
/// The tests drive the store by hand; nothing ever runs it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Ping {}

impl crate::runtime::Job for Ping {
    const KIND: &'static str = "ping";
    const QUEUE: &'static str = "maintenance";
    const NEEDS_TENANT: bool = false;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

    async fn run(&self, _ctx: &crate::runtime::JobContext) -> Result<serde_json::Value, JobError> {
        Ok(serde_json::json!({ "pong": true }))
    }
}

/// A registry that knows only [`Ping`].
fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<Ping>();
    registry
}

/// Enqueues a `ping` job (no tenant, at most three attempts) and returns its id.
async fn enqueue_ping(pool: &PgPool) -> Uuid {
    enqueue_with(pool, EnqueueRequest::default()).await
}

async fn enqueue_with(pool: &PgPool, req: EnqueueRequest) -> Uuid {
    let req = EnqueueRequest {
        kind: "ping".into(),
        ..req
    };
    let enq = enqueue(pool, &registry(), &req, Origin::Catalog)
        .await
        .expect("enqueue ping");
    assert!(!enq.existing);
    enq.id
}

async fn claimed(pool: &PgPool, id: Uuid) -> Claimed {
    claim(pool, id, OWNER, LEASE)
        .await
        .expect("claim")
        .expect("a queued job is claimable")
}

async fn row(pool: &PgPool, id: Uuid) -> JobRow {
    get(pool, id).await.expect("load job").expect("job exists")
}

/// The claim token the row holds now.
async fn token_of(pool: &PgPool, id: Uuid) -> Option<Uuid> {
    sqlx::query_scalar!("SELECT claim_token FROM jobs WHERE id = $1", id)
        .fetch_one(pool)
        .await
        .expect("read claim token")
}

/// Moves the lease of a running job into the past, as if its worker died.
async fn expire_lease(pool: &PgPool, id: Uuid) {
    sqlx::query!(
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
        id
    )
    .execute(pool)
    .await
    .expect("expire lease");
}

/// Makes a waiting job runnable now.
async fn due_now(pool: &PgPool, id: Uuid) {
    sqlx::query!(
        "UPDATE jobs SET run_at = now() - interval '1 second' WHERE id = $1",
        id
    )
    .execute(pool)
    .await
    .expect("make job due");
}

/// Unpublished `work` messages of a job, oldest first, by their `available_at`.
async fn work_messages(pool: &PgPool, id: Uuid) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar!(
        "SELECT available_at FROM outbox WHERE job_id = $1 AND exchange = 'work' ORDER BY id",
        id
    )
    .fetch_all(pool)
    .await
    .expect("read work messages")
}

/// Names of the events written about a job, oldest first.
async fn events(pool: &PgPool, id: Uuid) -> Vec<String> {
    sqlx::query_scalar!(
        "SELECT routing_key FROM outbox WHERE job_id = $1 AND exchange = 'events' ORDER BY id",
        id
    )
    .fetch_all(pool)
    .await
    .expect("read events")
}

/// The database's clock (the rows are stamped with it, not ours).
async fn db_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(pool)
        .await
        .expect("read clock")
}

/// The same claim as `job` but with a token the row never held (or no longer holds).
fn with_token(job: &Claimed, token: Option<Uuid>) -> Claimed {
    Claimed {
        claim_token: token,
        ..job.clone()
    }
}

/// A stale claim can neither heartbeat, complete, fail nor give the job back.
async fn assert_fenced(pool: &PgPool, stale: &Claimed) {
    assert!(
        !heartbeat(pool, stale, OWNER, LEASE)
            .await
            .expect("heartbeat")
    );
    let result = serde_json::json!({"stale": true});
    assert!(
        !complete(pool, stale, OWNER, &result, &[])
            .await
            .expect("complete")
    );
    let err = JobError::retryable("stale attempt");
    let out = fail(pool, stale, OWNER, &err, &NO_WAIT, false)
        .await
        .expect("fail");
    assert_eq!(out, FailOutcome::Lost);
    assert!(
        !give_back(pool, stale, OWNER, Duration::ZERO, "stale")
            .await
            .expect("give back")
    );
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn claim_leases_the_job_to_one_attempt(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let before = db_now(&pool).await;
    let job = claimed(&pool, id).await;

    assert_eq!((job.id, job.attempts, job.max_attempts), (id, 1, 3));
    assert_eq!(job.kind, "ping");
    assert_eq!(job.queue, "maintenance");
    assert!(job.claim_token.is_some());
    assert_eq!(token_of(&pool, id).await, job.claim_token);
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Running);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.lease_owner.as_deref(), Some(OWNER));
    let expires = r.lease_expires_at.expect("a lease");
    assert!(expires >= before + chrono::Duration::seconds(29));
    assert!(r.started_at.is_some());

    // A running job is not claimable again, by anyone.
    assert!(claim(&pool, id, "worker-b", LEASE).await.unwrap().is_none());
    assert_eq!(row(&pool, id).await.attempts, 1);
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn claim_waits_for_run_at(pool: PgPool) {
    let later = Utc::now() + chrono::Duration::hours(1);
    let id = enqueue_with(
        &pool,
        EnqueueRequest {
            run_at: Some(later),
            ..Default::default()
        },
    )
    .await;
    assert!(claim(&pool, id, OWNER, LEASE).await.unwrap().is_none());
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.attempts, 0);
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn heartbeat_extends_the_lease_of_the_current_claim_only(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let first = row(&pool, id).await.lease_expires_at.expect("a lease");

    assert!(
        heartbeat(&pool, &job, OWNER, Duration::from_secs(600))
            .await
            .unwrap()
    );
    let extended = row(&pool, id).await.lease_expires_at.expect("a lease");
    assert!(extended >= first + chrono::Duration::seconds(500));

    // Another owner, or a token the row does not hold, cannot extend it.
    assert!(!heartbeat(&pool, &job, "worker-b", LEASE).await.unwrap());
    let forged = with_token(&job, Some(Uuid::new_v4()));
    assert!(!heartbeat(&pool, &forged, OWNER, LEASE).await.unwrap());
    assert!(
        !heartbeat(&pool, &with_token(&job, None), OWNER, LEASE)
            .await
            .unwrap()
    );
    assert_eq!(row(&pool, id).await.lease_expires_at, Some(extended));
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn complete_records_the_result_and_ends_the_lease(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let forged = with_token(&job, Some(Uuid::new_v4()));
    let result = serde_json::json!({"pong": true});

    assert!(!complete(&pool, &forged, OWNER, &result, &[]).await.unwrap());
    assert_eq!(row(&pool, id).await.status, JobStatus::Running);

    let extra = PendingEvent {
        name: "ping.answered".into(),
        data: serde_json::json!({}),
    };
    assert!(
        complete(&pool, &job, OWNER, &result, &[extra])
            .await
            .unwrap()
    );
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Succeeded);
    assert_eq!(r.result, Some(result.clone()));
    assert_eq!((r.lease_owner, r.lease_expires_at), (None, None));
    assert!(r.finished_at.is_some());
    assert_eq!(events(&pool, id).await, ["ping.answered", "job.succeeded"]);

    // Once recorded, the same claim cannot record again.
    assert_fenced(&pool, &job).await;
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn a_retryable_failure_retries_after_the_backoff(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let before = db_now(&pool).await;

    let err = JobError::retryable("the server was busy");
    let out = fail(&pool, &job, OWNER, &err, &MINUTE, false)
        .await
        .unwrap();
    let FailOutcome::Retrying { delay } = out else {
        panic!("expected a retry, got {out:?}");
    };
    assert!(delay >= Duration::from_secs(60) && delay < Duration::from_secs(120));

    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Retrying);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.last_error.as_deref(), Some("the server was busy"));
    assert_eq!((r.lease_owner, r.lease_expires_at), (None, None));
    assert_eq!(r.finished_at, None);
    assert!(r.run_at >= before + chrono::Duration::seconds(60));
    // Republished for when it is due: the enqueue's message, then the retry's.
    let messages = work_messages(&pool, id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1], r.run_at);
    // Not runnable before its time.
    assert!(claim(&pool, id, OWNER, LEASE).await.unwrap().is_none());

    assert_fenced(&pool, &job).await;
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn a_fatal_failure_is_dead_at_once(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;

    let err = JobError::fatal("no such thing");
    let out = fail(&pool, &job, OWNER, &err, &NO_WAIT, false)
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Dead);
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Dead);
    assert_eq!(r.attempts, 1);
    assert_eq!(r.last_error.as_deref(), Some("no such thing"));
    assert!(r.finished_at.is_some());
    assert_eq!(events(&pool, id).await, ["job.dead"]);
    assert_eq!(work_messages(&pool, id).await.len(), 1);

    assert_fenced(&pool, &job).await;
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn the_last_attempt_failing_is_dead(pool: PgPool) {
    let id = enqueue_with(
        &pool,
        EnqueueRequest {
            max_attempts: Some(2),
            ..Default::default()
        },
    )
    .await;
    let err = JobError::retryable("still broken");

    let first = claimed(&pool, id).await;
    let out = fail(&pool, &first, OWNER, &err, &NO_WAIT, false)
        .await
        .unwrap();
    assert!(matches!(out, FailOutcome::Retrying { .. }));
    due_now(&pool, id).await;

    let second = claimed(&pool, id).await;
    assert_eq!(second.attempts, 2);
    assert_ne!(second.claim_token, first.claim_token);
    let out = fail(&pool, &second, OWNER, &err, &NO_WAIT, false)
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Dead);
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Dead);
    assert_eq!(r.attempts, 2);
    assert_eq!(events(&pool, id).await, ["job.dead"]);
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn a_sync_run_fails_instead_of_retrying(pool: PgPool) {
    let req = EnqueueRequest {
        kind: "ping".into(),
        ..Default::default()
    };
    let enq = enqueue(&pool, &registry(), &req, Origin::Sync)
        .await
        .unwrap();
    assert_eq!(enq.outbox_id, None);
    let job = claimed(&pool, enq.id).await;
    let err = JobError::retryable("would retry");
    let out = fail(&pool, &job, OWNER, &err, &NO_WAIT, true)
        .await
        .unwrap();
    assert_eq!(out, FailOutcome::Failed);
    let r = row(&pool, enq.id).await;
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(events(&pool, enq.id).await, ["job.failed"]);
    assert!(work_messages(&pool, enq.id).await.is_empty());
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn give_back_requeues_without_spending_the_attempt(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let before = db_now(&pool).await;

    assert!(
        give_back(&pool, &job, OWNER, Duration::from_secs(90), "tenant busy")
            .await
            .unwrap()
    );
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.attempts, 0);
    assert_eq!(r.last_error.as_deref(), Some("tenant busy"));
    assert_eq!((r.lease_owner, r.lease_expires_at), (None, None));
    assert!(r.run_at >= before + chrono::Duration::seconds(90));
    let messages = work_messages(&pool, id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1], r.run_at);

    assert_fenced(&pool, &job).await;
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn hand_back_requeues_at_once(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    // Another owner cannot hand it back.
    assert!(!hand_back(&pool, &job, "worker-b").await.unwrap());

    assert!(hand_back(&pool, &job, OWNER).await.unwrap());
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.attempts, 0);
    let again = claimed(&pool, id).await;
    assert_eq!(again.attempts, 1);
    assert_ne!(again.claim_token, job.claim_token);

    assert_fenced(&pool, &job).await;
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn reap_retries_a_job_whose_lease_expired(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let live = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let other = claimed(&pool, live).await;
    expire_lease(&pool, id).await;

    let reaped = reap_expired(&pool, &NO_WAIT).await.unwrap();
    assert_eq!(reaped.len(), 1, "only the expired lease is reaped");
    let (reaped_job, outcome) = &reaped[0];
    assert_eq!(reaped_job.id, id);
    assert!(matches!(outcome, FailOutcome::Retrying { .. }));
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Retrying);
    assert_eq!(r.last_error.as_deref(), Some(LEASE_EXPIRED));
    assert_eq!((r.lease_owner, r.lease_expires_at), (None, None));
    assert_eq!(work_messages(&pool, id).await.len(), 2);
    assert_eq!(row(&pool, live).await.status, JobStatus::Running);
    assert!(heartbeat(&pool, &other, OWNER, LEASE).await.unwrap());

    // The reaped attempt is fenced off, also once the same owner claims again.
    assert_fenced(&pool, &job).await;
    due_now(&pool, id).await;
    let retry = claimed(&pool, id).await;
    assert_eq!(retry.attempts, 2);
    assert_fenced(&pool, &job).await;
    assert!(heartbeat(&pool, &retry, OWNER, LEASE).await.unwrap());
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn reap_of_the_last_attempt_is_dead(pool: PgPool) {
    let id = enqueue_with(
        &pool,
        EnqueueRequest {
            max_attempts: Some(1),
            ..Default::default()
        },
    )
    .await;
    claimed(&pool, id).await;
    expire_lease(&pool, id).await;

    let reaped = reap_expired(&pool, &NO_WAIT).await.unwrap();
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].1, FailOutcome::Dead);
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Dead);
    assert_eq!(events(&pool, id).await, ["job.dead"]);
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn postpone_delays_a_waiting_job_without_an_attempt(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let before = db_now(&pool).await;

    assert!(postpone(&pool, id, Duration::from_secs(120)).await.unwrap());
    let r = row(&pool, id).await;
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.attempts, 0);
    assert!(r.run_at >= before + chrono::Duration::seconds(120));
    let messages = work_messages(&pool, id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1], r.run_at);
    assert!(claim(&pool, id, OWNER, LEASE).await.unwrap().is_none());

    // A shorter postponement never brings it forward.
    assert!(postpone(&pool, id, Duration::from_secs(1)).await.unwrap());
    assert_eq!(row(&pool, id).await.run_at, r.run_at);
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn postpone_leaves_running_and_finished_jobs_alone(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let running = row(&pool, id).await;
    assert!(!postpone(&pool, id, Duration::from_secs(60)).await.unwrap());
    assert_eq!(row(&pool, id).await.run_at, running.run_at);

    let result = serde_json::json!({});
    assert!(complete(&pool, &job, OWNER, &result, &[]).await.unwrap());
    assert!(!postpone(&pool, id, Duration::from_secs(60)).await.unwrap());
    assert_eq!(row(&pool, id).await.status, JobStatus::Succeeded);
    assert!(
        !postpone(&pool, Uuid::new_v4(), Duration::from_secs(60))
            .await
            .unwrap()
    );
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn retry_waits_for_a_pending_compensation(pool: PgPool) {
    let id = enqueue_ping(&pool).await;
    let job = claimed(&pool, id).await;
    let out = fail(
        &pool,
        &job,
        OWNER,
        &JobError::fatal("boom"),
        &NO_WAIT,
        false,
    )
    .await
    .unwrap();
    assert_eq!(out, FailOutcome::Dead);
    sqlx::query("UPDATE jobs SET compensation = 'pending' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let err = retry(&pool, id, "test").await.unwrap_err();
    assert!(
        matches!(err, JobActionError::CompensationPending(j) if j == id),
        "{err}"
    );
    assert_eq!(row(&pool, id).await.status, JobStatus::Dead, "unchanged");
    sqlx::query("UPDATE jobs SET compensation = 'done' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    retry(&pool, id, "test").await.unwrap();
    assert_eq!(row(&pool, id).await.status, JobStatus::Queued);
}

#[test]
fn callers_keys_never_meet_landlords_own() {
    let internal = DedupeKey::internal("final-backup:victim");
    let squat = DedupeKey::caller("api:tenant:mallory", "final-backup:victim");
    assert_eq!(internal.stored(), "final-backup:victim");
    assert_eq!(
        squat.stored(),
        "caller:api:tenant:mallory:final-backup:victim"
    );
    assert_ne!(internal.stored(), squat.stored());
    assert_eq!(squat.given(), "final-backup:victim");
    // A caller cannot write its way out of its namespace either.
    let escape = DedupeKey::caller("amqp", ":x");
    assert!(escape.stored().starts_with("caller:amqp:"));
    // A long key with its namespace is stored hashed, still a caller's.
    let long = DedupeKey::caller("api:tenant:mallory", "k".repeat(MAX_DEDUPE_KEY));
    let stored = long.stored();
    assert!(stored.starts_with("caller:sha256:"), "{stored}");
    assert!(stored.len() <= MAX_DEDUPE_KEY);
    assert_ne!(
        stored,
        DedupeKey::caller("api:admin", "k".repeat(MAX_DEDUPE_KEY)).stored()
    );
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn a_live_job_of_another_kind_is_never_the_existing_job(pool: PgPool) {
    // A live job of another kind holding the key a ping asks for.
    let other = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, status, max_attempts, dedupe_key) \
         VALUES ($1, 'backup', 'backup', 'queued', 1, 'final-backup:acme')",
    )
    .bind(other)
    .execute(&pool)
    .await
    .unwrap();
    let req = EnqueueRequest {
        kind: "ping".into(),
        dedupe_key: Some(DedupeKey::internal("final-backup:acme")),
        ..Default::default()
    };
    let err = enqueue(&pool, &registry(), &req, Origin::Catalog)
        .await
        .expect_err("not the same job");
    assert!(matches!(err, EnqueueError::DedupeTaken(_)), "{err:?}");
    assert!(!err.to_string().contains(&other.to_string()), "{err}");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1, "nothing written");
    // The same key given by a caller is another key.
    let req = EnqueueRequest {
        dedupe_key: Some(DedupeKey::caller("cli", "final-backup:acme")),
        ..req
    };
    let first = enqueue(&pool, &registry(), &req, Origin::Catalog)
        .await
        .unwrap();
    assert!(!first.existing);
    let again = enqueue(&pool, &registry(), &req, Origin::Catalog)
        .await
        .unwrap();
    assert_eq!((again.id, again.existing), (first.id, true));
    assert_eq!(
        row(&pool, first.id).await.dedupe_key.as_deref(),
        Some("caller:cli:final-backup:acme")
    );
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn foreign_messages_get_only_the_allowed_kinds(pool: PgPool) {
    let allowed = vec!["analyze".to_string()];
    let msg = JobMessage {
        dedupe_key: Some("drop:acme".into()),
        ..JobMessage::new(Uuid::now_v7(), "ping", None, serde_json::json!({}))
    };
    let err = adopt(&pool, &registry(), &msg, "maintenance", &allowed, None)
        .await
        .expect_err("ping is not allowed here");
    assert!(
        err.to_string()
            .contains("job kind ping is not accepted from foreign producers"),
        "{err}"
    );
    assert!(matches!(err, AdoptError::Refused(_)));
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing written");
    // Allowed, its key lives in the foreign producers' namespace.
    let allowed = vec!["ping".to_string()];
    let adopted = adopt(&pool, &registry(), &msg, "maintenance", &allowed, None)
        .await
        .unwrap();
    assert!(matches!(adopted, Adoption::Adopted));
    assert_eq!(
        row(&pool, msg.job_id).await.dedupe_key.as_deref(),
        Some("caller:amqp:drop:acme")
    );
}

/// `page_created` keeps to the window, newest first by creation time (not
/// by id: the oldest job here has the newest id), and a page continues after
/// the last row of the previous one without skipping or repeating a job.
#[sqlx::test(migrations = "migrations/catalog")]
async fn jobs_page_by_creation_time(pool: PgPool) {
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(enqueue_ping(&pool).await);
    }
    // Hours ago: ids[0] 1 h, ids[1] 2 h, ids[2] 2 h (the same instant), ids[3] 30 h.
    let base = Utc::now();
    for (id, hours) in ids.iter().zip([1, 2, 2, 30]) {
        sqlx::query("UPDATE jobs SET created_at = $2 WHERE id = $1")
            .bind(id)
            .bind(base - chrono::Duration::hours(hours))
            .execute(&pool)
            .await
            .unwrap();
    }
    let f = ListFilter {
        limit: 2,
        ..Default::default()
    };
    let day = CreatedWindow {
        since: Some(base - chrono::Duration::hours(24)),
        ..Default::default()
    };
    let first = page_created(&pool, &f, &day).await.unwrap();
    let last = first.last().unwrap();
    let second = page_created(
        &pool,
        &f,
        &CreatedWindow {
            after_row: Some((last.created_at, last.id)),
            ..day
        },
    )
    .await
    .unwrap();
    let seen: Vec<Uuid> = first.iter().chain(&second).map(|j| j.id).collect();
    let tied = if ids[1] > ids[2] {
        [ids[1], ids[2]]
    } else {
        [ids[2], ids[1]]
    };
    assert_eq!(
        seen,
        vec![ids[0], tied[0], tied[1]],
        "the 30 h old job is outside"
    );
    let until = CreatedWindow {
        until: Some(base - chrono::Duration::hours(24)),
        ..Default::default()
    };
    let old: Vec<Uuid> = page_created(&pool, &f, &until)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(old, vec![ids[3]]);
}
