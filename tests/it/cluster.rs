//! The fleet on a three-node RabbitMQ cluster (issue 14): workers given every
//! node's URL keep going while one node is `kill -9`'d and restarted and then
//! another is stopped cleanly. Every job succeeds exactly once (one attempt,
//! one `job.succeeded`-worthy row), workers move to the live nodes by
//! themselves, and the longest time without a finished job is printed.
//!
//! Needs `ops/services up --rabbit-cluster 3` (ops/test starts it) and stops
//! and starts that cluster's nodes, never the machine's broker; `ops/test`
//! runs it alone with the disruptive tests (`-E 'test(/^cluster::/)'`).

use std::process::Command;

use landlord::runtime::{Origin, store};

use crate::common::{TestEnv, ms, poll, secs, stderr, stdout};

const JOBS: usize = 500;

fn cluster_urls() -> String {
    std::env::var("LANDLORD_TEST_RABBIT_CLUSTER").expect(
        "LANDLORD_TEST_RABBIT_CLUSTER is not set: run `ops/services up --rabbit-cluster 3` and \
         eval \"$(ops/services env)\"",
    )
}

fn state_dir() -> std::path::PathBuf {
    std::env::var("LANDLORD_SERVICES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".local/share/landlord-services")
        })
}

fn rabbitmqctl(node: u32, args: &[&str]) -> std::process::Output {
    Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
        // Not the checkout: an Erlang VM that fails writes erl_crash.dump where it runs.
        .current_dir(std::env::temp_dir())
        .args(["-n", &format!("landlord-c{node}@localhost")])
        .args(args)
        .output()
        .expect("rabbitmqctl")
}

/// The OS pid of a running node, asked of the node itself (a node that
/// `ops/services` restarted after a test stopped it may have no pid file).
fn node_pid(node: u32) -> String {
    let out = rabbitmqctl(node, &["eval", "os:getpid()."]);
    let pid = stdout(&out).trim().trim_matches('"').to_string();
    if out.status.success() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
        return pid;
    }
    let pidfile = state_dir().join(format!("rabbitmq-landlord-c{node}/rabbitmq.pid"));
    std::fs::read_to_string(&pidfile).unwrap_or_else(|e| {
        panic!(
            "node {node}: no pid from rabbitmqctl ({}) nor its pid file: {e}",
            stderr(&out)
        )
    })
}

fn kill_9(node: u32) {
    let pid = node_pid(node);
    let st = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -9 node {node}");
}

/// Starts whatever node of the cluster is down (`ops/services` is idempotent).
fn cluster_up() {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/services"))
        .args(["up", "--rabbit-cluster", "3"])
        .output()
        .expect("ops/services");
    assert!(
        out.status.success(),
        "ops/services up --rabbit-cluster 3: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Puts the cluster back to three nodes however the test ends.
struct Heal;

impl Drop for Heal {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/services"))
            .args(["up", "--rabbit-cluster", "3"])
            .output();
    }
}

async fn finished(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'succeeded'")
        .await
}

/// Waits until `n` more pings have finished, proving the fleet makes progress.
async fn progress(env: &TestEnv, n: i64, what: &str) {
    let start = finished(env).await;
    poll(secs(90), ms(250), || async {
        let now = finished(env).await;
        if now >= start + n || now >= JOBS as i64 {
            Ok(())
        } else {
            Err(format!("{what}: {} of {n} more jobs finished", now - start))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_survive_a_killed_node_and_a_stopped_node_exactly_once() {
    let _heal = Heal;
    cluster_up();
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_AMQP_URL", &cluster_urls())]);
    let registry = landlord::workers::registry();
    for i in 0..JOBS {
        store::enqueue(
            &env.catalog,
            &registry,
            &store::EnqueueRequest {
                kind: "ping".into(),
                tenant: None,
                // Long enough that a node's restart (10-20 s here) leaves jobs for the stop
                // on a quiet machine too (16 slots: 4 jobs/s, 500 jobs take 125 s).
                args: serde_json::json!({"hold_seconds": 4.0}),
                queue: None,
                dedupe_key: None,
                max_attempts: None,
                run_at: None,
            },
            Origin::Catalog,
        )
        .await
        .unwrap_or_else(|e| panic!("enqueue {i}: {e}"));
    }
    // Two workers, each starting on another node's URL first.
    let urls = cluster_urls();
    let rotated: Vec<&str> = urls.split(',').collect();
    let second = [&rotated[1..], &rotated[..1]].concat().join(",");
    let concurrency = [("LANDLORD_WORKER_CONCURRENCY", "8")];
    let w1 = env.spawn_worker(&[], &concurrency);
    let w2 = env.spawn_worker(&[], &[concurrency[0], ("LANDLORD_AMQP_URL", &second)]);

    progress(&env, 40, "before any fault").await;
    kill_9(2);
    progress(&env, 60, "with node 2 killed").await;
    cluster_up();
    progress(&env, 60, "after node 2 came back").await;
    let before_stop = finished(&env).await;
    assert!(
        before_stop < JOBS as i64 - 100,
        "node 3 must stop with jobs still to run ({before_stop} of {JOBS} done)"
    );
    let out = rabbitmqctl(3, &["stop"]);
    assert!(out.status.success(), "stopping node 3: {}", stderr(&out));
    poll(secs(240), ms(500), || async {
        let done = finished(&env).await;
        if done == JOBS as i64 {
            Ok(())
        } else {
            Err(format!("{done} of {JOBS} pings succeeded"))
        }
    })
    .await;

    // Exactly once: every job one attempt, none left over or dead.
    env.assert_count(
        "SELECT count(*) FROM jobs WHERE kind = 'ping' AND attempts = 1",
        JOBS as i64,
    )
    .await;
    env.assert_count("SELECT count(*) FROM jobs WHERE status <> 'succeeded'", 0)
        .await;
    // The longest stretch without a finished job, from the catalog's own timestamps.
    let gap: f64 = sqlx::query_scalar(
        "SELECT COALESCE(max(extract(epoch FROM finished_at - prev)), 0)::float8 FROM ( \
           SELECT finished_at, lag(finished_at) OVER (ORDER BY finished_at) AS prev \
           FROM jobs WHERE kind = 'ping') t",
    )
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    let span: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finished_at) - min(finished_at))::float8 FROM jobs WHERE kind = 'ping'",
    )
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    eprintln!(
        "cluster: {JOBS} jobs in {span:.1} s through a kill -9 and a clean stop; longest time without a finished job {gap:.2} s"
    );
    let logs = format!("{}\n{}", w1.log_text(), w2.log_text());
    assert!(
        logs.contains("RabbitMQ node switched"),
        "a worker moved to another node by itself: {logs}"
    );
}
