//! SMTP with TLS and AUTH, against the servers `ops/services up --tls`
//! starts: a maildev with implicit TLS and AUTH (`LANDLORD_TEST_SMTPS_URL`,
//! its mail on `LANDLORD_TEST_SMTPS_WEB_URL`) and a STARTTLS-and-AUTH server
//! relaying into the plain maildev (`LANDLORD_TEST_SMTP_STARTTLS_URL`), beside
//! the plain maildev on 1025 that offers neither. The welcome mail of a
//! provisioned tenant is the mail sent.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use crate::common::{TestEnv, mails_to, ms, poll, secs, stdout, wait_mail};

fn var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} (ops/services up --tls; eval \"$(ops/services env)\")"))
}

fn ca() -> String {
    format!("{}/ca.pem", var("LANDLORD_TEST_TLS_DIR"))
}

/// `url` with query `q` (e.g. `tls=required`) and, if given, another password.
fn with(url: &str, q: Option<&str>, password: Option<&str>) -> String {
    let mut u = url::Url::parse(url).expect("a URL");
    if let Some(p) = password {
        u.set_password(Some(p)).expect("password");
    }
    u.set_query(q);
    u.to_string()
}

/// Creates a tenant (a worker must run) and returns its owner's address.
fn create_tenant(env: &TestEnv, who: &str) -> String {
    let slug = format!("{who}-{}", &env.id[..8]);
    let owner = format!("{who}-{}@example.test", env.id);
    let out = env.ok(&[
        "tenants",
        "create",
        &slug,
        "--name",
        "Acme Corp",
        "--plan",
        "pro",
        "--owner",
        &owner,
        "--wait",
    ]);
    assert!(out.contains(&format!("tenant {slug} is active")), "{out}");
    owner
}

/// Mail the smtps maildev received for `address`.
async fn smtps_mails_to(address: &str) -> Vec<Value> {
    crate::common::mails_at(&var("LANDLORD_TEST_SMTPS_WEB_URL"), address).await
}

/// The `mail` check of `landlord doctor --json` with `vars` set.
fn doctor_mail(env: &TestEnv, vars: &[(&str, &str)]) -> Value {
    let out = env.run_with(&["doctor", "--json"], vars);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("doctor --json");
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "mail")
        .cloned()
        .expect("a mail check")
}

/// The welcome_mail job of this test, once it has one.
async fn welcome_job(env: &TestEnv) -> Uuid {
    poll(secs(30), ms(200), || async {
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM jobs WHERE kind = 'welcome_mail'")
            .fetch_optional(&env.catalog)
            .await
            .expect("query")
            .ok_or_else(|| "no welcome_mail job yet".to_string())
    })
    .await
}

/// The first error a job recorded.
async fn first_error(env: &TestEnv, id: Uuid, timeout: Duration) -> String {
    poll(timeout, ms(200), || async {
        let j = env.job(id).await;
        j["last_error"]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("no error yet: {j:#}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_welcome_mail_arrives_over_smtps_with_auth() {
    let mut env = TestEnv::new().await;
    let url = var("LANDLORD_TEST_SMTPS_URL");
    env.set_env(&[
        ("LANDLORD_SMTP_URL", &url),
        ("LANDLORD_SMTP_CA_FILE", &ca()),
    ]);
    env.spawn_worker(&[], &[]);
    let owner = create_tenant(&env, "tlsmail");
    let mails = poll(secs(30), ms(200), || async {
        let m = smtps_mails_to(&owner).await;
        if m.is_empty() {
            Err("no mail yet".to_string())
        } else {
            Ok(m)
        }
    })
    .await;
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_eq!(mails[0]["subject"], "Welcome to Acme Corp");
    // It went to the smtps maildev, not the plain one.
    assert!(mails_to(&owner).await.is_empty());
    // doctor: implicit TLS, verified against the CA, authenticated.
    let c = doctor_mail(&env, &[]);
    assert_eq!(c["ok"], true, "{c:#}");
    assert_eq!(c["transport"]["encrypted"], true, "{c:#}");
    assert_eq!(c["transport"]["verified"], true, "{c:#}");
    let how = c["transport"]["detail"].as_str().unwrap();
    assert!(
        how.contains("implicit TLS") && how.contains("AUTH as landlord"),
        "{how}"
    );
    assert!(
        !c["detail"].as_str().unwrap().contains("p%40ss"),
        "masked: {c:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_refused_clearly() {
    let mut env = TestEnv::new().await;
    let url = with(
        &var("LANDLORD_TEST_SMTPS_URL"),
        None,
        Some("not-the-password"),
    );
    env.set_env(&[
        ("LANDLORD_SMTP_URL", &url),
        ("LANDLORD_SMTP_CA_FILE", &ca()),
    ]);
    env.spawn_worker(&[], &[]);
    let owner = create_tenant(&env, "badpass");
    let job = welcome_job(&env).await;
    let err = first_error(&env, job, secs(30)).await;
    assert!(err.contains("refused the user name or password"), "{err}");
    assert!(
        err.contains("smtps://landlord:***@localhost"),
        "names the masked URL: {err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(smtps_mails_to(&owner).await.is_empty());
    // The same URL over STARTTLS is refused the same way.
    let starttls = with(
        &var("LANDLORD_TEST_SMTP_STARTTLS_URL"),
        Some("tls=required"),
        Some("nope"),
    );
    let c = doctor_mail(&env, &[("LANDLORD_SMTP_URL", &starttls)]);
    assert_eq!(c["ok"], false, "{c:#}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("refused the user name or password"),
        "{c:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_smtp_certificate_is_refused() {
    let env = TestEnv::new().await;
    let other = format!("{}/other-ca.pem", var("LANDLORD_TEST_TLS_DIR"));
    let url = var("LANDLORD_TEST_SMTPS_URL");
    let c = doctor_mail(
        &env,
        &[
            ("LANDLORD_SMTP_URL", &url),
            ("LANDLORD_SMTP_CA_FILE", &other),
        ],
    );
    assert_eq!(c["ok"], false, "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("not signed by a CA this client trusts"),
        "{detail}"
    );
    assert!(detail.contains("other-ca.pem"), "{detail}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_required_fails_against_a_server_without_it() {
    let mut env = TestEnv::new().await;
    let plain = "smtp://127.0.0.1:1025?tls=required";
    let c = doctor_mail(&env, &[("LANDLORD_SMTP_URL", plain)]);
    assert_eq!(c["ok"], false, "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("does not offer STARTTLS") && detail.contains(plain),
        "{detail}"
    );
    // The welcome job fails the same way, and nothing is sent in clear.
    env.set_env(&[("LANDLORD_SMTP_URL", plain)]);
    env.spawn_worker(&[], &[]);
    let owner = create_tenant(&env, "nostarttls");
    let err = first_error(&env, welcome_job(&env).await, secs(30)).await;
    assert!(err.contains("does not offer STARTTLS"), "{err}");
    assert!(mails_to(&owner).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_is_used_where_offered_and_opportunistic_works_against_both() {
    let mut env = TestEnv::new().await;
    let starttls = var("LANDLORD_TEST_SMTP_STARTTLS_URL");
    // Required and opportunistic against the STARTTLS server: upgraded, verified, AUTH.
    for q in ["tls=required", "tls=opportunistic"] {
        let url = with(&starttls, Some(q), None);
        let c = doctor_mail(
            &env,
            &[
                ("LANDLORD_SMTP_URL", &url),
                ("LANDLORD_SMTP_CA_FILE", &ca()),
            ],
        );
        assert_eq!(c["ok"], true, "{q}: {c:#}");
        assert_eq!(c["transport"]["encrypted"], true, "{q}: {c:#}");
        assert!(
            c["transport"]["detail"]
                .as_str()
                .unwrap()
                .contains("STARTTLS"),
            "{c:#}"
        );
    }
    // Opportunistic against the plain maildev: plain, and said so.
    let plain = "smtp://127.0.0.1:1025?tls=opportunistic";
    let c = doctor_mail(&env, &[("LANDLORD_SMTP_URL", plain)]);
    assert_eq!(c["ok"], true, "{c:#}");
    assert_eq!(c["transport"]["encrypted"], false, "{c:#}");
    // A welcome mail through each: the STARTTLS server relays into the plain
    // maildev (marking it), which it only does for a session that did STARTTLS and AUTH.
    let w = env.spawn_worker(
        &[],
        &[
            (
                "LANDLORD_SMTP_URL",
                &with(&starttls, Some("tls=opportunistic"), None),
            ),
            ("LANDLORD_SMTP_CA_FILE", &ca()),
        ],
    );
    let via_starttls = create_tenant(&env, "starttls");
    let m = wait_mail(&via_starttls, secs(30)).await;
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0]["headers"]["x-landlord-relay"], "starttls+auth",
        "{m:#?}"
    );
    env.signal(&w, "TERM");
    assert!(
        env.wait_exit(&w, secs(30)).is_some(),
        "the first worker stops"
    );
    env.spawn_worker(&[], &[("LANDLORD_SMTP_URL", plain)]);
    let via_plain = create_tenant(&env, "plain");
    let m = wait_mail(&via_plain, secs(30)).await;
    assert_eq!(m.len(), 1);
    assert!(
        m[0]["headers"]["x-landlord-relay"].is_null(),
        "sent directly: {m:#?}"
    );
}
