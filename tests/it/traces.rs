//! OpenTelemetry traces (issue 14): with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! one trace follows a job from the CLI's `enqueue` through the relay's
//! `publish` of its message, the worker's `delivery` and `job` spans, to the
//! `publish` of its events, whose AMQP messages carry the `traceparent`; a
//! foreign publisher's `traceparent` is continued and a forged one ignored.
//! The spans are received by an OTLP/HTTP (JSON) receiver in this process.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, routing::post};
use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{TestEnv, ms, poll, secs};

/// One received span: its trace, ids, name, service role and attributes.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    role: String,
    attrs: Value,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs[key].as_str()
    }
}

/// An OTLP/HTTP receiver on loopback (`POST /v1/traces`, JSON encoding).
async fn otlp_receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |raw: Bytes| {
            let keep = keep.clone();
            async move {
                let body: Value = serde_json::from_slice(&raw).expect("OTLP JSON body");
                keep.lock().unwrap().extend(spans_of(&body));
                (axum::http::StatusCode::OK, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn attributes(list: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for kv in list.as_array().into_iter().flatten() {
        let v = &kv["value"];
        let text = v["stringValue"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["intValue"].as_str().map(str::to_string))
            .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
            .unwrap_or_else(|| v.to_string());
        out.insert(kv["key"].as_str().unwrap_or("").to_string(), json!(text));
    }
    Value::Object(out)
}

fn spans_of(body: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let resource = attributes(&rs["resource"]["attributes"]);
        assert_eq!(resource["service.name"], "landlord", "{resource:#}");
        let role = resource["landlord.role"].as_str().unwrap_or("").to_string();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    trace: s["traceId"].as_str().unwrap_or("").to_lowercase(),
                    id: s["spanId"].as_str().unwrap_or("").to_lowercase(),
                    parent: s["parentSpanId"].as_str().unwrap_or("").to_lowercase(),
                    name: s["name"].as_str().unwrap_or("").to_string(),
                    role: role.clone(),
                    attrs: attributes(&s["attributes"]),
                });
            }
        }
    }
    out
}

/// The spans named `name` about job `job`, once at least one arrived.
async fn wait_spans(seen: &Arc<Mutex<Vec<Span>>>, name: &str, job: Uuid) -> Vec<Span> {
    let id = job.to_string();
    poll(secs(30), ms(200), || async {
        let found: Vec<Span> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == name && s.attr("job_id") == Some(id.as_str()))
            .cloned()
            .collect();
        if found.is_empty() {
            Err(format!("no {name} span of job {job} yet"))
        } else {
            Ok(found)
        }
    })
    .await
}

fn otel_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ]
}

/// A queue of this test bound to every event on the events exchange.
async fn event_queue(env: &TestEnv, ch: &lapin::Channel) -> String {
    let q = format!("{}.trace-events", env.prefix);
    ch.queue_declare(
        q.clone().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.queue_bind(
        q.clone().into(),
        env.topology.events_exchange().into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    q
}

/// The `traceparent` header of the `job.succeeded` event of `job`.
async fn event_traceparent(ch: &lapin::Channel, queue: &str, job: Uuid) -> Option<String> {
    poll(secs(30), ms(200), || async {
        while let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            let body: Value = serde_json::from_slice(&m.delivery.data).unwrap_or(Value::Null);
            if body["event"] != "job.succeeded" || body["job_id"] != job.to_string() {
                continue;
            }
            let tp = m.delivery.properties.headers().as_ref().and_then(|h| {
                match h.inner().get(landlord::trace_context::HEADER) {
                    Some(AMQPValue::LongString(v)) => {
                        Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
                    }
                    _ => None,
                }
            });
            return Ok(tp);
        }
        Err(format!("no job.succeeded event of {job} yet"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_follows_a_job_from_its_enqueue_to_its_events() {
    let mut env = TestEnv::new().await;
    let (endpoint, seen) = otlp_receiver().await;
    let otel = otel_env(&endpoint);
    let otel: Vec<(&str, &str)> = otel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.tenant("traced").await;
    let (_conn, ch) = env.channel().await;
    let events = event_queue(&env, &ch).await;
    let _w = env.spawn_worker(&[], &otel);

    let out = env.ok_with(&["backup", "--tenant", "traced", "--json"], &otel);
    let job: Uuid = serde_json::from_str::<Value>(out.lines().next().expect("a line"))
        .expect("json")["job_id"]
        .as_str()
        .expect("job_id")
        .parse()
        .expect("uuid");
    assert_eq!(env.wait_job(job, secs(60)).await["status"], "succeeded");

    // The CLI exported its enqueue span before it exited: a new trace.
    let enqueue = wait_spans(&seen, "enqueue", job).await;
    assert_eq!(enqueue.len(), 1, "{enqueue:#?}");
    let enqueue = &enqueue[0];
    assert_eq!(enqueue.role, "cli");
    assert_eq!(enqueue.attr("tenant"), Some("traced"));
    assert_eq!(enqueue.parent, "", "the enqueue span starts the trace");
    let trace = enqueue.trace.clone();
    assert_eq!(trace.len(), 32, "{enqueue:?}");

    // The catalog keeps the context for retries.
    let stored: Option<String> = sqlx::query_scalar("SELECT trace_parent FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&env.catalog)
        .await
        .unwrap();
    let stored = stored.expect("jobs.trace_parent is set");
    assert!(
        stored.contains(&trace) && stored.contains(&enqueue.id),
        "{stored}"
    );

    // The worker's delivery continues the trace from the message's
    // traceparent, which the relay's publish span (a child of enqueue) sent.
    let delivery = wait_spans(&seen, "delivery", job).await;
    assert!(delivery.iter().all(|d| d.trace == trace), "{delivery:#?}");
    let publishes = wait_spans(&seen, "publish", job).await;
    let work = publishes
        .iter()
        .find(|p| p.id == delivery[0].parent)
        .unwrap_or_else(|| {
            panic!("the delivery's parent is a publish span: {delivery:#?} {publishes:#?}")
        });
    assert_eq!(work.parent, enqueue.id);
    // The enqueuing command publishes its own message right after its commit
    // (a worker's relay does when it got to the row first).
    assert!(["cli", "worker"].contains(&work.role.as_str()), "{work:?}");
    let job_span = wait_spans(&seen, "job", job).await;
    assert!(job_span.iter().all(|j| j.trace == trace), "{job_span:#?}");
    assert_eq!(job_span[0].attr("tenant"), Some("traced"));

    // Its events go out in the same trace, with the header for consumers.
    let tp = event_traceparent(&ch, &events, job)
        .await
        .expect("the event message has a traceparent header");
    assert!(tp.contains(&trace), "{tp}");
    let event_publish = poll(secs(30), ms(200), || async {
        let all = wait_spans(&seen, "publish", job).await;
        all.into_iter()
            .find(|p| p.attr("routing_key") == Some("job.succeeded"))
            .ok_or_else(|| "no publish span of the job.succeeded event yet".to_string())
    })
    .await;
    assert_eq!(event_publish.trace, trace);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_traceparent_is_continued_and_a_forged_one_ignored() {
    let mut env = TestEnv::new().await;
    let (endpoint, seen) = otlp_receiver().await;
    let otel = otel_env(&endpoint);
    let otel: Vec<(&str, &str)> = otel.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_conn, ch) = env.channel().await;
    env.topology.declare(&ch).await.expect("declare topology");
    let _w = env.spawn_worker(&[], &otel);

    let foreign_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (good, forged) = (Uuid::now_v7(), Uuid::now_v7());
    for (job, tp) in [
        (good, format!("00-{foreign_trace}-00f067aa0ba902b7-01")),
        (
            forged,
            format!("00-{}-not-a-span-id'; DROP TABLE jobs; --", "f".repeat(32)),
        ),
    ] {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(LongString::from(tp)),
        );
        let body = json!({"v": 1, "job_id": job, "kind": "ping", "args": {}});
        ch.basic_publish(
            ShortString::from(env.topology.work_exchange()),
            ShortString::from("maintenance"),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(ShortString::from(job.to_string()))
                .with_headers(headers),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    for job in [good, forged] {
        let j = env.wait_job(job, secs(30)).await;
        assert_eq!(j["status"], "succeeded", "{j:#}");
        assert_eq!(j["origin"], "adopted");
    }
    let stored = |job: Uuid| {
        let pool = env.catalog.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>("SELECT trace_parent FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        stored(good).await.as_deref(),
        Some(format!("00-{foreign_trace}-00f067aa0ba902b7-01").as_str())
    );
    assert_eq!(
        stored(forged).await,
        None,
        "a malformed traceparent is not kept"
    );

    let d = wait_spans(&seen, "delivery", good).await;
    assert_eq!(d[0].trace, foreign_trace);
    assert_eq!(d[0].parent, "00f067aa0ba902b7");
    let d = wait_spans(&seen, "delivery", forged).await;
    assert_ne!(d[0].trace, foreign_trace);
    assert_eq!(
        d[0].parent, "",
        "the forged context started a trace of its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_settings_are_checked_and_shown_without_secrets() {
    let env = TestEnv::new().await;
    let out = env.ok_with(
        &["config", "show"],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:hunter2@collector.example:4318/?key=hunter2",
        )],
    );
    assert!(
        out.contains("https://collector.example:4318/v1/traces"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
    let err = env
        .command(&["config", "show"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
        .output()
        .unwrap();
    assert_eq!(err.status.code(), Some(2), "{err:?}");
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("must be an http:// or https:// URL"),
        "{err:?}"
    );
    let err = env
        .command(&["config", "show"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("gRPC is not built in"),
        "{err:?}"
    );
    let off = env.ok(&["config", "show"]);
    assert!(off.contains("observability.traces = \"off\""), "{off}");
}
