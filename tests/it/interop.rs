//! Producers that are not landlord, and hostile input: messages published by
//! Python `pika` per the JSON Schema are adopted and run; malformed ones land
//! in the dead-letter queue with a reason; bad input changes nothing.

use std::{process::Command, time::Instant};

use crate::common::{TestEnv, WorkerProc, library_settings, ms, secs, stderr, stdout};
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use serde_json::{Value, json};
use uuid::Uuid;

fn publish_with_pika(env: &TestEnv, family: &str, messages: &Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/publish.py");
    let mut child = Command::new("python3")
        .args([
            script,
            &crate::common::amqp_url(),
            &env.topology.work_exchange(),
            family,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messages.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pika publisher failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Publishes, with pika, two good messages (an analyze for tenant `pyco`
/// and a ping) and eight unusable ones, to a running worker: the two good
/// job ids and the worker.
async fn mixed_batch(env: &mut TestEnv) -> (Uuid, Uuid, WorkerProc) {
    env.tenant("pyco").await;
    let w = env.spawn_worker(&[], &[]);
    let good = Uuid::new_v4();
    let good_ping = Uuid::new_v4();
    let messages = json!([
        {"valid": true, "body": {"v": 1, "job_id": good, "kind": "analyze", "tenant": "pyco", "args": {}}},
        {"valid": true, "body": {"v": 1, "job_id": good_ping, "kind": "ping", "args": {"hold_seconds": 0.2}}},
        {"valid": false, "body": "{this is not json"},
        {"valid": false, "body": {"v": 1, "job_id": "not-a-uuid", "kind": "ping"}},
        {"valid": false, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "ping", "args": ["wrong", "type"]}},
        {"valid": false, "body": {"v": 2, "job_id": Uuid::new_v4(), "kind": "ping"}},
        {"valid": false, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "analyze", "tenant": "a\"; DROP DATABASE x; --"}},
        // Valid per the schema, but refused on adoption: unknown kind, unknown tenant, wrong argument types.
        {"valid": true, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "launch_rockets", "args": {}}},
        {"valid": true, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "analyze", "tenant": "nobody-here", "args": {}}},
        {"valid": true, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "ping", "args": {"hold_seconds": "soon"}}},
    ]);
    publish_with_pika(env, "maintenance", &messages);
    (good, good_ping, w)
}

/// The reasons of the first `n` dead letters of this test (also used by
/// `hostile`).
pub(crate) async fn dead_letter_reasons(
    env: &TestEnv,
    ch: &lapin::Channel,
    n: usize,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let deadline = Instant::now() + secs(30);
    while reasons.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} dead letters: {reasons:?}\n{}",
            reasons.len(),
            env.worker_logs()
        );
        match ch
            .basic_get(
                env.topology.dead_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        {
            Some(m) => {
                let headers = m.delivery.properties.headers().clone().expect("headers");
                let reason = match headers.inner().get("x-landlord-reason") {
                    Some(AMQPValue::LongString(s)) => s.to_string(),
                    other => panic!("no reason header: {other:?}"),
                };
                reasons.push(reason);
            }
            None => tokio::time::sleep(ms(200)).await,
        }
    }
    reasons
}

#[tokio::test(flavor = "multi_thread")]
async fn pika_messages_valid_per_the_schema_run_as_adopted_jobs() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    let (good, good_ping, _w) = mixed_batch(&mut env).await;
    let j = env.wait_job(good, secs(30)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["origin"], "adopted");
    assert_eq!(j["tenant"], "pyco");
    assert_eq!(j["result"]["tables"], 3);
    let p = env.wait_job(good_ping, secs(30)).await;
    assert_eq!(p["status"], "succeeded");
    tap.wait_job_event("job.succeeded", good, secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_messages_are_dead_lettered_with_their_reason() {
    let mut env = TestEnv::new().await;
    let (_conn, ch) = env.channel().await;
    let (good, good_ping, w) = mixed_batch(&mut env).await;
    // Eight unusable messages in the dead-letter queue, each with its reason.
    let all = dead_letter_reasons(&env, &ch, 8).await.join("\n");
    for needle in [
        "not a v1 job message",
        "unsupported message version",
        "args must be a JSON object",
        "invalid tenant slug",
        "unknown job kind \"launch_rockets\"",
        "unknown tenant \"nobody-here\"",
        "invalid arguments for ping",
    ] {
        assert!(all.contains(needle), "missing reason {needle:?} in:\n{all}");
    }
    env.wait_job(good, secs(30)).await;
    env.wait_job(good_ping, secs(30)).await;
    // Only the two good messages became jobs.
    env.assert_count("SELECT count(*) FROM jobs", 2).await;
    assert_eq!(
        env.metric(
            &w,
            r#"landlord_messages_dead_lettered_total{queue="maintenance"}"#
        )
        .await,
        8.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_keeps_going_after_dead_lettering() {
    let mut env = TestEnv::new().await;
    let (_conn, ch) = env.channel().await;
    mixed_batch(&mut env).await;
    dead_letter_reasons(&env, &ch, 8).await;
    let after = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(after, secs(20)).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_published_twice_runs_once() {
    let mut env = TestEnv::new().await;
    let mut tap = env.events().await;
    env.spawn_worker(&[], &[]);
    let twice = Uuid::new_v4();
    let m = json!({"valid": true, "body": {"v": 1, "job_id": twice, "kind": "ping", "args": {}}});
    publish_with_pika(&env, "maintenance", &json!([m.clone(), m]));
    let j = env.wait_job(twice, secs(20)).await;
    assert_eq!(j["attempts"], 1);
    tap.settle(secs(1)).await;
    assert_eq!(tap.count("job.succeeded", twice), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_messages_are_dead_lettered() {
    let mut env = TestEnv::new().await;
    let (_conn, ch) = env.channel().await;
    env.spawn_worker(&[], &[]);
    let huge = "x".repeat(1024 * 1024);
    publish_with_pika(
        &env,
        "backup",
        &json!([{"valid": true, "body": {"v": 1, "job_id": Uuid::new_v4(), "kind": "ping", "args": {}, "dedupe_key": "k"}},
                {"valid": false, "body": format!("{{\"v\":1,\"kind\":\"ping\",\"pad\":\"{huge}\"}}")}]),
    );
    let reason = dead_letter_reasons(&env, &ch, 1).await.remove(0);
    assert!(reason.contains("at most 262144 are accepted"), "{reason}");
}

/// Hostile or wrong command lines against tenant `victim` (database `db`),
/// each with what its refusal must say.
fn hostile_cases(db: &str) -> Vec<(Vec<String>, &'static str)> {
    let hostile = "a\"; DROP DATABASE x; --";
    let argv = |args: &[&str]| -> Vec<String> { args.iter().map(|a| a.to_string()).collect() };
    // `tenants register SLUG --database DATABASE --name NAME EXTRA…`
    let register = |slug: &str, database: &str, name: &str, extra: &[&str]| {
        argv(
            &[
                &[
                    "tenants",
                    "register",
                    slug,
                    "--database",
                    database,
                    "--name",
                    name,
                ],
                extra,
            ]
            .concat(),
        )
    };
    let enqueue_ping = |flag: &str, value: &str| argv(&["jobs", "enqueue", "ping", flag, value]);
    vec![
        (register(hostile, db, "x", &[]), "invalid slug"),
        (
            register(
                "fresh",
                &format!("{db}\"; DROP DATABASE {db}; --"),
                "x",
                &[],
            ),
            "invalid database name",
        ),
        (
            register("fresh", "does_not_exist_db", "x", &[]),
            "does not exist",
        ),
        (
            register("fresh", db, "x", &["--plan", "platinum"]),
            "unknown plan",
        ),
        (
            register("fresh", db, "x", &["--server", "nowhere"]),
            "unknown database server",
        ),
        (register("fresh", db, "x", &[]), "already belongs to tenant"),
        (
            register("fresh", "other_db", &"x".repeat(100_000), &[]),
            "at most 200",
        ),
        (register("victim", "other_db", "x", &[]), "already exists"),
        (
            argv(&["maintenance", "--tenant", hostile, "--analyze"]),
            "unknown tenant",
        ),
        (
            argv(&["maintenance", "--tenant", "ghost", "--analyze"]),
            "unknown tenant \"ghost\"",
        ),
        (
            argv(&["maintenance", "--tenant", "victim"]),
            "choose at least one step",
        ),
        (
            argv(&["jobs", "enqueue", "launch_rockets"]),
            "unknown job kind",
        ),
        (argv(&["jobs", "enqueue", "analyze"]), "needs a tenant"),
        (
            enqueue_ping("--args", r#"{"hold_seconds":"soon"}"#),
            "invalid arguments for ping",
        ),
        (
            enqueue_ping("--args", r#"{"hold_seconds":1e9}"#),
            "between 0 and 86400",
        ),
        (enqueue_ping("--args", "[1,2]"), "must be a JSON object"),
        (enqueue_ping("--args", "{oops"), "not valid JSON"),
        (enqueue_ping("--queue", "nowhere"), "unknown queue"),
        (
            enqueue_ping("--args", r#"{"surprise":true}"#),
            "unknown field",
        ),
        (
            argv(&["worker", "--queues", "backup,bogus"]),
            "unknown queue",
        ),
    ]
}

/// A registered tenant `victim`: its database name.
async fn victim(env: &mut TestEnv) -> String {
    env.tenant("victim").await
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_arguments_are_refused_as_bad_input_naming_the_problem() {
    let mut env = TestEnv::new().await;
    let db = victim(&mut env).await;
    for (args, expect) in &hostile_cases(&db) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&argv);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{:?} should be refused as bad input; stderr: {err}",
            &argv[..argv.len().min(4)]
        );
        assert!(
            err.contains(expect),
            "{:?}: expected {expect:?} in: {err}",
            &argv[..argv.len().min(4)]
        );
        assert!(
            err.len() < 2_000,
            "error echoes too much input ({} bytes)",
            err.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_hostile_arguments_change_nothing() {
    let mut env = TestEnv::new().await;
    let db = victim(&mut env).await;
    for (args, _) in &hostile_cases(&db) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(!env.run(&argv).status.success(), "{argv:?}");
    }
    // Only the test's own tenant exists, no job was written, nothing was published.
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    env.assert_count("SELECT count(*) FROM outbox", 0).await;
    // The tenant database survived and no database x appeared.
    let survivors = format!("SELECT count(*) FROM pg_database WHERE datname IN ('{db}', 'x')");
    env.assert_count(&survivors, 1).await;
}

/// Through the library, in-process: argv cannot carry a million characters.
#[tokio::test(flavor = "multi_thread")]
async fn the_library_refuses_megabyte_registrations_without_echoing_them() {
    let mut env = TestEnv::new().await;
    let db = victim(&mut env).await;
    // A name of one million characters, through the library (argv cannot carry it).
    let settings = library_settings();
    let register = |slug: String, name: String| {
        let (catalog, settings, database) = (env.catalog.clone(), settings.clone(), db.clone());
        async move {
            let r = landlord::tenants::Registration {
                slug,
                name,
                plan: "pro".into(),
                server: "default".into(),
                database,
            };
            landlord::tenants::register(&catalog, &settings, &r, "test")
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let err = register("big-name".into(), "n".repeat(1_000_000)).await;
    assert!(
        err.contains("1000000 characters long; at most 200"),
        "{err}"
    );
    let err = register("s".repeat(1_000_000), "ok".into()).await;
    assert!(
        err.len() < 300,
        "the error must not echo a megabyte: {} bytes",
        err.len()
    );
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_bad_value_is_dead_lettered_with_a_short_reason() {
    let mut env = TestEnv::new().await;
    let (_conn, ch) = env.channel().await;
    env.spawn_worker(&[], &[]);
    let id = Uuid::new_v4();
    publish_with_pika(
        &env,
        "maintenance",
        &json!([{"valid": true, "body": {"v": 1, "job_id": id, "kind": "ping", "args": {"hold_seconds": "A".repeat(200_000)}}}]),
    );
    let reason = dead_letter_reasons(&env, &ch, 1).await.remove(0);
    assert!(reason.starts_with("invalid arguments for ping"), "{reason}");
    assert!(
        reason.chars().count() < 1100,
        "reason is {} chars",
        reason.chars().count()
    );
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    // The worker is still healthy and takes work.
    let after = env.enqueue(&["jobs", "ping"]);
    assert_eq!(env.wait_job(after, secs(20)).await["status"], "succeeded");
}
