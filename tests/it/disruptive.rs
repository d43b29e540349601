//! Tests that disturb the shared broker for everyone: a lowered
//! `consumer_timeout` and a RabbitMQ restart. Run them alone, one at a time
//! (`ops/test` does: `cargo nextest run -E 'test(/^disruptive::/)' -j 1`).

use std::process::Command;

use crate::common::{TestEnv, secs, stderr, stdout};

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Puts the node-wide consumer timeout back however the test ends.
struct RestoreConsumerTimeout;

impl Drop for RestoreConsumerTimeout {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args([
                "eval",
                "application:set_env(rabbit, consumer_timeout, 1800000).",
            ])
            .output();
    }
}

/// Starts the broker app again however the test ends.
struct RestartBroker;

impl Drop for RestartBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["start_app"]).output();
        let _ = Command::new("rabbitmqctl").args(["await_startup"]).output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_longer_than_the_consumer_timeout_completes_exactly_once() {
    let _restore = RestoreConsumerTimeout;
    rabbitmqctl(&[
        "eval",
        "application:set_env(rabbit, consumer_timeout, 5000).",
    ]);
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let w = env.spawn_worker(&["--concurrency", "1"], &[]);
    // Twelve seconds of work against a five-second consumer timeout, with a
    // second job waiting in the queue the whole time.
    let long = env.enqueue(&["jobs", "ping", "--hold", "12"]);
    let next = env.enqueue(&["jobs", "ping"]);
    let j = env.wait_job(long, secs(90)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(
        j["attempts"], 1,
        "the long job must not have been re-run: {j:#}"
    );
    let n = env.wait_job(next, secs(30)).await;
    assert_eq!(n["status"], "succeeded");
    assert_eq!(n["attempts"], 1);
    tap.wait_job_event("job.succeeded", long, secs(10)).await;
    tap.settle(secs(2)).await;
    assert_eq!(
        tap.count("job.succeeded", long),
        1,
        "completed exactly once"
    );
    assert!(
        !w.log_text().contains("PRECONDITION_FAILED"),
        "the broker closed a channel for a delivery timeout:\n{}",
        w.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_worker_finishes_every_job_across_a_broker_restart() {
    let mut env = TestEnv::new().await;
    let w = env.spawn_worker(&["--concurrency", "2"], &[]);
    let mut ids = Vec::new();
    // Held long enough to still run once the six CLI calls (~0.25 s each) returned.
    for _ in 0..6 {
        ids.push(env.enqueue(&["jobs", "ping", "--hold", "4"]));
    }
    // Wait until work is in flight, then take the broker away.
    env.wait_status(ids[0], "running", secs(30)).await;
    {
        let _guard = RestartBroker;
        rabbitmqctl(&["stop_app"]);
        // Enqueued while the broker is down: kept in the catalog, published later.
        ids.push(env.enqueue(&["jobs", "ping"]));
        tokio::time::sleep(secs(4)).await;
    }
    for id in &ids {
        let j = env.wait_job(*id, secs(120)).await;
        assert_eq!(
            j["status"], "succeeded",
            "job lost or failed across the restart: {j:#}"
        );
    }
    // The same worker process did the work after the restart: it reconnected.
    let log = w.log_text();
    let reconnects = log
        .matches("connected to RabbitMQ, topology declared")
        .count();
    assert!(reconnects >= 2, "worker never reconnected:\n{log}");
    let r = reqwest::get(format!("{}/readyz", w.metrics)).await.unwrap();
    assert_eq!(r.status(), 200);
}
