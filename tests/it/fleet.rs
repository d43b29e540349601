//! The fleet against the real services: enqueue → worker → recorded result,
//! events, metrics; retries, dead jobs, tenant exclusion, crashes, shutdown,
//! the outbox relay, `--sync`, cancellation.

use std::time::Instant;

use crate::common::{
    PG_SERVER, TestEnv, WorkerProc, json_line, last_json_line, ms, poll, secs, stderr,
};
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// A worker (concurrency 2) and `maintenance --analyze --wait --json` on a
/// registered tenant `acme`: the job id and the worker.
async fn analyzed(env: &mut TestEnv) -> (Uuid, WorkerProc) {
    env.tenant("acme").await;
    let w = env.spawn_worker(&["--concurrency", "2"], &[]);
    let stdout = env.ok(&[
        "maintenance",
        "--tenant",
        "acme",
        "--analyze",
        "--wait",
        "--json",
    ]);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let id = Uuid::parse_str(lines[0]["job_id"].as_str().unwrap()).unwrap();
    assert_eq!(lines.last().unwrap()["status"], "succeeded");
    (id, w)
}

#[tokio::test(flavor = "multi_thread")]
async fn analyze_records_its_result_on_the_job() {
    let mut env = TestEnv::new().await;
    let (id, _w) = analyzed(&mut env).await;
    let job = env.job(id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["tenant"], "acme");
    assert_eq!(
        job["result"]["steps"]["analyze"]["tables"], 3,
        "sample schema has three tables: {job:#}"
    );
    assert!(job["result"]["steps"]["analyze"]["duration_ms"].is_u64());
    assert!(job["result"]["size_before_bytes"].as_i64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn analyze_announces_its_outcome_on_the_events_exchange() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let (id, _w) = analyzed(&mut env).await;
    let done = tap.wait_job_event("job.succeeded", id, secs(20)).await;
    assert_eq!(done["tenant"], "acme");
    assert_eq!(done["data"]["kind"], "maintenance");
    let maint = tap
        .wait_for("maintenance.completed", secs(20), |e| {
            e["event"] == "maintenance.completed"
        })
        .await;
    assert_eq!(maint["data"]["steps"]["analyze"]["tables"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn analyze_is_counted_in_the_workers_metrics() {
    let mut env = TestEnv::new().await;
    let (_, w) = analyzed(&mut env).await;
    let series = r#"landlord_jobs_total{kind="maintenance",outcome="succeeded"}"#;
    poll(secs(10), ms(200), || async {
        match env.metric(&w, series).await >= 1.0 {
            true => Ok(()),
            false => Err(format!("metric {series} never counted")),
        }
    })
    .await;
    assert_eq!(env.metric(&w, series).await, 1.0);
    let body = reqwest::get(format!("{}/metrics", w.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("landlord_job_duration_seconds_count{kind=\"maintenance\"} 1"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_ran_a_job_is_ready() {
    let mut env = TestEnv::new().await;
    let (_, w) = analyzed(&mut env).await;
    let ready = reqwest::get(format!("{}/readyz", w.metrics)).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn analyze_really_updates_tenant_statistics() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("stats").await;
    let conn = sqlx::PgPool::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO users (email) SELECT 'u' || g || '@x.test' FROM generate_series(1, 500) g",
    )
    .execute(&conn)
    .await
    .unwrap();
    env.spawn_worker(&[], &[]);
    env.ok(&["maintenance", "--tenant", "stats", "--analyze", "--wait"]);
    let last: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'users'")
            .fetch_one(&conn)
            .await
            .unwrap();
    assert!(last.is_some(), "ANALYZE did not run on the tenant database");
    conn.close().await;
}

/// A broker address where nothing listens.
fn no_broker() -> String {
    format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        crate::common::free_port()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_runs_in_process_without_a_broker() {
    let mut env = TestEnv::new().await;
    env.tenant("solo").await;
    // A broker address where nothing listens: --sync must not need it.
    let dead = no_broker();
    let out = env.ok_with(
        &[
            "maintenance",
            "--tenant",
            "solo",
            "--analyze",
            "--sync",
            "--json",
        ],
        &[("LANDLORD_AMQP_URL", &dead)],
    );
    let row: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["origin"], "sync");
    assert_eq!(row["result"]["steps"]["analyze"]["tables"], 3);

    // A failing sync job ends as failed, exits 1 and keeps the error.
    let out = env.run_with(
        &["jobs", "ping", "--fail", "fatal", "--sync", "--json"],
        &[("LANDLORD_AMQP_URL", &dead)],
    );
    assert_eq!(out.status.code(), Some(1));
    let row = last_json_line(&out);
    assert_eq!(row["status"], "failed");
    assert_eq!(row["last_error"], "ping asked to fail fatally");
    // Its events wait in the outbox for a relay.
    env.assert_count(
        "SELECT count(*) FROM outbox WHERE routing_key = 'job.failed' AND published_at IS NULL",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn job_enqueued_while_broker_unreachable_is_published_by_the_relay() {
    let mut env = TestEnv::new().await;
    let dead = no_broker();
    let out = env.run_with(&["jobs", "ping", "--json"], &[("LANDLORD_AMQP_URL", &dead)]);
    assert!(
        out.status.success(),
        "enqueue must succeed without a broker: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("safe in the catalog"));
    let id = Uuid::parse_str(json_line(&out)["job_id"].as_str().unwrap()).unwrap();
    // The message waits in the outbox.
    env.assert_count(
        &format!("SELECT count(*) FROM outbox WHERE job_id = '{id}' AND published_at IS NULL"),
        1,
    )
    .await;
    env.spawn_worker(&[], &[]);
    let job = env.wait_job(id, secs(30)).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dedupe_key_returns_the_live_job() {
    let env = TestEnv::new().await;
    let a = env.ok(&["jobs", "ping", "--dedupe-key", "nightly-1", "--json"]);
    let b = env.ok(&["jobs", "ping", "--dedupe-key", "nightly-1", "--json"]);
    let a: Value = serde_json::from_str(a.trim()).unwrap();
    let b: Value = serde_json::from_str(b.trim()).unwrap();
    assert_eq!(a["job_id"], b["job_id"]);
    assert_eq!(a["existing"], false);
    assert_eq!(b["existing"], true);
    env.assert_count("SELECT count(*) FROM jobs", 1).await;
}

/// Three 1.5 s pings for tenant `busy` and one for `other`, on one worker
/// with four slots; every job succeeded.
struct Busy {
    w: WorkerProc,
    /// The busy tenant's jobs, each with its handler's (start, finish).
    jobs: Vec<(Value, DateTime<Utc>, DateTime<Utc>)>,
    other: Value,
}

/// When a job's handler started and finished, as it recorded in its result
/// (the job row's started_at is the claim, before any slot or lock is taken).
fn handler_span(j: &Value) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        serde_json::from_value(j["result"]["started_at"].clone()).unwrap(),
        serde_json::from_value(j["result"]["finished_at"].clone()).unwrap(),
    )
}

/// Asserts that no two of `spans` (sorted by start) overlapped.
#[track_caller]
fn assert_one_at_a_time(spans: &[(DateTime<Utc>, DateTime<Utc>)], what: &str) {
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{what}: {spans:?}");
    }
}

async fn busy_tenant(env: &mut TestEnv) -> Busy {
    env.tenant("busy").await;
    env.tenant("other").await;
    let w = env.spawn_worker(&["--concurrency", "4"], &[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(env.enqueue(&["jobs", "ping", "--tenant", "busy", "--hold", "1.5"]));
    }
    let other = env.enqueue(&["jobs", "ping", "--tenant", "other", "--hold", "1.5"]);
    let mut jobs = Vec::new();
    for id in &ids {
        let j = env.wait_job(*id, secs(60)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        let (s, f) = handler_span(&j);
        jobs.push((j, s, f));
    }
    jobs.sort_by_key(|(_, s, _)| *s);
    let other = env.wait_job(other, secs(30)).await;
    assert_eq!(other["status"], "succeeded", "{other:#}");
    Busy { w, jobs, other }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_for_one_tenant_never_overlap() {
    let mut env = TestEnv::new().await;
    let b = busy_tenant(&mut env).await;
    let spans: Vec<_> = b.jobs.iter().map(|(_, s, f)| (*s, *f)).collect();
    assert_one_at_a_time(&spans, "jobs of one tenant overlapped");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_busy_tenant_costs_no_attempt() {
    let mut env = TestEnv::new().await;
    let b = busy_tenant(&mut env).await;
    for (j, _, _) in &b.jobs {
        assert_eq!(
            j["attempts"], 1,
            "waiting for a busy tenant must not spend attempts: {j:#}"
        );
    }
    assert!(
        env.metric(&b.w, r#"landlord_jobs_postponed_total{kind="ping"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_tenant_does_not_hold_up_another() {
    let mut env = TestEnv::new().await;
    let b = busy_tenant(&mut env).await;
    let (os, _) = handler_span(&b.other);
    assert!(
        os < b.jobs[2].1,
        "a different tenant's job should run alongside"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_failure_backs_off_then_succeeds() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let w = env.spawn_worker(&[], &[]);
    let started = Instant::now();
    let id = env.enqueue(&["jobs", "ping", "--fail", "retryable", "--fail-times", "2"]);
    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["attempts"], 3);
    assert_eq!(j["result"]["attempt"], 3);
    // Backoff base 200 ms doubling: at least 200 + 400 ms were waited between attempts.
    assert!(started.elapsed() >= ms(600));
    assert_eq!(
        env.metric(&w, r#"landlord_job_retries_total{kind="ping"}"#)
            .await,
        2.0
    );
    tap.wait_job_event("job.succeeded", id, secs(10)).await;
    assert_eq!(tap.count("job.dead", id), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_retries_go_dead_with_an_event() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let exhausted = env.enqueue(&["jobs", "ping", "--fail", "retryable", "--max-attempts", "2"]);
    let j = env.wait_job(exhausted, secs(60)).await;
    assert_eq!(j["status"], "dead");
    assert_eq!(j["attempts"], 2);
    assert_eq!(j["last_error"], "ping asked to fail (attempt 2)");
    tap.wait_job_event("job.dead", exhausted, secs(10)).await;
}

/// A ping that fails fatally, dead after its one attempt.
async fn dead_fatal_ping(env: &mut TestEnv) -> Uuid {
    env.spawn_worker(&[], &[]);
    let fatal = env.enqueue(&["jobs", "ping", "--fail", "fatal", "--max-attempts", "5"]);
    let j = env.wait_job(fatal, secs(60)).await;
    assert_eq!(j["status"], "dead");
    fatal
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_error_goes_dead_without_a_retry() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let fatal = dead_fatal_ping(&mut env).await;
    let j = env.job(fatal).await;
    assert_eq!(j["attempts"], 1, "a fatal error must not be retried");
    assert_eq!(j["last_error"], "ping asked to fail fatally");
    let ev = tap.wait_job_event("job.dead", fatal, secs(10)).await;
    assert_eq!(ev["data"]["fatal"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_retry_runs_a_dead_job_again() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let fatal = dead_fatal_ping(&mut env).await;
    tap.wait_job_event("job.dead", fatal, secs(10)).await;
    // An operator can queue a dead job again; it runs (and dies) again.
    env.ok(&["jobs", "retry", &fatal.to_string()]);
    let j = env.wait_job(fatal, secs(30)).await;
    assert_eq!(j["status"], "dead");
    assert_eq!(j["attempts"], 1);
    // It really ran again: a second job.dead.
    tap.wait_count("job.dead", fatal, 2, secs(10)).await;
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE action = 'job.retried'",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_handler_counts_as_a_failed_attempt() {
    let mut env = TestEnv::new().await;
    let w = env.spawn_worker(&[], &[]);
    let id = env.enqueue(&["jobs", "ping", "--fail", "panic", "--fail-times", "1"]);
    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["attempts"], 2);
    assert_eq!(
        env.metric(&w, r#"landlord_jobs_total{kind="ping",outcome="retrying"}"#)
            .await,
        1.0
    );
    assert!(w.log_text().contains("handler panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_job_succeeds_exactly_once_on_another_worker() {
    let mut env = TestEnv::new().await;
    env.tenant("crashy").await;
    let mut tap = env.events().await;
    let first = env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "3")]);
    let id = env.enqueue(&["jobs", "ping", "--tenant", "crashy", "--hold", "4"]);
    env.wait_status(id, "running", secs(30)).await;
    env.signal(&first, "KILL");
    env.wait_exit(&first, secs(10));

    let second = env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "3")]);
    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}\n{}", second.log_text());
    assert_eq!(
        j["attempts"], 2,
        "the killed attempt counts, the second one succeeds: {j:#}"
    );
    tap.wait_job_event("job.succeeded", id, secs(10)).await;
    tap.settle(secs(2)).await;
    assert_eq!(tap.count("job.succeeded", id), 1, "succeeded exactly once");
    assert!(
        env.metric(&second, "landlord_leases_reaped_total").await >= 1.0
            || second.log_text().contains("lease expired")
            || j["last_error"].is_null()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_work_finish() {
    let mut env = TestEnv::new().await;
    let w = env.spawn_worker(&[], &[("LANDLORD_SHUTDOWN_GRACE_SECONDS", "20")]);
    let id = env.enqueue(&["jobs", "ping", "--hold", "2"]);
    env.wait_status(id, "running", secs(30)).await;
    env.signal(&w, "TERM");
    let code = env.wait_exit(&w, secs(30));
    assert_eq!(code, Some(0), "{}", w.log_text());
    let j = env.job(id).await;
    assert_eq!(
        j["status"], "succeeded",
        "in-flight job must finish during the drain: {j:#}"
    );
    assert_eq!(j["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_back_what_cannot_finish_in_time() {
    let mut env = TestEnv::new().await;
    let w = env.spawn_worker(&[], &[("LANDLORD_SHUTDOWN_GRACE_SECONDS", "1")]);
    let id = env.enqueue(&["jobs", "ping", "--hold", "5"]);
    env.wait_status(id, "running", secs(30)).await;
    env.signal(&w, "TERM");
    assert_eq!(env.wait_exit(&w, secs(30)), Some(0), "{}", w.log_text());
    let j = env.job(id).await;
    assert_eq!(
        j["status"], "queued",
        "unfinished job is handed back: {j:#}"
    );
    assert_eq!(j["attempts"], 0, "a handed-back attempt is not spent");
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(j["status"], "succeeded");
    assert_eq!(j["attempts"], 1);
}

/// A 30 s ping cancelled while running on a one-slot worker, and the ping
/// enqueued after it: (cancelled id, the next job's finished row).
async fn cancelled_while_running(env: &mut TestEnv) -> (Uuid, Value) {
    env.spawn_worker(&["--concurrency", "1"], &[("LANDLORD_LEASE_SECONDS", "3")]);
    let id = env.enqueue(&["jobs", "ping", "--hold", "30"]);
    env.wait_status(id, "running", secs(30)).await;
    env.ok(&["jobs", "cancel", &id.to_string()]);
    // The worker notices at its next heartbeat and is free again.
    let next = env.enqueue(&["jobs", "ping"]);
    (id, env.wait_job(next, secs(20)).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_running_job_frees_its_worker() {
    let mut env = TestEnv::new().await;
    let (_, next) = cancelled_while_running(&mut env).await;
    assert_eq!(next["status"], "succeeded", "{next:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cancelled_while_running_records_no_result() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let (id, _) = cancelled_while_running(&mut env).await;
    let c = env.job(id).await;
    assert_eq!(c["status"], "cancelled");
    assert!(c["result"].is_null());
    tap.wait_job_event("job.cancelled", id, secs(10)).await;
    assert_eq!(tap.count("job.succeeded", id), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_finished_job_is_refused() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let done = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(done, secs(20)).await["status"], "succeeded");
    env.refused(&["jobs", "cancel", &done.to_string()], "is succeeded");
    assert_eq!(env.job(done).await["status"], "succeeded");
}

/// One ping run to success by a worker.
async fn one_finished_ping(env: &mut TestEnv) -> Uuid {
    env.spawn_worker(&[], &[]);
    let id = env.enqueue(&["jobs", "ping"]);
    env.wait_job(id, secs(30)).await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_list_reports_finished_jobs_by_status() {
    let mut env = TestEnv::new().await;
    let id = one_finished_ping(&mut env).await;
    let list = env.ok_json(&["jobs", "list", "--status", "succeeded", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.to_string());
    let text = env.ok(&["jobs", "list"]);
    assert!(text.contains(&id.to_string()) && text.contains("succeeded"));
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_show_reports_a_jobs_result() {
    let mut env = TestEnv::new().await;
    let id = one_finished_ping(&mut env).await;
    let show = env.ok_json(&["jobs", "show", &id.to_string(), "--json"]);
    assert_eq!(show["result"]["pong"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_commands_refuse_malformed_arguments() {
    let env = TestEnv::new().await;
    env.refused(&["jobs", "show", "not-a-uuid"], "");
    env.refused(&["jobs", "list", "--status", "bogus"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_show_masks_secrets() {
    let env = TestEnv::new().await;
    let out = env.run_with(
        &["config", "show"],
        &[
            (
                "LANDLORD_AMQP_URL",
                "amqp://app:s3cr3t-amqp@127.0.0.1:5672/%2f",
            ),
            (
                "LANDLORD_SERVER__EU",
                "postgres://tenant:s3cr3t-pg@10.1.1.1/postgres",
            ),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("amqp://app:***@127.0.0.1:5672"), "{text}");
    assert!(text.contains("servers.eu.url"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_reconnect_to_the_catalog_by_themselves() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let first = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(first, secs(30)).await["status"], "succeeded");
    // Cut every session of this test's catalog, the worker's included.
    let admin = sqlx::PgPool::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(&env.catalog_db)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(killed >= 1, "the worker held catalog sessions");
    admin.close().await;
    let second = env.enqueue(&["jobs", "ping", "--hold", "0.5"]);
    let j = env.wait_job(second, secs(30)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_attempt_cannot_record_over_its_retry() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&["--concurrency", "2"], &[("LANDLORD_LEASE_SECONDS", "3")]);
    let id = env.enqueue(&["jobs", "ping", "--hold", "4"]);
    env.wait_status(id, "running", secs(30)).await;
    env.ok(&["jobs", "cancel", &id.to_string()]);
    let retried_at = chrono::Utc::now();
    env.ok(&["jobs", "retry", &id.to_string()]);
    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    // The result is the retried attempt's, not the cancelled one's.
    let (started, _) = handler_span(&j);
    assert!(
        started >= retried_at,
        "result of the cancelled attempt was recorded: {j:#}"
    );
    tap.settle(secs(2)).await;
    assert_eq!(tap.count("job.succeeded", id), 1);
}

/// Each user index of a tenant database by name, with its file (changed by a rebuild).
async fn index_files(db: &sqlx::PgPool) -> Vec<(String, Option<i64>)> {
    sqlx::query_as(
        "SELECT indexrelname::text, pg_relation_filenode(indexrelid)::bigint FROM pg_stat_user_indexes ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// User tables VACUUM or ANALYZE (not autovacuum) ever ran on.
async fn maintained_tables(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL OR last_analyze IS NOT NULL",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// Tenant `tidy` with 2,500 old and 40 recent activity rows, a partitioned
/// table with 500 old and 500 recent rows, and the invalid `_ccnew` index an
/// interrupted REINDEX CONCURRENTLY leaves; a worker with cleanup rules for
/// both tables. Returns a pool on the tenant database and its index files.
async fn untidy(env: &mut TestEnv) -> (sqlx::PgPool, Vec<(String, Option<i64>)>) {
    let db = env.tenant("tidy").await;
    let tenant_db = sqlx::PgPool::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO activity_log (action, created_at) \
         SELECT 'old', now() - interval '200 days' FROM generate_series(1, 2500) \
         UNION ALL SELECT 'recent', now() - interval '10 days' FROM generate_series(1, 40)",
    )
    .execute(&tenant_db)
    .await
    .unwrap();
    // A partitioned table: the same row positions (ctids) exist in both
    // partitions, so cleanup must not match a row by its ctid alone.
    sqlx::raw_sql(
        "CREATE TABLE part_log (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at); \
         CREATE TABLE part_log_old PARTITION OF part_log FOR VALUES FROM ('2000-01-01') TO (now() - interval '100 days'); \
         CREATE TABLE part_log_new PARTITION OF part_log FOR VALUES FROM (now() - interval '100 days') TO ('2200-01-01'); \
         CREATE INDEX part_log_created_at ON part_log (created_at); \
         INSERT INTO part_log (created_at) SELECT now() - interval '300 days' FROM generate_series(1, 500); \
         INSERT INTO part_log (created_at) SELECT now() - interval '1 day' FROM generate_series(1, 500);",
    )
    .execute(&tenant_db)
    .await
    .unwrap();
    // What an interrupted REINDEX CONCURRENTLY leaves: an invalid `_ccnew` index.
    let failed = sqlx::raw_sql(
        "CREATE UNIQUE INDEX CONCURRENTLY activity_log_action_ccnew ON activity_log (action)",
    )
    .execute(&tenant_db)
    .await;
    assert!(failed.is_err(), "duplicate actions make the build fail");
    let before = index_files(&tenant_db).await;
    assert!(
        before
            .iter()
            .any(|(name, _)| name == "activity_log_action_ccnew"),
        "{before:?}"
    );
    assert_eq!(maintained_tables(&tenant_db).await, 0);
    env.spawn_worker(
        &[],
        &[(
            "LANDLORD_CLEANUP_RULES",
            "activity_log:created_at,part_log:created_at",
        )],
    );
    (tenant_db, before)
}

/// Every maintenance step on `tidy` (cleanup after 180 days), waited for:
/// the job's result.
fn maintain(env: &TestEnv, dry_run: bool) -> Value {
    let mut args = vec![
        "maintenance",
        "--tenant",
        "tidy",
        "--cleanup",
        "--days",
        "180",
        "--vacuum",
        "--optimize",
        "--analyze",
        "--wait",
        "--json",
    ];
    if dry_run {
        args.push("--dry-run");
    }
    let out = env.ok(&args);
    let row: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(row["status"], "succeeded", "{row:#}");
    assert_eq!(row["result"]["dry_run"], dry_run);
    row["result"].clone()
}

async fn rows_in(db: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_dry_run_reports_its_figures() {
    let mut env = TestEnv::new().await;
    let (tenant_db, _) = untidy(&mut env).await;
    let dry = maintain(&env, true);
    let steps = &dry["steps"];
    assert_eq!(
        steps["cleanup"]["tables"]["activity_log"]["rows"], 2500,
        "{steps:#}"
    );
    assert_eq!(
        steps["cleanup"]["tables"]["part_log"]["rows"], 500,
        "{steps:#}"
    );
    assert_eq!(steps["cleanup"]["rows"], 3000, "{steps:#}");
    assert!(
        steps["optimize"]["indexes"].as_u64().unwrap() >= 4,
        "{steps:#}"
    );
    assert_eq!(
        steps["optimize"]["invalid_dropped"],
        serde_json::json!(["public.activity_log_action_ccnew"]),
        "{steps:#}"
    );
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_dry_run_changes_nothing() {
    let mut env = TestEnv::new().await;
    let (tenant_db, before) = untidy(&mut env).await;
    maintain(&env, true);
    assert_eq!(
        rows_in(&tenant_db, "activity_log").await,
        2540,
        "a dry run deletes nothing"
    );
    assert_eq!(
        rows_in(&tenant_db, "part_log").await,
        1000,
        "a dry run deletes nothing"
    );
    assert_eq!(
        index_files(&tenant_db).await,
        before,
        "a dry run rebuilds and drops no index"
    );
    assert_eq!(
        maintained_tables(&tenant_db).await,
        0,
        "a dry run neither vacuums nor analyzes"
    );
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_dry_run_reports_what_the_real_run_does() {
    let mut env = TestEnv::new().await;
    let (tenant_db, _) = untidy(&mut env).await;
    let dry = maintain(&env, true);
    let real = maintain(&env, false);
    let (dry_steps, steps) = (&dry["steps"], &real["steps"]);
    for (step, figure) in [
        ("cleanup", "tables"),
        ("cleanup", "rows"),
        ("vacuum", "tables"),
        ("vacuum", "full"),
        ("optimize", "indexes"),
        ("optimize", "invalid_dropped"),
        ("analyze", "tables"),
    ] {
        assert_eq!(
            steps[step][figure], dry_steps[step][figure],
            "{step}.{figure}: dry {dry_steps:#} real {steps:#}"
        );
    }
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_records_each_step_it_ran() {
    let mut env = TestEnv::new().await;
    let (tenant_db, _) = untidy(&mut env).await;
    let real = maintain(&env, false);
    let steps = &real["steps"];
    for step in ["cleanup", "vacuum", "optimize", "analyze"] {
        assert!(steps[step]["duration_ms"].is_u64(), "{step}: {steps:#}");
    }
    assert!(real["size_after_bytes"].as_i64().unwrap() > 0);
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_cleanup_deletes_only_rows_past_the_cutoff() {
    let mut env = TestEnv::new().await;
    let (tenant_db, _) = untidy(&mut env).await;
    maintain(&env, false);
    // Old rows gone in batches, recent ones kept.
    assert_eq!(rows_in(&tenant_db, "activity_log").await, 40);
    let (old, recent): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM part_log_old), (SELECT count(*) FROM part_log_new)",
    )
    .fetch_one(&tenant_db)
    .await
    .unwrap();
    assert_eq!((old, recent), (0, 500), "only the old partition's rows go");
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_optimize_rebuilds_every_index_dropping_leftovers() {
    let mut env = TestEnv::new().await;
    let (tenant_db, before) = untidy(&mut env).await;
    maintain(&env, false);
    // Every index rebuilt (a new file under the same name); the leftover dropped.
    let after = index_files(&tenant_db).await;
    let expected: Vec<&String> = before
        .iter()
        .map(|(name, _)| name)
        .filter(|name| *name != "activity_log_action_ccnew")
        .collect();
    assert_eq!(
        after.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        expected,
        "same indexes, minus the leftover"
    );
    for (name, file) in &after {
        let old = before.iter().find(|(n, _)| n == name).unwrap();
        assert!(file.is_some(), "{name}: {after:?}");
        assert_ne!(file, &old.1, "{name} was not rebuilt");
    }
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_updates_the_tables_maintenance_statistics() {
    let mut env = TestEnv::new().await;
    let (tenant_db, _) = untidy(&mut env).await;
    maintain(&env, false);
    let (vacuumed, analyzed): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = 'activity_log'",
    )
    .fetch_one(&tenant_db)
    .await
    .unwrap();
    assert!(vacuumed.is_some(), "VACUUM ran");
    assert!(analyzed.is_some(), "ANALYZE ran");
    tenant_db.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_maintenance_combinations_are_refused_before_enqueuing() {
    let mut env = TestEnv::new().await;
    env.tenant("tidy").await;
    for (args, expect) in [
        (
            vec![
                "maintenance",
                "--tenant",
                "tidy",
                "--cleanup",
                "--days",
                "0",
            ],
            "between 1 and 36500",
        ),
        (
            vec!["maintenance", "--tenant", "tidy"],
            "choose at least one step",
        ),
    ] {
        env.refused(&args, expect);
    }
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heavy_maintenance_is_staggered_per_server_without_spending_attempts() {
    let mut env = TestEnv::new().await;
    for t in ["heavy-a", "heavy-b", "heavy-c"] {
        env.tenant(t).await;
    }
    // One heavy job at a time on the server; three workers' worth of slots.
    env.spawn_worker(
        &["--concurrency", "3"],
        &[("LANDLORD_HEAVY_PER_SERVER", "1")],
    );
    let mut ids = Vec::new();
    for t in ["heavy-a", "heavy-b", "heavy-c"] {
        ids.push(env.enqueue(&["maintenance", "--tenant", t, "--vacuum", "--full"]));
    }
    let mut spans = Vec::new();
    for id in &ids {
        let j = env.wait_job(*id, secs(120)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        assert_eq!(
            j["attempts"], 1,
            "waiting for a slot spends no attempt: {j:#}"
        );
        // The handler's own times, taken while it holds the slot.
        spans.push(handler_span(&j));
    }
    spans.sort();
    assert_one_at_a_time(&spans, "two heavy jobs ran at once on one server");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_server_limit_holds_under_two_hundred_maintenance_jobs() {
    let mut env = TestEnv::new().await;
    let mut slugs = Vec::new();
    for i in 0..20 {
        let s = format!("load{i}");
        env.tenant(&s).await;
        slugs.push(s);
    }
    for _ in 0..2 {
        env.spawn_worker(
            &["--concurrency", "8"],
            &[
                ("LANDLORD_HEAVY_PER_SERVER", "2"),
                ("LANDLORD_BUSY_DELAY_MS", "50"),
            ],
        );
    }
    let all = slugs.join(",");
    let mut ids = Vec::new();
    for _ in 0..10 {
        let out = env.ok(&["maintenance", "--tenant", &all, "--vacuum", "--json"]);
        for line in out.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            ids.push(Uuid::parse_str(v["job_id"].as_str().unwrap()).unwrap());
        }
    }
    assert_eq!(ids.len(), 200);
    let mut spans = Vec::new();
    for id in &ids {
        let j = env.wait_job(*id, secs(300)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        spans.push(handler_span(&j));
    }
    // The most heavy jobs running at any instant on the one server.
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for (s, f) in &spans {
        edges.push((*s, 1));
        edges.push((*f, -1));
    }
    edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    assert!(
        peak <= 2,
        "{peak} heavy jobs ran at once on one server (limit 2)"
    );
    assert!(peak >= 1);
}
