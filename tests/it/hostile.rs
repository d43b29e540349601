//! Hostile callers (issue 13): a tenant token that takes a dedupe key
//! landlord relies on (the final backup of a deletion, a tenant's run of a
//! schedule), and work messages forged by anything that can publish to the
//! work exchange. Each attack is made as a user would make it, through the
//! real `landlord api` and the real broker, and what it must not reach is
//! checked in the catalog and the tenant's database.

use crate::common::{TestEnv, database_exists, exec_in, ms, poll, scalar_in, secs};
use lapin::{BasicProperties, options::BasicPublishOptions, types::ShortString};
use serde_json::{Value, json};
use uuid::Uuid;

const ADMIN: &str = "admin-token-hostile-0123456789";
const MALLORY: &str = "mallory-token-hostile-0123456789";

/// `landlord api` knowing the admin token and tenant `mallory`'s, through
/// the shared harness.
struct Api(crate::api::Api);

impl Api {
    async fn start(env: &TestEnv) -> Api {
        let tokens = format!("admin={ADMIN},tenant:mallory={MALLORY}");
        // The squatting below takes more keys than a tenant may have live jobs.
        let extra = [("LANDLORD_API_MAX_LIVE_JOBS_PER_TENANT", "0")];
        Api(crate::api::Api::start_with(env, &tokens, &extra).await)
    }

    /// A job that must be accepted: its id.
    async fn accepted(&self, tenant: &str, token: &str, body: Value) -> Uuid {
        Uuid::parse_str(&self.0.accepted(tenant, token, body).await).expect("job id")
    }
}

/// Registered tenants `victim` and `mallory`, a worker and the API: the
/// victim's database.
async fn victim_and_mallory(env: &mut TestEnv) -> (String, Api) {
    let db = env.tenant("victim").await;
    env.tenant("mallory").await;
    env.spawn_worker(&[], &[]);
    let api = Api::start(env).await;
    (db, api)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenants_ping_is_never_taken_as_anothers_final_backup() {
    let mut env = TestEnv::new().await;
    let (db, api) = victim_and_mallory(&mut env).await;
    // Mallory takes the key of the victim's final backup with a ping of its own.
    let squat =
        json!({"kind": "ping", "args": {"hold_seconds": 3}, "dedupe_key": "final-backup:victim"});
    let ping = api.accepted("mallory", MALLORY, squat).await;
    // The operator deletes the victim.
    env.ok(&["tenants", "delete", "victim", "--now", "--wait"]);
    assert!(!database_exists(&db).await, "the deletion went through");
    // The final backup was the victim's own backup job, not mallory's ping …
    let (kind, tenant): (String, String) = sqlx::query_as(
        "SELECT j.kind, jt.slug FROM tenants t JOIN jobs j ON j.id = t.final_backup_job \
         JOIN tenants jt ON jt.id = j.tenant_id WHERE t.slug = 'victim'",
    )
    .fetch_one(&env.catalog)
    .await
    .expect("the victim's deletion has a final backup job");
    assert_eq!(
        (kind.as_str(), tenant.as_str()),
        ("backup", "victim"),
        "the final backup job is the victim's backup"
    );
    assert_ne!(
        sqlx::query_scalar::<_, Uuid>("SELECT final_backup_job FROM tenants WHERE slug = 'victim'")
            .fetch_one(&env.catalog)
            .await
            .unwrap(),
        ping
    );
    // … and a complete backup was taken before the database was dropped.
    let before_drop: Option<bool> = sqlx::query_scalar(
        "SELECT b.completed_at < (SELECT finished_at FROM jobs WHERE kind = 'drop_tenant' AND tenant_id = t.id) \
         FROM backups b JOIN tenants t ON t.id = b.tenant_id \
         WHERE t.slug = 'victim' AND b.status = 'complete'",
    )
    .fetch_optional(&env.catalog)
    .await
    .unwrap();
    assert_eq!(
        before_drop,
        Some(true),
        "the victim's database was dropped without a complete final backup"
    );
    // Mallory's key lives in mallory's namespace.
    let key: String = sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE id = $1")
        .bind(ping)
        .fetch_one(&env.catalog)
        .await
        .unwrap();
    assert_eq!(key, "caller:api:tenant:mallory:final-backup:victim");
}

#[tokio::test(flavor = "multi_thread")]
async fn squatting_a_schedule_key_does_not_cancel_another_tenants_backup() {
    let mut env = TestEnv::new().await;
    std::fs::write(
        env.log_dir.join("landlord.toml"),
        "[[schedules]]\nname = \"snap\"\ncron = \"0 0 1 1 *\"\nkind = \"backup\"\ntenants = [\"victim\"]\n",
    )
    .unwrap();
    let (_db, api) = victim_and_mallory(&mut env).await;
    // The scheduler's keys are predictable: `sched:{schedule}:{tenant}:{fire
    // time}`. Mallory takes those of the next minute with pings that end at once.
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&env.catalog)
        .await
        .unwrap();
    let start = now.timestamp();
    for s in start..start + 60 {
        let at = chrono::DateTime::from_timestamp(s, 0).unwrap();
        let key = format!(
            "sched:snap:victim:{}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        api.accepted(
            "mallory",
            MALLORY,
            json!({"kind": "ping", "args": {"hold_seconds": 0}, "dedupe_key": key}),
        )
        .await;
    }
    poll(secs(50), ms(200), || async {
        match env
            .count("SELECT count(*) FROM jobs WHERE kind = 'ping' AND status = 'succeeded'")
            .await
        {
            60 => Ok(()),
            n => Err(format!("{n} of 60 pings succeeded")),
        }
    })
    .await;
    // The schedule fires now, within the squatted seconds.
    let out = env.ok(&["schedule", "run", "snap"]);
    let fired: chrono::DateTime<chrono::Utc> = out
        .split('\t')
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no fire time in {out:?}"));
    assert!(
        fired.timestamp() < start + 60,
        "the firing came after the squatted seconds; the test proves nothing: {out}"
    );
    // The victim still gets its backup, and it runs.
    let backup: Option<Uuid> = sqlx::query_scalar(
        "SELECT j.id FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
         WHERE t.slug = 'victim' AND j.kind = 'backup'",
    )
    .fetch_optional(&env.catalog)
    .await
    .unwrap();
    let backup =
        backup.unwrap_or_else(|| panic!("the victim got no backup from the firing: {out}"));
    let j = env.wait_job(backup, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
}

/// Publishes `body` to the work exchange with routing key `family`, as any
/// program with access to the broker can.
async fn forge(env: &TestEnv, ch: &lapin::Channel, family: &str, body: Value) {
    let id = body["job_id"].as_str().unwrap_or("forged").to_string();
    ch.basic_publish(
        ShortString::from(env.topology.work_exchange()),
        ShortString::from(family.to_string()),
        BasicPublishOptions::default(),
        body.to_string().as_bytes(),
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(id)),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_restore_drop_and_migrate_messages_change_nothing() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("victim").await;
    let (_conn, ch) = env.channel().await;
    let w = env.spawn_worker(&[], &[]);
    // A backup exists, then the tenant writes data it has not backed up yet.
    let out = env.ok(&["backup", "--tenant", "victim", "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    exec_in(
        &db,
        "CREATE TABLE after_backup (v int); INSERT INTO after_backup VALUES (42)",
    )
    .await;
    let jobs_before = env.count("SELECT count(*) FROM jobs").await;
    // Messages anyone with access to the broker can publish.
    let (restore, drop, migrate, ping) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    for (family, message) in [
        (
            "backup",
            json!({"v": 1, "job_id": restore, "kind": "restore", "tenant": "victim", "args": {}}),
        ),
        (
            "provision",
            json!({"v": 1, "job_id": drop, "kind": "drop_tenant", "tenant": "victim", "args": {}}),
        ),
        (
            "maintenance",
            json!({"v": 1, "job_id": migrate, "kind": "migrate", "tenant": "victim", "args": {"concurrency": 256}}),
        ),
        // An allowed kind still runs.
        (
            "maintenance",
            json!({"v": 1, "job_id": ping, "kind": "ping", "args": {}}),
        ),
    ] {
        forge(&env, &ch, family, message).await;
    }
    let p = env.wait_job(ping, secs(30)).await;
    assert_eq!(p["status"], "succeeded", "{p:#}");
    assert_eq!(p["origin"], "adopted");
    // The three forged admin kinds are refused, each with its reason, …
    let reasons = crate::interop::dead_letter_reasons(&env, &ch, 3)
        .await
        .join("\n");
    for kind in ["restore", "drop_tenant", "migrate"] {
        assert!(
            reasons.contains(&format!(
                "job kind {kind} is not accepted from foreign producers"
            )),
            "{kind} refused: {reasons}"
        );
    }
    // … left no job row, …
    env.assert_count(
        &format!("SELECT count(*) FROM jobs WHERE id IN ('{restore}', '{drop}', '{migrate}')"),
        0,
    )
    .await;
    env.assert_count("SELECT count(*) FROM jobs", jobs_before + 1)
        .await;
    env.assert_count("SELECT count(*) FROM restores", 0).await;
    // … and the live database is the tenant's, with what it wrote after the backup.
    assert_eq!(
        scalar_in::<i32>(&db, "SELECT v FROM after_backup", &[]).await,
        42
    );
    env.assert_count(
        "SELECT count(*) FROM tenants WHERE slug = 'victim' AND status = 'active'",
        1,
    )
    .await;
    // Counted with the other refused messages.
    let dead = env
        .metric(
            &w,
            r#"landlord_messages_dead_lettered_total{queue="backup"}"#,
        )
        .await
        + env
            .metric(
                &w,
                r#"landlord_messages_dead_lettered_total{queue="provision"}"#,
            )
            .await
        + env
            .metric(
                &w,
                r#"landlord_messages_dead_lettered_total{queue="maintenance"}"#,
            )
            .await;
    assert_eq!(dead, 3.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_foreign_kinds_are_configurable() {
    let mut env = TestEnv::new().await;
    let (_conn, ch) = env.channel().await;
    // Shown by `config show`, the default first.
    let shown = env.ok(&["config", "show"]);
    assert!(
        shown.contains(
            r#"worker.foreign_kinds = ["ping", "analyze", "maintenance", "backup", "verify_backup"]"#
        ),
        "{shown}"
    );
    let shown = env.ok_with(&["config", "show"], &[("LANDLORD_FOREIGN_KINDS", "none")]);
    assert!(shown.contains("worker.foreign_kinds = []"), "{shown}");
    let bad = env.run_with(
        &["config", "show"],
        &[("LANDLORD_FOREIGN_KINDS", "ping,Restore!")],
    );
    assert!(!bad.status.success());
    assert!(
        crate::common::stderr(&bad).contains("LANDLORD_FOREIGN_KINDS"),
        "{}",
        crate::common::stderr(&bad)
    );
    // A worker that takes no foreign kind refuses even a ping.
    env.spawn_worker(&[], &[("LANDLORD_FOREIGN_KINDS", "none")]);
    let ping = Uuid::new_v4();
    forge(
        &env,
        &ch,
        "maintenance",
        json!({"v": 1, "job_id": ping, "kind": "ping", "args": {}}),
    )
    .await;
    let reason = crate::interop::dead_letter_reasons(&env, &ch, 1)
        .await
        .remove(0);
    assert!(
        reason.contains("job kind ping is not accepted from foreign producers"),
        "{reason}"
    );
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    // A job landlord wrote itself is not foreign: it still runs.
    let own = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(own, secs(20)).await["status"], "succeeded");
}
