//! The HTTP API against the real services: the real `landlord api` binary as
//! a child process, driven with reqwest. Authentication and scopes, JSON
//! errors with stable codes, bad input that changes nothing, plan limits,
//! creation through provisioning to `active`, and the OpenAPI document.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::Instant,
};

use crate::common::{TestEnv, database_exists, free_port, ms, poll, secs, wait_mail};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

const ADMIN: &str = "admin-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";

/// A running `landlord api`; killed when dropped. The one API harness of the
/// test binary (`api_limits` and `hostile` use it too).
pub(crate) struct Api {
    child: Child,
    pub(crate) base: String,
    log: PathBuf,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) async fn start(env: &TestEnv, tokens: &str) -> Api {
        Self::start_with(env, tokens, &[]).await
    }

    /// `landlord api` with `tokens` and `extra` settings in its environment.
    pub(crate) async fn start_with(env: &TestEnv, tokens: &str, extra: &[(&str, &str)]) -> Api {
        let port = free_port();
        let log = env.log_dir.join(format!("api-{port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = env.command(&["api", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.env("LANDLORD_API_TOKENS", tokens)
            .env("LANDLORD_LOG", "info");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn landlord api");
        let mut api = Api {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::builder()
                .timeout(secs(30))
                .build()
                .expect("client"),
        };
        let deadline = Instant::now() + secs(30);
        loop {
            if let Some(st) = api.child.try_wait().expect("try_wait") {
                panic!("landlord api exited ({st}):\n{}", api.log_text());
            }
            if let Ok(r) = api.http.get(format!("{}/healthz", api.base)).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "landlord api never answered /healthz:\n{}",
                api.log_text()
            );
            tokio::time::sleep(ms(100)).await;
        }
        api
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a request; returns status, JSON body (Null if none) and headers.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// Sends a raw body with a content type.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.finish(req).await
    }

    pub(crate) async fn finish(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, body, headers)
    }

    /// Sends a request; returns status and JSON body (Null if none).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (s, b, _) = self.call(method, path, token, body).await;
        (s, b)
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, Some(body)).await
    }

    async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, token, Some(body)).await
    }

    /// Asks for a job of `tenant` (`POST /v1/tenants/{tenant}/jobs`).
    pub(crate) async fn enqueue(
        &self,
        tenant: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.post(&format!("/v1/tenants/{tenant}/jobs"), Some(token), body)
            .await
    }

    /// Asks for a job that must be accepted; returns its id.
    pub(crate) async fn accepted(&self, tenant: &str, token: &str, body: Value) -> String {
        let (s, b) = self.enqueue(tenant, token, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
        b["job_id"].as_str().unwrap().to_string()
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- landlord api log ---\n{}", self.log_text());
        }
    }
}

/// Asserts an error answer: status and stable code.
#[track_caller]
pub(crate) fn assert_error(got: (StatusCode, Value), status: u16, code: &str) -> String {
    let (s, body) = got;
    assert_eq!(
        s.as_u16(),
        status,
        "expected {status} {code}, got {s}: {body:#}"
    );
    assert_eq!(body["error"]["code"], code, "{body:#}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(!message.is_empty());
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only `error`: {body:#}"
    );
    message.to_string()
}

/// Asserts a response body has the shape of a schema of the committed
/// OpenAPI document: every field documented, every required field present.
#[track_caller]
fn assert_documented(name: &str, value: &Value) {
    let doc: Value = serde_json::from_str(landlord::api::OPENAPI).unwrap();
    let schema = &doc["components"]["schemas"][name];
    let props = schema["properties"].as_object().unwrap();
    for key in value.as_object().unwrap().keys() {
        assert!(props.contains_key(key), "{name}.{key} is not documented");
    }
    for key in schema["required"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        assert!(
            value.get(key).is_some(),
            "{name}.{key} is documented as required but missing: {value:#}"
        );
    }
}

fn tokens() -> String {
    format!("admin={ADMIN},tenant:acme={ACME}")
}

/// A running API on a fresh catalog, knowing the admin token and acme's
/// tenant token.
async fn api_on_a_fresh_catalog() -> (TestEnv, Api) {
    let env = TestEnv::new().await;
    let api = Api::start(&env, &tokens()).await;
    (env, api)
}

/// Requests by landlord's API, none by anyone else, were audited.
async fn api_audits(env: &TestEnv) -> i64 {
    env.count("SELECT count(*) FROM audit_log WHERE actor LIKE 'api:%'")
        .await
}

/// The catalog holds one tenant and one job (its provision job).
async fn assert_one_tenant_one_job(env: &TestEnv) {
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
    env.assert_count("SELECT count(*) FROM jobs", 1).await;
}

/// Two registered tenants, acme and beta, behind a running API that knows
/// the admin token and acme's tenant token.
async fn two_tenants_behind_the_api() -> (TestEnv, Api) {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("beta").await;
    let api = Api::start(&env, &tokens()).await;
    (env, api)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_valid_bearer_token_get_401() {
    let (_env, api) = two_tenants_behind_the_api().await;
    // Unauthenticated: 401 with a code and a WWW-Authenticate challenge.
    let (s, b, h) = api.call(Method::GET, "/v1/tenants", None, None).await;
    assert_error((s, b), 401, "unauthorized");
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_error(
        api.get("/v1/tenants/acme", Some("nope")).await,
        401,
        "unauthorized",
    );
    let (s, b, _) = api
        .finish(
            api.http
                .get(format!("{}/v1/tenants/acme", api.base))
                .header("authorization", format!("Basic {ACME}")),
        )
        .await;
    assert_error((s, b), 401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_reaches_only_its_own_tenant() {
    let (env, api) = two_tenants_behind_the_api().await;
    let (s, t) = api.get("/v1/tenants/acme", Some(ACME)).await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["status"], "active");
    let create = json!({"slug": "gamma", "name": "Gamma", "plan": "pro", "owner": "g@example.com"});
    for (method, path, body) in [
        (Method::GET, "/v1/tenants/beta", None),
        // Scope is checked before existence: a tenant token learns nothing about others.
        (Method::GET, "/v1/tenants/nosuch", None),
        (Method::GET, "/v1/tenants", None),
        (Method::POST, "/v1/tenants", Some(create)),
        (
            Method::POST,
            "/v1/tenants/acme/status",
            Some(json!({"status": "inactive"})),
        ),
        (
            Method::PATCH,
            "/v1/tenants/beta/settings",
            Some(json!({"unset": ["language"]})),
        ),
        (Method::GET, "/v1/tenants/beta/credentials", None),
        (
            Method::POST,
            "/v1/tenants/beta/jobs",
            Some(json!({"kind": "analyze"})),
        ),
    ] {
        let got = api.send(method.clone(), path, Some(ACME), body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method} {path}: {:#}", got.1);
        assert_error(got, 403, "forbidden");
    }
    let beta_job = api
        .accepted(
            "beta",
            ADMIN,
            json!({"kind": "ping", "args": {"hold_seconds": 0}}),
        )
        .await;
    assert_error(
        api.get(&format!("/v1/jobs/{beta_job}"), Some(ACME)).await,
        403,
        "forbidden",
    );
    assert_eq!(
        api.get(&format!("/v1/jobs/{beta_job}"), Some(ADMIN))
            .await
            .0,
        StatusCode::OK
    );
    env.assert_count("SELECT count(*) FROM tenants", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_list_filters_by_status_only() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let (s, l) = api.get("/v1/tenants", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    let slugs: Vec<&str> = l["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme", "beta"]);
    let (s, l) = api.get("/v1/tenants?status=suspended", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(l["tenants"], json!([]));
    assert_error(
        api.get("/v1/tenants?status=bogus", Some(ADMIN)).await,
        422,
        "invalid_input",
    );
    assert_error(
        api.get("/v1/tenants?x=1", Some(ADMIN)).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_changes_its_own_settings_under_audit() {
    let (env, api) = two_tenants_behind_the_api().await;
    let (s, b) = api
        .patch(
            "/v1/tenants/acme/settings",
            Some(ACME),
            json!({"set": {"language": "es", "timezone": "Europe/Madrid"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    assert_eq!(b["settings"]["language"], "es");
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'api:tenant:acme' AND action = 'tenant.settings_changed'",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_settings_changes_are_refused() {
    let (env, api) = two_tenants_behind_the_api().await;
    let path = "/v1/tenants/acme/settings";
    let bad_zone = json!({"set": {"timezone": "Mars/Olympus"}});
    let got = api.patch(path, Some(ACME), bad_zone).await;
    assert!(assert_error(got, 422, "invalid_input").contains("timezone"));
    let set_and_unset = json!({"set": {"language": "en"}, "unset": ["language"]});
    let got = api.patch(path, Some(ACME), set_and_unset).await;
    assert_error(got, 422, "invalid_input");
    assert_eq!(api_audits(&env).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_tenant_has_no_credentials_to_fetch() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let got = api.get("/v1/tenants/acme/credentials", Some(ACME)).await;
    assert_error(got, 409, "conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_reads_the_job_it_enqueued() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let (s, b) = api.enqueue("acme", ACME, json!({"kind": "analyze"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    assert_eq!(b["existing"], false);
    let acme_job = b["job_id"].as_str().unwrap().to_string();
    let (s, j) = api.get(&format!("/v1/jobs/{acme_job}"), Some(ACME)).await;
    assert_eq!(s, StatusCode::OK, "{j:#}");
    assert_eq!(j["kind"], "analyze");
    assert_eq!(j["tenant"], "acme");
    assert_eq!(j["status"], "queued");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dedupe_key_returns_the_live_job() {
    let (env, api) = two_tenants_behind_the_api().await;
    let first = json!({"kind": "ping", "args": {"hold_seconds": 0}, "dedupe_key": "beta-ping"});
    let beta_job = api.accepted("beta", ADMIN, first).await;
    let again = json!({"kind": "ping", "dedupe_key": "beta-ping"});
    let (_, again) = api.enqueue("beta", ADMIN, again).await;
    assert_eq!(again["job_id"], beta_job.as_str());
    assert_eq!(again["existing"], true);
    env.assert_count("SELECT count(*) FROM jobs", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_the_lifecycle_drives_cannot_be_enqueued_by_hand() {
    let (_env, api) = two_tenants_behind_the_api().await;
    // Lifecycle kinds are driven by the lifecycle, not enqueued by hand, even by admin.
    for (token, kind) in [
        (ACME, "provision"),
        (ADMIN, "drop_tenant"),
        (ADMIN, "welcome_mail"),
    ] {
        let got = api.enqueue("acme", token, json!({"kind": kind})).await;
        let msg = assert_error(got, 422, "invalid_input");
        assert!(msg.contains("lifecycle"), "{msg}");
    }
    // The rollback-window drop is landlord's own.
    let restore_id = "00000000-0000-0000-0000-000000000000";
    let drop = json!({"kind": "drop_pre_restore", "args": {"restore_id": restore_id}});
    assert_error(api.enqueue("acme", ADMIN, drop).await, 422, "invalid_input");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_job_kind_is_refused_naming_the_enqueueable_kinds() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let got = api.enqueue("acme", ACME, json!({"kind": "backflip"})).await;
    let msg = assert_error(got, 422, "invalid_input");
    assert!(msg.contains("analyze") && msg.contains("ping"), "{msg}");
    assert!(
        msg.contains("backup") && !msg.contains("drop_pre_restore"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_token_may_enqueue_its_own_backup() {
    let (_env, api) = two_tenants_behind_the_api().await;
    // With the configured retention: choosing one is an admin's (api_limits).
    let backup = json!({"kind": "backup", "args": {"codec": "gzip"}});
    api.accepted("acme", ACME, backup).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_are_admin_only() {
    let (_env, api) = two_tenants_behind_the_api().await;
    // A restore replaces the live database: admin only.
    let got = api.enqueue("acme", ACME, json!({"kind": "restore"})).await;
    let msg = assert_error(got, 403, "forbidden");
    assert!(msg.contains("admin"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_job_arguments_are_refused() {
    let (_env, api) = two_tenants_behind_the_api().await;
    for args in [json!({"hold_seconds": "long"}), json!([1])] {
        let got = api
            .enqueue("acme", ACME, json!({"kind": "ping", "args": args}))
            .await;
        assert_error(got, 422, "invalid_input");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_job_id_is_a_bad_request() {
    let (_env, api) = two_tenants_behind_the_api().await;
    assert_error(
        api.get("/v1/jobs/not-a-uuid", Some(ADMIN)).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_job_requests_write_nothing() {
    let (env, api) = two_tenants_behind_the_api().await;
    for (token, tenant, body) in [
        (ACME, "acme", json!({"kind": "provision"})),
        (ADMIN, "acme", json!({"kind": "drop_tenant"})),
        (ACME, "acme", json!({"kind": "backflip"})),
        (ACME, "acme", json!({"kind": "restore"})),
        (ACME, "beta", json!({"kind": "analyze"})),
        (
            ACME,
            "acme",
            json!({"kind": "ping", "args": {"hold_seconds": "long"}}),
        ),
        (ADMIN, "nosuch", json!({"kind": "ping"})),
    ] {
        let (s, b) = api.enqueue(tenant, token, body).await;
        assert!(s.is_client_error(), "{s}: {b:#}");
    }
    env.assert_count("SELECT count(*) FROM jobs", 0).await;
    env.assert_count("SELECT count(*) FROM outbox", 0).await;
    assert_eq!(api_audits(&env).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_jobs_are_not_audited() {
    let (env, api) = two_tenants_behind_the_api().await;
    for (token, kind) in [(ACME, "analyze"), (ADMIN, "ping")] {
        api.accepted("acme", token, json!({"kind": kind})).await;
    }
    env.assert_count("SELECT count(*) FROM jobs", 2).await;
    assert_eq!(api_audits(&env).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_resources_answer_404_with_the_error_shape() {
    let (_env, api) = two_tenants_behind_the_api().await;
    assert_error(
        api.get("/v1/tenants/nosuch", Some(ADMIN)).await,
        404,
        "not_found",
    );
    let got = api.enqueue("nosuch", ADMIN, json!({"kind": "ping"})).await;
    assert_error(got, 404, "not_found");
    assert_error(
        api.get(&format!("/v1/jobs/{}", uuid::Uuid::new_v4()), Some(ADMIN))
            .await,
        404,
        "not_found",
    );
    assert_error(api.get("/v2/nothing", Some(ADMIN)).await, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_method_answers_405_with_the_error_shape() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let got = api
        .send(Method::DELETE, "/v1/tenants", Some(ADMIN), None)
        .await;
    assert_error(got, 405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_logged_with_their_scope_never_a_token() {
    let (_env, api) = two_tenants_behind_the_api().await;
    assert_eq!(
        api.get("/v1/tenants/acme", Some(ACME)).await.0,
        StatusCode::OK
    );
    assert_eq!(api.get("/v1/tenants", Some(ADMIN)).await.0, StatusCode::OK);
    assert_error(
        api.get("/v1/tenants/beta", Some(ACME)).await,
        403,
        "forbidden",
    );
    let log = api.log_text();
    assert!(log.contains("api listening on 127.0.0.1:"), "{log}");
    assert!(log.contains("tenant:acme"), "{log}");
    assert!(
        !log.contains(ADMIN) && !log.contains(ACME),
        "token in log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tokens_every_request_is_refused() {
    let env = TestEnv::new().await;
    let api = Api::start(&env, "").await;
    let msg = assert_error(
        api.get("/v1/tenants", Some("anything")).await,
        401,
        "unauthorized",
    );
    assert!(msg.contains("LANDLORD_API_TOKENS"), "{msg}");
    assert_eq!(api.get("/healthz", None).await.0, StatusCode::OK);
    assert!(
        api.log_text().contains("LANDLORD_API_TOKENS is not set"),
        "{}",
        api.log_text()
    );
    // SIGTERM: a graceful stop, exit 0.
    let mut api = api;
    let st = std::process::Command::new("kill")
        .args(["-TERM", &api.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let child = &mut api.child;
    let code = poll(secs(20), ms(50), || {
        let exited = child.try_wait().unwrap();
        async move {
            exited
                .map(|st| st.code())
                .ok_or("api did not stop on SIGTERM".to_string())
        }
    })
    .await;
    assert_eq!(code, Some(0), "{}", api.log_text());
    assert!(api.log_text().contains("api stopped"), "{}", api.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_config_fails_at_start() {
    let env = TestEnv::new().await;
    let out = env.run_with(
        &["api", "--listen", "127.0.0.1:0"],
        &[("LANDLORD_API_TOKENS", "root=hunter2-hunter2")],
    );
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scope"), "{err}");
    assert!(!err.contains("hunter2"), "token leaked: {err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_changes_nothing() {
    let (env, api) = api_on_a_fresh_catalog().await;
    let good = json!({"slug": "delta", "name": "Delta", "plan": "pro", "owner": "d@example.com"});
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "hostile slug",
            with("slug", json!("x'); DROP TABLE tenants; --")),
            422,
            "invalid_input",
            "slug",
        ),
        (
            "uppercase slug",
            with("slug", json!("Delta")),
            422,
            "invalid_input",
            "slug",
        ),
        (
            "very long slug",
            with("slug", json!("a".repeat(5000))),
            422,
            "invalid_input",
            "slug",
        ),
        (
            "unknown plan",
            with("plan", json!("platinum")),
            422,
            "invalid_input",
            "plan",
        ),
        (
            "bad owner",
            with("owner", json!("not-an-email")),
            422,
            "invalid_input",
            "owner",
        ),
        (
            "bad timezone",
            with("settings", json!({"timezone": "Mars/Olympus"})),
            422,
            "invalid_input",
            "timezone",
        ),
        (
            "unsupported language",
            with("settings", json!({"language": "tlh"})),
            422,
            "invalid_input",
            "language",
        ),
        (
            "unknown setting",
            with("settings", json!({"colour": "red"})),
            422,
            "invalid_input",
            "colour",
        ),
        (
            "unknown server",
            with("server", json!("elsewhere")),
            422,
            "invalid_input",
            "server",
        ),
        (
            "wrong type",
            with("slug", json!(42)),
            400,
            "bad_request",
            "invalid type",
        ),
        (
            "settings not an object",
            with("settings", json!(["timezone"])),
            400,
            "bad_request",
            "invalid type",
        ),
        (
            "unknown field",
            with("colour", json!("red")),
            400,
            "bad_request",
            "unknown field",
        ),
        (
            "missing field",
            json!({"slug": "delta", "name": "Delta", "plan": "pro"}),
            400,
            "bad_request",
            "owner",
        ),
        (
            "not an object",
            json!(["delta"]),
            400,
            "bad_request",
            "invalid type",
        ),
    ];
    for (what, body, status, code, mention) in cases {
        let msg = assert_error(
            api.post("/v1/tenants", Some(ADMIN), body).await,
            status,
            code,
        );
        assert!(msg.contains(mention), "{what}: {msg}");
        assert!(msg.chars().count() < 1200, "{what}: message not truncated");
    }
    let raw = |ct: Option<&'static str>, body: Vec<u8>| {
        let api = &api;
        async move { api.raw(Method::POST, "/v1/tenants", ADMIN, ct, body).await }
    };
    let (s, b, _) = raw(Some("application/json"), b"{\"slug\": \"delta\",".to_vec()).await;
    assert_error((s, b), 400, "bad_request");
    let (s, b, _) = raw(Some("application/json"), b"not json at all".to_vec()).await;
    assert_error((s, b), 400, "bad_request");
    let (s, b, _) = raw(None, serde_json::to_vec(&good).unwrap()).await;
    assert_error((s, b), 415, "unsupported_media_type");
    let (s, b, _) = raw(Some("text/plain"), serde_json::to_vec(&good).unwrap()).await;
    assert_error((s, b), 415, "unsupported_media_type");
    let huge = serde_json::to_vec(&with("name", json!("n".repeat(100 * 1024)))).unwrap();
    let (s, b, _) = raw(Some("application/json"), huge).await;
    assert_error((s, b), 413, "payload_too_large");
    // Status changes and settings are validated too.
    assert_error(
        api.post(
            "/v1/tenants/delta/status",
            Some(ADMIN),
            json!({"status": "deleted"}),
        )
        .await,
        422,
        "invalid_input",
    );
    assert_error(
        api.post(
            "/v1/tenants/delta/status",
            Some(ADMIN),
            json!({"status": 1}),
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        api.post(
            "/v1/tenants/delta/status",
            Some(ADMIN),
            json!({"status": "active"}),
        )
        .await,
        404,
        "not_found",
    );

    for table in ["tenants", "jobs", "outbox", "audit_log", "owners"] {
        let sql = format!("SELECT count(*) FROM {table}");
        env.assert_count(&sql, 0).await;
    }
    // The server is fine afterwards.
    let (s, b) = api.post("/v1/tenants", Some(ADMIN), good).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    env.assert_count("SELECT count(*) FROM tenants", 1).await;
}

/// Slugs and an owner unique to this test: tenant databases are named after
/// them, outside its catalog.
fn fresh_names(env: &TestEnv) -> (String, String) {
    (
        format!("api-{}", env.id),
        format!("ana-{}@example.com", env.id),
    )
}

/// Creates a free-plan tenant (Spanish, Madrid) as admin; returns the response body.
async fn create_free(api: &Api, slug: &str, owner: &str) -> Value {
    let (s, b) = api
        .post(
            "/v1/tenants",
            Some(ADMIN),
            json!({"slug": slug, "name": "Acme Inc.", "plan": "free", "owner": owner,
                   "settings": {"timezone": "Europe/Madrid", "language": "es"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    b
}

/// A free tenant created over HTTP by admin on a fresh catalog, with no
/// worker yet (so it stays provisioning): its slug, owner and the answer.
struct Created {
    // Fields drop in order: the API stops before the catalog goes.
    api: Api,
    env: TestEnv,
    slug: String,
    owner: String,
    body: Value,
}

async fn created_over_http() -> Created {
    let (env, api) = api_on_a_fresh_catalog().await;
    let (slug, owner) = fresh_names(&env);
    let body = create_free(&api, &slug, &owner).await;
    Created {
        env,
        api,
        slug,
        owner,
        body,
    }
}

/// Polls the API until the tenant leaves `provisioning` (a worker must run).
async fn wait_provisioned(env: &TestEnv, api: &Api, slug: &str) -> Value {
    let path = format!("/v1/tenants/{slug}");
    let tenant = poll(secs(90), ms(200), || async {
        let (s, t) = api.get(&path, Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK);
        if t["status"] != "provisioning" {
            Ok(t)
        } else {
            Err(format!("still provisioning: {t:#}\n{}", env.worker_logs()))
        }
    })
    .await;
    assert_eq!(
        tenant["status"],
        "active",
        "{tenant:#}\n{}",
        env.worker_logs()
    );
    tenant
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_is_accepted_with_its_provision_job() {
    let Created {
        api,
        env,
        slug,
        owner: _,
        body: b,
    } = created_over_http().await;
    assert_eq!(b["tenant"]["slug"], slug.as_str());
    assert_eq!(b["tenant"]["status"], "provisioning");
    assert_eq!(b["tenant"]["settings"]["language"], "es");
    assert_documented("CreateTenantResponse", &b);
    assert_documented("Tenant", &b["tenant"]);
    let job_id = b["job_id"].as_str().unwrap().to_string();
    let (s, j) = api.get(&format!("/v1/jobs/{job_id}"), Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(j["kind"], "provision");
    assert_eq!(j["tenant"], slug.as_str());
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'api:admin' AND action = 'tenant.created'",
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_free_plan_allows_one_tenant_per_owner() {
    let c = created_over_http().await;
    let (env, api, owner) = (&c.env, &c.api, &c.owner);
    let other =
        json!({"slug": format!("apx-{}", env.id), "name": "Other", "plan": "free", "owner": owner});
    let got = api.post("/v1/tenants", Some(ADMIN), other).await;
    let msg = assert_error(got, 409, "plan_limit_reached");
    assert!(msg.contains("free"), "{msg}");
    assert_one_tenant_one_job(env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_slug_is_refused_even_for_another_owner() {
    let c = created_over_http().await;
    let (env, api, slug) = (&c.env, &c.api, &c.slug);
    // The same slug again, even for someone else on another plan.
    let again = json!({"slug": slug, "name": "Again", "plan": "pro", "owner": "bo@example.com"});
    let got = api.post("/v1/tenants", Some(ADMIN), again).await;
    assert_error(got, 409, "already_exists");
    assert_one_tenant_one_job(env).await;
}

/// Of concurrent creates, exactly one wins; the others lose with `loser`.
#[track_caller]
fn one_winner(results: Vec<(StatusCode, Value)>, loser: &str) {
    let won = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::ACCEPTED)
        .count();
    assert_eq!(won, 1, "exactly one create wins: {results:#?}");
    for r in results
        .into_iter()
        .filter(|(s, _)| *s != StatusCode::ACCEPTED)
    {
        assert_error(r, 409, loser);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_for_one_owner_respect_the_plan_limit() {
    let (env, api) = api_on_a_fresh_catalog().await;
    let racer = format!("race-{}@example.com", env.id);
    let by_owner = futures::future::join_all((0..6).map(|i| {
        api.post(
            "/v1/tenants",
            Some(ADMIN),
            json!({"slug": format!("r{i}-{}", env.id), "name": "Race", "plan": "free", "owner": racer}),
        )
    }))
    .await;
    one_winner(by_owner, "plan_limit_reached");
    assert_one_tenant_one_job(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_of_one_slug_make_one_tenant() {
    let (env, api) = api_on_a_fresh_catalog().await;
    let same = format!("same-{}", env.id);
    let by_slug = futures::future::join_all((0..6).map(|i| {
        api.post(
            "/v1/tenants",
            Some(ADMIN),
            json!({"slug": same, "name": "Same", "plan": "pro", "owner": format!("o{i}-{}@example.com", env.id)}),
        )
    }))
    .await;
    one_winner(by_slug, "already_exists");
    assert_one_tenant_one_job(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_changes_wait_for_provisioning() {
    let c = created_over_http().await;
    let path = format!("/v1/tenants/{}/status", c.slug);
    let got = c
        .api
        .post(&path, Some(ADMIN), json!({"status": "inactive"}))
        .await;
    assert_error(got, 409, "conflict");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_created_over_http_ends_provisioned() {
    let Created {
        api,
        mut env,
        slug,
        owner,
        body,
    } = created_over_http().await;
    let mut tap = env.events().await;
    let job = format!("/v1/jobs/{}", body["job_id"].as_str().unwrap());
    // A worker provisions it: the tenant ends active.
    env.spawn_worker(&[], &[]);
    let tenant = wait_provisioned(&env, &api, &slug).await;
    assert_eq!(tenant["provision_step"], "done");
    // Announced, and the owner welcomed in the tenant's language.
    let ev = tap
        .wait_tenant_event("tenant.provisioned", &slug, secs(20))
        .await;
    assert_eq!(ev["data"]["plan"], "free");
    let mail = wait_mail(&owner, secs(30)).await.remove(0);
    assert_eq!(mail["subject"], "Bienvenido a Acme Inc.");
    poll(secs(30), ms(200), || async {
        let (_, j) = api.get(&job, Some(ADMIN)).await;
        match j["status"] == "succeeded" {
            true => Ok(()),
            false => Err(format!("job not succeeded: {j:#}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioned_tenants_fetched_credentials_log_in() {
    let mut created = created_over_http().await;
    created.env.spawn_worker(&[], &[]);
    let (env, api, slug) = (&created.env, &created.api, &created.slug);
    let tenant = wait_provisioned(env, api, slug).await;
    let (s, c, h) = api
        .call(
            Method::GET,
            &format!("/v1/tenants/{slug}/credentials"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c:#}");
    assert_eq!(h["cache-control"], "no-store");
    assert_documented("Credentials", &c);
    assert_eq!(c["database"], tenant["db_name"]);
    assert_eq!(c["role"], tenant["db_role"]);
    let password = c["password"].as_str().unwrap();
    let url = format!(
        "postgres://{}:{password}@127.0.0.1:5432/{}",
        c["role"].as_str().unwrap(),
        c["database"].as_str().unwrap()
    );
    PgConnection::connect(&url)
        .await
        .expect("the tenant role connects with the fetched credentials")
        .close()
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_needs_a_reason() {
    let (_env, api) = two_tenants_behind_the_api().await;
    let path = "/v1/tenants/acme/status";
    assert_error(
        api.post(path, Some(ADMIN), json!({"status": "suspended"}))
            .await,
        422,
        "invalid_input",
    );
    let (s, t) = api
        .post(
            path,
            Some(ADMIN),
            json!({"status": "suspended", "reason": "unpaid"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "suspended");
    assert_eq!(t["status_reason"], "unpaid");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_tenant_is_reactivated_under_audit() {
    let (env, api) = two_tenants_behind_the_api().await;
    let path = "/v1/tenants/acme/status";
    let suspend = json!({"status": "suspended", "reason": "unpaid"});
    let (s, t) = api.post(path, Some(ADMIN), suspend).await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    let (s, t) = api
        .post(path, Some(ADMIN), json!({"status": "active"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "active");
    assert!(t["status_reason"].is_null(), "{t:#}");
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'api:admin' AND action = 'tenant.status_changed'",
        2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_router() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let api = Api::start(&env, &tokens()).await;
    let (s, doc, h) = api.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(doc["openapi"], "3.1.0");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc, committed, "served document = committed openapi.json");

    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in landlord::api::ROUTES {
        assert!(
            paths
                .get(path)
                .is_some_and(|p| p[method.to_lowercase()].is_object()),
            "{method} {path} missing from openapi.json"
        );
        // The router really has the route: public ones answer, the others ask for a token.
        let concrete = path
            .replace("{slug}", "acme")
            .replace("{id}", &uuid::Uuid::new_v4().to_string());
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (s, b, _) = api.call(m, &concrete, None, None).await;
        if landlord::api::PUBLIC_ROUTES.contains(&path) {
            assert_eq!(s, StatusCode::OK, "{method} {path}: {b:#}");
        } else {
            assert_error((s, b), 401, "unauthorized");
        }
    }
    let documented: usize = paths
        .values()
        .map(|p| {
            p.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    assert_eq!(documented, landlord::api::ROUTES.len());

    // What the API returns has the documented shape (no undocumented fields).
    let (_, tenant) = api.get("/v1/tenants/acme", Some(ADMIN)).await;
    let (_, enq) = api.enqueue("acme", ADMIN, json!({"kind": "ping"})).await;
    let (_, job) = api
        .get(
            &format!("/v1/jobs/{}", enq["job_id"].as_str().unwrap()),
            Some(ADMIN),
        )
        .await;
    assert_documented("Tenant", &tenant);
    assert_documented("Job", &job);
    assert_documented("EnqueueJobResponse", &enq);
}

/// `GET /v1/jobs` pages through every job once, newest first, with filters;
/// a tenant token lists only its own; cancel and retry work over HTTP, a
/// tenant token cancels only its own jobs and never retries.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_listed_by_pages_and_cancelled_and_retried_over_http() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("globex").await;
    let api = Api::start(
        &env,
        &format!("{},tenant:globex=globex-token-0123456789abcdef", tokens()),
    )
    .await;
    // No worker: every job stays queued.
    let mut ids = Vec::new();
    for i in 0..7 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        ids.push(api.accepted(tenant, ADMIN, json!({"kind": "ping"})).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/jobs?kind=ping&limit=3&cursor={c}"),
            None => "/v1/jobs?kind=ping&limit=3".to_string(),
        };
        let (s, b) = api.get(&path, Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{b:#}");
        let page = b["jobs"].as_array().unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "every job once, newest first");

    // A tenant token: its tenant's jobs only, in the tenant's view.
    let (s, b) = api.get("/v1/jobs", Some(ACME)).await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    let mine = b["jobs"].as_array().unwrap();
    assert_eq!(mine.len(), 4, "{b:#}");
    assert!(
        mine.iter()
            .all(|j| j["tenant"] == "acme" && j.get("lease_owner").is_none())
    );
    assert_error(
        api.get("/v1/jobs?tenant=globex", Some(ACME)).await,
        403,
        "forbidden",
    );
    assert_error(
        api.get("/v1/jobs?status=bogus", Some(ADMIN)).await,
        422,
        "invalid_input",
    );
    assert_error(
        api.get("/v1/jobs?limit=0", Some(ADMIN)).await,
        422,
        "invalid_input",
    );
    assert_error(
        api.get("/v1/jobs?cursor=nope", Some(ADMIN)).await,
        400,
        "bad_request",
    );
    assert_error(
        api.get("/v1/jobs?sort=x", Some(ADMIN)).await,
        400,
        "bad_request",
    );
    // A NUL reaches no query (schemathesis found it answering 500).
    assert_error(
        api.get("/v1/jobs?kind=a%00b", Some(ADMIN)).await,
        422,
        "invalid_input",
    );

    // Cancel: the tenant's own job; another tenant's answers 404 and stays queued.
    let globex_job = &ids[1];
    assert_error(
        api.post(
            &format!("/v1/jobs/{globex_job}/cancel"),
            Some(ACME),
            json!({}),
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(
        env.job(globex_job.parse().unwrap()).await["status"],
        "queued"
    );
    let acme_job = &ids[0];
    let (s, b) = api
        .post(
            &format!("/v1/jobs/{acme_job}/cancel"),
            Some(ACME),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    assert_eq!(b["status"], "cancelled");
    assert_error(
        api.post(
            &format!("/v1/jobs/{acme_job}/cancel"),
            Some(ACME),
            json!({}),
        )
        .await,
        409,
        "wrong_status",
    );
    // Retry is an admin's: the tenant token is refused, the admin's runs it again.
    assert_error(
        api.post(&format!("/v1/jobs/{acme_job}/retry"), Some(ACME), json!({}))
            .await,
        403,
        "forbidden",
    );
    let (s, b) = api
        .post(
            &format!("/v1/jobs/{acme_job}/retry"),
            Some(ADMIN),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:#}");
    assert_eq!(b["status"], "queued");
    assert_eq!(b["attempts"], 0);
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'api:tenant:acme' AND action = 'job.cancelled'",
        1,
    )
    .await;
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(acme_job.parse().unwrap(), secs(30)).await;
    assert_eq!(j["status"], "succeeded", "the retried job ran: {j:#}");
}

/// `DELETE /v1/tenants/{slug}`: admin only, options checked before anything
/// changes; the tenant stops at once and a worker drops its database.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_deletes_a_tenant_over_http() {
    let mut env = TestEnv::new().await;
    let db = env.tenant("acme").await;
    let api = Api::start(&env, &tokens()).await;
    let delete = |q: &'static str, token: &'static str| {
        let api = &api;
        async move {
            let (s, b, _) = api
                .call(
                    Method::DELETE,
                    &format!("/v1/tenants/acme{q}"),
                    Some(token),
                    None,
                )
                .await;
            (s, b)
        }
    };
    assert_error(delete("", ACME).await, 403, "forbidden");
    assert_error(delete("?grace_days=-1", ADMIN).await, 422, "invalid_input");
    assert_error(
        delete("?final_backup=maybe", ADMIN).await,
        422,
        "invalid_input",
    );
    assert_error(delete("?now=1", ADMIN).await, 400, "bad_request");
    assert_eq!(
        landlord::tenants::get(&env.catalog, "acme")
            .await
            .unwrap()
            .status,
        landlord::tenants::TenantStatus::Active,
        "refused requests changed nothing"
    );
    let (s, b) = delete("?grace_days=0&final_backup=false", ADMIN).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    assert_eq!(b["tenant"]["status"], "deleting", "{b:#}");
    let drop: uuid::Uuid = b["job_id"].as_str().unwrap().parse().unwrap();
    assert_error(delete("", ADMIN).await, 409, "conflict");
    env.spawn_worker(&[], &[]);
    let j = env.wait_job(drop, secs(60)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}");
    assert!(!database_exists(&db).await, "the database was dropped");
    env.assert_count(
        "SELECT count(*) FROM audit_log WHERE actor = 'api:admin' AND action LIKE 'tenant.delet%'",
        1,
    )
    .await;
}

/// `GET /v1/tenants` pages by slug with filters; every tenant once.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_listed_by_pages_with_filters() {
    let mut env = TestEnv::new().await;
    for slug in ["alpha", "bravo", "charlie", "delta", "echo"] {
        env.tenant(slug).await;
    }
    let api = Api::start(&env, &tokens()).await;
    let mut seen = Vec::new();
    let mut path = "/v1/tenants?limit=2".to_string();
    loop {
        let (s, b) = api.get(&path, Some(ADMIN)).await;
        assert_eq!(s, StatusCode::OK, "{b:#}");
        seen.extend(
            b["tenants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["slug"].as_str().unwrap().to_string()),
        );
        match b["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/tenants?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta", "echo"]);
    let (_, b) = api.get("/v1/tenants?q=HAR", Some(ADMIN)).await;
    assert_eq!(b["tenants"][0]["slug"], "charlie", "{b:#}");
    assert_eq!(b["tenants"].as_array().unwrap().len(), 1);
    // A wildcard is a plain character here.
    let (_, b) = api.get("/v1/tenants?q=%25", Some(ADMIN)).await;
    assert_eq!(b["tenants"], json!([]), "{b:#}");
    let (_, b) = api
        .get(
            "/v1/tenants?plan=pro&server=default&status=active",
            Some(ADMIN),
        )
        .await;
    assert_eq!(b["tenants"].as_array().unwrap().len(), 5, "{b:#}");
    let (_, b) = api.get("/v1/tenants?plan=enterprise", Some(ADMIN)).await;
    assert_eq!(b["tenants"], json!([]));
    assert_error(
        api.get("/v1/tenants?limit=5000", Some(ADMIN)).await,
        422,
        "invalid_input",
    );
    assert_error(api.get("/v1/tenants", Some(ACME)).await, 403, "forbidden");
}
