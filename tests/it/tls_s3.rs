//! Backups to S3 over HTTPS with a private CA (`AWS_CA_BUNDLE`), against the
//! real Garage behind the real TLS terminator of `ops/services up --tls`
//! (stunnel on `LANDLORD_TEST_S3_HTTPS_URL`, certificate signed by the CA in
//! `LANDLORD_TEST_TLS_DIR`). Every landlord process these tests start gets the
//! HTTPS endpoint; stunnel's log (`LANDLORD_TEST_S3_TLS_LOG`) shows how many
//! bytes really went through TLS.

use std::{collections::BTreeMap, path::PathBuf, process::Output};

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};

use crate::common::{
    PG_SERVER, TestEnv, exec_in as exec, json_line, ms, poll, secs, stderr, stdout,
};

/// A variable `ops/services env` prints once `ops/services up --tls` ran.
fn tls_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run `ops/services up --tls` and `eval \"$(ops/services env)\"`")
    })
}

fn https_url() -> String {
    tls_var("LANDLORD_TEST_S3_HTTPS_URL")
}

fn tls_file(name: &str) -> String {
    let path = PathBuf::from(tls_var("LANDLORD_TEST_TLS_DIR")).join(name);
    assert!(
        path.is_file(),
        "{} missing (ops/services up --tls)",
        path.display()
    );
    path.display().to_string()
}

/// This test's landlord processes use the HTTPS endpoint and trust `bundle`
/// (blank: no bundle, the system roots). One attempt per request keeps the
/// failing cases quick.
fn over_https(env: &mut TestEnv, endpoint: &str, bundle: &str) {
    env.set_env(&[
        ("AWS_ENDPOINT_URL", endpoint),
        ("LANDLORD_S3_ENDPOINT", ""),
        ("AWS_CA_BUNDLE", bundle),
        ("AWS_MAX_ATTEMPTS", "1"),
    ]);
}

/// Bytes stunnel forwarded (client to Garage, Garage to client) over the
/// connections it has closed so far.
fn tls_bytes() -> (u64, u64) {
    let log = tls_var("LANDLORD_TEST_S3_TLS_LOG");
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{log}: {e}"));
    let mut to_garage = 0;
    let mut to_client = 0;
    for line in text.lines() {
        // "Connection closed: 344 byte(s) sent to TLS, 78 byte(s) sent to socket"
        let Some((_, counts)) = line.split_once("closed: ") else {
            continue;
        };
        let nums: Vec<u64> = counts
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [tls, socket] = nums[..] {
            to_client += tls;
            to_garage += socket;
        }
    }
    (to_garage, to_client)
}

/// Waits until stunnel has logged at least `min` more bytes in one
/// direction than `before` (a process's connections are logged once it exits).
async fn tls_grew(before: (u64, u64), min: u64, upload: bool) -> u64 {
    poll(secs(10), ms(200), || async {
        let now = tls_bytes();
        let grew = if upload {
            now.0 - before.0
        } else {
            now.1 - before.1
        };
        if grew >= min {
            Ok(grew)
        } else {
            Err(format!(
                "stunnel forwarded {grew} bytes {}, expected at least {min}",
                if upload { "to Garage" } else { "to landlord" }
            ))
        }
    })
    .await
}

async fn fingerprint(db: &str) -> BTreeMap<String, (i64, String)> {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for t in ["users", "projects", "activity_log"] {
        let row: (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM \"{t}\" x"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        out.insert(t.to_string(), (row.0, row.1.unwrap_or_default()));
    }
    c.close().await.ok();
    out
}

async fn fill(db: &str) {
    exec(
        db,
        "INSERT INTO users (email, name) SELECT 'user' || g || '@example.com', 'User ' || g \
           FROM generate_series(1, 200) g;
         INSERT INTO projects (owner_id, name) SELECT 1 + (g % 200), 'Project ' || g \
           FROM generate_series(1, 200) g;
         INSERT INTO activity_log (user_id, action, created_at) \
           SELECT 1 + (g % 200), md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text), now() \
           FROM generate_series(1, 20000) g;",
    )
    .await;
}

/// The job a `--sync --json` command printed.
fn job(out: &Output) -> Value {
    json_line(out)
}

/// A backup that must fail: its error, which must name the HTTPS endpoint.
async fn failed_backup(env: &mut TestEnv, slug: &str) -> String {
    env.tenant(slug).await;
    let out = env.run(&["backup", "--tenant", slug, "--sync", "--json"]);
    let j = job(&out);
    assert_ne!(j["status"], "succeeded", "{j}");
    let err = j["last_error"].as_str().unwrap_or_default().to_string();
    let endpoint = https_url();
    let host = endpoint.trim_start_matches("https://");
    assert!(
        err.contains(host),
        "the endpoint {endpoint} is named: {err}"
    );
    assert!(err.contains("TLS"), "says the TLS handshake failed: {err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_and_its_restore_go_through_tls_with_the_ca_bundle() {
    let mut env = TestEnv::new().await;
    let ca = tls_file("ca.pem");
    over_https(&mut env, &https_url(), &ca);
    let db = env.tenant("sealed").await;
    fill(&db).await;
    let before = fingerprint(&db).await;

    let start = tls_bytes();
    let out = env.run(&["backup", "--tenant", "sealed", "--sync", "--json"]);
    let j = job(&out);
    assert_eq!(j["status"], "succeeded", "{j}\nstderr: {}", stderr(&out));
    let list: Value = serde_json::from_str(&env.ok(&["backups", "list", "sealed", "--json"]))
        .expect("backups list --json");
    let stored = list[0]["stored_bytes"].as_u64().expect("stored_bytes");
    assert!(stored > 100_000, "a dump worth measuring: {list}");
    // Every byte of the dump went up through stunnel, i.e. over TLS.
    tls_grew(start, stored, true).await;
    // And it is the object Garage holds (read here over the plain endpoint).
    let store = env.store().await;
    let keys = store
        .list(&store.key("tenants/sealed/"))
        .await
        .expect("list the tenant's objects");
    assert!(
        keys.iter().any(|o| o.size == stored),
        "{keys:?} holds the {stored}-byte dump"
    );

    exec(&db, "TRUNCATE activity_log").await;
    assert_ne!(fingerprint(&db).await, before);
    let start = tls_bytes();
    let out = env.run(&["restore", "sealed", "--latest", "--yes", "--sync", "--json"]);
    let j = job(&out);
    assert_eq!(j["status"], "succeeded", "{j}\nstderr: {}", stderr(&out));
    assert_eq!(fingerprint(&db).await, before, "restored through TLS");
    tls_grew(start, stored, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_ca_bundle_the_certificate_is_not_trusted() {
    let mut env = TestEnv::new().await;
    over_https(&mut env, &https_url(), "");
    let err = failed_backup(&mut env, "nobundle").await;
    assert!(err.contains("not signed by a CA"), "{err}");
    assert!(err.contains("system"), "names what was trusted: {err}");
    assert!(err.contains("AWS_CA_BUNDLE"), "says what to set: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_of_another_ca_is_refused() {
    let mut env = TestEnv::new().await;
    let other = tls_file("other-ca.pem");
    over_https(&mut env, &https_url(), &other);
    let err = failed_backup(&mut env, "otherca").await;
    assert!(err.contains("not signed by a CA"), "{err}");
    assert!(err.contains(&other), "names the bundle trusted: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_name_the_certificate_does_not_name_is_refused() {
    let mut env = TestEnv::new().await;
    let ca = tls_file("ca.pem");
    over_https(
        &mut env,
        &tls_var("LANDLORD_TEST_S3_HTTPS_WRONG_NAME_URL"),
        &ca,
    );
    env.tenant("wrongname").await;
    let out = env.run(&["backup", "--tenant", "wrongname", "--sync", "--json"]);
    let j = job(&out);
    assert_ne!(j["status"], "succeeded", "{j}");
    let err = j["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("127.0.0.2"), "names the endpoint: {err}");
    assert!(
        err.contains("not valid for"),
        "says the name is wrong: {err}"
    );
    assert!(err.contains("localhost"), "says which names it has: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_invalid_bundle_is_refused_at_startup() {
    let mut env = TestEnv::new().await;
    let missing = env.log_dir.join("no-such-ca.pem").display().to_string();
    over_https(&mut env, &https_url(), &missing);
    env.tenant("badbundle").await;
    let out = env.run(&["doctor", "--json"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stderr(&out), stdout(&out));
    assert!(err.contains("AWS_CA_BUNDLE"), "names the variable: {err}");
    assert!(err.contains(&missing), "names the path: {err}");

    let garbage = env.log_dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.display().to_string();
    env.set_env(&[("AWS_CA_BUNDLE", &garbage)]);
    let out = env.run(&["backup", "--tenant", "badbundle", "--sync", "--json"]);
    assert!(!out.status.success());
    let err = format!("{}{}", stderr(&out), stdout(&out));
    assert!(err.contains("AWS_CA_BUNDLE"), "names the variable: {err}");
    assert!(err.contains(&garbage), "names the path: {err}");
    assert!(err.contains("no certificate"), "says what is wrong: {err}");
}

/// The `backup store` check of `doctor --json`.
fn store_check(env: &TestEnv) -> Value {
    let out = env.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "backup store")
        .unwrap_or_else(|| panic!("no backup store check: {report:#}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_the_store_reached_over_verified_tls() {
    let mut env = TestEnv::new().await;
    env.set_env(&[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:3900"),
        ("LANDLORD_S3_ENDPOINT", ""),
        ("AWS_CA_BUNDLE", ""),
    ]);
    let plain = store_check(&env);
    assert_eq!(plain["ok"], true, "{plain:#}");
    assert_eq!(plain["transport"]["encrypted"], false, "{plain:#}");
    assert_eq!(plain["transport"]["verified"], false, "{plain:#}");

    let ca = tls_file("ca.pem");
    over_https(&mut env, &https_url(), &ca);
    let tls = store_check(&env);
    assert_eq!(tls["ok"], true, "{tls:#}");
    assert_eq!(tls["transport"]["encrypted"], true, "{tls:#}");
    assert_eq!(tls["transport"]["verified"], true, "{tls:#}");
    let detail = tls["transport"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&ca), "names the CA trusted: {detail}");
    assert!(
        detail.contains("localhost:3943"),
        "names the endpoint: {detail}"
    );

    let root = format!("file://{}", env.log_dir.join("local-store").display());
    env.set_env(&[("LANDLORD_BACKUP_URL", &root)]);
    let local = store_check(&env);
    assert_eq!(local["ok"], true, "{local:#}");
    assert_eq!(local["transport"]["encrypted"], false, "{local:#}");
}
