//! `landlord serve` (issue 14): worker, scheduler and API in one process. One
//! process provisions a tenant asked for through its API, fires a schedule
//! whose jobs its own worker runs, answers `/metrics`, `/healthz` and
//! `/readyz` once for all three, and one SIGTERM drains (or hands back) what
//! runs and stops everything.

use serde_json::{Value, json};

use crate::common::{TestEnv, WorkerProc, free_port, ms, poll, secs};

const TOKEN: &str = "serve-admin-token-0123456789";
const TICK: &str = "[[schedules]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nkind = \"ping\"\nskip_overlap = false\n";

fn serve(env: &mut TestEnv, extra: &[&str]) -> (WorkerProc, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let w = env.spawn(
        &[&["serve", "--api-listen", &api], extra].concat(),
        &[("LANDLORD_API_TOKENS", &format!("admin={TOKEN}"))],
    );
    (w, format!("http://{api}"))
}

async fn get(url: &str) -> Result<(u16, String), String> {
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        r.status().as_u16(),
        r.text().await.map_err(|e| e.to_string())?,
    ))
}

/// Waits until `url` answers 200.
async fn wait_ok(url: &str) {
    poll(secs(30), ms(200), || async {
        match get(url).await {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{url}: {other:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_serve_process_runs_the_api_the_worker_and_the_scheduler() {
    let mut env = TestEnv::new().await;
    env.tenant("served").await;
    std::fs::write(env.log_dir.join("landlord.toml"), TICK).unwrap();
    let (w, api) = serve(&mut env, &[]);
    wait_ok(&format!("{}/readyz", w.metrics)).await;
    wait_ok(&format!("{}/healthz", w.metrics)).await;
    wait_ok(&format!("{api}/healthz")).await;

    // The API writes the tenant; the same process's worker provisions it.
    let slug = format!("srv-{}", &env.id[..8]);
    let created: Value = reqwest::Client::new()
        .post(format!("{api}/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"slug": slug, "name": "Served", "plan": "pro",
                      "owner": format!("srv-{}@example.test", env.id)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = created["job_id"]
        .as_str()
        .expect("a provision job")
        .to_string();
    let done = env.wait_job(job.parse().unwrap(), secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let (code, body) = get(&format!("{api}/v1/tenants/{slug}")).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "active"
    );

    // The scheduler leads and fires; the worker runs what it fired.
    poll(secs(30), ms(300), || async {
        let n = env
            .count("SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'succeeded' AND dedupe_key LIKE 'sched:tick:%'")
            .await;
        if n >= 1 { Ok(()) } else { Err("no scheduled ping ran yet".to_string()) }
    })
    .await;
    assert_eq!(env.metric(&w, "landlord_scheduler_leader").await, 1.0);
    let (_, metrics) = get(&format!("{}/metrics", w.metrics)).await.unwrap();
    assert!(
        metrics.contains("landlord_jobs_total{kind=\"provision\",outcome=\"succeeded\"} 1"),
        "one /metrics for every role: {metrics}"
    );

    env.signal(&w, "TERM");
    assert_eq!(env.wait_exit(&w, secs(20)), Some(0), "{}", w.log_text());
    let log = w.log_text();
    assert_eq!(
        log.matches("role stopped").count(),
        3,
        "all three roles stopped: {log}"
    );
    assert!(log.contains("serve stopped"), "{log}");
    assert!(
        get(&format!("{api}/healthz")).await.is_err(),
        "the API port is closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_short_job_and_hands_back_one_that_outlives_the_grace() {
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_SHUTDOWN_GRACE_SECONDS", "3")]);
    let (w, _) = serve(&mut env, &["--no-scheduler"]);
    wait_ok(&format!("{}/readyz", w.metrics)).await;
    let short = env.enqueue(&["jobs", "ping", "--hold", "2"]);
    let long = env.enqueue(&["jobs", "ping", "--hold", "60"]);
    env.wait_status(short, "running", secs(20)).await;
    env.wait_status(long, "running", secs(20)).await;
    env.signal(&w, "TERM");
    assert_eq!(env.wait_exit(&w, secs(20)), Some(0), "{}", w.log_text());
    let s = env.job(short).await;
    assert_eq!(s["status"], "succeeded", "drained: {s:#}");
    let l = env.job(long).await;
    assert_eq!(l["status"], "queued", "handed back: {l:#}");
    assert_eq!(l["attempts"], 0, "the attempt is refunded: {l:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_can_be_turned_off_but_not_all_of_them() {
    let mut env = TestEnv::new().await;
    env.refused(
        &["serve", "--no-worker", "--no-scheduler", "--no-api"],
        "leave serve nothing to run",
    );
    // API only: it answers, and a job it takes is left for a worker.
    let (w, api) = serve(&mut env, &["--no-worker", "--no-scheduler"]);
    wait_ok(&format!("{api}/healthz")).await;
    let id = env.enqueue(&["jobs", "ping"]);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(env.job(id).await["status"], "queued", "no worker ran it");
    assert_eq!(env.metric(&w, "landlord_scheduler_leader").await, 0.0);
    env.signal(&w, "TERM");
    assert_eq!(env.wait_exit(&w, secs(20)), Some(0), "{}", w.log_text());
}
