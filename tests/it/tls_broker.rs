//! RabbitMQ over `amqps://`, against the TLS node `ops/services up --tls`
//! starts (landlord-tls@localhost, 127.0.0.1:5671, `LANDLORD_TEST_AMQPS_URL`)
//! with the test CA of `LANDLORD_TEST_TLS_DIR`: every role connects with the
//! URL's `cacertfile` (and client certificate), and each way a handshake can
//! fail is refused with a message saying which, naming the masked URL.

use std::path::PathBuf;

use lapin::{options::QueueDeclareOptions, types::FieldTable};
use serde_json::Value;

use crate::common::{TestEnv, secs, stdout};

fn tls_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("LANDLORD_TEST_TLS_DIR").expect(
            "LANDLORD_TEST_TLS_DIR (eval \"$(ops/services env)\" after ops/services up --tls)",
        ),
    )
}

fn file(name: &str) -> String {
    tls_dir().join(name).display().to_string()
}

/// The TLS node's URL with query parameters `params` (`cacertfile=…`).
fn amqps(host: &str, params: &[(&str, String)]) -> String {
    let base = std::env::var("LANDLORD_TEST_AMQPS_URL")
        .expect("LANDLORD_TEST_AMQPS_URL (ops/services up --tls; eval \"$(ops/services env)\")");
    let mut u = url::Url::parse(&base).expect("LANDLORD_TEST_AMQPS_URL is a URL");
    u.set_host(Some(host)).expect("host");
    for (k, v) in params {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

fn with_ca() -> String {
    amqps("localhost", &[("cacertfile", file("ca.pem"))])
}

/// The `broker` check of `landlord doctor --json` with `LANDLORD_AMQP_URL=url`.
fn doctor_broker(env: &TestEnv, url: &str) -> Value {
    let out = env.run_with(&["doctor", "--json"], &[("LANDLORD_AMQP_URL", url)]);
    let report: Value = serde_json::from_str(&stdout(&out)).expect("doctor --json");
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "broker")
        .cloned()
        .expect("a broker check")
}

/// Jobs enqueued by the CLI over amqps run on a worker connected over amqps,
/// and the relay's events arrive there too: the harness's own channel and
/// event tap use the same URL, so the queues are on the TLS node.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_over_amqps_runs_jobs_end_to_end() {
    let mut env = TestEnv::new().await;
    let url = with_ca();
    env.set_env(&[("LANDLORD_AMQP_URL", &url)]);
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let ids: Vec<_> = (0..3).map(|_| env.enqueue(&["jobs", "ping"])).collect();
    for id in &ids {
        let j = env.wait_job(*id, secs(30)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        tap.wait_job_event("job.succeeded", *id, secs(20)).await;
    }
    // The work queue lives on the TLS node (a passive declare fails elsewhere).
    let (_conn, ch) = env.channel().await;
    ch.queue_declare(
        env.topology.queue("maintenance").into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the work queue is declared on the TLS node");
    // Nothing went to the outbox for lack of a broker.
    env.assert_count("SELECT count(*) FROM outbox WHERE published_at IS NULL", 0)
        .await;
}

/// doctor says the broker connection is TLS and verified, and a plain one is not.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_whether_the_broker_connection_is_tls() {
    let env = TestEnv::new().await;
    let tls = doctor_broker(&env, &with_ca());
    assert_eq!(tls["ok"], true, "{tls:#}");
    assert_eq!(tls["transport"]["encrypted"], true, "{tls:#}");
    assert_eq!(tls["transport"]["verified"], true, "{tls:#}");
    assert!(
        !tls["detail"].as_str().unwrap().contains(":guest@"),
        "{tls:#}"
    );
    let plain = doctor_broker(&env, &crate::common::amqp_url());
    assert_eq!(plain["ok"], true, "{plain:#}");
    assert_eq!(plain["transport"]["encrypted"], false, "{plain:#}");
}

/// An untrusted CA, a host name the certificate does not list and plain AMQP
/// to the TLS port are each refused, saying which, with the masked URL.
#[tokio::test(flavor = "multi_thread")]
async fn failed_handshakes_say_what_failed() {
    let env = TestEnv::new().await;
    let cases = [
        (
            amqps("localhost", &[("cacertfile", file("other-ca.pem"))]),
            "not signed by a CA this client trusts",
        ),
        // The node listens on 127.0.0.2 too; its certificate names only localhost and 127.0.0.1.
        (
            amqps("127.0.0.2", &[("cacertfile", file("ca.pem"))]),
            "does not name the host",
        ),
        (
            amqps("localhost", &[]).replacen("amqps://", "amqp://", 1),
            "use amqps://",
        ),
    ];
    for (url, expect) in cases {
        let c = doctor_broker(&env, &url);
        assert_eq!(c["ok"], false, "{url}: {c:#}");
        let detail = c["detail"].as_str().unwrap();
        assert!(
            detail.contains(expect),
            "{url}: expected {expect:?} in {detail}"
        );
        let masked = landlord::config::SecretUrl::new(url.as_str()).masked();
        assert!(
            detail.contains(&masked),
            "names the endpoint {masked}: {detail}"
        );
        assert!(!detail.contains("guest:guest"), "password masked: {detail}");
    }
    // A worker with the untrusted CA runs nothing and logs the same reason.
    let mut env = env;
    env.set_env(&[(
        "LANDLORD_AMQP_URL",
        &amqps("localhost", &[("cacertfile", file("other-ca.pem"))]),
    )]);
    let w = env.spawn_worker(&[], &[]);
    crate::common::poll(secs(30), crate::common::ms(200), || async {
        let log = w.log_text();
        if log.contains("not signed by a CA this client trusts") {
            Ok(())
        } else {
            Err(format!("worker log so far:\n{log}"))
        }
    })
    .await;
}

/// A client certificate signed by the CA is accepted (a job runs over that
/// connection); one from another CA is refused by the broker, which asks for
/// client certificates and verifies those it gets.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_presented_and_checked() {
    let mut env = TestEnv::new().await;
    let good = amqps(
        "localhost",
        &[
            ("cacertfile", file("ca.pem")),
            ("certfile", file("client.pem")),
            ("keyfile", file("client.key")),
        ],
    );
    let c = doctor_broker(&env, &good);
    assert_eq!(c["ok"], true, "{c:#}");
    assert!(
        c["transport"]["detail"]
            .as_str()
            .unwrap()
            .contains("client.pem"),
        "{c:#}"
    );
    env.set_env(&[("LANDLORD_AMQP_URL", &good)]);
    env.spawn_worker(&[], &[]);
    let id = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(id, secs(30)).await["status"], "succeeded");
    // other-ca.pem is self-signed by a CA the broker does not trust.
    let bad = amqps(
        "localhost",
        &[
            ("cacertfile", file("ca.pem")),
            ("certfile", file("other-ca.pem")),
            ("keyfile", file("other-ca.key")),
        ],
    );
    let c = doctor_broker(&env, &bad);
    assert_eq!(c["ok"], false, "{c:#}");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("client certificate") && detail.contains("other-ca.pem"),
        "{detail}"
    );
}
