//! A job whose effect must happen once recognises what an earlier attempt of
//! the same job did (issue 12): a `backup` whose first attempt completed its
//! backup but died before recording its success returns that backup instead
//! of taking a second one, and a `verify_backup --restore-test` attempt that
//! dies with its scratch database loaded leaves nothing behind, whether the
//! job is retried or ends dead (its compensation drops the scratch). A
//! `restore` attempt that fails after loading its scratch while the server is
//! away (so it cannot drop the scratch either) leaves nothing once the job
//! is retried or ends dead: the scratch name is the job's.
//!
//! Attempts die by failpoint (`job.before_record`, `verify.scratch_loaded`),
//! as `kill -9` would, or fail by one (`restore.scratch_loaded!1`,
//! `restore.drop_scratch!1`). The witnesses are the catalog's `backups` rows, the
//! objects in the store and the databases on the server.

use uuid::Uuid;

use crate::common::*;

/// A tenant with some rows.
pub(super) async fn tenant_with_rows(env: &mut TestEnv, slug: &str) -> String {
    let db = env.tenant(slug).await;
    exec_in(
        &db,
        "INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User ' || g \
         FROM generate_series(1, 50) g",
    )
    .await;
    db
}

/// Complete backups the catalog holds for job `job`.
pub(super) async fn complete_backups_of(env: &TestEnv, job: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM backups WHERE job_id = $1 AND status = 'complete'")
        .bind(job)
        .fetch_one(&env.catalog)
        .await
        .expect("backups")
}

/// Keys under tenant `slug`'s folder of this test's store prefix.
pub(super) async fn keys_under(env: &TestEnv, slug: &str) -> Vec<String> {
    let store = env.store().await;
    let prefix = store.key(&format!("tenants/{slug}/"));
    let mut keys: Vec<String> = store
        .list(&prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_success_was_not_recorded_is_not_taken_again() {
    let mut env = TestEnv::new().await;
    let slug = "once";
    tenant_with_rows(&mut env, slug).await;
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "job.before_record")]);
    let job = env.enqueue(&["backup", "--tenant", slug]);
    // The backup completes, then the worker aborts before recording it.
    env.wait_exit(&w, secs(120));
    assert_eq!(
        complete_backups_of(&env, job).await,
        1,
        "the first attempt completed its backup"
    );
    assert_eq!(env.job(job).await["status"], "running");
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(job, secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(
        complete_backups_of(&env, job).await,
        1,
        "one complete backup for job {job}"
    );
    let keys = keys_under(&env, slug).await;
    assert_eq!(keys.len(), 2, "one object and its manifest: {keys:?}");
    assert_eq!(j["result"]["completed_by_earlier_attempt"], true, "{j:#}");
    let id: Uuid = sqlx::query_scalar("SELECT id FROM backups WHERE job_id = $1")
        .bind(job)
        .fetch_one(&env.catalog)
        .await
        .expect("backup id");
    assert_eq!(j["result"]["backup_id"], id.to_string(), "{j:#}");
}

/// Makes `job`'s next attempt its last: when it is lost, the job ends dead.
pub(super) async fn last_attempt(env: &TestEnv, job: Uuid) {
    sqlx::query("UPDATE jobs SET max_attempts = 1 WHERE id = $1")
        .bind(job)
        .execute(&env.catalog)
        .await
        .expect("one attempt only");
}

/// `job` once its compensation is no longer pending (or, for a kind that
/// does not compensate, was never pending).
pub(super) async fn compensation_settled(env: &TestEnv, job: Uuid) -> serde_json::Value {
    poll(secs(60), ms(100), || async {
        let j = env.job(job).await;
        match j["compensation"] == "pending" {
            true => Err(format!("compensation still pending: {j:#}")),
            false => Ok(j),
        }
    })
    .await
}

/// Scratch databases of `db`'s restore tests on the server.
async fn scratches_of(db: &str) -> Vec<String> {
    scalars_in(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
        &[&format!("{db}_vfy_%")],
    )
    .await
}

/// A backed-up tenant whose `verify_backup --restore-test` job lost its first
/// attempt with the scratch database loaded: (tenant database, job id).
async fn restore_test_interrupted(env: &mut TestEnv, slug: &str) -> (String, Uuid) {
    let db = tenant_with_rows(env, slug).await;
    env.ok(&["backup", "--tenant", slug, "--sync"]);
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "verify.scratch_loaded")]);
    let job = env.enqueue(&["backups", "verify", "--tenant", slug, "--restore-test"]);
    env.wait_exit(&w, secs(120));
    let left = scratches_of(&db).await;
    assert_eq!(left.len(), 1, "the lost attempt left its scratch: {left:?}");
    (db, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_restore_test_drops_the_scratch_a_lost_attempt_left() {
    let mut env = TestEnv::new().await;
    let (db, job) = restore_test_interrupted(&mut env, "vfyretry").await;
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(job, secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["attempts"], 2, "{j:#}");
    assert_eq!(j["result"]["restore_test"], true, "{j:#}");
    let left = scratches_of(&db).await;
    assert!(
        left.is_empty(),
        "scratch databases left after the job succeeded: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_test_lost_on_its_last_attempt_is_compensated() {
    let mut env = TestEnv::new().await;
    let (db, job) = restore_test_interrupted(&mut env, "vfydead").await;
    // That attempt was the job's last: the next worker's reaper ends it dead.
    last_attempt(&env, job).await;
    env.spawn_worker(&[], &[]);
    env.wait_status(job, "dead", secs(60)).await;
    // The job's compensation settles (or, for a kind that does not
    // compensate, was never pending).
    let j = compensation_settled(&env, job).await;
    let left = scratches_of(&db).await;
    assert!(
        left.is_empty(),
        "scratch databases left after the job ended dead: {left:?} (compensation {})",
        j["compensation"]
    );
    assert_eq!(j["compensation"], "done", "{j:#}");
    assert!(j["compensation_error"].is_null(), "{j:#}");
}

/// Restore scratch databases of `db` on the server.
async fn restore_scratches_of(db: &str) -> Vec<String> {
    scalars_in(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
        &[&format!("{db}_rst_%")],
    )
    .await
}

/// A backed-up tenant and its `restore` job, enqueued before any worker runs
/// (so a test can change the job first): (tenant database, job id).
async fn restore_enqueued(env: &mut TestEnv, slug: &str) -> (String, Uuid) {
    let db = tenant_with_rows(env, slug).await;
    env.ok(&["backup", "--tenant", slug, "--sync"]);
    let job = env.enqueue(&["restore", slug, "--latest", "--yes"]);
    (db, job)
}

/// The first attempt fails after its scratch database is loaded, as when
/// the tenant's server goes away, and the scratch cannot be dropped then
/// either (`restore.scratch_loaded!1`, `restore.drop_scratch!1`): the
/// attempt's row is `failed` and its scratch database is left.
const SERVER_LOST_AFTER_LOAD: &str = "restore.scratch_loaded!1,restore.drop_scratch!1";

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_restore_drops_the_scratch_a_failed_attempt_could_not() {
    let mut env = TestEnv::new().await;
    let (db, job) = restore_enqueued(&mut env, "rstretry").await;
    env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", SERVER_LOST_AFTER_LOAD)]);
    let j = env.wait_job(job, secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["attempts"], 2, "the first attempt failed: {j:#}");
    let left = restore_scratches_of(&db).await;
    assert!(
        left.is_empty(),
        "scratch databases left after the restore succeeded: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_failed_on_its_last_attempt_drops_its_scratch() {
    let mut env = TestEnv::new().await;
    let (db, job) = restore_enqueued(&mut env, "rstdead").await;
    last_attempt(&env, job).await;
    env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", SERVER_LOST_AFTER_LOAD)]);
    env.wait_status(job, "dead", secs(60)).await;
    let j = compensation_settled(&env, job).await;
    assert_eq!(j["compensation"], "done", "{j:#}");
    let left = restore_scratches_of(&db).await;
    assert!(
        left.is_empty(),
        "scratch databases left after the restore ended dead: {left:?}"
    );
    let live: Vec<String> = scalars_in(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname = $1",
        &[db.as_str()],
    )
    .await;
    assert_eq!(
        live,
        std::slice::from_ref(&db),
        "the live database is still there"
    );
}

/// Rows of `users` in `db`, for telling the live data from the backup's.
async fn user_names(db: &str) -> Vec<String> {
    scalars_in(db, "SELECT name FROM users ORDER BY id", &[]).await
}

/// A restore whose last attempt finished the swap but died before recording
/// it ends `dead`, and dead means it did not happen: its compensation puts
/// the tenant's database from before the restore back instead of recording
/// the swap (found by the chaos soak, seed 14713084097546169645: a restore
/// job ended dead while its restore was recorded complete).
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_dead_after_its_swap_leaves_the_database_as_it_was() {
    let mut env = TestEnv::new().await;
    let (db, job) = restore_enqueued(&mut env, "rstswapdead").await;
    exec_in(&db, "UPDATE users SET name = 'written after the backup'").await;
    let live = user_names(&db).await;
    last_attempt(&env, job).await;
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", "restore.after_swap")]);
    env.wait_exit(&w, secs(120));
    assert_ne!(user_names(&db).await, live, "the swap happened");
    env.spawn_worker(&[], &[]);
    env.wait_status(job, "dead", secs(60)).await;
    let j = compensation_settled(&env, job).await;
    assert_eq!(j["compensation"], "done", "{j:#}");
    assert_eq!(
        user_names(&db).await,
        live,
        "the dead restore left the restored data in place"
    );
    let complete: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM restores WHERE job_id = $1 AND status = 'complete'",
    )
    .bind(job)
    .fetch_one(&env.catalog)
    .await
    .expect("restores");
    assert_eq!(complete, 0, "a dead restore job has no complete restore");
    let left: Vec<String> = scalars_in(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
        &[&format!("{db}_%"), db.as_str()],
    )
    .await;
    assert!(
        left.is_empty(),
        "databases left beside the live one: {left:?}"
    );
}
