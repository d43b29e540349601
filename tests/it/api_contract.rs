//! The API's contract as the running binary serves it: the OpenAPI document
//! from `GET /openapi.json` is checked for what every operation must say
//! (401 unless public, the `Idempotency-Key` parameter and its answers on
//! every POST, links that name real operations and parameters), the SSE
//! stream answers `text/event-stream` with the documented fields, and inputs
//! schemathesis (`ops/schemathesis`) found answered 500 are answered 4xx.

use std::time::Instant;

use crate::common::{TestEnv, free_port, ms, secs};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-contract-token-0123456789";

/// `landlord api` of this test on its own port, with an admin token; its
/// process is the environment's, killed when the test ends.
async fn start(env: &mut TestEnv) -> (String, reqwest::Client) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    env.spawn(
        &["api", "--listen", &listen],
        &[
            ("LANDLORD_API_TOKENS", &format!("admin={ADMIN}")),
            ("LANDLORD_API_RATE_PER_MINUTE", "0"),
        ],
    );
    let base = format!("http://{listen}");
    let http = reqwest::Client::builder()
        .timeout(secs(30))
        .build()
        .expect("client");
    let deadline = Instant::now() + secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "landlord api never answered /healthz:\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(ms(100)).await;
    }
    (base, http)
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (StatusCode, Value) {
    let r = http
        .post(url)
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Follows a local `$ref` (`#/components/...`) once.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

/// Every problem of the served document's operations, one line each.
fn contract_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let public = landlord::api::PUBLIC_ROUTES;
    let mut op_params: std::collections::HashMap<String, Vec<String>> = Default::default();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            if method == "parameters" {
                continue;
            }
            let params: Vec<&Value> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten()
                .map(|p| resolve(doc, p))
                .collect();
            let names = params
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            match op["operationId"].as_str() {
                Some(id) if op_params.insert(id.to_string(), names).is_some() => {
                    problems.push(format!("{method} {path}: operationId {id} used twice"))
                }
                Some(_) => {}
                None => problems.push(format!("{method} {path}: no operationId")),
            }
            let responses = op["responses"].as_object().expect("responses");
            if !public.contains(&path.as_str()) && !responses.contains_key("401") {
                problems.push(format!("{method} {path}: 401 not documented"));
            }
            if method != "post" {
                continue;
            }
            let key = params
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
            if !key {
                problems.push(format!("{method} {path}: no Idempotency-Key parameter"));
            }
            for (status, code) in [
                ("409", "idempotency_in_progress"),
                ("422", "idempotency_key_reused"),
                ("400", "bad_request"),
                ("413", "payload_too_large"),
            ] {
                let described = responses
                    .get(status)
                    .map(|r| resolve(doc, r)["description"].as_str().unwrap_or(""))
                    .is_some_and(|d| d.contains(&format!("`{code}`")));
                if !described {
                    problems.push(format!("{method} {path}: {status} `{code}` not documented"));
                }
            }
            for (status, r) in responses {
                if status.starts_with('2')
                    && resolve(doc, r)["headers"]
                        .get("Idempotent-Replayed")
                        .is_none()
                {
                    problems.push(format!(
                        "{method} {path}: {status} lacks the Idempotent-Replayed header"
                    ));
                }
            }
        }
    }
    // Links name operations that exist, and only parameters those have.
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Some(responses) = op["responses"].as_object() else {
                continue;
            };
            for (status, r) in responses {
                for (name, link) in r["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap_or("");
                    let Some(known) = op_params.get(target) else {
                        problems.push(format!(
                            "{method} {path} {status}: link {name} to unknown operation {target:?}"
                        ));
                        continue;
                    };
                    for p in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|p| p.0)
                    {
                        if !known.contains(p) {
                            problems.push(format!(
                                "{method} {path} {status}: link {name} sets {p}, which {target} lacks"
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}

/// The served document says, for every operation, what the API does to all
/// of them: 401 without a token, and on every POST the `Idempotency-Key`
/// header with its 409/422 codes and the `Idempotent-Replayed` header; and a
/// replayed POST really answers as documented.
#[tokio::test(flavor = "multi_thread")]
async fn every_operation_documents_auth_and_every_post_idempotency() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (base, http) = start(&mut env).await;
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("JSON");
    let problems = contract_problems(&doc);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let posts = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .filter(|i| i.get("post").is_some())
        .count();
    assert!(posts >= 20, "only {posts} POST operations documented");

    // The check can fail: a POST without the parameter is found.
    let mut broken = doc.clone();
    broken["paths"]["/v1/maintenance"]["post"]["parameters"] = json!([]);
    broken["paths"]["/v1/doctor"]["get"]["responses"]
        .as_object_mut()
        .unwrap()
        .remove("401");
    let found = contract_problems(&broken).join("\n");
    assert!(
        found.contains("post /v1/maintenance: no Idempotency-Key parameter"),
        "{found}"
    );
    assert!(
        found.contains("get /v1/doctor: 401 not documented"),
        "{found}"
    );

    // What the document promises: the same key and request answer the first answer again.
    let url = format!("{base}/v1/tenants/acme/jobs");
    let send = || {
        http.post(&url)
            .bearer_auth(ADMIN)
            .header("Idempotency-Key", "contract-1")
            .json(&json!({"kind": "ping"}))
            .send()
    };
    let first = send().await.expect("first");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send().await.expect("again");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = http
        .post(&url)
        .bearer_auth(ADMIN)
        .header("Idempotency-Key", "contract-1")
        .json(&json!({"kind": "analyze"}))
        .send()
        .await
        .expect("other");
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "idempotency_key_reused");
}

/// `GET /v1/events/stream` answers `text/event-stream` (as documented) with
/// `id`, `event` and JSON `data` per event, from `after` on.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_is_server_sent_events() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (base, http) = start(&mut env).await;
    let (s, b) = post(
        &http,
        &format!("{base}/v1/tenants/acme/suspend"),
        json!({"reason": "contract test"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    // The page shows the event first (the feed holds back rows of transactions still running).
    let deadline = Instant::now() + secs(20);
    loop {
        let page: Value = http
            .get(format!("{base}/v1/events?after=0"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("page")
            .json()
            .await
            .expect("JSON");
        if page["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["event"] == "tenant.status_changed"))
        {
            break;
        }
        if Instant::now() > deadline {
            let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                "SELECT id, exchange, routing_key, xmin::text FROM outbox ORDER BY id",
            )
            .fetch_all(&env.catalog)
            .await
            .unwrap();
            let snap: String = sqlx::query_scalar("SELECT pg_current_snapshot()::text")
                .fetch_one(&env.catalog)
                .await
                .unwrap();
            let old: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT coalesce(datname, ''), backend_xid::text, left(query, 100) FROM pg_stat_activity \
                 WHERE backend_xid IS NOT NULL ORDER BY xact_start LIMIT 5",
            )
            .fetch_all(&env.catalog)
            .await
            .unwrap();
            panic!(
                "no tenant.status_changed in the feed after 20 s: {page:#}\noutbox {rows:?}\nsnapshot {snap}\nrunning {old:?}"
            );
        }
        tokio::time::sleep(ms(200)).await;
    }
    let mut res = http
        .get(format!("{base}/v1/events/stream?after=0"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("stream");
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut text = String::new();
    let deadline = Instant::now() + secs(20);
    while !text.contains("\n\n") || !text.contains("event: tenant.status_changed") {
        assert!(Instant::now() < deadline, "no event within 20 s: {text:?}");
        match tokio::time::timeout(secs(20), res.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended or failed ({other:?}) after {text:?}"),
        }
    }
    let event = text
        .split("\n\n")
        .find(|e| e.contains("event: tenant.status_changed"))
        .unwrap();
    let field = |name: &str| {
        event
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {event:?}"))
    };
    assert!(field("id").parse::<i64>().is_ok(), "{event}");
    let data: Value = serde_json::from_str(field("data")).expect("data is JSON");
    assert_eq!(data["tenant"], "acme", "{data:#}");
}

/// Inserts a complete backup row of `slug` (its objects do not exist).
async fn backup_row(env: &TestEnv, slug: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO backups (id, tenant_id, status, store, object_key, format, codec, raw_bytes, \
         stored_bytes, completed_at, duration_ms) \
         SELECT $1, id, 'complete', 's3', $2, 'custom', 'zstd', 10, 5, now(), 1 FROM tenants WHERE slug = $3",
    )
    .bind(id)
    .bind(format!("{}/{slug}/{slug}-contract.dump.zst", env.prefix))
    .bind(slug)
    .execute(&env.catalog)
    .await
    .expect("backup row");
    id
}

/// PostgreSQL text and jsonb cannot hold NUL: a hold reason or a backup's
/// `hold` argument with one must be refused as bad input (422, nothing
/// changed), never answered 500 `internal`.
#[tokio::test(flavor = "multi_thread")]
async fn nul_characters_in_hold_reasons_are_bad_input_not_server_errors() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let (base, http) = start(&mut env).await;
    let id = backup_row(&env, "acme").await;

    let (s, b) = post(
        &http,
        &format!("{base}/v1/backups/{id}/hold"),
        json!({"reason": "legal\u{0}hold"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "hold: {b:#}");
    assert_eq!(b["error"]["code"], "invalid_input", "{b:#}");
    env.assert_count("SELECT count(*) FROM backups WHERE held", 0)
        .await;

    let (s, b) = post(
        &http,
        &format!("{base}/v1/tenants/acme/backups"),
        json!({"hold": "legal\u{0}hold"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "backup now: {b:#}");
    assert_eq!(b["error"]["code"], "invalid_input", "{b:#}");
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
}
