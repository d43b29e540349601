//! A backup job's status and its backups tell one story, whatever stops its
//! last attempt once the backup is complete (found by the chaos soak, seed
//! 20261204: attempt 3 of a backup job completed its backup, then its tenant
//! lock session was terminated; the job ended `dead` with its complete
//! backup left behind, and compensation reported `done`).
//!
//! - An attempt that loses its tenant lock after its backup is recorded
//!   complete has succeeded: the job ends `succeeded` with that backup,
//!   whether the lock goes while retention would run
//!   (`backup.after_complete`, the handler is stopped) or after the handler
//!   returned (`job.after_handler`). The test ends the lock's session with
//!   `pg_terminate_backend` while the worker pauses there.
//! - A last attempt that dies after completing its backup, before recording
//!   its success (`job.before_record`, as `kill -9` would), ends the job
//!   `dead`, and its compensation withdraws the backup: no complete row, no
//!   object, no manifest.

use uuid::Uuid;

use super::recognise::{
    compensation_settled, complete_backups_of, keys_under, last_attempt, tenant_with_rows,
};
use crate::common::*;

/// First key of landlord's tenant locks (`runtime::tenant_lock`, "LL").
const LOCK_CLASS: i64 = 0x4c4c;

/// Waits until `w` logs that it pauses at failpoint `name`.
async fn paused_at(w: &WorkerProc, name: &str) {
    poll(secs(120), ms(100), || async {
        let log = w.log_text();
        match log
            .lines()
            .any(|l| l.contains("failpoint hit: pausing") && l.contains(name))
        {
            true => Ok(()),
            false => Err(format!("the worker did not pause at {name}:\n{log}")),
        }
    })
    .await
}

/// Ends the catalog session that holds tenant `slug`'s lock; returns how
/// many sessions it ended.
async fn terminate_tenant_lock(env: &TestEnv, slug: &str) -> usize {
    let tenant_id: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&env.catalog)
        .await
        .expect("tenant id");
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND classid = $1::int::oid AND objid = $2::int::oid AND objsubid = 2 AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(LOCK_CLASS)
    .bind(tenant_id & 0x7fff_ffff)
    .fetch_all(&env.catalog)
    .await
    .expect("terminate the tenant lock's session");
    ended.into_iter().filter(|e| *e).count()
}

/// The id of the one complete backup of `job`.
async fn complete_backup_id(env: &TestEnv, job: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT id FROM backups WHERE job_id = $1 AND status = 'complete'")
        .bind(job)
        .fetch_one(&env.catalog)
        .await
        .expect("one complete backup")
}

/// The last attempt of a backup job completes its backup, pauses at
/// `failpoint` and loses its tenant lock there: the job succeeds with that
/// backup. Returns the job.
async fn lock_lost_after_the_backup_completed(slug: &str, failpoint: &str) -> serde_json::Value {
    let mut env = TestEnv::new().await;
    tenant_with_rows(&mut env, slug).await;
    let job = env.enqueue(&["backup", "--tenant", slug]);
    last_attempt(&env, job).await;
    let pause = format!("{failpoint}=8000");
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", &pause)]);
    paused_at(&w, failpoint).await;
    assert_eq!(
        complete_backups_of(&env, job).await,
        1,
        "the attempt completed its backup before {failpoint}"
    );
    assert_eq!(
        terminate_tenant_lock(&env, slug).await,
        1,
        "the attempt held the tenant lock"
    );
    let j = env.wait_job(job, secs(120)).await;
    assert_eq!(
        j["status"],
        "succeeded",
        "a backup job whose backup is complete ended {}: {j:#}\n{}",
        j["status"],
        env.worker_logs()
    );
    assert_eq!(j["attempts"], 1, "{j:#}");
    assert_eq!(complete_backups_of(&env, job).await, 1);
    let id = complete_backup_id(&env, job).await;
    assert_eq!(j["result"]["backup_id"], id.to_string(), "{j:#}");
    let keys = keys_under(&env, slug).await;
    assert_eq!(keys.len(), 2, "the object and its manifest: {keys:?}");
    j
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_that_loses_its_tenant_lock_during_retention_succeeds() {
    let j = lock_lost_after_the_backup_completed("lockret", "backup.after_complete").await;
    // The handler was stopped before retention: the result is the backup's.
    assert!(j["result"]["retention"].is_null(), "{j:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_that_loses_its_tenant_lock_before_recording_succeeds() {
    let j = lock_lost_after_the_backup_completed("lockrec", "job.after_handler").await;
    assert!(j["result"]["retention"].is_object(), "{j:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_job_dead_after_completing_its_backup_leaves_no_backup() {
    let mut env = TestEnv::new().await;
    let slug = "deadafter";
    tenant_with_rows(&mut env, slug).await;
    let job = env.enqueue(&["backup", "--tenant", slug]);
    last_attempt(&env, job).await;
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "job.before_record")]);
    // The backup completes, then the worker aborts before recording it.
    env.wait_exit(&w, secs(120));
    assert_eq!(
        complete_backups_of(&env, job).await,
        1,
        "the backup completed"
    );
    // That attempt was the job's last: the next worker's reaper ends it dead.
    env.spawn_worker(&[], &[]);
    env.wait_status(job, "dead", secs(60)).await;
    let j = compensation_settled(&env, job).await;
    assert_eq!(j["compensation"], "done", "{j:#}");
    assert_eq!(
        complete_backups_of(&env, job).await,
        0,
        "a dead backup job left a complete backup"
    );
    let keys = keys_under(&env, slug).await;
    assert!(
        keys.is_empty(),
        "objects left by a dead backup job: {keys:?}"
    );
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error FROM backups WHERE job_id = $1")
            .bind(job)
            .fetch_all(&env.catalog)
            .await
            .expect("backups");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "failed", "{rows:?}");
    assert!(
        rows[0].1.as_deref().unwrap_or("").contains("withdrawn"),
        "{rows:?}"
    );
}
