//! The tenant lifecycle against the real services: provisioning from a
//! template, the welcome mail in maildev, plan limits and bad input, crashes
//! at every step of the saga, compensation of a permanent failure, status and
//! role login, credentials, deletion, fleet-wide migrations, and 200 tenants
//! provisioned at once by two workers.

use std::time::Duration;

use crate::common::{
    PG_SERVER, TestEnv, database_exists, library_settings, mails_to, ms, poll, scalar_in, secs,
    wait_mail,
};
use serde_json::Value;
use sqlx::Connection as _;
use uuid::Uuid;

/// A slug unique to this test run.
fn slug(env: &TestEnv, base: &str) -> String {
    format!("{base}-{}", &env.id[..8])
}

fn owner(env: &TestEnv, who: &str) -> String {
    format!("{who}-{}@example.test", env.id)
}

async fn tenant(env: &TestEnv, slug: &str) -> Value {
    serde_json::to_value(landlord::tenants::get(&env.catalog, slug).await.unwrap()).unwrap()
}

/// The database of tenant `slug`.
async fn db_of(env: &TestEnv, slug: &str) -> String {
    tenant(env, slug).await["db_name"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_tenant(env: &TestEnv, slug: &str, status: &str, timeout: Duration) -> Value {
    poll(timeout, ms(100), || async {
        let t = tenant(env, slug).await;
        match t["status"] == status {
            true => Ok(t),
            false => Err(format!(
                "tenant {slug} never became {status}: {t:#}\n{}",
                env.worker_logs()
            )),
        }
    })
    .await
}

async fn role_exists(role: &str) -> bool {
    let sql = "SELECT count(*) FROM pg_roles WHERE rolname = $1";
    scalar_in::<i64>("postgres", sql, &[role]).await == 1
}

/// The jobs of `kind`, as `jobs list --kind … --json` prints them.
fn jobs_of_kind(env: &TestEnv, kind: &str) -> Value {
    env.ok_json(&["jobs", "list", "--kind", kind, "--json"])
}

fn create_args<'a>(slug: &'a str, plan: &'a str, owner: &'a str) -> Vec<&'a str> {
    vec![
        "tenants",
        "create",
        slug,
        "--name",
        "Acme Corp",
        "--plan",
        plan,
        "--owner",
        owner,
    ]
}

/// Creates a pro tenant `acme-…` in Spanish (Madrid) and waits until it is
/// active (a worker must run): its slug and owner.
fn created_in_spanish(env: &TestEnv) -> (String, String) {
    let s = slug(env, "acme");
    let o = owner(env, "ana");
    let mut args = create_args(&s, "pro", &o);
    args.extend([
        "--setting",
        "language=es",
        "--setting",
        "timezone=Europe/Madrid",
        "--wait",
    ]);
    let out = env.ok(&args);
    assert!(out.contains(&format!("tenant {s} is active")), "{out}");
    (s, o)
}

#[tokio::test(flavor = "multi_thread")]
async fn create_provisions_a_tenant_from_the_template() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let (s, _) = created_in_spanish(&env);
    let t = tenant(&env, &s).await;
    assert_eq!(t["status"], "active");
    assert_eq!(t["provision_step"], "done");
    assert_eq!(t["schema_version"], 1);
    let db = t["db_name"].as_str().unwrap().to_string();
    assert!(database_exists(&db).await);
    // The tenant schema is there, and the database came from the template.
    let tables: i64 = scalar_in(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users','projects','activity_log')", &[]).await;
    assert_eq!(tables, 3);
    let ev = tap
        .wait_tenant_event("tenant.provisioned", &s, secs(20))
        .await;
    assert_eq!(ev["data"]["plan"], "pro");
    assert_eq!(ev["data"]["settings"]["language"], "es");
    assert!(
        ev["data"]["template"]
            .as_str()
            .unwrap()
            .starts_with("landlord_tpl_v1_"),
        "{ev:#}"
    );
    assert!(
        ev["data"]["timings_ms"]["create_database_ms"].is_u64(),
        "{ev:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_tenants_owner_is_welcomed_in_the_tenants_language() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let (_, o) = created_in_spanish(&env);
    let mails = wait_mail(&o, secs(30)).await;
    assert_eq!(mails.len(), 1, "exactly one welcome mail");
    assert_eq!(mails[0]["subject"], "Bienvenido a Acme Corp");
    assert!(mails[0]["text"].as_str().unwrap().contains("ya está listo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_welcome_job_sends_no_second_mail() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let (s, o) = created_in_spanish(&env);
    wait_mail(&o, secs(30)).await;
    // Running the welcome job again (a retry after a successful send) sends nothing more.
    let again = env.enqueue(&["jobs", "enqueue", "welcome_mail", "--tenant", &s]);
    let j = env.wait_job(again, secs(30)).await;
    assert_eq!(j["status"], "succeeded");
    assert!(j["result"]["already_sent_at"].is_string(), "{j:#}");
    tokio::time::sleep(secs(1)).await;
    assert_eq!(mails_to(&o).await.len(), 1);
}

/// A free tenant of owner `lim-…`, created with no worker running (so it
/// stays provisioning): (its slug, the owner, a slug nobody has).
fn one_free_tenant(env: &TestEnv) -> (String, String, String) {
    let o = owner(env, "lim");
    let first = slug(env, "first");
    env.ok(&create_args(&first, "free", &o));
    (first, o, slug(env, "second"))
}

/// Creates that must be refused as bad input, each with what the refusal says.
fn bad_creates(
    env: &TestEnv,
    first: &str,
    second: &str,
    o: &str,
) -> Vec<(Vec<String>, &'static str)> {
    let create = |slug: &str, plan: &str, owner: &str, extra: &[&str]| -> Vec<String> {
        [&create_args(slug, plan, owner)[..], extra]
            .concat()
            .into_iter()
            .map(String::from)
            .collect()
    };
    vec![
        (create(second, "free", o, &[]), "plan_limit_reached"),
        (
            create(first, "pro", &owner(env, "other"), &[]),
            "already exists",
        ),
        (
            create("a\"; DROP DATABASE x; --", "pro", o, &[]),
            "invalid slug",
        ),
        (create(second, "platinum", o, &[]), "unknown plan"),
        (
            create(second, "pro", "not-an-email", &[]),
            "not an email address",
        ),
        (
            create(second, "pro", o, &["--setting", "timezone=Mars/Olympus"]),
            "unknown timezone",
        ),
        (
            create(second, "pro", o, &["--setting", "language=tlh"]),
            "not supported",
        ),
        (
            create(second, "pro", o, &["--setting", "colour=red"]),
            "unknown setting",
        ),
        (
            create(second, "pro", o, &["--server", "nowhere"]),
            "unknown database server",
        ),
    ]
}

/// The bad creates against one free tenant, as argument lists.
fn each_bad_create(env: &TestEnv) -> (String, Vec<(Vec<String>, &'static str)>) {
    let (first, o, second) = one_free_tenant(env);
    let cases = bad_creates(env, &first, &second, &o);
    (second, cases)
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_creates_are_refused_as_bad_input() {
    let env = TestEnv::new().await;
    for (args, expect) in &each_bad_create(&env).1 {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        env.refused(&argv, expect);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_creates_write_nothing() {
    let env = TestEnv::new().await;
    let (second, cases) = each_bad_create(&env);
    for (args, _) in &cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(!env.run(&argv).status.success(), "{argv:?}");
    }
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
    // Only the first tenant's provision job.
    env.assert_count("SELECT count(*) FROM jobs", 1).await;
    assert!(!database_exists(&format!("t_{}", second.replace('-', "_"))).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn can_provision_answers_by_the_owners_plan_limit() {
    let env = TestEnv::new().await;
    let (_, o, _) = one_free_tenant(&env);
    let out = env.run(&["tenants", "can-provision", &o, "free"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no:"));
    let out = env.ok(&["tenants", "can-provision", &o, "enterprise", "--json"]);
    let a: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(a["allowed"], true);
    assert!(a["limit"].is_null());
}

/// A worker aborts (as kill -9 would) at failpoint `point` of provisioning;
/// a second worker must resume the saga from step `expected` and leave one
/// active tenant, announced once, with no orphan database.
async fn crash_then_resume(point: &str, expected: &str) {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let s = slug(&env, "crash");
    let crashing = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_FAILPOINTS", point),
            ("LANDLORD_LEASE_SECONDS", "2"),
        ],
    );
    let out = env.run(&create_args(&s, "pro", &owner(&env, "c")));
    assert!(out.status.success());
    env.wait_exit(&crashing, secs(30));
    let t = tenant(&env, &s).await;
    assert_eq!(t["status"], "provisioning", "{point}: {t:#}");
    env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "2")]);
    let t = wait_tenant(&env, &s, "active", secs(60)).await;
    let job = jobs_of_kind(&env, "provision");
    assert_eq!(job.as_array().unwrap().len(), 1);
    // The saga's last step turns the tenant active in its own transaction; the
    // executor records the job's success just after, so wait for that.
    let id: Uuid = job[0]["id"].as_str().unwrap().parse().unwrap();
    let j = &env.wait_job(id, secs(20)).await;
    assert_eq!(j["status"], "succeeded", "{point}: {j:#}");
    assert_eq!(
        j["attempts"], 2,
        "{point}: the crashed attempt and the one that finished"
    );
    let resumed = j["result"]["resumed_from"].as_str().unwrap();
    assert_eq!(
        resumed, expected,
        "{point}: the retry resumed where the crash left off"
    );
    let db = t["db_name"].as_str().unwrap();
    assert!(database_exists(db).await);
    let orphans: i64 = scalar_in(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE $1 AND datname <> $2",
        &[&format!("{db}%"), db],
    )
    .await;
    assert_eq!(orphans, 0, "{point}: no orphan database");
    tap.wait_tenant_event("tenant.provisioned", &s, secs(20))
        .await;
    tap.settle(secs(1)).await;
    let n = tap.count_tenant("tenant.provisioned", &s);
    assert_eq!(n, 1, "{point}: active exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_database_step_resumes_cleanly() {
    crash_then_resume("provision.after_database", "database").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_migrate_step_resumes_cleanly() {
    crash_then_resume("provision.after_migrate", "migrated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_the_role_step_resumes_cleanly() {
    crash_then_resume("provision.after_role", "role").await;
}

/// A tenant whose second migration is broken, created with a worker
/// running: its slug and row, once the tenant has failed.
async fn failed_by_a_broken_migration(env: &mut TestEnv) -> (String, Value) {
    let dir = env.log_dir.join("broken-migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_ok.sql"),
        "CREATE TABLE things (id bigserial PRIMARY KEY);",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_broken.sql"),
        "ALTER TABLE no_such_table ADD COLUMN x int;",
    )
    .unwrap();
    let dir = dir.to_string_lossy().to_string();
    env.spawn_worker(&[], &[("LANDLORD_TENANT_MIGRATIONS", &dir)]);
    let s = slug(env, "broken");
    env.ok(&create_args(&s, "pro", &owner(env, "b")));
    let t = wait_tenant(env, &s, "failed", secs(60)).await;
    (s, t)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_tenant_migration_is_compensated() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let (s, t) = failed_by_a_broken_migration(&mut env).await;
    assert!(
        t["status_reason"]
            .as_str()
            .unwrap()
            .contains("no_such_table"),
        "{t:#}"
    );
    let db = t["db_name"].as_str().unwrap();
    assert!(
        !database_exists(db).await,
        "the half-made database was dropped"
    );
    assert!(!role_exists(&format!("{db}_app")).await);
    let ev = tap
        .wait_tenant_event("tenant.provisioning_failed", &s, secs(20))
        .await;
    assert!(ev["data"]["reason"].as_str().unwrap().contains("migration"));
    let jobs = jobs_of_kind(&env, "provision");
    assert_eq!(jobs[0]["status"], "dead");
    assert_eq!(jobs[0]["attempts"], 1, "a broken migration is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_tenants_slug_can_be_created_again() {
    let mut env = TestEnv::new().await;
    let (s, _) = failed_by_a_broken_migration(&mut env).await;
    // The row is taken over.
    env.ok(&create_args(&s, "pro", &owner(&env, "b")));
    assert_eq!(tenant(&env, &s).await["status"], "provisioning");
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
}

/// Creates a pro tenant and waits until it is active (a worker must run).
fn provisioned(env: &TestEnv, base: &str) -> String {
    let s = slug(env, base);
    env.ok(&[create_args(&s, "pro", &owner(env, base)), vec!["--wait"]].concat());
    s
}

/// A provisioned tenant's role, password and database.
struct Login {
    role: String,
    password: String,
    database: String,
}

impl Login {
    fn of(env: &TestEnv, slug: &str) -> Login {
        let creds = env.ok_json(&["tenants", "credentials", slug, "--json"]);
        Login {
            role: creds["role"].as_str().unwrap().to_string(),
            password: creds["password"].as_str().unwrap().to_string(),
            database: creds["database"].as_str().unwrap().to_string(),
        }
    }

    fn url(&self, db: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:5432/{db}",
            self.role, self.password
        )
    }

    async fn connect(&self, db: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
        sqlx::PgConnection::connect(&self.url(db)).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_role_reaches_only_its_own_database() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    let b = provisioned(&env, "bravo");
    let login = Login::of(&env, &a);
    let other_db = db_of(&env, &b).await;
    let mut c = login
        .connect(&login.database)
        .await
        .expect("the tenant role reaches its database");
    sqlx::query("INSERT INTO users (email) VALUES ('x@y.test')")
        .execute(&mut c)
        .await
        .expect("and may write its tables");
    c.close().await.unwrap();
    let err = login
        .connect(&other_db)
        .await
        .expect_err("no access to another tenant");
    assert!(
        err.to_string().contains("permission denied for database"),
        "{err}"
    );
    let err = login
        .connect(&env.catalog_db)
        .await
        .expect_err("no access to the catalog, which holds every tenant's credentials");
    assert!(
        err.to_string().contains("permission denied for database"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_tenants_role_cannot_log_in() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    let login = Login::of(&env, &a);
    env.ok(&["tenants", "suspend", &a, "--reason", "unpaid invoice"]);
    let err = login
        .connect(&login.database)
        .await
        .expect_err("suspended tenants cannot log in");
    assert!(err.to_string().contains("not permitted to log in"), "{err}");
    let ev = tap
        .wait_tenant_event("tenant.status_changed", &a, secs(20))
        .await;
    assert_eq!(ev["data"]["from"], "active");
    assert_eq!(ev["data"]["to"], "suspended");
    assert_eq!(ev["data"]["reason"], "unpaid invoice");
    assert!(ev["data"]["actor"].as_str().unwrap().starts_with("cli:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_without_a_reason_is_refused() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    env.refused(&["tenants", "suspend", &a, "--reason", ""], "");
    assert_eq!(tenant(&env, &a).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reactivated_tenants_role_logs_in_again() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    let login = Login::of(&env, &a);
    env.ok(&["tenants", "suspend", &a, "--reason", "unpaid invoice"]);
    env.ok(&["tenants", "activate", &a]);
    login
        .connect(&login.database)
        .await
        .expect("reactivated tenants log in again")
        .close()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_credentials_sets_a_new_password_on_the_role() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    let login = Login::of(&env, &a);
    // The local server trusts loopback connections, so a password is never
    // checked at login here; check the role's stored verifier instead.
    let verifier = || async {
        let sql = "SELECT rolpassword FROM pg_authid WHERE rolname = $1";
        scalar_in::<Option<String>>("postgres", sql, &[&login.role])
            .await
            .unwrap()
    };
    let before = verifier().await;
    assert!(
        before.starts_with("SCRAM-SHA-256$"),
        "the password is stored hashed"
    );
    env.ok(&["tenants", "rotate-credentials", &a]);
    assert_ne!(
        Login::of(&env, &a).password,
        login.password,
        "a new password was stored"
    );
    assert_ne!(verifier().await, before, "and set on the role");
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE action = 'tenant.credentials_rotated'",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_settings_stores_valid_settings_with_an_event() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    env.ok(&[
        "tenants",
        "settings",
        &a,
        "--set",
        "timezone=America/Bogota",
        "--set",
        "language=es",
    ]);
    let t = tenant(&env, &a).await;
    assert_eq!(t["settings"]["timezone"], "America/Bogota");
    assert_eq!(t["settings"]["language"], "es");
    tap.wait_tenant_event("tenant.settings_changed", &a, secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_settings_refuses_an_unknown_timezone() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let a = provisioned(&env, "alpha");
    env.refused(
        &["tenants", "settings", &a, "--set", "timezone=Nowhere/City"],
        "",
    );
    assert_ne!(
        tenant(&env, &a).await["settings"]["timezone"],
        "Nowhere/City"
    );
}

/// A pro tenant provisioned by the running worker: its slug and database.
async fn provisioned_with_db(env: &TestEnv, base: &str) -> (String, String) {
    let s = provisioned(env, base);
    let db = db_of(env, &s).await;
    (s, db)
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_stops_the_tenant_keeping_its_database_for_the_grace_period() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    let (s, db) = provisioned_with_db(&env, "gone").await;
    // With the default grace period the tenant stops now, the database stays for later.
    env.ok(&["tenants", "delete", &s, "--no-final-backup"]);
    let t = tenant(&env, &s).await;
    assert_eq!(t["status"], "deleting");
    assert!(database_exists(&db).await);
    let job = jobs_of_kind(&env, "drop_tenant");
    let run_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(job[0]["run_at"].clone()).unwrap();
    assert!(
        run_at > chrono::Utc::now() + chrono::Duration::days(6),
        "dropped after the grace period"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_now_drops_the_tenants_database_at_once() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let (now, now_db) = provisioned_with_db(&env, "now").await;
    env.ok(&[
        "tenants",
        "delete",
        &now,
        "--no-final-backup",
        "--now",
        "--wait",
    ]);
    assert_eq!(tenant(&env, &now).await["status"], "deleted");
    assert!(!database_exists(&now_db).await);
    assert!(!role_exists(&format!("{now_db}_app")).await);
    tap.wait_tenant_event("tenant.deleted", &now, secs(20))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_takes_a_held_final_backup_before_the_drop() {
    let mut env = TestEnv::new().await;
    env.spawn_worker(&[], &[]);
    // Without --no-final-backup, a held final backup is taken first, and the
    // drop (even --now) waits for it.
    let (fin, fin_db) = provisioned_with_db(&env, "final").await;
    env.ok(&["tenants", "delete", &fin, "--now", "--wait"]);
    assert_eq!(tenant(&env, &fin).await["status"], "deleted");
    assert!(!database_exists(&fin_db).await);
    let (held, reason, finished_before_drop): (bool, String, bool) = sqlx::query_as(
        "SELECT b.held, b.held_reason, b.completed_at < (SELECT finished_at FROM jobs \
                WHERE kind = 'drop_tenant' AND tenant_id = t.id) \
         FROM backups b JOIN tenants t ON t.id = b.tenant_id \
         WHERE t.slug = $1 AND b.status = 'complete'",
    )
    .bind(&fin)
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    assert!(held, "the final backup is on hold");
    assert!(reason.contains("final backup"), "{reason}");
    assert!(
        finished_before_drop,
        "the backup completed before the database was dropped"
    );
}

/// `n` enterprise tenants provisioned at schema version 1 from a migrations
/// folder, then a second migration added and `tenants migrate --all` run:
/// the tenants' slugs.
async fn migrated_to_v2(env: &mut TestEnv, n: usize) -> Vec<String> {
    let dir = env.log_dir.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_base.sql"),
        "CREATE TABLE notes (id bigserial PRIMARY KEY, body text);",
    )
    .unwrap();
    let dir_s = dir.to_string_lossy().to_string();
    env.extra_env
        .insert("LANDLORD_TENANT_MIGRATIONS".into(), dir_s.clone());
    env.spawn_worker(&["--concurrency", "3"], &[]);
    let mut slugs = Vec::new();
    for i in 0..n {
        let s = slug(env, &format!("mig{i}"));
        env.ok(&[
            create_args(&s, "enterprise", &owner(env, "m")),
            vec!["--wait"],
        ]
        .concat());
        slugs.push(s);
    }
    std::fs::write(
        dir.join("0002_tags.sql"),
        "CREATE TABLE tags (id bigserial PRIMARY KEY, name text NOT NULL);",
    )
    .unwrap();
    // Workers read the migrations per job, so the running worker sees the new one.
    env.ok(&[
        "tenants",
        "migrate",
        "--all",
        "--concurrency",
        "1",
        "--wait",
        "--json",
    ]);
    slugs
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_migrate_brings_every_tenant_up_to_date() {
    let mut env = TestEnv::new().await;
    let slugs = migrated_to_v2(&mut env, 3).await;
    for s in &slugs {
        let t = tenant(&env, s).await;
        assert_eq!(t["schema_version"], 2, "{t:#}");
        let db = t["db_name"].as_str().unwrap();
        let sql = "SELECT count(*) FROM pg_tables WHERE tablename = 'tags'";
        assert_eq!(scalar_in::<i64>(db, sql, &[]).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_migrate_rebuilds_the_template_for_new_tenants() {
    let mut env = TestEnv::new().await;
    migrated_to_v2(&mut env, 1).await;
    // The template was rebuilt for the new schema: a new tenant gets version 2 from it.
    let fresh = slug(&env, "fresh");
    env.ok(&[
        create_args(&fresh, "enterprise", &owner(&env, "m")),
        vec!["--wait"],
    ]
    .concat());
    let t = tenant(&env, &fresh).await;
    assert_eq!(t["schema_version"], 2);
    let job = env.ok_json(&[
        "jobs",
        "list",
        "--kind",
        "provision",
        "--limit",
        "1",
        "--json",
    ]);
    assert!(
        job[0]["result"]["template"]
            .as_str()
            .unwrap()
            .starts_with("landlord_tpl_v2_"),
        "{job:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_tenants_provisioned_at_once_by_two_workers() {
    let mut env = TestEnv::new().await;
    for _ in 0..2 {
        env.spawn_worker(&["--concurrency", "2"], &[]);
    }
    let settings = library_settings();
    let mut slugs = Vec::new();
    for i in 0..200 {
        let s = slug(&env, &format!("bulk{i}"));
        landlord::lifecycle::create(
            &env.catalog,
            &settings,
            &landlord::lifecycle::NewTenant {
                slug: s.clone(),
                name: format!("Bulk {i}"),
                plan: "enterprise".into(),
                owner_email: owner(&env, "bulk"),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
        slugs.push(s);
    }
    poll(secs(240), ms(500), || async {
        let active = env
            .count("SELECT count(*) FROM tenants WHERE status = 'active'")
            .await;
        // The tenant turns active inside the handler; its job is recorded
        // as succeeded just after, so wait for both.
        let recorded = env
            .count("SELECT count(*) FROM jobs WHERE kind = 'provision' AND status IN ('succeeded', 'failed', 'dead')")
            .await;
        match active == 200 && recorded == 200 {
            true => Ok(()),
            false => Err(format!(
                "only {active}/200 active, {recorded}/200 provision jobs recorded\n{}",
                env.worker_logs()
            )),
        }
    })
    .await;
    env.assert_count("SELECT count(DISTINCT db_name) FROM tenants", 200)
        .await;
    env.assert_count(
        "SELECT count(*) FROM jobs WHERE kind = 'provision' AND status = 'succeeded'",
        200,
    )
    .await;
    // Every database came from the template.
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'provision' AND result->>'template' IS NULL AND result->>'resumed_from' = 'pending'", 0).await;
    let dbs: i64 = scalar_in(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
        &[&format!("t_bulk%_{}", &env.id[..8])],
    )
    .await;
    assert_eq!(dbs, 200, "one database per tenant, no duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_client_places_tenants_by_server_weight() {
    let mut env = TestEnv::new().await;
    let eu = format!("{PG_SERVER}/postgres");
    env.extra_env
        .insert("LANDLORD_SERVER__EU".into(), eu.clone());
    env.extra_env
        .insert("LANDLORD_SERVER_WEIGHT__EU".into(), "2".into());
    env.spawn_worker(&[], &[]);
    let mut settings = library_settings();
    settings.catalog.url =
        landlord::config::SecretUrl::new(format!("{PG_SERVER}/{}", env.catalog_db));
    settings.broker.prefix = env.prefix.clone();
    settings
        .servers
        .insert("eu".into(), landlord::config::SecretUrl::new(eu));
    settings.server_weights.insert("eu".into(), 2);
    let client = landlord::Landlord::connect(settings, "test:client")
        .await
        .unwrap();

    let mut placed = Vec::new();
    for i in 0..3 {
        let created = client
            .create_tenant(&landlord::lifecycle::NewTenant {
                slug: slug(&env, &format!("lib{i}")),
                name: format!("Lib {i}"),
                plan: "enterprise".into(),
                owner_email: owner(&env, "lib"),
                ..Default::default()
            })
            .await
            .unwrap();
        let job = client.wait(created.job.id, secs(60)).await.unwrap();
        assert_eq!(
            job.status,
            landlord::runtime::JobStatus::Succeeded,
            "{job:?}"
        );
        placed.push(created.tenant.db_server);
    }
    // Loads per unit of weight: default 0/1 = eu 0/2 (name order) → default;
    // then eu (0 < 1/1·2), then eu again (1/2 < 1/1).
    assert_eq!(placed, vec!["default", "eu", "eu"]);
    let t = client
        .set_status(
            &slug(&env, "lib1"),
            landlord::lifecycle::TargetStatus::Inactive,
            None,
        )
        .await
        .unwrap();
    assert_eq!(t.status, landlord::tenants::TenantStatus::Inactive);
    assert!(
        client
            .credentials(&slug(&env, "lib1"))
            .await
            .unwrap()
            .role
            .ends_with("_app")
    );
    env.assert_count("SELECT count(*) FROM audit_log WHERE actor = 'test:client' AND action = 'tenant.status_changed'", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saga_whose_last_attempt_vanished_is_still_compensated() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let s = slug(&env, "vanish");
    let crashing = env.spawn_worker(
        &[],
        &[
            ("LANDLORD_FAILPOINTS", "provision.after_database"),
            ("LANDLORD_LEASE_SECONDS", "2"),
        ],
    );
    env.ok(&create_args(&s, "pro", &owner(&env, "v")));
    env.wait_exit(&crashing, secs(30));
    let db = db_of(&env, &s).await;
    assert!(
        database_exists(&db).await,
        "the crashed attempt left its database"
    );
    // That was the job's last attempt: the reaper finds it dead.
    sqlx::query("UPDATE jobs SET max_attempts = 1 WHERE kind = 'provision'")
        .execute(&env.catalog)
        .await
        .unwrap();
    env.spawn_worker(&[], &[("LANDLORD_LEASE_SECONDS", "2")]);
    let t = wait_tenant(&env, &s, "failed", secs(60)).await;
    assert!(
        t["status_reason"]
            .as_str()
            .unwrap()
            .contains("lease expired"),
        "{t:#}"
    );
    assert!(
        !database_exists(&db).await,
        "compensation dropped the database"
    );
    tap.wait_tenant_event("tenant.provisioning_failed", &s, secs(20))
        .await;
}
