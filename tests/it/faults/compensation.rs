//! Compensation (`Job::on_dead`) under faults: it runs only under its
//! tenant's lock, and it survives a crash between the job going `dead` and
//! the compensation running.
//!
//! Both tests kill a provisioning attempt after it created the tenant's
//! database (failpoint `provision.after_database`, as `kill -9` would) and
//! make that its last attempt, so the next worker's reaper finds the job
//! dead. The witness is the real database on the server: provisioning's
//! compensation drops it (and marks the tenant `failed`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::common::{PG_SERVER, TestEnv, database_exists, ms, poll, secs};

/// The first key of landlord's tenant locks (`runtime::tenant_lock`, "LL").
const LOCK_CLASS: i32 = 0x4c4c;

/// A slug unique to this test run.
fn slug(env: &TestEnv, base: &str) -> String {
    format!("{base}-{}", &env.id[..8])
}

async fn tenant(env: &TestEnv, slug: &str) -> Value {
    serde_json::to_value(landlord::tenants::get(&env.catalog, slug).await.unwrap()).unwrap()
}

/// `jobs show --json` of `id`, as an operator sees it.
fn show(env: &TestEnv, id: Uuid) -> Value {
    env.ok_json(&["jobs", "show", &id.to_string(), "--json"])
}

/// A tenant whose provisioning attempt crashed after creating its database,
/// with that attempt made the job's last: (tenant id, database, job id).
async fn provisioning_crashed_on_its_last_attempt(
    env: &mut TestEnv,
    s: &str,
) -> (i64, String, Uuid) {
    let crashing = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_FAILPOINTS", "provision.after_database"),
            ("LANDLORD_LEASE_SECONDS", "2"),
        ],
    );
    let owner = format!("c-{}@example.test", env.id);
    env.ok(&[
        "tenants",
        "create",
        s,
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
        "--owner",
        &owner,
    ]);
    env.wait_exit(&crashing, secs(30));
    let t = tenant(env, s).await;
    assert_eq!(t["status"], "provisioning", "{t:#}");
    let db = t["db_name"].as_str().unwrap().to_string();
    assert!(
        database_exists(&db).await,
        "the crashed attempt left its database"
    );
    let id: Uuid = sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'provision'")
        .fetch_one(&env.catalog)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET max_attempts = 1 WHERE id = $1")
        .bind(id)
        .execute(&env.catalog)
        .await
        .unwrap();
    (t["id"].as_i64().unwrap(), db, id)
}

/// Takes tenant `tenant_id`'s lock on a connection of the test's own, as
/// another attempt would, once the crashed worker's session has let it go.
async fn hold_tenant_lock(env: &TestEnv, tenant_id: i64) -> PgConnection {
    let mut conn = PgConnection::connect(&format!("{PG_SERVER}/{}", env.catalog_db))
        .await
        .unwrap();
    let key = (tenant_id & 0x7fff_ffff) as i32;
    let deadline = std::time::Instant::now() + secs(20);
    loop {
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if got {
            return conn;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the crashed worker's tenant lock was never released"
        );
        tokio::time::sleep(ms(100)).await;
    }
}

/// Audit entries of the provisioning compensation of tenant `tenant_id`.
async fn retirements(env: &TestEnv, tenant_id: i64) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT at FROM audit_log WHERE action = 'tenant.provisioning_failed' \
         AND tenant_id = $1 ORDER BY at",
    )
    .bind(tenant_id)
    .fetch_all(&env.catalog)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_last_attempt_is_compensated_only_under_the_tenant_lock() {
    let mut env = TestEnv::new().await;
    let s = slug(&env, "held");
    let (tenant_id, db, id) = provisioning_crashed_on_its_last_attempt(&mut env, &s).await;
    let mut holder = hold_tenant_lock(&env, tenant_id).await;
    env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "2")]);
    env.wait_status(id, "dead", secs(60)).await;
    // While another session holds the tenant's lock, the compensation must
    // not touch the tenant: it waits, saying why.
    poll(secs(30), ms(100), || async {
        assert!(
            database_exists(&db).await,
            "compensation dropped {db} while another session held tenant {s}'s lock\n{}",
            env.worker_logs()
        );
        let j = show(&env, id);
        let busy = j["compensation"] == "pending"
            && j["compensation_error"]
                .as_str()
                .is_some_and(|e| e.contains("busy"));
        match busy {
            true => Ok(()),
            false => Err(format!("compensation never waited for the lock: {j:#}")),
        }
    })
    .await;
    assert_eq!(tenant(&env, &s).await["status"], "provisioning");
    assert!(retirements(&env, tenant_id).await.is_empty());

    let released_at: DateTime<Utc> = sqlx::query_scalar(
        "SELECT clock_timestamp() FROM (SELECT pg_advisory_unlock($1, $2)) AS unlocked",
    )
    .bind(LOCK_CLASS)
    .bind((tenant_id & 0x7fff_ffff) as i32)
    .fetch_one(&mut holder)
    .await
    .unwrap();
    let j = poll(secs(30), ms(100), || async {
        let j = show(&env, id);
        match j["compensation"] == "done" {
            true => Ok(j),
            false => Err(format!(
                "compensation never ran after the lock was released: {j:#}"
            )),
        }
    })
    .await;
    assert!(
        !database_exists(&db).await,
        "the compensation dropped the database"
    );
    assert_eq!(tenant(&env, &s).await["status"], "failed");
    let compensated_at: DateTime<Utc> = j["compensated_at"].as_str().unwrap().parse().unwrap();
    assert!(
        compensated_at > released_at,
        "{compensated_at} vs {released_at}"
    );
    let retired = retirements(&env, tenant_id).await;
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert!(retired[0] > released_at, "{retired:?} vs {released_at}");
    assert!(j["compensation_error"].is_null(), "{j:#}");
    holder.close().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_compensation_leaves_it_pending_for_the_next_worker() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let s = slug(&env, "pend");
    let (tenant_id, db, id) = provisioning_crashed_on_its_last_attempt(&mut env, &s).await;
    // This worker reaps the job dead and dies just before compensating.
    let dying = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_FAILPOINTS", "compensation.before_run"),
            ("LANDLORD_LEASE_SECONDS", "2"),
        ],
    );
    env.wait_exit(&dying, secs(60));
    let j = show(&env, id);
    assert_eq!(j["status"], "dead", "{j:#}");
    assert_eq!(j["compensation"], "pending", "{j:#}");
    assert!(j["compensated_at"].is_null(), "{j:#}");
    let text = env.ok(&["jobs", "show", &id.to_string()]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("compensation ") && l.contains("pending")),
        "{text}"
    );
    assert!(database_exists(&db).await, "nothing was compensated yet");
    assert_eq!(tenant(&env, &s).await["status"], "provisioning");

    env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "2")]);
    poll(secs(60), ms(100), || async {
        let j = show(&env, id);
        match j["compensation"] == "done" {
            true => Ok(()),
            false => Err(format!("the restarted worker never compensated: {j:#}")),
        }
    })
    .await;
    let text = env.ok(&["jobs", "show", &id.to_string()]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("compensation ") && l.contains("done")),
        "{text}"
    );
    assert!(
        !database_exists(&db).await,
        "the compensation dropped the database"
    );
    assert_eq!(tenant(&env, &s).await["status"], "failed");
    tap.wait_tenant_event("tenant.provisioning_failed", &s, secs(20))
        .await;
    tap.settle(Duration::from_secs(2)).await;
    assert_eq!(tap.count_tenant("tenant.provisioning_failed", &s), 1);
    assert_eq!(
        retirements(&env, tenant_id).await.len(),
        1,
        "compensated exactly once"
    );
}
