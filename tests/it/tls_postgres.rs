//! PostgreSQL over TLS, against the real TLS cluster of `ops/services up --tls`
//! (port 5433, `ssl = on`, the test CA; its pg_hba refuses every plain
//! connection, so anything that works there went over TLS). The catalog, the
//! tenant server and the pg_dump/pg_restore children all connect with
//! `sslmode=verify-full`; the cluster's connection log shows the children's
//! sessions used TLS. Failures say which endpoint and what failed: a wrong
//! host name, a CA that did not sign the server, a plain connection, a
//! missing client certificate; a client certificate logs in as `landlord`.

use std::process::Output;

use serde_json::Value;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

use crate::common::{TestEnv, stderr};

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run `ops/services up --tls` and `eval \"$(ops/services env)\"`")
    })
}

/// The TLS cluster, `postgres://postgres@localhost:5433` (no database).
fn server() -> String {
    need("LANDLORD_TEST_PG_TLS_URL")
}

fn tls_file(name: &str) -> String {
    format!("{}/{name}", need("LANDLORD_TEST_TLS_DIR"))
}

/// URL parameters verifying the server by name against `ca`.
fn verify_full(ca: &str) -> String {
    format!("?sslmode=verify-full&sslrootcert={}", tls_file(ca))
}

/// `server()` with its host replaced (the cluster also listens on 127.0.0.2).
fn at_host(host: &str) -> String {
    server().replace("localhost", host)
}

/// The TLS cluster's log from byte `from` on.
fn log_since(from: u64) -> String {
    let text = std::fs::read(need("LANDLORD_TEST_PG_TLS_LOG")).expect("read the TLS cluster's log");
    String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned()
}

fn log_len() -> u64 {
    std::fs::metadata(need("LANDLORD_TEST_PG_TLS_LOG"))
        .expect("the TLS cluster's log")
        .len()
}

/// Runs `landlord args` with `env`'s environment and LANDLORD_DATABASE_URL = `url`.
fn run_on(env: &TestEnv, url: &str, args: &[&str]) -> Output {
    env.run_with(args, &[("LANDLORD_DATABASE_URL", url)])
}

/// `landlord migrate` on `url` fails; its message (stderr) contains every one of `expect`.
fn fails(env: &TestEnv, url: &str, expect: &[&str]) -> String {
    let out = run_on(env, url, &["migrate"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "migrate on {url} succeeded: {err}");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in: {err}");
    }
    err
}

/// The check named `name` of a `doctor --json` report.
fn doctor_check(out: &Output, name: &str) -> Value {
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json ({e}): {}", stderr(out)));
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
        .clone()
}

async fn tls_conn(db: &str) -> PgConnection {
    PgConnection::connect(&format!("{}/{db}{}", server(), verify_full("ca.pem")))
        .await
        .expect("connect to the TLS cluster")
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_tenant_backup_and_restore_all_over_verified_tls() {
    let mut env = TestEnv::on_server(&server(), &verify_full("ca.pem")).await;
    env.ok(&["migrate"]);
    let log_from = log_len();
    env.spawn_worker(&[], &[]);
    let slug = format!("tls-{}", &env.id[..8]);
    let owner = format!("ana-{}@example.test", env.id);
    let out = env.ok(&[
        "tenants", "create", &slug, "--name", "Over TLS", "--plan", "pro", "--owner", &owner,
        "--wait",
    ]);
    assert!(out.contains(&format!("tenant {slug} is active")), "{out}");
    let t = landlord::tenants::get(&env.catalog, &slug)
        .await
        .expect("tenant");
    let db = t.db_name.clone();

    // Data in the tenant database, on the TLS cluster.
    let mut c = tls_conn(&db).await;
    sqlx::raw_sql(
        "INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'before' \
         FROM generate_series(1, 50) g",
    )
    .execute(&mut c)
    .await
    .expect("fill");
    let out = env.ok(&["backup", "--tenant", &slug, "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    sqlx::raw_sql("UPDATE users SET name = 'after'")
        .execute(&mut c)
        .await
        .expect("change");
    c.close().await.ok();
    let out = env.ok(&["restore", &slug, "--latest", "--yes", "--wait", "--json"]);
    assert!(out.contains("succeeded"), "{out}");
    let mut c = tls_conn(&db).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE name = 'before'")
        .fetch_one(&mut c)
        .await
        .expect("count");
    // The pre-restore copy is not under the test's prefix: drop it here, so
    // the harness can drop the tenant's database and role.
    let copies: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{db}_pre_%"))
            .fetch_all(&mut c)
            .await
            .expect("pre-restore copies");
    for copy in copies {
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{copy}\" WITH (FORCE)"))
            .execute(&mut c)
            .await
            .expect("drop the pre-restore copy");
    }
    c.close().await.ok();
    assert_eq!(before, 50, "the restore brought the backed-up rows back");

    // The server's own record: every session of the backup's and the
    // restore's children (PGAPPNAME landlord/<kind>/…) was TLS.
    let log = log_since(log_from);
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains("application_name=landlord/"))
        .collect();
    for kind in ["backup", "restore"] {
        assert!(
            sessions
                .iter()
                .any(|l| l.contains(&format!("application_name=landlord/{kind}/"))),
            "no {kind} session in the TLS cluster's log:\n{log}"
        );
    }
    for l in &sessions {
        assert!(
            l.contains("SSL enabled (protocol=TLS"),
            "a plain session: {l}"
        );
    }

    // doctor says what protects the catalog and the default server.
    let out = env.run(&["doctor", "--json"]);
    for name in ["catalog", "server default"] {
        let c = doctor_check(&out, name);
        assert_eq!(c["ok"], true, "{c:#}");
        assert_eq!(c["transport"]["encrypted"], true, "{c:#}");
        assert_eq!(c["transport"]["verified"], true, "{c:#}");
        let detail = c["transport"]["detail"].as_str().unwrap();
        assert!(detail.contains("TLSv1."), "{detail}");
        assert!(detail.contains("verify-full"), "{detail}");
        assert!(detail.contains("and host name"), "{detail}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_against_a_wrong_host_name_fails_clearly() {
    let env = TestEnv::new().await;
    // 127.0.0.2 is the same cluster, but not a name in its certificate.
    let url = format!(
        "{}/landlord{}",
        at_host("127.0.0.2").replace("postgres@", "postgres:sekret@"),
        verify_full("ca.pem")
    );
    let err = fails(
        &env,
        &url,
        &[
            "postgres://postgres:***@127.0.0.2:5433/landlord",
            "not valid for host name \"127.0.0.2\"",
            "sslmode=verify-full",
        ],
    );
    assert!(!err.contains("sekret"), "the password leaked: {err}");
    // doctor reports the same for the server.
    let out = env.run_with(
        &["doctor", "--json"],
        &[("LANDLORD_SERVER__EDGE", url.as_str())],
    );
    let c = doctor_check(&out, "server edge");
    assert_eq!(c["ok"], false, "{c:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("not valid for host name"),
        "{c:#}"
    );
    // Under verify-ca landlord's own connections check the name too (sqlx
    // 0.8.6, launchbadge/sqlx#3793), and say so.
    let ca_only = url.replace("verify-full", "verify-ca");
    fails(
        &env,
        &ca_only,
        &["not valid for host name", "under verify-ca too"],
    );
    let good = format!("{}/landlord{}", server(), verify_full("ca.pem"));
    let out = env.run_with(
        &["doctor", "--json"],
        &[(
            "LANDLORD_SERVER__EDGE",
            good.replace("verify-full", "verify-ca").as_str(),
        )],
    );
    let c = doctor_check(&out, "server edge");
    assert_eq!(c["ok"], true, "{c:#}");
    assert_eq!(c["transport"]["verified"], true, "{c:#}");
    let detail = c["transport"]["detail"].as_str().unwrap();
    assert!(detail.contains("sslmode=verify-ca"), "{detail}");
    assert!(detail.contains("not by pg_dump/psql"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_that_did_not_sign_the_server_is_refused() {
    let env = TestEnv::new().await;
    let url = format!("{}/landlord{}", server(), verify_full("other-ca.pem"));
    fails(
        &env,
        &url,
        &[
            "postgres://postgres@localhost:5433/landlord",
            "not signed by a CA in sslrootcert=",
            "other-ca.pem",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_connection_is_refused_by_the_server() {
    let env = TestEnv::new().await;
    let url = format!("{}/landlord?sslmode=disable", server());
    fails(
        &env,
        &url,
        &[
            "localhost:5433/landlord",
            "the server refuses unencrypted connections (sslmode=disable)",
            "no encryption",
        ],
    );
    // A TLS parameter landlord cannot honour is refused before connecting.
    let url = format!(
        "{}/landlord{}&sslcrl=/nonexistent.crl",
        server(),
        verify_full("ca.pem")
    );
    fails(&env, &url, &["\"sslcrl\" is not supported"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_logs_in_as_its_common_name() {
    let env = TestEnv::new().await;
    let db = format!("llt_cert_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = tls_conn("postgres").await;
    sqlx::raw_sql(&format!("CREATE DATABASE {db} OWNER landlord"))
        .execute(&mut admin)
        .await
        .expect("create the database");
    let base = format!(
        "{}/{db}{}",
        server().replace("postgres@", "landlord@"),
        verify_full("ca.pem")
    );
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}",
        tls_file("client.pem"),
        tls_file("client.key")
    );
    // Without a certificate the `cert` rule of pg_hba refuses the role.
    fails(
        &env,
        &base,
        &["requires a client certificate: add sslcert and sslkey"],
    );
    let migrated = run_on(&env, &with_cert, &["migrate"]);
    let out = run_on(&env, &with_cert, &["doctor", "--json"]);
    let mut c = tls_conn(&db).await;
    let owner: String = sqlx::query_scalar(
        "SELECT tableowner::text FROM pg_tables WHERE tablename = '_sqlx_migrations'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap_or_default();
    c.close().await.ok();
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop the database");
    admin.close().await.ok();
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert_eq!(owner, "landlord", "migrated as the certificate's role");
    let c = doctor_check(&out, "catalog");
    assert_eq!(c["ok"], true, "{c:#}");
    let detail = c["transport"]["detail"].as_str().unwrap();
    assert!(detail.contains("client certificate presented"), "{detail}");
}
