//! Operator notifications (issue 14): a backup that fails for good sends one
//! mail (maildev) and one webhook call (a real HTTP sink in this process),
//! not one per retry; a second failure within the rate-limit period is held
//! back and counted; a dead job of another kind is its own event.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, routing::post};
use serde_json::Value;

use crate::common::{TestEnv, mails_to, ms, poll, secs, wait_mail};

/// A webhook receiver on loopback: every JSON body it was posted; it answers
/// 500 to the first `failures` calls, then 200.
async fn webhook_sink(failures: usize) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |raw: Bytes| {
            let keep = keep.clone();
            async move {
                let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let mut k = keep.lock().unwrap();
                k.push(body);
                if k.len() <= failures {
                    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

/// The mails to `to` whose subject contains `what`.
async fn mails_about(to: &str, what: &str) -> usize {
    mails_to(to)
        .await
        .iter()
        .filter(|m| m["subject"].as_str().unwrap_or("").contains(what))
        .count()
}

fn calls(seen: &Arc<Mutex<Vec<Value>>>, event: &str) -> Vec<Value> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|v| v["event"] == event)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_backup_sends_one_mail_and_one_webhook_call_not_one_per_retry() {
    let mut env = TestEnv::new().await;
    let (hook, seen) = webhook_sink(0).await;
    let ops = format!("ops-{}@example.test", env.id);
    env.tenant("doomed").await;
    env.set_env(&[
        ("LANDLORD_NOTIFY_MAIL_TO", &ops),
        ("LANDLORD_NOTIFY_WEBHOOK_URL", &hook),
        // An unreachable store: every backup attempt fails.
        ("LANDLORD_S3_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]);
    let w = env.spawn_worker(&[], &[]);
    let job = env.enqueue(&["backup", "--tenant", "doomed"]);
    let j = env.wait_job(job, secs(60)).await;
    assert_eq!(j["status"], "dead", "{j:#}");
    assert_eq!(j["attempts"], 3, "it was retried: {j:#}");

    wait_mail(&ops, secs(30)).await;
    poll(secs(30), ms(200), || async {
        match mails_about(&ops, "backup of doomed failed").await {
            0 => Err("no failure mail yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    poll(secs(30), ms(200), || async {
        match calls(&seen, "backup_failed").len() {
            0 => Err("no webhook call yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    let call = &calls(&seen, "backup_failed")[0];
    assert_eq!(call["tenant"], "doomed");
    assert!(
        call["text"].as_str().unwrap().contains(&job.to_string()),
        "{call:#}"
    );

    // The notifier loop goes round a few more times: still one of each.
    tokio::time::sleep(secs(12)).await;
    assert_eq!(
        mails_about(&ops, "backup of doomed failed").await,
        1,
        "one mail for three failed attempts"
    );
    // The tenant has no backup at all, so its staleness is its own notice, once.
    assert_eq!(mails_about(&ops, "no recent backup of doomed").await, 1);
    assert_eq!(calls(&seen, "backups_stale").len(), 1);
    assert_eq!(calls(&seen, "backup_failed").len(), 1, "one webhook call");

    // A second failure of the same tenant within the period is held back and counted.
    let again = env.enqueue(&["backup", "--tenant", "doomed"]);
    assert_eq!(env.wait_job(again, secs(60)).await["status"], "dead");
    poll(secs(30), ms(300), || async {
        let held = env
            .count("SELECT COALESCE(sum(held_back), 0)::bigint FROM notifications WHERE event = 'backup_failed'")
            .await;
        if held == 1 { Ok(()) } else { Err(format!("held back {held}")) }
    })
    .await;
    assert_eq!(mails_about(&ops, "backup of doomed failed").await, 1);
    assert_eq!(calls(&seen, "backup_failed").len(), 1);

    // Another kind of dead job is another event.
    let ping = env.enqueue(&["jobs", "ping", "--fail", "fatal"]);
    assert_eq!(env.wait_job(ping, secs(30)).await["status"], "dead");
    poll(secs(30), ms(200), || async {
        match calls(&seen, "job_dead").len() {
            1 => Ok(()),
            n => Err(format!("{n} job_dead calls")),
        }
    })
    .await;
    assert!(w.log_text().contains("notification held back"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_that_fails_is_tried_again_and_bad_settings_are_refused() {
    let mut env = TestEnv::new().await;
    for (k, v, says) in [
        ("LANDLORD_NOTIFY_EVENTS", "backup_fail", "unknown event"),
        (
            "LANDLORD_NOTIFY_EVENTS",
            "job_dead:webhook",
            "LANDLORD_NOTIFY_WEBHOOK_URL is not set",
        ),
        (
            "LANDLORD_NOTIFY_MAIL_TO",
            "not-an-address",
            "is not a mail address",
        ),
        (
            "LANDLORD_NOTIFY_WEBHOOK_URL",
            "ftp://x/y?token=s3cret",
            "http:// or https://",
        ),
    ] {
        let out = env.run_with(&["config", "show"], &[(k, v)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{k}={v}: {err}"
        );
        assert!(
            !err.contains("s3cret"),
            "the webhook's token is masked: {err}"
        );
    }

    // A sink that answers 500 twice, then 200.
    let (hook, seen) = webhook_sink(2).await;
    env.set_env(&[
        ("LANDLORD_NOTIFY_WEBHOOK_URL", &hook),
        ("LANDLORD_NOTIFY_EVENTS", "job_dead"),
    ]);
    env.spawn_worker(&[], &[]);
    let ping = env.enqueue(&["jobs", "ping", "--fail", "fatal"]);
    assert_eq!(env.wait_job(ping, secs(30)).await["status"], "dead");
    poll(secs(45), ms(300), || async {
        match seen.lock().unwrap().len() {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} webhook calls")),
        }
    })
    .await;
    tokio::time::sleep(secs(7)).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "tried until it answered 200, then never again"
    );
    env.assert_count("SELECT count(*) FROM notified_jobs", 1)
        .await;
}
