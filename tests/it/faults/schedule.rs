//! Time under faults: the deletion grace period holds however its drop job
//! is driven (an operator's `jobs cancel` + `jobs retry`), and every
//! scheduling decision takes its time from the catalog's clock, not from the
//! host's. The skewed hosts are real processes under libfaketime
//! (`faketime -f +2h landlord …`, monotonic clock left alone so tokio timers
//! behave), talking to the real catalog.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
};

use landlord::runtime::Job;
use serde_json::Value;
use uuid::Uuid;

use crate::common::{TestEnv, database_exists, ms, poll, secs, stderr, stdout};

/// How far ahead the skewed hosts' clocks run.
const AHEAD: &str = "+2h";

/// A landlord command under `faketime`: its wall clock is `offset` off.
fn skewed(env: &TestEnv, offset: &str, args: &[&str]) -> Command {
    let mut c = Command::new("faketime");
    c.args(["-f", offset, env!("CARGO_BIN_EXE_landlord")])
        .args(args)
        .envs(env.env())
        .env_remove("LANDLORD_CONFIG")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .current_dir(&env.log_dir)
        .stdin(Stdio::null());
    c
}

/// Runs a skewed landlord command that must succeed; returns stdout.
fn skewed_ok(env: &TestEnv, args: &[&str]) -> String {
    let out: Output = skewed(env, AHEAD, args)
        .output()
        .expect("run faketime (apt-get install faketime; ops/services up installs it)");
    assert!(
        out.status.success(),
        "faketime {AHEAD} landlord {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A long-running skewed landlord process, killed when dropped.
struct SkewedProc {
    child: Child,
    log: PathBuf,
}

impl SkewedProc {
    fn spawn(env: &TestEnv, args: &[&str]) -> Self {
        let log = env.log_dir.join(format!("skewed-{}.log", args[0]));
        let file = std::fs::File::create(&log).expect("log file");
        // Its own process group: `faketime` runs landlord as its child.
        let child = skewed(env, AHEAD, args)
            .process_group(0)
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn faketime");
        Self { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SkewedProc {
    /// Kills the whole group: `faketime` and the landlord process it started.
    fn drop(&mut self) {
        Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status()
            .ok();
        self.child.wait().ok();
    }
}

/// The catalog's clock.
async fn catalog_now(env: &TestEnv) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(&env.catalog)
        .await
        .unwrap()
}

/// The job id `tenants delete` printed (`{id}\tdrop_tenant\t{slug}\tscheduled`).
fn printed_job(out: &str) -> Uuid {
    let id = out.split('\t').next().unwrap_or_default();
    Uuid::parse_str(id.trim()).unwrap_or_else(|e| panic!("no job id ({e}) in: {out}"))
}

/// Waits until a worker has taken `job` (never run before): it either ran
/// it to an end, or gave it back queued with the reason as `last_error`.
async fn taken(env: &TestEnv, job: Uuid) -> Value {
    poll(secs(30), ms(100), || async {
        let j = env.job(job).await;
        let postponed = j["status"] == "queued" && j["last_error"].is_string();
        match postponed
            || ["succeeded", "failed", "dead"].contains(&j["status"].as_str().unwrap_or(""))
        {
            true => Ok(j),
            false => Err(format!("job not taken yet: {j:#}\n{}", env.worker_logs())),
        }
    })
    .await
}

/// The operator's way of re-driving a job now: cancel, then retry.
fn cancel_and_retry(env: &TestEnv, job: Uuid) {
    env.ok(&["jobs", "cancel", &job.to_string()]);
    env.ok(&["jobs", "retry", &job.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drop_cancelled_and_retried_in_the_grace_period_waits_for_delete_after() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("grace").await;
    env.spawn_worker(&[], &[]);
    // As a new user would: delete (7 days' grace), change one's mind, retry.
    let job = printed_job(&env.ok(&["tenants", "delete", "grace", "--no-final-backup"]));
    cancel_and_retry(&env, job);
    let j = taken(&env, job).await;
    assert_ne!(
        j["status"], "succeeded",
        "dropped inside the grace period: {j:#}"
    );
    assert!(database_exists(&db).await, "the database is gone: {j:#}");
    // Postponed (no attempt spent) until delete_after, by the catalog's clock.
    assert_eq!(j["status"], "queued", "{j:#}");
    assert_eq!(j["attempts"], 0, "{j:#}");
    env.assert_count(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
         WHERE j.kind = 'drop_tenant' AND t.status = 'deleting' \
           AND j.run_at >= t.delete_after AND j.run_at < t.delete_after + interval '1 minute'",
        1,
    )
    .await;
    // Once delete_after has passed, the same job drops the database.
    sqlx::query(
        "UPDATE tenants SET delete_after = now() - interval '1 minute' WHERE slug = 'grace'",
    )
    .execute(&env.catalog)
    .await
    .unwrap();
    cancel_and_retry(&env, job);
    let j = env.wait_job(job, secs(30)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert!(!database_exists(&db).await, "the database stays: {j:#}");
    env.assert_count(
        "SELECT count(*) FROM tenants WHERE slug = 'grace' AND status = 'deleted'",
        1,
    )
    .await;
}

/// `n` active tenants as catalog rows only (ping never touches their databases).
async fn active_tenants(env: &TestEnv, n: i32) {
    sqlx::query(
        "INSERT INTO tenants (slug, name, plan, status, db_server, db_name) \
         SELECT 'skew' || g || '-x', 'Skew ' || g, 'enterprise', 'active', 'default', $1 || '_skew' || g \
         FROM generate_series(1, $2) g",
    )
    .bind(&env.catalog_db)
    .bind(n)
    .execute(&env.catalog)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_run_on_a_host_whose_clock_runs_ahead_fires_at_the_catalogs_time() {
    let mut env = TestEnv::new().await;
    active_tenants(&env, 3).await;
    std::fs::write(
        env.log_dir.join("landlord.toml"),
        "[[schedules]]\nname = \"tick\"\ncron = \"*/2 * * * * *\"\nkind = \"ping\"\nskip_overlap = false\n",
    )
    .unwrap();
    let before = catalog_now(&env).await;
    let out = skewed_ok(&env, &["schedule", "run", "tick"]);
    assert!(out.contains("jobs=3"), "{out}");
    let after = catalog_now(&env).await;
    let (cli_fire_at, cli): (chrono::DateTime<chrono::Utc>, String) =
        sqlx::query_as("SELECT fire_at, leader FROM schedule_firings")
            .fetch_one(&env.catalog)
            .await
            .unwrap();
    // A scheduler on a host with a true clock fires the next firings; none
    // is suppressed by the hand-fired one.
    let s = env.spawn(&["scheduler"], &[]);
    poll(secs(20), ms(200), || async {
        let firings: Vec<(chrono::DateTime<chrono::Utc>, String, Option<String>)> = sqlx::query_as(
            "SELECT fire_at, status, leader FROM schedule_firings ORDER BY fire_at",
        )
        .fetch_all(&env.catalog)
        .await
        .unwrap();
        let fired_since = firings
            .iter()
            .filter(|(at, status, leader)| {
                *at > cli_fire_at && status == "done" && leader.as_deref() != Some(cli.as_str())
            })
            .count();
        match fired_since >= 2 {
            true => Ok(()),
            false => Err(format!(
                "the scheduler fired nothing after `schedule run` (catalog now {}): {firings:?}\n{}",
                chrono::Utc::now(),
                s.log_text()
            )),
        }
    })
    .await;
    // The hand-fired firing has the catalog's time (to the second).
    let floor = before - chrono::Duration::seconds(1);
    assert!(
        floor <= cli_fire_at && cli_fire_at <= after,
        "schedule run recorded {cli_fire_at}; the catalog's clock said {before} .. {after}"
    );
    env.assert_count(
        "SELECT count(*) FROM schedule_firings WHERE fire_at > now()",
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_delete_on_a_host_whose_clock_runs_ahead_takes_the_grace_from_the_catalog() {
    let mut env = TestEnv::new().await;
    env.tenant("skewdel").await;
    let job = printed_job(&skewed_ok(
        &env,
        &["tenants", "delete", "skewdel", "--no-final-backup"],
    ));
    // delete_after is the deletion's own catalog time plus exactly 7 days,
    // and the drop job is due then.
    let (delete_after, updated_at, run_at): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as(
        "SELECT t.delete_after, t.updated_at, j.run_at FROM tenants t JOIN jobs j ON j.tenant_id = t.id \
         WHERE t.slug = 'skewdel' AND j.id = $1",
    )
    .bind(job)
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    assert_eq!(
        delete_after - updated_at,
        chrono::Duration::days(7),
        "delete_after {delete_after}, deletion recorded at {updated_at}"
    );
    assert_eq!(run_at, delete_after, "the drop job is due at delete_after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_clock_runs_ahead_keeps_the_pre_restore_copy_until_keep_until() {
    let mut env = TestEnv::new().await;
    env.tenant("prewin").await;
    // A second database stands in for the copy a restore swapped out.
    let pre = env.tenant("prewin-copy").await;
    let restore_id = Uuid::new_v4();
    // Kept for another hour by the catalog's clock.
    sqlx::query(
        "INSERT INTO restores (id, tenant_id, status, scratch_db, pre_restore_db, keep_until, completed_at) \
         SELECT $1, id, 'complete', $2 || '_scratch', $2, now() + interval '1 hour', now() FROM tenants WHERE slug = 'prewin'",
    )
    .bind(restore_id)
    .bind(&pre)
    .execute(&env.catalog)
    .await
    .unwrap();
    let mut tx = env.catalog.begin().await.unwrap();
    let job = landlord::backup::jobs::DropPreRestore { restore_id }
        .enqueue_in(&mut tx, Some("prewin"), None, None)
        .await
        .unwrap()
        .id;
    tx.commit().await.unwrap();
    // A worker on a host whose clock runs two hours ahead takes it.
    let w = SkewedProc::spawn(&env, &["worker"]);
    let j = taken(&env, job).await;
    assert_ne!(
        j["status"],
        "succeeded",
        "dropped inside the rollback window: {j:#}\n{}",
        w.log_text()
    );
    assert!(
        database_exists(&pre).await,
        "the pre-restore copy is gone: {j:#}"
    );
    assert_eq!(j["attempts"], 0, "{j:#}");
    // Once keep_until has passed, the same job drops it.
    sqlx::query("UPDATE restores SET keep_until = now() - interval '1 minute' WHERE id = $1")
        .bind(restore_id)
        .execute(&env.catalog)
        .await
        .unwrap();
    cancel_and_retry(&env, job);
    let j = env.wait_job(job, secs(30)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}\n{}", w.log_text());
    assert!(
        !database_exists(&pre).await,
        "the pre-restore copy stays: {j:#}"
    );
}
