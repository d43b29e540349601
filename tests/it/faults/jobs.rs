//! Jobs the fleet must neither lose nor run where they do not belong: a
//! killed `--sync` run is not redone by a worker, a catalog error right after
//! a claim costs no attempt, a lost message is published again under a steady
//! backlog, and a message too large to parse never loops.

use landlord::{
    message::MAX_MESSAGE_BYTES,
    runtime::store::{self, EnqueueError, EnqueueRequest, Origin},
};
use lapin::options::{QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use serde_json::json;
use uuid::Uuid;

use crate::common::{TestEnv, ms, poll, secs};

/// The one sync-origin ping of this test's catalog, once it is running.
async fn running_sync_ping(env: &TestEnv) -> Uuid {
    poll(secs(30), ms(100), || async {
        sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM jobs WHERE kind = 'ping' AND origin = 'sync' AND status = 'running'",
        )
        .fetch_optional(&env.catalog)
        .await
        .expect("query")
        .ok_or_else(|| "the --sync ping is not running yet".to_string())
    })
    .await
}

/// Messages waiting in queue `name` (a passive declare).
async fn depth(env: &TestEnv, name: &str) -> u32 {
    let (_conn, ch) = env.channel().await;
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare")
    .message_count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_sync_run_ends_failed_and_is_never_redone_by_the_fleet() {
    let mut env = TestEnv::new().await;
    env.tenant("solo").await;
    let worker = env.spawn_worker(&[], &[]);
    let cli = env.spawn(
        &[
            "jobs", "ping", "--tenant", "solo", "--hold", "8", "--sync", "--json",
        ],
        &[],
    );
    let id = running_sync_ping(&env).await;
    env.signal(&cli, "KILL");
    env.wait_exit(&cli, secs(10));

    let j = env.wait_job(id, secs(60)).await;
    assert_eq!(
        j["status"], "failed",
        "a --sync job whose process vanished ends failed: {j:#}"
    );
    let err = j["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("--sync"), "the error says why: {err}");
    assert_eq!(j["attempts"], 1, "no worker claimed it: {j:#}");
    env.assert_count(
        &format!("SELECT count(*) FROM outbox WHERE job_id = '{id}' AND exchange = 'work'"),
        0,
    )
    .await;
    assert!(
        !worker.log_text().contains("job succeeded"),
        "the worker ran nothing:\n{}",
        worker.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_error_right_after_the_claim_costs_no_attempt() {
    let mut env = TestEnv::new().await;
    env.tenant("blip").await;
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "worker.after_claim!1")]);
    let id = env.enqueue(&["jobs", "ping", "--tenant", "blip"]);
    let j = env.wait_job(id, secs(60)).await;
    assert!(
        w.log_text().contains("worker.after_claim"),
        "the failpoint was hit:\n{}",
        w.log_text()
    );
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(
        j["attempts"], 1,
        "the attempt that never started is not spent: {j:#}"
    );
    assert_eq!(
        env.metric(&w, "landlord_leases_reaped_total").await,
        0.0,
        "the job was given back, not left to its lease"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_message_is_published_again_under_a_steady_backlog() {
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_STALE_AFTER_SECONDS", "2")]);
    // Published while no worker runs, then lost (an operator purges the queue).
    let lost = env.enqueue(&["jobs", "ping"]);
    env.assert_count(
        &format!(
            "SELECT count(*) FROM outbox WHERE job_id = '{lost}' AND published_at IS NOT NULL"
        ),
        1,
    )
    .await;
    let (_conn, ch) = env.channel().await;
    ch.queue_purge(
        env.topology.queue("maintenance").into(),
        QueuePurgeOptions::default(),
    )
    .await
    .expect("purge");

    // One slot, kept busy by one-second pings, never fewer than three waiting:
    // the maintenance queue is never empty.
    let w = env.spawn_worker(&["--concurrency", "1"], &[]);
    let waiting = "SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'queued' AND id <> ";
    let j = poll(secs(45), ms(200), || async {
        while env.count(&format!("{waiting}'{lost}'")).await < 3 {
            env.enqueue(&["jobs", "ping", "--hold", "1"]);
        }
        let j = env.job(lost).await;
        if j["status"] == "succeeded" {
            Ok(j)
        } else {
            Err(format!("the lost job is still {}", j["status"]))
        }
    })
    .await;
    assert_eq!(j["attempts"], 1, "{j:#}");
    assert!(
        env.count(&format!("{waiting}'{lost}'")).await > 0,
        "the backlog was still there"
    );
    assert!(env.metric(&w, "landlord_jobs_republished_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_too_large_for_its_message_is_refused_at_enqueue() {
    let mut env = TestEnv::new().await;
    env.tenant("big").await;
    let registry = landlord::workers::registry();
    let req = EnqueueRequest {
        kind: "verify_backup".into(),
        tenant: Some("big".into()),
        args: json!({"backup": "x".repeat(MAX_MESSAGE_BYTES)}),
        ..Default::default()
    };
    for origin in [Origin::Catalog, Origin::Sync] {
        let err = store::enqueue(&env.catalog, &registry, &req, origin)
            .await
            .expect_err("an oversized job is refused");
        assert!(
            matches!(err, EnqueueError::InvalidArgs(_)),
            "bad input, not a failure: {err:?}"
        );
        assert!(err.to_string().contains("bytes"), "{err}");
    }
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    env.assert_count("SELECT count(*) FROM outbox", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_message_cannot_be_parsed_dies_once_instead_of_looping() {
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_STALE_AFTER_SECONDS", "2")]);
    env.tenant("huge").await;
    // What an older landlord wrote: a job whose message is over the parse limit.
    let id = Uuid::now_v7();
    let args = json!({"backup": "x".repeat(MAX_MESSAGE_BYTES)});
    let payload =
        json!({"v": 1, "job_id": id, "kind": "verify_backup", "tenant": "huge", "args": args});
    sqlx::query(
        "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, run_at) \
         SELECT $1, 'verify_backup', 'backup', id, $2, 'queued', 3, now() - interval '1 minute' \
         FROM tenants WHERE slug = 'huge'",
    )
    .bind(id)
    .bind(&args)
    .execute(&env.catalog)
    .await
    .expect("insert job");
    sqlx::query(
        "INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id) \
         VALUES ('work', 'backup', $1, $2, $3)",
    )
    .bind(&payload)
    .bind(id.to_string())
    .bind(id)
    .execute(&env.catalog)
    .await
    .expect("insert outbox");

    let w = env.spawn_worker(&[], &[]);
    let j = env.wait_job(id, secs(30)).await;
    assert_eq!(j["status"], "dead", "{j:#}");
    let err = j["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("bytes"), "the reason is recorded: {err}");
    assert_eq!(j["attempts"], 0, "it never ran: {j:#}");

    // Several stale periods later nothing was published again.
    tokio::time::sleep(secs(8)).await;
    env.assert_count(
        &format!("SELECT count(*) FROM outbox WHERE job_id = '{id}' AND exchange = 'work'"),
        1,
    )
    .await;
    assert!(depth(&env, &env.topology.dead_queue()).await <= 1);
    assert_eq!(env.metric(&w, "landlord_jobs_republished_total").await, 0.0);
}
