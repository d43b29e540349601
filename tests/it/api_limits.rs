//! What a tenant token may not do to a shared installation, against the real
//! `landlord api` binary: prune its own backup history, start restore tests,
//! pile up live jobs, flood the API, keep working once its tenant is out of
//! service, or read the internals of its job rows. Also that a restore test
//! waits for one of its server's heavy slots, like a backup.

use crate::common::{TestEnv, ms, poll, secs};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

const ADMIN: &str = "admin-token-limits-0123456789";
const ACME: &str = "acme-token-limits-0123456789";
const BETA: &str = "beta-token-limits-0123456789";

/// `landlord api` with this module's tokens, through the shared harness.
struct Api(crate::api::Api);

impl Api {
    async fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Api {
        let tokens = format!("admin={ADMIN},tenant:acme={ACME},tenant:beta={BETA}");
        Api(crate::api::Api::start_with(env, &tokens, extra).await)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        self.0.call(method, path, Some(token), body).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.0.get(path, Some(token)).await
    }

    async fn enqueue(&self, tenant: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.0.enqueue(tenant, token, body).await
    }

    async fn accepted(&self, tenant: &str, token: &str, body: Value) -> Uuid {
        Uuid::parse_str(&self.0.accepted(tenant, token, body).await).expect("job id")
    }
}

/// Asserts an error answer: status and stable code; returns the message.
#[track_caller]
fn assert_error(got: (StatusCode, Value), status: u16, code: &str) -> String {
    let (s, body) = got;
    assert_eq!(
        s.as_u16(),
        status,
        "expected {status} {code}, got {s}: {body:#}"
    );
    assert_eq!(body["error"]["code"], code, "{body:#}");
    body["error"]["message"]
        .as_str()
        .expect("message")
        .to_string()
}

/// Two registered tenants, acme and beta, behind a running API.
async fn two_tenants(extra: &[(&str, &str)]) -> (TestEnv, Api) {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("beta").await;
    let api = Api::start(&env, extra).await;
    (env, api)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_cannot_prune_its_backup_history() {
    let (env, api) = two_tenants(&[]).await;
    for args in [
        json!({"keep": 1}),
        json!({"retention": "keep:1"}),
        json!({"retention": "gfs:1d"}),
    ] {
        let msg = assert_error(
            api.enqueue("acme", ACME, json!({"kind": "backup", "args": args}))
                .await,
            403,
            "forbidden",
        );
        assert!(msg.contains("retention"), "{args}: {msg}");
    }
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    // A plain backup (the configured retention) is the tenant's to ask for.
    api.accepted("acme", ACME, json!({"kind": "backup"})).await;
    // The operator may choose the retention of a run.
    api.accepted(
        "acme",
        ADMIN,
        json!({"kind": "backup", "args": {"keep": 1}}),
    )
    .await;
    env.assert_count("SELECT count(*) FROM jobs", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_cannot_start_restore_tests() {
    let (env, api) = two_tenants(&[]).await;
    let msg = assert_error(
        api.enqueue(
            "acme",
            ACME,
            json!({"kind": "verify_backup", "args": {"restore_test": true}}),
        )
        .await,
        403,
        "forbidden",
    );
    assert!(msg.contains("restore_test"), "{msg}");
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    // Reading a backup back is fine; so is an admin's restore test.
    api.accepted(
        "acme",
        ACME,
        json!({"kind": "verify_backup", "args": {"restore_test": false}}),
    )
    .await;
    api.accepted("acme", ACME, json!({"kind": "verify_backup"}))
        .await;
    api.accepted(
        "acme",
        ADMIN,
        json!({"kind": "verify_backup", "args": {"restore_test": true}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_test_waits_for_a_heavy_slot() {
    let mut env = TestEnv::new().await;
    env.tenant("vault").await;
    env.ok(&["backup", "--tenant", "vault", "--sync", "--json"]);
    // The server's one heavy slot, taken as a running backup would take it.
    let mut holder =
        PgConnection::connect(&format!("{}/{}", crate::common::PG_SERVER, env.catalog_db))
            .await
            .unwrap();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('landlord-heavy:' || $1), 0)")
            .bind("default")
            .fetch_one(&mut holder)
            .await
            .unwrap();
    assert!(got);
    env.spawn_worker(
        &["--concurrency", "2"],
        &[
            ("LANDLORD_HEAVY_PER_SERVER", "1"),
            ("LANDLORD_BUSY_DELAY_MS", "100"),
        ],
    );
    let id = env.enqueue(&["backups", "verify", "--tenant", "vault", "--restore-test"]);
    let seen = poll(secs(60), ms(100), || async {
        let j = env.job(id).await;
        let postponed = j["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("heavy slot"));
        if postponed || j["status"] == "succeeded" {
            Ok(j)
        } else {
            Err(format!("neither postponed nor done: {j:#}"))
        }
    })
    .await;
    assert_ne!(
        seen["status"], "succeeded",
        "a restore test ran while every heavy slot of its server was taken: {seen:#}"
    );
    // It keeps waiting while the slot is held, and spends no attempt.
    tokio::time::sleep(secs(2)).await;
    let j = env.job(id).await;
    assert_ne!(j["status"], "succeeded", "{j:#}");
    holder.close().await.unwrap();
    let j = env.wait_job(id, secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert_eq!(j["attempts"], 1, "waiting spends no attempt: {j:#}");
    assert_eq!(j["result"]["restore_test"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn live_jobs_of_a_tenant_token_are_capped() {
    let (env, api) = two_tenants(&[("LANDLORD_API_MAX_LIVE_JOBS_PER_TENANT", "3")]).await;
    // No worker: every job stays queued, so live.
    let ping = json!({"kind": "ping", "args": {"hold_seconds": 0}});
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(api.accepted("acme", ACME, ping.clone()).await);
    }
    let msg = assert_error(
        api.enqueue("acme", ACME, ping.clone()).await,
        409,
        "live_job_limit_reached",
    );
    assert!(msg.contains('3') && msg.contains("acme"), "{msg}");
    env.assert_count("SELECT count(*) FROM jobs", 3).await;
    // Another tenant has its own count, and the operator is not capped.
    api.accepted("beta", BETA, ping.clone()).await;
    api.accepted("acme", ADMIN, ping.clone()).await;
    // Once jobs end, the tenant may enqueue again (the admin's job still counts).
    env.ok(&["jobs", "cancel", &ids[0].to_string()]);
    env.ok(&["jobs", "cancel", &ids[1].to_string()]);
    api.accepted("acme", ACME, ping.clone()).await;
    assert_error(
        api.enqueue("acme", ACME, ping.clone()).await,
        409,
        "live_job_limit_reached",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_is_rate_limited_per_token() {
    let extra = [("LANDLORD_API_RATE_PER_MINUTE", "60")];
    let (env, api) = two_tenants(&extra).await;
    let shown = env.ok_with(&["config", "show"], &extra);
    assert!(shown.contains("api.rate_per_minute = 60"), "{shown}");
    assert!(
        shown.contains("api.max_live_jobs_per_tenant = 20"),
        "{shown}"
    );
    // A burst: the bucket holds a minute's worth, then answers 429.
    let mut ok = 0;
    let (body, headers) = loop {
        let (s, b, h) = api.call(Method::GET, "/v1/tenants/acme", ACME, None).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            break (b, h);
        }
        assert_eq!(s, StatusCode::OK, "{b:#}");
        ok += 1;
        assert!(ok <= 100, "no 429 after {ok} requests at 60 per minute");
    };
    assert!(ok >= 60, "only {ok} requests before the first 429");
    assert_eq!(body["error"]["code"], "rate_limited", "{body:#}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Other tokens are unaffected.
    assert_eq!(api.get("/v1/tenants/beta", BETA).await.0, StatusCode::OK);
    assert_eq!(api.get("/v1/tenants/acme", ADMIN).await.0, StatusCode::OK);
    // After the wait, the token works again.
    tokio::time::sleep(secs(retry)).await;
    let (s, b) = api.get("/v1/tenants/acme", ACME).await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_of_tenants_out_of_service_are_refused() {
    let (env, api) = two_tenants(&[]).await;
    let job = api
        .accepted("acme", ADMIN, json!({"kind": "analyze"}))
        .await;
    let (s, b, _) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/status",
            ADMIN,
            Some(json!({"status": "suspended", "reason": "unpaid invoices"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    let refused: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            "/v1/tenants/acme/settings".into(),
            Some(json!({"set": {"language": "en"}})),
        ),
        (Method::GET, "/v1/tenants/acme/credentials".into(), None),
        (
            Method::POST,
            "/v1/tenants/acme/jobs".into(),
            Some(json!({"kind": "analyze"})),
        ),
        (Method::GET, format!("/v1/jobs/{job}"), None),
    ];
    for (method, path, body) in &refused {
        let (s, b, _) = api.call(method.clone(), path, ACME, body.clone()).await;
        let msg = assert_error((s, b), 403, "forbidden");
        assert!(msg.contains("suspended"), "{method} {path}: {msg}");
    }
    // Its own tenant stays readable, so the tenant can see why.
    let (s, t) = api.get("/v1/tenants/acme", ACME).await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "suspended");
    // Other tenants' tokens and the admin are unaffected.
    api.accepted("beta", BETA, json!({"kind": "analyze"})).await;
    assert_eq!(
        api.get(&format!("/v1/jobs/{job}"), ADMIN).await.0,
        StatusCode::OK
    );
    env.assert_count("SELECT count(*) FROM jobs", 2).await;

    // Reactivated, the token works again.
    let (s, b, _) = api
        .call(
            Method::POST,
            "/v1/tenants/acme/status",
            ADMIN,
            Some(json!({"status": "active"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    api.accepted("acme", ACME, json!({"kind": "analyze"})).await;

    // Being deleted: refused too.
    env.ok(&["tenants", "delete", "acme", "--no-final-backup"]);
    for (method, path, body) in &refused {
        let (s, b, _) = api.call(method.clone(), path, ACME, body.clone()).await;
        let msg = assert_error((s, b), 403, "forbidden");
        assert!(msg.contains("deleting"), "{method} {path}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn job_rows_shown_to_tenant_tokens_hide_internals() {
    let (mut env, api) = two_tenants(&[]).await;
    env.spawn_worker(&["--concurrency", "2"], &[]);
    // A running job has a lease owner (the worker's host and process).
    let held = api
        .accepted(
            "acme",
            ADMIN,
            json!({"kind": "ping", "args": {"hold_seconds": 30}}),
        )
        .await;
    env.wait_status(held, "running", secs(30)).await;
    let (s, admin) = api.get(&format!("/v1/jobs/{held}"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{admin:#}");
    assert!(admin["lease_owner"].is_string(), "{admin:#}");
    let (s, own) = api.get(&format!("/v1/jobs/{held}"), ACME).await;
    assert_eq!(s, StatusCode::OK, "{own:#}");
    assert_eq!(own["status"], "running");
    assert!(own.get("lease_owner").is_none(), "{own:#}");
    assert!(own.get("compensation_error").is_none(), "{own:#}");

    // A failing backup: pg_dump's stderr (server, database, role) lands in last_error.
    let db = format!("{}_acme", env.catalog_db);
    let mut admin_conn = PgConnection::connect(&format!("{}/postgres", crate::common::PG_SERVER))
        .await
        .unwrap();
    sqlx::raw_sql(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin_conn)
        .await
        .unwrap();
    admin_conn.close().await.ok();
    let failing = api.accepted("acme", ACME, json!({"kind": "backup"})).await;
    let internal = poll(secs(60), ms(200), || async {
        let j = env.job(failing).await;
        j["last_error"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no error yet: {j:#}"))
    })
    .await;
    assert!(
        internal.contains(&db),
        "the worker's error names it: {internal}"
    );
    let (_, admin) = api.get(&format!("/v1/jobs/{failing}"), ADMIN).await;
    assert!(
        admin["last_error"].as_str().unwrap().contains(&db),
        "{admin:#}"
    );
    let (s, own) = api.get(&format!("/v1/jobs/{failing}"), ACME).await;
    assert_eq!(s, StatusCode::OK, "{own:#}");
    let text = own.to_string();
    assert!(
        !text.contains(&db),
        "internals shown to the tenant: {own:#}"
    );
    assert!(!text.contains("pg_dump"), "{own:#}");
    assert!(
        own["last_error"].is_string(),
        "a failure is still reported: {own:#}"
    );
    assert!(own.get("lease_owner").is_none(), "{own:#}");

    // Both views have the documented shape.
    let doc: Value = serde_json::from_str(landlord::api::OPENAPI).unwrap();
    let schema = &doc["components"]["schemas"]["Job"];
    for view in [&admin, &own] {
        for key in view.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "Job.{key} undocumented"
            );
        }
        for key in schema["required"].as_array().unwrap() {
            assert!(
                view.get(key.as_str().unwrap()).is_some(),
                "Job.{key} missing: {view:#}"
            );
        }
    }
}
