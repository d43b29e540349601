//! Tenant passwords kept secret (issue 13, "Secrets"): the server only ever
//! receives a SCRAM-SHA-256 verifier (its statement log is read to prove it),
//! the catalog only a sealed copy, the catalog key can be rotated, and
//! provisioning without a key refuses clearly. Logins by password go through
//! the `landlord_password_login` group, which `ops/services` makes log in
//! by SCRAM over 127.0.0.1 instead of trust.

use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::Connection as _;

use crate::common::{PG_SERVER, TestEnv, scalar_in};

const POSTGRES_LOG: &str = "/var/log/postgresql/postgresql-15-main.log";

fn slug(env: &TestEnv, base: &str) -> String {
    format!("{base}-{}", &env.id[..8])
}

/// Creates a tenant on server `server` and waits until it is active.
fn provisioned_on(env: &TestEnv, base: &str, server: &str) -> String {
    let s = slug(env, base);
    let owner = format!("{base}-{}@example.test", env.id);
    env.ok(&[
        "tenants",
        "create",
        &s,
        "--name",
        "Secret Co",
        "--plan",
        "pro",
        "--owner",
        &owner,
        "--server",
        server,
        "--wait",
    ]);
    s
}

fn credentials(env: &TestEnv, slug: &str) -> Value {
    env.ok_json(&["tenants", "credentials", slug, "--json"])
}

/// Lets `role` log in only by its password (SCRAM), as on a real server.
async fn require_password(role: &str) {
    let mut admin = sqlx::PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .unwrap();
    sqlx::raw_sql(&format!("GRANT landlord_password_login TO \"{role}\""))
        .execute(&mut admin)
        .await
        .expect("ops/services creates the landlord_password_login group");
}

async fn login(creds: &Value, password: &str) -> Result<(), sqlx::Error> {
    let url = format!(
        "postgres://{}:{password}@127.0.0.1:5432/{}",
        creds["role"].as_str().unwrap(),
        creds["database"].as_str().unwrap()
    );
    let mut c = sqlx::PgConnection::connect(&url).await?;
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut c)
        .await?;
    assert_eq!(who, creds["role"].as_str().unwrap());
    c.close().await
}

fn server_log() -> String {
    String::from_utf8_lossy(&std::fs::read(POSTGRES_LOG).expect("the server's log")).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_passwords_reach_neither_the_statement_log_nor_the_catalog_in_clear() {
    let mut env = TestEnv::new().await;
    // A server whose admin sessions log every statement, as an audited one would.
    env.set_env(&[(
        "LANDLORD_SERVER__LOGGED",
        &format!("{PG_SERVER}/postgres?options=-c%20log_statement%3Dall"),
    )]);
    env.spawn_worker(&[], &[]);
    let s = provisioned_on(&env, "logged", "logged");
    let creds = credentials(&env, &s);
    let (role, password) = (
        creds["role"].as_str().unwrap().to_string(),
        creds["password"].as_str().unwrap().to_string(),
    );
    require_password(&role).await;
    login(&creds, &password)
        .await
        .expect("the handed-out password logs in");
    let wrong = format!("{password}x");
    assert!(login(&creds, &wrong).await.is_err(), "a wrong one does not");

    env.ok(&["tenants", "rotate-credentials", &s]);
    let rotated = credentials(&env, &s);
    let new_password = rotated["password"].as_str().unwrap().to_string();
    assert_ne!(new_password, password);
    login(&rotated, &new_password)
        .await
        .expect("the rotated password logs in");
    assert!(
        login(&rotated, &password).await.is_err(),
        "the old one no longer does"
    );

    let log = server_log();
    let statements: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&format!("ROLE \"{role}\"")))
        .collect();
    assert!(
        statements.len() >= 2
            && statements
                .iter()
                .all(|l| l.contains("PASSWORD 'SCRAM-SHA-256$4096:")),
        "the server logged the role statements, with verifiers: {statements:#?}"
    );
    for p in [&password, &new_password] {
        assert!(
            !log.contains(p.as_str()),
            "a clear password is in the server's log"
        );
    }

    let (clear, sealed): (Option<String>, String) = sqlx::query_as(
        "SELECT c.password, c.sealed FROM tenant_credentials c JOIN tenants t ON t.id = c.tenant_id WHERE t.slug = $1",
    )
    .bind(&s)
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    assert_eq!(clear, None, "no clear password in the catalog");
    assert!(!sealed.contains(&new_password));
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(t::text, '|') FROM tenant_credentials t")
            .fetch_one(&env.catalog)
            .await
            .unwrap();
    assert!(!dump.contains(&new_password), "nor anywhere in the row");
}

/// `secrets status --json` (exit 1 while something is not sealed to the current key).
fn status_of(env: &TestEnv) -> Value {
    let out = env.run(&["secrets", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

/// The `catalog key` check of `doctor --json`.
fn doctor_key_check(env: &TestEnv) -> Value {
    let out = env.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "catalog key")
        .cloned()
        .unwrap_or_else(|| panic!("no catalog key check: {report:#}"))
}

fn write_key_file(path: &std::path::Path, keys: &[&age::x25519::Identity]) {
    let text: String = keys
        .iter()
        .map(|k| format!("{}\n", k.to_string().expose_secret()))
        .collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_key_rotates_and_a_removed_key_is_named_in_the_error() {
    let mut env = TestEnv::new().await;
    let dir = std::env::temp_dir().join(format!("landlord-keys-{}", env.id));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("catalog.key");
    let (old, new) = (
        age::x25519::Identity::generate(),
        age::x25519::Identity::generate(),
    );
    write_key_file(&file, &[&old]);
    let file_s = file.display().to_string();
    env.set_env(&[("LANDLORD_SECRETS_KEY_FILE", &file_s)]);
    env.spawn_worker(&[], &[]);
    let a = provisioned_on(&env, "rot-a", "default");
    let b = provisioned_on(&env, "rot-b", "default");
    let pw_a = credentials(&env, &a)["password"]
        .as_str()
        .unwrap()
        .to_string();
    // A row as a version before sealing left it: in clear.
    sqlx::query(
        "UPDATE tenant_credentials SET password = $2, sealed = NULL, sealed_to = NULL \
         WHERE tenant_id = (SELECT id FROM tenants WHERE slug = $1)",
    )
    .bind(&b)
    .bind("LegacyClearPassword1")
    .execute(&env.catalog)
    .await
    .unwrap();

    write_key_file(&file, &[&new, &old]);
    let status: Value = status_of(&env);
    assert_eq!(status["ok"], false);
    assert_eq!(status["clear"], 1);
    assert_eq!(status["sealed_to_other_keys"], 1);
    assert_eq!(status["current_key"], new.to_public().to_string());

    assert_eq!(doctor_key_check(&env)["ok"], false, "doctor says so too");

    let done = env.ok_json(&["secrets", "rekey", "--json"]);
    assert_eq!(done["done"]["resealed"], 1);
    assert_eq!(done["done"]["sealed_from_clear"], 1);
    let again = env.ok_json(&["secrets", "rekey", "--json"]);
    assert_eq!(
        again["done"]["current"], 2,
        "a second run has nothing to do"
    );

    write_key_file(&file, &[&new]);
    assert_eq!(
        credentials(&env, &a)["password"],
        pw_a.as_str(),
        "opens with the new key alone"
    );
    assert_eq!(credentials(&env, &b)["password"], "LegacyClearPassword1");
    let status: Value = status_of(&env);
    assert_eq!(status["ok"], true);
    let check = doctor_key_check(&env);
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains(&new.to_public().to_string())
    );

    write_key_file(&file, &[&old]);
    let out = env.run(&["tenants", "credentials", &a]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not open with any key"), "{err}");
    assert!(err.contains("LANDLORD_SECRETS_KEY_FILE"), "{err}");
    assert!(!err.contains(&pw_a));
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_without_a_catalog_key_refuses_before_a_role_exists() {
    let mut env = TestEnv::new().await;
    env.set_env(&[("LANDLORD_SECRETS_KEY_FILE", "")]);
    env.spawn_worker(&[], &[]);
    let s = slug(&env, "nokey");
    let owner = format!("nokey-{}@example.test", env.id);
    let out = env.run(&[
        "tenants", "create", &s, "--name", "No Key", "--plan", "pro", "--owner", &owner, "--wait",
    ]);
    assert!(!out.status.success(), "the provisioning fails");
    let job: Value = sqlx::query_scalar(
        "SELECT to_jsonb(j) FROM jobs j WHERE kind = 'provision' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&env.catalog)
    .await
    .unwrap();
    assert_eq!(job["status"], "dead", "fatal, not retried: {job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("LANDLORD_SECRETS_KEY_FILE is not set"),
        "{job}"
    );
    let db = landlord::lifecycle::database_name(&s);
    let roles: i64 = scalar_in(
        "postgres",
        "SELECT count(*) FROM pg_roles WHERE rolname = $1",
        &[&landlord::lifecycle::credentials::role_name(&db)],
    )
    .await;
    assert_eq!(roles, 0, "no role was created");
}

#[test]
fn config_show_masks_a_password_given_in_a_query() {
    let env_vars = [
        (
            "LANDLORD_DATABASE_URL",
            "postgres://app@127.0.0.1/landlord?password=hunter2secret",
        ),
        (
            "LANDLORD_SMTP_URL",
            "smtp://127.0.0.1:1025?pass=hunter2secret",
        ),
    ];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_landlord"))
        .args(["config", "show"])
        .env_remove("LANDLORD_CONFIG")
        .envs(env_vars)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("password=***"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
