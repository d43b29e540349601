//! An attempt that stops leaves nothing running on the database server
//! (issue 12, defect 3), and a restore whose success was not recorded is
//! recognised, not restored again (defect 4).
//!
//! The witness is PostgreSQL itself (`pg_stat_activity`) and `/proc`, never
//! landlord's own tables. The handler is made to hang on a lock this test
//! holds in its own transaction on the tenant database.

use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::common::*;

/// A transaction on `db` holding ACCESS EXCLUSIVE locks on every table of
/// the sample schema, and its backend pid. Everything that touches a table
/// (ANALYZE, pg_dump) waits on it.
async fn lock_tables(db: &str) -> (PgConnection, i32) {
    let mut conn = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE users, projects, activity_log IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .expect("lock");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .expect("pid");
    (conn, pid)
}

/// Every other backend on `db`: (application_name, state, query).
async fn others_on(db: &str, me: i32) -> Vec<(String, String, String)> {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .expect("connect");
    let rows = sqlx::query_as(
        "SELECT application_name, coalesce(state, ''), left(query, 80) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> $2 ORDER BY pid",
    )
    .bind(db)
    .bind(me)
    .fetch_all(&mut c)
    .await
    .expect("pg_stat_activity");
    c.close().await.ok();
    rows
}

/// Waits until a backend on `db` waits for our lock; returns the names of
/// those that do.
async fn wait_for_a_session(db: &str) -> Vec<String> {
    poll(secs(60), ms(50), || async {
        let waiting: Vec<String> = scalars_in(
            "postgres",
            "SELECT application_name FROM pg_stat_activity \
             WHERE datname = $1 AND wait_event_type = 'Lock' ORDER BY pid",
            &[db],
        )
        .await;
        match waiting.is_empty() {
            true => Err(format!("nothing waits on our lock in {db} yet")),
            false => Ok(waiting),
        }
    })
    .await
}

/// Pids of client programs (pg_dump, pg_restore, psql) whose environment
/// names database `db`: landlord passes it as `PGDATABASE`.
fn programs_on(db: &str) -> Vec<(u32, String)> {
    let marker = format!("PGDATABASE={db}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if !["pg_dump", "pg_restore", "psql"].contains(&comm.as_str()) {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|b| *b == 0).any(|v| v == marker.as_bytes()) {
            out.push((pid, comm));
        }
    }
    out
}

/// Worker settings for a stuck first attempt: a short timeout, and a retry
/// delay long enough that no second attempt starts while the test looks.
const STUCK: [(&str, &str); 4] = [
    ("LANDLORD_JOB_TIMEOUT_SECONDS", "2"),
    ("LANDLORD_BACKUP_TIMEOUT_SECONDS", "2"),
    ("LANDLORD_RETRY_BASE_MS", "600000"),
    ("LANDLORD_RETRY_MAX_MS", "600000"),
];

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_attempt_leaves_no_session_on_the_tenant_database() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("stuck").await;
    let (lock, me) = lock_tables(&db).await;
    env.spawn_worker(&[], &STUCK);
    let job = env.enqueue(&["jobs", "enqueue", "analyze", "--tenant", "stuck"]);
    // The attempt's ANALYZE waits on our lock, under the attempt's name.
    let seen = wait_for_a_session(&db).await;
    // The timeout aborts the handler; the attempt is recorded `retrying`.
    let j = env.wait_status(job, "retrying", secs(60)).await;
    assert_eq!(j["attempts"], 1, "{j:#}");
    let left = others_on(&db, me).await;
    assert!(
        left.is_empty(),
        "the stopped attempt's sessions still run on {db} after it was recorded: {left:?}"
    );
    assert_eq!(
        seen,
        vec![format!("landlord/analyze/{job}/1")],
        "the attempt's session carries its name"
    );
    drop(lock);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_timed_out_mid_dump_leaves_no_pg_dump_behind() {
    let mut env = TestEnv::new().await;
    let store = format!("file://{}", env.log_dir.join("store").display());
    env.set_env(&[("LANDLORD_BACKUP_URL", &store)]);
    let db = env.tenant("dumped").await;
    let (lock, me) = lock_tables(&db).await;
    env.spawn_worker(&[], &STUCK);
    let job = env.enqueue(&["backup", "--tenant", "dumped"]);
    // pg_dump waits on our lock.
    let seen = wait_for_a_session(&db).await;
    assert!(
        !programs_on(&db).is_empty(),
        "pg_dump runs while it waits on the lock"
    );
    env.wait_status(job, "retrying", secs(60)).await;
    let left = others_on(&db, me).await;
    assert!(
        left.is_empty(),
        "the stopped backup's sessions still run on {db} after it was recorded: {left:?}"
    );
    let programs = programs_on(&db);
    assert!(
        programs.is_empty(),
        "client programs outlived the attempt: {programs:?}"
    );
    assert_eq!(seen, vec![format!("landlord/backup/{job}/1")], "PGAPPNAME");
    drop(lock);
}

/// A tenant with data, backed up into this test's own directory store.
async fn backed_up(env: &mut TestEnv, slug: &str) -> String {
    let store = format!("file://{}", env.log_dir.join("store").display());
    env.set_env(&[("LANDLORD_BACKUP_URL", &store)]);
    let db = env.tenant(slug).await;
    exec_in(
        &db,
        "INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User ' || g \
         FROM generate_series(1, 20) g",
    )
    .await;
    env.ok(&["backup", "--tenant", slug, "--sync"]);
    db
}

/// Restores `slug` with a first worker that dies at `failpoint`, writes a
/// row into the live database, then lets a normal worker finish the job.
async fn restore_interrupted_at(failpoint: &str) {
    let mut env = TestEnv::new().await;
    let slug = "again";
    let db = backed_up(&mut env, slug).await;
    let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", failpoint)]);
    let job = env.enqueue(&["restore", slug, "--latest", "--yes"]);
    // The worker aborts after the swap, as kill -9 would.
    env.wait_exit(&w, secs(120));
    // The tenant works on its restored database meanwhile.
    exec_in(
        &db,
        "INSERT INTO users (email, name) VALUES ('between@example.com', 'written after the swap')",
    )
    .await;
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(job, secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{failpoint}: {j:#}");
    let restores: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM restores WHERE job_id = $1 ORDER BY started_at")
            .bind(job)
            .fetch_all(&env.catalog)
            .await
            .expect("restores");
    assert_eq!(restores.len(), 1, "{failpoint}: one restore: {restores:?}");
    assert_eq!(restores[0].1, "complete", "{failpoint}");
    let kept: i64 = scalar_in(
        &db,
        "SELECT count(*) FROM users WHERE email = $1",
        &["between@example.com"],
    )
    .await;
    assert_eq!(
        kept, 1,
        "{failpoint}: the row written after the swap is still in the live database"
    );
    let pre = scalars_in::<String>(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
        &[&format!("{db}_pre_%")],
    )
    .await;
    assert_eq!(pre.len(), 1, "{failpoint}: one pre-restore copy: {pre:?}");
    assert_eq!(
        j["result"]["completed_by_earlier_attempt"], true,
        "{failpoint}: {j:#}"
    );
    env.assert_count(
        &format!("SELECT count(*) FROM jobs WHERE kind = 'drop_pre_restore' AND tenant_id IS NOT NULL AND args->>'restore_id' = '{}'", restores[0].0),
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_whose_success_was_not_recorded_is_not_restored_again() {
    restore_interrupted_at("job.before_record").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_after_the_swap_is_recorded_not_redone() {
    restore_interrupted_at("restore.after_swap").await;
}

/// A tenant lock whose session is terminated is free at once, before its
/// holder can notice: the next holder ends the sessions the earlier holder's
/// attempt still has on the tenant's database before its own work starts
/// (found by the chaos soak: a `maintenance` began 24 ms before the `backup`
/// whose lock session was terminated had ended its `pg_dump`). The earlier
/// holder is frozen (SIGSTOP) so it cannot end them itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_holder_of_a_lost_tenant_lock_ends_the_last_holders_sessions_first() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("lostlock").await;
    let (lock, me) = lock_tables(&db).await;
    let a = env.spawn_worker(&[], &[]);
    let job = env.enqueue(&["jobs", "enqueue", "analyze", "--tenant", "lostlock"]);
    let label = format!("landlord/analyze/{job}/1");
    assert_eq!(wait_for_a_session(&db).await, vec![label.clone()]);
    env.signal(&a, "STOP");
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&env.catalog)
    .await
    .expect("terminate the tenant lock's session");
    assert!(!ended.is_empty(), "the frozen worker held the tenant lock");
    env.spawn_worker(&[], &[]);
    let ping = env.enqueue(&["jobs", "enqueue", "ping", "--tenant", "lostlock"]);
    let j = env.wait_job(ping, secs(60)).await;
    let left: Vec<String> = others_on(&db, me)
        .await
        .into_iter()
        .map(|(name, _, _)| name)
        .filter(|name| *name == label)
        .collect();
    env.signal(&a, "CONT");
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert!(
        left.is_empty(),
        "the earlier holder's ANALYZE still ran on {db} after the next holder's ping: {left:?}"
    );
    drop(lock);
}
