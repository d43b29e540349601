//! Backups and restores against the real services: PostgreSQL, RabbitMQ and
//! Garage (S3), plus a local-directory store. Round trips compare row counts
//! and checksums of every table; failures must leave no listed backup, no
//! object and no multipart upload behind, and never touch the live database.

use std::{
    collections::BTreeMap,
    process::{Output, Stdio},
};

use crate::common::{
    PG_SERVER, TestEnv, exec_in as exec, json_line as sync_job, ms, poll, scalar_in, scalars_in,
    secs, stderr, stdout,
};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};

/// Row count and checksum of every table of a database.
async fn fingerprint(db: &str) -> BTreeMap<String, (i64, String)> {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let row: (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM \"{t}\" x"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        out.insert(t, (row.0, row.1.unwrap_or_default()));
    }
    c.close().await.ok();
    out
}

/// Realistic rows: users, projects, and `log_rows` activity rows of ~`width` chars.
async fn fill(db: &str, users: i64, log_rows: i64, width: i64) {
    exec(
        db,
        &format!(
            "INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User number ' || g \
               FROM generate_series(1, {users}) g;
             INSERT INTO projects (owner_id, name) SELECT 1 + (g % {users}), 'Project ' || g || ' of the quarter' \
               FROM generate_series(1, {users}) g;
             INSERT INTO activity_log (user_id, action, created_at) \
               SELECT 1 + (g % {users}), \
                      (SELECT string_agg(md5(g::text || '-' || k::text), ' ') FROM generate_series(1, ({width} + 32) / 33) k), \
                      now() - (g % 400) * interval '1 day' \
               FROM generate_series(1, {log_rows}) g;"
        ),
    )
    .await;
}

async fn databases_like(pattern: &str) -> Vec<String> {
    scalars_in(
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
        &[pattern],
    )
    .await
}

async fn allows_connections(db: &str) -> bool {
    scalar_in(
        "postgres",
        "SELECT datallowconn FROM pg_database WHERE datname = $1",
        &[db],
    )
    .await
}

fn json_lines(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The job row a `--sync --json` command printed, which must have succeeded.
#[track_caller]
fn succeeded(out: &Output) -> Value {
    let job = sync_job(out);
    assert_eq!(job["status"], "succeeded", "{job}\nstderr: {}", stderr(out));
    job
}

/// Asserts a job ended unsuccessful with `needle` in its error.
#[track_caller]
fn refused_with(job: &Value, needle: &str) {
    assert_ne!(job["status"], "succeeded", "{job}");
    let err = job["last_error"].as_str().unwrap();
    assert!(err.contains(needle), "{err}");
}

/// The exit code of a `--json` report command and the report it printed.
fn json_report(env: &TestEnv, args: &[&str]) -> (Option<i32>, Value) {
    let out = env.run(args);
    (out.status.code(), json_lines(&stdout(&out)))
}

/// `backups reconcile` (with `extra` arguments) finds the store and the
/// catalog in agreement.
#[track_caller]
fn assert_reconciled(env: &TestEnv, extra: &[&str]) {
    let rec = env.run(&[&["backups", "reconcile"], extra].concat());
    assert!(rec.status.success(), "{}", stdout(&rec));
}

async fn complete_backups(env: &TestEnv, slug: &str) -> Vec<Value> {
    json_lines(&env.ok(&["backups", "list", slug, "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

async fn keys_under(env: &TestEnv, slug: &str) -> Vec<String> {
    let store = env.store().await;
    let prefix = store.key(&format!("tenants/{slug}/"));
    let mut keys: Vec<String> = store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

async fn pending_under(env: &TestEnv, slug: &str) -> usize {
    let store = env.store().await;
    store
        .pending_uploads(&store.key(&format!("tenants/{slug}/")))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_restore_round_trip_through_the_fleet() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let db = env.tenant("acme").await;
    fill(&db, 300, 3000, 200).await;
    let before = fingerprint(&db).await;
    env.spawn_worker(&["--concurrency", "2"], &[]);

    let out = env.ok(&["backup", "--tenant", "acme", "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    let done = tap
        .wait_tenant_event("backup.completed", "acme", secs(20))
        .await;
    let list = complete_backups(&env, "acme").await;
    assert_eq!(list.len(), 1);
    let b = &list[0];
    assert_eq!(b["codec"], "zstd");
    assert_eq!(b["format"], "custom");
    assert_eq!(done["data"]["sha256"], b["sha256"]);
    let name = b["name"].as_str().unwrap();
    assert!(name.ends_with(".dump.zst"), "{name}");
    // Object and manifest, named as documented.
    let keys = keys_under(&env, "acme").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].starts_with(&format!("{}/tenants/acme/", env.prefix)));
    assert!(keys[1].ends_with(".manifest.json"));
    let manifest: Value =
        serde_json::from_slice(&env.store().await.get_bytes(&keys[1]).await.unwrap()).unwrap();
    for field in [
        "tenant",
        "database",
        "server_version",
        "pg_dump_version",
        "codec",
        "sha256",
        "stored_bytes",
        "raw_bytes",
        "duration_ms",
        "started_at",
    ] {
        assert!(
            !manifest[field].is_null(),
            "manifest has {field}: {manifest:#}"
        );
    }
    // Registered (not provisioned) tenants have no landlord migrations table.
    assert!(manifest.get("schema_version").is_some());
    assert_eq!(manifest["sha256"], b["sha256"]);

    // Change the live data, then restore: identical to the backup.
    exec(
        &db,
        "DELETE FROM activity_log WHERE id % 2 = 0; UPDATE users SET name = 'changed'",
    )
    .await;
    assert_ne!(fingerprint(&db).await, before);
    let out = env.ok(&["restore", "acme", "--latest", "--yes", "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(fingerprint(&db).await, before, "restored data is identical");
    let ev = tap
        .wait_tenant_event("restore.completed", "acme", secs(20))
        .await;
    let pre = ev["data"]["pre_restore_database"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pre.starts_with(&format!("{db}_pre_")), "{pre}");
    assert!(
        !allows_connections(&pre).await,
        "the pre-restore copy takes no connections"
    );
    assert!(
        databases_like(&format!("{db}_rst_%")).await.is_empty(),
        "no scratch left"
    );
    // Its drop is scheduled for the end of the rollback window.
    env.assert_count(
        "SELECT count(*) FROM jobs WHERE kind = 'drop_pre_restore' AND run_at > now() + interval '23 hours'",
        1,
    )
    .await;

    // Store and catalog agree.
    assert_reconciled(&env, &["--json"]);
    let stats = json_lines(&env.ok(&["backups", "stats", "acme", "--json"]));
    assert_eq!(stats["count"], 1);
    assert!(stats["ratio"].as_f64().unwrap() > 1.0, "{stats}");
    let monitor = json_lines(&env.ok(&["backups", "monitor", "--json"]));
    assert_eq!(monitor["healthy"], 1, "{monitor}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_backup_restores_the_data() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("vary").await;
    fill(&db, 100, 800, 120).await;
    let before = fingerprint(&db).await;
    succeeded(&env.run(&[
        "backup", "--tenant", "vary", "--codec", "gzip", "--sync", "--json",
    ]));
    let gz = complete_backups(&env, "vary").await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(gz.ends_with(".dump.gz"), "{gz}");
    exec(&db, "TRUNCATE activity_log").await;
    env.ok(&["restore", "vary", "--backup", &gz, "--yes", "--sync"]);
    assert_eq!(fingerprint(&db).await, before);
}

/// An age-encrypted backup of a filled tenant (workers hold only the public
/// key), with the live data changed since.
struct AgeBackup {
    db: String,
    /// The data as backed up.
    before: BTreeMap<String, (i64, String)>,
    /// The data as it is now.
    changed: BTreeMap<String, (i64, String)>,
    name: String,
    object_key: String,
    key_file: String,
    wrong_file: String,
}

async fn age_backup(env: &mut TestEnv) -> AgeBackup {
    use age::secrecy::ExposeSecret;
    let db = env.tenant("vary").await;
    fill(&db, 100, 800, 120).await;
    let before = fingerprint(&db).await;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let key_file = env.log_dir.join("backup.key");
    std::fs::write(
        &key_file,
        format!("# test\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    let wrong_file = env.log_dir.join("wrong.key");
    std::fs::write(
        &wrong_file,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let enc = [("LANDLORD_BACKUP_AGE_RECIPIENTS", recipient.as_str())];
    succeeded(&env.run_with(&["backup", "--tenant", "vary", "--sync", "--json"], &enc));
    let newest = complete_backups(env, "vary").await[0].clone();
    assert_eq!(newest["encrypted"], true);
    exec(&db, "DELETE FROM users WHERE id > 50 AND id NOT IN (SELECT user_id FROM activity_log WHERE user_id IS NOT NULL) ; UPDATE projects SET name = 'x'").await;
    let changed = fingerprint(&db).await;
    AgeBackup {
        db,
        before,
        changed,
        name: newest["name"].as_str().unwrap().to_string(),
        object_key: newest["object_key"].as_str().unwrap().to_string(),
        key_file: key_file.to_str().unwrap().to_string(),
        wrong_file: wrong_file.to_str().unwrap().to_string(),
    }
}

impl AgeBackup {
    /// `restore --sync --json` of this backup, with `identity` as the key file.
    fn restore(&self, env: &TestEnv, identity: Option<&str>) -> Output {
        let args = [
            "restore", "vary", "--backup", &self.name, "--yes", "--sync", "--json",
        ];
        match identity {
            Some(file) => env.run_with(&args, &[("LANDLORD_BACKUP_AGE_IDENTITY_FILE", file)]),
            None => env.run(&args),
        }
    }

    /// The live database still holds the changed data.
    async fn assert_live_untouched(&self) {
        assert_eq!(
            fingerprint(&self.db).await,
            self.changed,
            "live database untouched"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_backup_is_stored_as_an_age_file() {
    let mut env = TestEnv::new().await;
    let b = age_backup(&mut env).await;
    assert!(b.name.ends_with(".dump.zst.age"), "{}", b.name);
    // The object is not a readable dump: it is an age file.
    let obj = env.store().await.get_bytes(&b.object_key).await.unwrap();
    assert!(obj.starts_with(b"age-encryption.org/v1"), "an age file");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_backup_without_an_identity_is_refused() {
    let mut env = TestEnv::new().await;
    let b = age_backup(&mut env).await;
    let job = sync_job(&b.restore(&env, None));
    refused_with(&job, "LANDLORD_BACKUP_AGE_IDENTITY_FILE");
    b.assert_live_untouched().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_backup_with_the_wrong_identity_is_refused() {
    let mut env = TestEnv::new().await;
    let b = age_backup(&mut env).await;
    let job = sync_job(&b.restore(&env, Some(&b.wrong_file)));
    refused_with(&job, "decrypt");
    b.assert_live_untouched().await;
    assert!(databases_like(&format!("{}_rst_%", b.db)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_backup_restores_with_its_identity() {
    let mut env = TestEnv::new().await;
    let b = age_backup(&mut env).await;
    succeeded(&b.restore(&env, Some(&b.key_file)));
    assert_eq!(fingerprint(&b.db).await, b.before);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_restore_test_reads_an_age_backup_with_its_identity() {
    let mut env = TestEnv::new().await;
    let b = age_backup(&mut env).await;
    let out = env.run_with(
        &[
            "backups",
            "verify",
            "--tenant",
            "vary",
            "--restore-test",
            "--sync",
            "--json",
        ],
        &[("LANDLORD_BACKUP_AGE_IDENTITY_FILE", &b.key_file)],
    );
    let job = succeeded(&out);
    assert_eq!(
        job["result"]["rows"].as_i64().unwrap(),
        b.before.values().map(|v| v.0).sum::<i64>()
    );
    assert!(
        databases_like(&format!("{}_vfy_%", b.db)).await.is_empty(),
        "scratch dropped"
    );
    b.assert_live_untouched().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seed_format_sql_gz_restores_from_a_local_directory_store() {
    let mut env = TestEnv::new().await;
    let dir = env.log_dir.join("store");
    env.extra_env.insert(
        "LANDLORD_BACKUP_URL".into(),
        format!("file://{}", dir.display()),
    );
    let db = env.tenant("legacy").await;
    fill(&db, 50, 500, 80).await;
    let before = fingerprint(&db).await;
    // What the old system wrote: pg_dump | gzip -9, named tenant_{slug}_{date}.sql.gz.
    let folder = dir.join("tenants/legacy");
    std::fs::create_dir_all(&folder).unwrap();
    let name = "tenant_legacy_2024-01-15_02-00-00.sql.gz";
    let file = std::fs::File::create(folder.join(name)).unwrap();
    let mut dump = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "--no-owner", &db])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let st = std::process::Command::new("gzip")
        .arg("-9")
        .stdin(dump.stdout.take().unwrap())
        .stdout(file)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(dump.wait().unwrap().success());
    exec(&db, "DELETE FROM activity_log; DELETE FROM projects").await;

    // Reconcile sees it as importable, not as debris.
    let rec = env.ok(&["backups", "reconcile"]);
    assert!(rec.contains("importable") && rec.contains(name), "{rec}");
    succeeded(&env.run(&[
        "restore", "legacy", "--backup", name, "--yes", "--sync", "--json",
    ]));
    assert_eq!(fingerprint(&db).await, before);
    let list = complete_backups(&env, "legacy").await;
    assert_eq!(list[0]["imported"], true);
    assert_eq!(list[0]["format"], "plain");
    assert_eq!(
        list[0]["completed_at"].as_str().unwrap()[..10],
        *"2024-01-15"
    );

    // A landlord backup into the same local store round-trips too.
    succeeded(&env.run(&["backup", "--tenant", "legacy", "--sync", "--json"]));
    exec(&db, "TRUNCATE activity_log").await;
    env.ok(&["restore", "legacy", "--latest", "--yes", "--sync"]);
    assert_eq!(fingerprint(&db).await, before);
    let files: Vec<_> = walk(&folder);
    assert!(files.iter().any(|f| f.ends_with(".dump.zst")), "{files:?}");
    assert!(!files.iter().any(|f| f.contains(".partial-")), "{files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_changes_nothing() {
    let mut env = TestEnv::new().await;
    env.tenant("strict").await;
    for (args, expect) in [
        (vec!["backup", "--tenant", "nope"], "nope"),
        (vec!["backup", "--tenant", "strict", "--keep", "0"], "keep"),
        (
            vec!["backup", "--tenant", "strict", "--codec", "lz4"],
            "codec",
        ),
        (
            vec![
                "backup",
                "--tenant",
                "strict",
                "--retention",
                "gfs:hourly=3",
            ],
            "hourly",
        ),
        (vec!["backup"], "--all"),
        (vec!["restore", "strict", "--latest"], "no complete backup"),
        (
            vec!["restore", "strict", "--latest", "--yes"],
            "no complete backup",
        ),
        (
            vec!["restore", "strict", "--backup", "../../etc/passwd", "--yes"],
            "not a backup file name",
        ),
        (
            vec![
                "restore",
                "strict",
                "--backup",
                "tenant_strict_2024-01-01_00-00-00.sql.gz",
                "--yes",
            ],
            "no backup named",
        ),
        (
            vec!["backups", "delete", "00000000-0000-0000-0000-000000000000"],
            "no backup 00000000-0000-0000-0000-000000000000",
        ),
    ] {
        env.refused(&args, expect);
    }
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    env.assert_count("SELECT count(*) FROM backups", 0).await;
}

/// A small tenant `keep` with `n` backups taken with `--keep 2`.
async fn backed_up_with_keep_2(env: &mut TestEnv, n: usize) {
    let db = env.tenant("keep").await;
    fill(&db, 20, 50, 40).await;
    backups_keeping_2(env, n);
}

/// `n` more backups of `keep`, each with `--keep 2`.
fn backups_keeping_2(env: &TestEnv, n: usize) {
    for _ in 0..n {
        env.ok(&["backup", "--tenant", "keep", "--keep", "2", "--sync"]);
    }
}

/// Four backups kept to two, the older of the two held (`legal`), then two
/// more: returns the held backup's id and the listed backups, newest first.
async fn with_a_held_backup(env: &mut TestEnv) -> (String, Vec<Value>) {
    backed_up_with_keep_2(env, 4).await;
    let held = complete_backups(env, "keep").await[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["backups", "hold", &held, "--reason", "legal"]);
    backups_keeping_2(env, 2);
    (held, complete_backups(env, "keep").await)
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_keep_prunes_older_backups_with_their_objects() {
    let mut env = TestEnv::new().await;
    backed_up_with_keep_2(&mut env, 4).await;
    let list = complete_backups(&env, "keep").await;
    assert_eq!(list.len(), 2, "keep 2");
    assert_eq!(
        keys_under(&env, "keep").await.len(),
        4,
        "objects of pruned backups are gone"
    );
    env.assert_count("SELECT count(*) FROM backups WHERE status = 'deleted'", 2)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_backup_survives_keep() {
    let mut env = TestEnv::new().await;
    // Two more backups with --keep 2 keep it besides the newest two.
    let (held, list) = with_a_held_backup(&mut env).await;
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .any(|b| b["id"] == held.as_str() && b["held"] == true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_without_a_terminal_needs_yes() {
    let mut env = TestEnv::new().await;
    backed_up_with_keep_2(&mut env, 1).await;
    // A restore asks for confirmation; with no terminal it needs --yes.
    env.refused(&["restore", "keep", "--latest"], "--yes");
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'restore'", 0)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_backup_cannot_be_deleted() {
    let mut env = TestEnv::new().await;
    let (held, _) = with_a_held_backup(&mut env).await;
    env.refused(&["backups", "delete", &held], "legal hold");
    assert_eq!(complete_backups(&env, "keep").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_dry_run_deletes_nothing() {
    let mut env = TestEnv::new().await;
    with_a_held_backup(&mut env).await;
    // Says what would go, deletes nothing.
    let dry = json_lines(&env.ok(&[
        "backups",
        "prune",
        "--tenant",
        "keep",
        "--keep",
        "1",
        "--dry-run",
        "--json",
    ]));
    assert_eq!(dry[0]["deleted"].as_array().unwrap().len(), 1);
    assert_eq!(complete_backups(&env, "keep").await.len(), 3);
    assert_eq!(keys_under(&env, "keep").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_the_newest_besides_held_backups() {
    let mut env = TestEnv::new().await;
    let (held, list) = with_a_held_backup(&mut env).await;
    // Keep 1 still keeps the newest, and the held one.
    let newest = list[0]["id"].as_str().unwrap().to_string();
    env.ok(&["backups", "prune", "--tenant", "keep", "--keep", "1"]);
    let list = complete_backups(&env, "keep").await;
    let ids: Vec<&str> = list.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![newest.as_str(), held.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_hold_lets_the_backup_be_deleted() {
    let mut env = TestEnv::new().await;
    let (held, _) = with_a_held_backup(&mut env).await;
    env.ok(&["backups", "prune", "--tenant", "keep", "--keep", "1"]);
    env.ok(&["backups", "hold", &held, "--release"]);
    env.ok(&["backups", "delete", &held]);
    assert_eq!(complete_backups(&env, "keep").await.len(), 1);
    assert_eq!(keys_under(&env, "keep").await.len(), 2);
    assert_reconciled(&env, &[]);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_truncated_or_mismatched_backups_are_refused() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("rot").await;
    fill(&db, 50, 400, 100).await;
    env.ok(&["backup", "--tenant", "rot", "--sync"]);
    exec(&db, "UPDATE users SET name = 'live'").await;
    let live = fingerprint(&db).await;
    let b = complete_backups(&env, "rot").await[0].clone();
    let key = b["object_key"].as_str().unwrap().to_string();
    let store = env.store().await;
    let good = store.get_bytes(&key).await.unwrap();

    let restore = |env: &TestEnv| {
        sync_job(&env.run(&["restore", "rot", "--latest", "--yes", "--sync", "--json"]))
    };
    // One flipped byte in the middle.
    let mut bad = good.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    store.put(&key, bad.into()).await.unwrap();
    refused_with(&restore(&env), "checksum mismatch");
    assert_eq!(fingerprint(&db).await, live, "live untouched");
    // Truncated.
    store.put(&key, good.slice(..good.len() / 2)).await.unwrap();
    refused_with(&restore(&env), "truncated or replaced");
    assert_eq!(fingerprint(&db).await, live);
    // Intact object, wrong recorded checksum.
    store.put(&key, good.clone()).await.unwrap();
    let tamper = |set: &'static str| {
        let id = b["id"].as_str().unwrap().to_string();
        let catalog = env.catalog.clone();
        async move {
            sqlx::query(&format!("UPDATE backups SET {set} WHERE id = $1::uuid"))
                .bind(id)
                .execute(&catalog)
                .await
                .unwrap();
        }
    };
    tamper("sha256 = repeat('0', 64)").await;
    refused_with(&restore(&env), "does not match");
    assert_eq!(fingerprint(&db).await, live);
    // Without a manifest to catch it, the checksum taken while streaming does.
    tamper("manifest_key = NULL").await;
    refused_with(&restore(&env), "checksum mismatch");
    assert_eq!(fingerprint(&db).await, live);
    assert!(
        databases_like(&format!("{db}_rst_%")).await.is_empty(),
        "scratch databases dropped"
    );
    assert!(
        databases_like(&format!("{db}_pre_%")).await.is_empty(),
        "nothing was swapped"
    );
    // Every refusal was announced.
    env.assert_count(
        "SELECT count(*) FROM outbox WHERE routing_key = 'restore.failed'",
        4,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_killed_half_way_leaves_nothing() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("cut").await;
    // ~60 MB of hex text: several 5 MiB parts after compression.
    fill(&db, 100, 120_000, 500).await;
    let child = env
        .command(&["backup", "--tenant", "cut", "--sync", "--json"])
        .env("LANDLORD_FAILPOINTS", "backup.pause_after_part=1500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the multipart upload exists, then kill pg_dump's connection.
    poll(secs(60), ms(50), || async {
        let started = env
            .count(
                "SELECT count(*) FROM backups WHERE status = 'running' AND upload_id IS NOT NULL",
            )
            .await;
        match started == 1 {
            true => Ok(()),
            false => Err("the upload never started".to_string()),
        }
    })
    .await;
    assert_eq!(
        pending_under(&env, "cut").await,
        1,
        "a multipart upload is in progress"
    );
    let mut admin = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'landlord/backup/%'",
    )
    .bind(&db)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    admin.close().await.ok();
    assert_eq!(killed, vec![true], "pg_dump's session was killed");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let job = sync_job(&out);
    assert_eq!(job["status"], "failed", "{job}");
    refused_with(&job, "pg_dump failed");
    assert!(
        complete_backups(&env, "cut").await.is_empty(),
        "no backup listed"
    );
    assert!(keys_under(&env, "cut").await.is_empty(), "no object left");
    assert_eq!(pending_under(&env, "cut").await, 0, "multipart aborted");
    env.assert_count("SELECT count(*) FROM backups WHERE status = 'failed'", 1)
        .await;
    env.assert_count(
        "SELECT count(*) FROM outbox WHERE routing_key = 'backup.failed'",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_upload_leaves_exactly_one_backup() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("crash").await;
    fill(&db, 100, 60_000, 500).await;
    let before = fingerprint(&db).await;
    let w1 = env.spawn_worker(
        &[],
        &[("LANDLORD_FAILPOINTS", "backup.after_upload_started")],
    );
    let job = env.enqueue(&["backup", "--tenant", "crash"]);
    // The first worker aborts (as kill -9 would) right after the multipart upload began.
    env.wait_exit(&w1, secs(60));
    assert_eq!(
        pending_under(&env, "crash").await,
        1,
        "the dead worker left an upload"
    );
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(job, secs(90)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["result"]["cleaned_interrupted_attempts"], 1);
    assert_eq!(
        complete_backups(&env, "crash").await.len(),
        1,
        "exactly one backup"
    );
    assert_eq!(
        keys_under(&env, "crash").await.len(),
        2,
        "one object + its manifest"
    );
    assert_eq!(pending_under(&env, "crash").await, 0);
    assert_reconciled(&env, &[]);
    exec(&db, "TRUNCATE activity_log").await;
    env.ok(&["restore", "crash", "--latest", "--yes", "--sync"]);
    assert_eq!(fingerprint(&db).await, before);
}

/// A store where nothing listens, tried once per request.
const UNREACHABLE_STORE: [(&str, &str); 2] = [
    ("LANDLORD_S3_ENDPOINT", "http://127.0.0.1:9"),
    ("AWS_MAX_ATTEMPTS", "1"),
];

/// Waits for `job` and asserts it went dead after three attempts with an
/// error naming the unreachable store.
async fn assert_dead_on_the_store(env: &TestEnv, job: uuid::Uuid) {
    let j = env.wait_job(job, secs(60)).await;
    assert_eq!(j["status"], "dead", "{j:#}");
    assert_eq!(j["attempts"], 3, "retried up to the limit");
    let err = j["last_error"].as_str().unwrap();
    assert!(
        err.contains("127.0.0.1:9") || err.to_lowercase().contains("connect"),
        "clear error: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_store_retries_then_ends_dead() {
    let mut env = TestEnv::new().await;
    env.tenant("offline").await;
    env.spawn_worker(&[], &UNREACHABLE_STORE);
    let job = env.enqueue(&["backup", "--tenant", "offline"]);
    assert_dead_on_the_store(&env, job).await;
    assert!(complete_backups(&env, "offline").await.is_empty());
    env.assert_count("SELECT count(*) FROM backups WHERE status = 'running'", 0)
        .await;
    env.assert_count(
        "SELECT count(*) FROM outbox WHERE routing_key = 'backup.failed'",
        3,
    )
    .await;

    // A restore through the same unreachable store: retried, then dead,
    // the live database untouched.
    let db = format!("{}_offline", env.catalog_db);
    fill(&db, 10, 20, 20).await;
    env.ok(&["backup", "--tenant", "offline", "--sync"]);
    exec(&db, "UPDATE users SET name = 'live'").await;
    let live = fingerprint(&db).await;
    let job = env.enqueue(&["restore", "offline", "--latest", "--yes"]);
    assert_dead_on_the_store(&env, job).await;
    assert_eq!(fingerprint(&db).await, live);
    assert!(allows_connections(&db).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_lock_serialises_backups_with_restores() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("solo").await;
    fill(&db, 100, 20_000, 300).await;
    env.ok(&["backup", "--tenant", "solo", "--sync"]);
    env.spawn_worker(&["--concurrency", "4"], &[]);
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(env.enqueue(&["backup", "--tenant", "solo"]));
        if i < 2 {
            jobs.push(env.enqueue(&["restore", "solo", "--latest", "--yes"]));
        }
    }
    for id in &jobs {
        let j = env.wait_job(*id, secs(120)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
    }
    // What each did, timed inside the tenant lock by the rows it wrote.
    type Span = (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        String,
    );
    let mut spans: Vec<Span> =
        sqlx::query_as(
            "SELECT started_at, completed_at, 'backup' FROM backups WHERE status = 'complete' \
             UNION ALL SELECT started_at, completed_at, 'restore' FROM restores WHERE status = 'complete'",
        )
        .fetch_all(&env.catalog)
        .await
        .unwrap();
    assert_eq!(spans.len(), 6, "4 backups + 2 restores");
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "{} and {} overlapped: {spans:?}",
            w[0].2,
            w[1].2
        );
    }
}

/// Rows of `activity_log` older than 90 days in `db`.
async fn old_activity(db: &str) -> i64 {
    let sql = "SELECT count(*) FROM activity_log WHERE created_at < now() - interval '90 days'";
    scalar_in(db, sql, &[]).await
}

/// Tenant `tidy` with old activity rows: its database and how many.
async fn untidy(env: &mut TestEnv) -> (String, i64) {
    let db = env.tenant("tidy").await;
    fill(&db, 20, 1000, 40).await;
    let old = old_activity(&db).await;
    assert!(old > 0);
    (db, old)
}

/// `maintenance --backup --cleanup` on tenant `tidy`, with extra environment.
fn maintenance_backup_cleanup(env: &TestEnv, extra: &[(&str, &str)]) -> Value {
    sync_job(&env.run_with(
        &[
            "maintenance",
            "--tenant",
            "tidy",
            "--backup",
            "--cleanup",
            "--sync",
            "--json",
        ],
        extra,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_maintenance_backup_stops_the_cleanup() {
    let mut env = TestEnv::new().await;
    let (db, old) = untidy(&mut env).await;
    // The store is unreachable: the backup fails and cleanup never runs.
    let job = maintenance_backup_cleanup(&env, &UNREACHABLE_STORE);
    assert_eq!(job["status"], "failed");
    refused_with(&job, "backup failed, maintenance stopped");
    assert_eq!(old_activity(&db).await, old, "nothing cleaned");
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_backs_up_before_cleaning() {
    let mut env = TestEnv::new().await;
    let (db, old) = untidy(&mut env).await;
    let job = maintenance_backup_cleanup(&env, &[]);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["result"]["steps"]["backup"]["backup_id"].is_string(),
        "{job}"
    );
    assert_eq!(
        job["result"]["steps"]["cleanup"]["rows"].as_i64().unwrap(),
        old
    );
    assert_eq!(old_activity(&db).await, 0);
    assert_eq!(complete_backups(&env, "tidy").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pre_restore_copy_is_dropped_after_the_rollback_window() {
    let mut env = TestEnv::new().await;
    env.extra_env
        .insert("LANDLORD_RESTORE_KEEP_PRE_HOURS".into(), "0".into());
    let db = env.tenant("window").await;
    fill(&db, 10, 20, 20).await;
    env.ok(&["backup", "--tenant", "window", "--sync"]);
    env.spawn_worker(&[], &[]);
    let out = env.ok(&["restore", "window", "--latest", "--yes", "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    let drop_job: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM jobs WHERE kind = 'drop_pre_restore'")
            .fetch_one(&env.catalog)
            .await
            .unwrap();
    let j = env.wait_job(drop_job, secs(30)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    let pre = j["result"]["dropped"].as_str().unwrap();
    assert!(pre.starts_with(&format!("{db}_pre_")), "{pre}");
    assert!(databases_like(&format!("{db}_pre_%")).await.is_empty());
    assert!(
        !databases_like(&db).await.is_empty(),
        "the live database stays"
    );
    env.assert_count(
        "SELECT count(*) FROM restores WHERE dropped_at IS NOT NULL",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_killed_anywhere_in_the_swap_is_undone_then_redone() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("swap").await;
    fill(&db, 50, 500, 100).await;
    env.ok(&["backup", "--tenant", "swap", "--sync"]);
    let backed_up = fingerprint(&db).await;
    for (round, point) in [
        "restore.after_block",
        "restore.mid_swap",
        "restore.after_swap",
    ]
    .into_iter()
    .enumerate()
    {
        exec(&db, &format!("UPDATE users SET name = 'live {round}'")).await;
        let live = fingerprint(&db).await;
        let w = env.spawn_worker(&[], &[("LANDLORD_FAILPOINTS", point)]);
        let job = env.enqueue(&["restore", "swap", "--latest", "--yes"]);
        // The worker aborts at the failpoint, as kill -9 would.
        env.wait_exit(&w, secs(60));
        // What the dead attempt left, as a kill -9 at that point would.
        match point {
            "restore.after_block" => {
                assert!(!allows_connections(&db).await, "{point}: live closed");
            }
            "restore.mid_swap" => {
                assert!(
                    databases_like(&db).await.is_empty(),
                    "{point}: live renamed"
                );
            }
            _ => assert_eq!(fingerprint(&db).await, backed_up, "{point}: swapped"),
        }
        // Before the swap finished, the next attempt first puts the tenant's
        // database back, then restores; after it, the next attempt records
        // the finished swap instead of restoring a second time.
        let w2 = env.spawn_worker(&[], &[]);
        let j = env.wait_job(job, secs(120)).await;
        assert_eq!(j["status"], "succeeded", "{point}: {j:#}");
        if point == "restore.after_swap" {
            assert_eq!(j["result"]["completed_by_earlier_attempt"], true, "{point}");
        } else {
            assert_eq!(j["result"]["cleaned_interrupted_attempts"], 1, "{point}");
        }
        assert_eq!(fingerprint(&db).await, backed_up, "{point}: restored");
        assert!(allows_connections(&db).await, "{point}: live open");
        assert!(
            databases_like(&format!("{db}_rst_%")).await.is_empty(),
            "{point}: no scratch left"
        );
        // One kept pre-restore copy per recorded restore, holding the data
        // from before it; the interrupted attempt left none of its own.
        let pre = j["result"]["pre_restore_database"].as_str().unwrap();
        assert!(
            !allows_connections(pre).await,
            "{point}: pre-restore copy closed"
        );
        let open = |on: bool| format!("ALTER DATABASE \"{pre}\" WITH ALLOW_CONNECTIONS {on}");
        exec("postgres", &open(true)).await;
        assert_eq!(fingerprint(pre).await, live, "{point}: pre-restore copy");
        exec("postgres", &open(false)).await;
        assert_eq!(
            databases_like(&format!("{db}_pre_%")).await.len(),
            round + 1,
            "{point}"
        );
        env.signal(&w2, "TERM");
        env.wait_exit(&w2, secs(30));
    }
    env.assert_count("SELECT count(*) FROM restores WHERE status = 'complete'", 3)
        .await;
    env.assert_count(
        "SELECT count(*) FROM restores WHERE status = 'failed' AND error = 'attempt interrupted'",
        2,
    )
    .await;
}

/// Two backed-up tenants, rec-a and rec-b, then drift between store and
/// catalog: an object nobody claims, a complete backup whose object is gone,
/// and a multipart upload nobody finished.
struct Drift {
    store: landlord::backup::Store,
    orphan: String,
    gone: Value,
    gone_key: String,
    stale: String,
    upload_id: String,
}

async fn two_backed_up_tenants(env: &mut TestEnv) {
    for slug in ["rec-a", "rec-b"] {
        let db = env.tenant(slug).await;
        fill(&db, 20, 50, 20).await;
        env.ok(&["backup", "--tenant", slug, "--sync"]);
    }
}

async fn drifted(env: &mut TestEnv) -> Drift {
    two_backed_up_tenants(env).await;
    let store = env.store().await;
    let orphan = store.key("tenants/rec-a/20200101T000000Z_stray.dump.zst");
    store
        .put(&orphan, bytes::Bytes::from_static(b"stray"))
        .await
        .unwrap();
    let gone = complete_backups(env, "rec-b").await[0].clone();
    let gone_key = gone["object_key"].as_str().unwrap().to_string();
    store.delete(&gone_key).await.unwrap();
    let stale = store.key("tenants/rec-a/20200101T000000Z_unfinished.dump.zst");
    let mut up = store.start(&stale).unwrap();
    up.part(bytes::Bytes::from(vec![7u8; 5 << 20]))
        .await
        .unwrap();
    up.part(bytes::Bytes::from(vec![8u8; 5 << 20]))
        .await
        .unwrap();
    let upload_id = up.id().unwrap().to_string();
    drop(up);
    Drift {
        store,
        orphan,
        gone,
        gone_key,
        stale,
        upload_id,
    }
}

/// Drift, then `backups reconcile --fix`: the JSON report it printed.
async fn fixed(env: &mut TestEnv) -> (Drift, Value) {
    let drift = drifted(env).await;
    let (code, fixed) = json_report(env, &["backups", "reconcile", "--fix", "--json"]);
    assert_eq!(code, Some(0), "reported and fixed");
    (drift, fixed)
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_passes_on_a_store_matching_the_catalog() {
    let mut env = TestEnv::new().await;
    two_backed_up_tenants(&mut env).await;
    let (code, report) = json_report(&env, &["backups", "reconcile", "--json"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        report["orphan_objects"],
        serde_json::json!([]),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_reports_each_kind_of_drift() {
    let mut env = TestEnv::new().await;
    let d = drifted(&mut env).await;
    let (code, report) = json_report(&env, &["backups", "reconcile", "--json"]);
    assert_eq!(code, Some(1), "not clean");
    assert_eq!(
        report["orphan_objects"],
        serde_json::json!([d.orphan]),
        "{report:#}"
    );
    assert_eq!(report["missing_objects"][0][0], d.gone["id"], "{report:#}");
    assert_eq!(
        report["missing_objects"][0][1],
        d.gone_key.as_str(),
        "{report:#}"
    );
    assert_eq!(
        report["incomplete_uploads"],
        serde_json::json!([[d.stale, d.upload_id]]),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconcile_fix_repairs_what_it_reports() {
    let mut env = TestEnv::new().await;
    let (d, fixed) = fixed(&mut env).await;
    assert_eq!(fixed["fixed"], true);
    assert_eq!(fixed["orphan_objects"], serde_json::json!([d.orphan]));
    assert!(
        d.store.head(&d.orphan).await.unwrap().is_none(),
        "orphan deleted"
    );
    assert_eq!(pending_under(&env, "rec-a").await, 0, "upload aborted");
    assert!(
        complete_backups(&env, "rec-b").await.is_empty(),
        "row failed"
    );
    assert_reconciled(&env, &["--json"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_names_each_unhealthy_tenant() {
    let mut env = TestEnv::new().await;
    fixed(&mut env).await;
    // rec-b has no complete backup left; rec-a's is fresh but over 0 MiB.
    let (code, m) = json_report(
        &env,
        &["backups", "monitor", "--max-storage-mib", "0", "--json"],
    );
    assert_eq!(code, Some(1));
    assert_eq!(m["healthy"], 0, "{m:#}");
    assert_eq!(m["stale"][0][0], "rec-b", "{m:#}");
    assert_eq!(m["stale"].as_array().unwrap().len(), 1, "{m:#}");
    assert_eq!(m["oversize"][0][0], "rec-a", "{m:#}");
    let text = env.run(&["backups", "monitor", "--max-storage-mib", "0"]);
    let said = stdout(&text) + &stderr(&text);
    assert!(said.contains("rec-a") && said.contains("rec-b"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn monitor_counts_a_fresh_backup_within_limits_healthy() {
    let mut env = TestEnv::new().await;
    fixed(&mut env).await;
    // With generous limits, rec-a alone is healthy.
    let (_, m) = json_report(&env, &["backups", "monitor", "--json"]);
    assert_eq!(m["healthy"], 1, "{m:#}");
}

/// The names of a doctor report's checks that pass `which`.
fn checks(report: &Value, which: impl Fn(&Value) -> bool) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| which(c))
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_requirements_for_real() {
    let env = TestEnv::new().await;
    let (code, report) = json_report(&env, &["doctor", "--json"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    let names = checks(&report, |_| true);
    for tool in ["pg_dump", "pg_restore", "psql"] {
        assert!(names.contains(&tool), "{names:?}");
    }
    // `backup --check` is the same check.
    let (code, check) = json_report(&env, &["backup", "--check", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(check["checks"].as_array().unwrap().len(), names.len());
    // An unreachable store and missing client tools fail, each by name.
    let out = env.run_with(
        &["doctor", "--json"],
        &[
            UNREACHABLE_STORE[0],
            UNREACHABLE_STORE[1],
            ("LANDLORD_PG_BIN_DIR", "/nonexistent"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let report = json_lines(&stdout(&out));
    let failed = checks(&report, |c| c["ok"] == false);
    for name in ["pg_dump", "pg_restore", "psql"] {
        assert!(failed.contains(&name), "{failed:?}");
    }
    assert!(
        failed.iter().any(|n| n.contains("store")),
        "the store is named: {report:#}"
    );
    // The catalog and the broker were reachable, so they passed.
    assert!(failed.len() < names.len(), "{report:#}");
}
