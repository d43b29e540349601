//! The API's routes beyond tenants and jobs, against the real services and
//! the real `landlord api` binary: backups (take, list, hold, restore,
//! verify, prune, delete, monitor), the tenant shortcuts, register,
//! can-provision, schedules, maintenance, migrations, the audit log, the
//! event feed and its SSE stream, doctor, and `Idempotency-Key` replays.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::{Api, assert_error};
use crate::common::{TestEnv, secs};

const ADMIN: &str = "admin-token-0123456789abcdef";
const ACME: &str = "acme-token-0123456789abcdef";
const BETA: &str = "beta-token-0123456789abcdef";

fn tokens() -> String {
    format!("admin={ADMIN},tenant:acme={ACME},tenant:beta={BETA}")
}

async fn two_tenants(toml: Option<&str>) -> (TestEnv, Api) {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("beta").await;
    if let Some(t) = toml {
        std::fs::write(env.log_dir.join("landlord.toml"), t).unwrap();
    }
    let api = Api::start(&env, &tokens()).await;
    (env, api)
}

fn job_id(b: &Value) -> Uuid {
    b["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job_id: {b:#}"))
        .parse()
        .unwrap()
}

async fn succeeded(env: &TestEnv, b: &Value) -> Value {
    let j = env.wait_job(job_id(b), secs(120)).await;
    assert_eq!(j["status"], "succeeded", "{j:#}\n{}", env.worker_logs());
    j
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_are_taken_held_restored_verified_pruned_and_deleted_over_http() {
    let (mut env, api) = two_tenants(None).await;
    env.spawn_worker(&[], &[]);

    // A tenant token takes its own backup and sees it without where it is stored.
    let (s, b) = api
        .post("/v1/tenants/acme/backups", Some(ACME), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    succeeded(&env, &b).await;
    let (s, list) = api.get("/v1/tenants/acme/backups", Some(ACME)).await;
    assert_eq!(s, StatusCode::OK, "{list:#}");
    let backups = list["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{list:#}");
    let id = backups[0]["id"].as_str().unwrap().to_string();
    assert!(backups[0].get("object_key").is_none(), "{list:#}");
    assert!(
        backups[0]["name"].as_str().unwrap().ends_with(".dump.zst"),
        "{list:#}"
    );
    let (_, admin_list) = api.get("/v1/tenants/acme/backups", Some(ADMIN)).await;
    assert!(admin_list["backups"][0]["object_key"].is_string());
    assert_error(
        api.get("/v1/tenants/beta/backups", Some(ACME)).await,
        403,
        "forbidden",
    );
    let (s, stats) = api.get("/v1/tenants/acme/backups/stats", Some(ACME)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats["count"], 1, "{stats:#}");
    assert_eq!(stats["tenant"], "acme");

    // Holds are an admin's; a held backup cannot be deleted.
    let hold = format!("/v1/backups/{id}/hold");
    assert_error(
        api.post(&hold, Some(ACME), json!({"reason": "mine"})).await,
        403,
        "forbidden",
    );
    let (s, held) = api
        .post(&hold, Some(ADMIN), json!({"reason": "audit 2026"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{held:#}");
    assert_eq!(held["held"], true);
    let del = format!("/v1/backups/{id}");
    assert_error(
        api.send(Method::DELETE, &del, Some(ADMIN), None).await,
        409,
        "conflict",
    );
    let (s, released) = api
        .send(
            Method::POST,
            &format!("/v1/backups/{id}/release"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{released:#}");
    assert_eq!(released["held"], false);

    // A restore needs the slug typed again; without it nothing is enqueued.
    let jobs_before = env.count("SELECT count(*) FROM jobs").await;
    for body in [json!({"confirm": "beta"}), json!({"confirm": ""})] {
        assert_error(
            api.post("/v1/tenants/acme/restore", Some(ADMIN), body)
                .await,
            422,
            "invalid_input",
        );
    }
    assert_error(
        api.post(
            "/v1/tenants/acme/restore",
            Some(ACME),
            json!({"confirm": "acme"}),
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        api.post(
            "/v1/tenants/acme/restore",
            Some(ADMIN),
            json!({"confirm": "acme", "backup": "acme_nosuch.dump.zst"}),
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(env.count("SELECT count(*) FROM jobs").await, jobs_before);
    let (s, r) = api
        .post(
            "/v1/tenants/acme/restore",
            Some(ADMIN),
            json!({"confirm": "acme", "backup": id}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r:#}");
    succeeded(&env, &r).await;

    let (s, v) = api
        .post("/v1/tenants/acme/backups/verify", Some(ACME), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v:#}");
    succeeded(&env, &v).await;

    // A second backup, then a dry prune keeping one names the older one and deletes nothing.
    let (_, b2) = api
        .post(
            "/v1/tenants/acme/backups",
            Some(ADMIN),
            json!({"codec": "gzip"}),
        )
        .await;
    succeeded(&env, &b2).await;
    let (s, dry) = api
        .post(
            "/v1/backups/prune",
            Some(ADMIN),
            json!({"tenants": ["acme"], "keep": 1, "dry_run": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{dry:#}");
    assert_eq!(
        dry["reports"][0]["deleted"].as_array().unwrap().len(),
        1,
        "{dry:#}"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM backups WHERE status = 'complete'")
            .await,
        2
    );
    assert_error(
        api.post(
            "/v1/backups/prune",
            Some(ADMIN),
            json!({"tenants": ["nosuch"], "keep": 1}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        api.post("/v1/backups/prune", Some(ADMIN), json!({"keep": 0}))
            .await,
        422,
        "invalid_input",
    );

    let (s, gone) = api.send(Method::DELETE, &del, Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::OK, "{gone:#}");
    assert_eq!(gone["id"], id.as_str());
    let (_, list) = api.get("/v1/tenants/acme/backups", Some(ADMIN)).await;
    assert_eq!(list["backups"].as_array().unwrap().len(), 1, "{list:#}");
    // The deleted one, or one that never was, is not found.
    for missing in [id.clone(), Uuid::now_v7().to_string()] {
        assert_error(
            api.send(
                Method::DELETE,
                &format!("/v1/backups/{missing}"),
                Some(ADMIN),
                None,
            )
            .await,
            404,
            "not_found",
        );
    }
    assert_error(
        api.send(Method::DELETE, "/v1/backups/not-a-uuid", Some(ADMIN), None)
            .await,
        400,
        "bad_request",
    );

    // beta has no backup: the monitor says so.
    let (s, m) = api
        .get("/v1/backups/monitor?max_age_hours=1", Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK, "{m:#}");
    assert_eq!(m["healthy"], false);
    let stale: Vec<&str> = m["report"]["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["beta"], "{m:#}");
    assert_error(
        api.get("/v1/backups/monitor?max_age_hours=0", Some(ADMIN))
            .await,
        422,
        "invalid_input",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shortcuts_register_and_can_provision_are_an_admins() {
    let (env, api) = two_tenants(None).await;
    let (s, t) = api
        .post(
            "/v1/tenants/acme/suspend",
            Some(ADMIN),
            json!({"reason": "unpaid"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "suspended");
    let (s, t) = api
        .send(Method::POST, "/v1/tenants/acme/activate", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "active");
    let (s, t) = api
        .send(
            Method::POST,
            "/v1/tenants/beta/deactivate",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t:#}");
    assert_eq!(t["status"], "inactive");
    assert_error(
        api.send(
            Method::POST,
            "/v1/tenants/acme/deactivate",
            Some(ACME),
            None,
        )
        .await,
        403,
        "forbidden",
    );
    assert_error(
        api.post(
            "/v1/tenants/nosuch/suspend",
            Some(ADMIN),
            json!({"reason": "x"}),
        )
        .await,
        404,
        "not_found",
    );

    let (s, a) = api
        .get(
            "/v1/can-provision?owner=new@example.com&plan=free",
            Some(ADMIN),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a:#}");
    assert_eq!(a["allowed"], true);
    assert_eq!(a["used"], 0);
    assert_error(
        api.get("/v1/can-provision?owner=new@example.com", Some(ADMIN))
            .await,
        400,
        "bad_request",
    );
    assert_error(
        api.get(
            "/v1/can-provision?owner=new@example.com&plan=free",
            Some(ACME),
        )
        .await,
        403,
        "forbidden",
    );

    // Register adopts an existing database (dropped with the test's, by its prefix); again is a conflict.
    let db = format!("{}_adopted", env.catalog_db);
    crate::common::exec_in("postgres", &format!("CREATE DATABASE {db}")).await;
    let body = json!({"name": "Adopted", "plan": "pro", "server": "default", "database": db});
    let (s, t) = api
        .post("/v1/tenants/adopted/register", Some(ADMIN), body.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t:#}");
    assert_eq!(t["status"], "active");
    assert_error(
        api.post("/v1/tenants/adopted/register", Some(ADMIN), body)
            .await,
        409,
        "already_exists",
    );
}

const YEARLY: &str = "[[schedules]]\nname = \"yearly\"\ncron = \"0 0 1 1 *\"\ntimezone = \"Europe/Madrid\"\nkind = \"analyze\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn schedules_are_listed_run_now_and_their_history_kept() {
    let (env, api) = two_tenants(Some(YEARLY)).await;
    let (s, l) = api.get("/v1/schedules", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{l:#}");
    let s0 = &l["schedules"][0];
    assert_eq!(s0["name"], "yearly");
    assert!(
        s0["next"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00+01:00"),
        "{l:#}"
    );
    assert!(s0["last"].is_null());
    assert_error(api.get("/v1/schedules", Some(ACME)).await, 403, "forbidden");

    let (s, f) = api
        .send(Method::POST, "/v1/schedules/yearly/run", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{f:#}");
    assert_eq!(f["jobs"], 2, "{f:#}");
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'analyze'", 2)
        .await;
    let (s, h) = api
        .get("/v1/schedules/yearly/history?limit=5", Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK, "{h:#}");
    assert_eq!(h["firings"].as_array().unwrap().len(), 1, "{h:#}");
    assert_eq!(h["firings"][0]["status"], "done");
    let (_, l) = api.get("/v1/schedules", Some(ADMIN)).await;
    assert_eq!(l["schedules"][0]["last"]["jobs"], 2, "{l:#}");
    assert_eq!(l["schedules"][0]["last_outcomes"]["queued"], 2, "{l:#}");

    assert_error(
        api.send(Method::POST, "/v1/schedules/nosuch/run", Some(ADMIN), None)
            .await,
        404,
        "not_found",
    );
    assert_error(
        api.get("/v1/schedules/yearly/history?limit=0", Some(ADMIN))
            .await,
        422,
        "invalid_input",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_is_checked_for_every_tenant_before_anything_is_enqueued() {
    let (env, api) = two_tenants(None).await;
    let before = env.count("SELECT count(*) FROM jobs").await;
    assert_error(
        api.post(
            "/v1/maintenance",
            Some(ADMIN),
            json!({"tenants": ["acme", "nosuch"], "analyze": true}),
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        api.post("/v1/maintenance", Some(ADMIN), json!({"tenants": ["acme"]}))
            .await,
        422,
        "invalid_input",
    );
    assert_error(
        api.post(
            "/v1/maintenance",
            Some(ADMIN),
            json!({"analyze": true, "launch": 1}),
        )
        .await,
        400,
        "bad_request",
    );
    assert_error(
        api.post("/v1/maintenance", Some(ACME), json!({"analyze": true}))
            .await,
        403,
        "forbidden",
    );
    assert_eq!(env.count("SELECT count(*) FROM jobs").await, before);
    let (s, b) = api
        .post("/v1/maintenance", Some(ADMIN), json!({"analyze": true}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    assert_eq!(b["job_ids"].as_array().unwrap().len(), 2, "{b:#}");
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'maintenance'", 2)
        .await;

    let (s, m) = api
        .send(Method::POST, "/v1/tenants/acme/migrate", Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{m:#}");
    assert_eq!(m["job_ids"].as_array().unwrap().len(), 1, "{m:#}");
    assert_error(
        api.post("/v1/migrations", Some(ADMIN), json!({"concurrency": 0}))
            .await,
        422,
        "invalid_input",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_pages_newest_first_and_a_tenant_reads_only_its_own() {
    let (_env, api) = two_tenants(None).await;
    for (slug, to) in [
        ("acme", "suspend"),
        ("acme", "activate"),
        ("beta", "suspend"),
    ] {
        let (s, b) = api
            .post(
                &format!("/v1/tenants/{slug}/{to}"),
                Some(ADMIN),
                json!({"reason": "test"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b:#}");
    }
    let (s, p1) = api
        .get("/v1/audit?limit=2&actor=api:admin", Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK, "{p1:#}");
    let e1 = p1["entries"].as_array().unwrap();
    assert_eq!(e1.len(), 2, "{p1:#}");
    assert_eq!(e1[0]["tenant"], "beta");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = api
        .get(
            &format!("/v1/audit?limit=2&actor=api:admin&cursor={cursor}"),
            Some(ADMIN),
        )
        .await;
    let e2 = p2["entries"].as_array().unwrap();
    assert_eq!(e2.len(), 1, "{p2:#}");
    assert!(e2[0]["id"].as_i64() < e1[1]["id"].as_i64());
    assert!(p2["next_cursor"].is_null());

    let (s, mine) = api.get("/v1/audit", Some(BETA)).await;
    // beta is suspended: its token reads nothing but its tenant.
    assert_eq!(s, StatusCode::FORBIDDEN, "{mine:#}");
    let (_, mine) = api.get("/v1/audit", Some(ACME)).await;
    let tenants: Vec<&str> = mine["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tenant"].as_str().unwrap())
        .collect();
    assert!(
        !tenants.is_empty() && tenants.iter().all(|t| *t == "acme"),
        "{mine:#}"
    );
    assert_error(
        api.get("/v1/audit?tenant=beta", Some(ACME)).await,
        403,
        "forbidden",
    );
    assert_error(
        api.get("/v1/audit?cursor=x", Some(ADMIN)).await,
        400,
        "bad_request",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_without_amqp_follows_its_job_on_the_event_stream() {
    let (mut env, api) = two_tenants(None).await;
    env.spawn_worker(&[], &[]);
    let res = api
        .http
        .get(format!("{}/v1/events/stream", api.base))
        .bearer_auth(ACME)
        .timeout(secs(90))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let job = api.accepted("acme", ACME, json!({"kind": "analyze"})).await;
    // beta's job is not acme's business.
    let other = api.accepted("beta", BETA, json!({"kind": "analyze"})).await;
    let mut res = res;
    let mut text = String::new();
    let found = tokio::time::timeout(secs(60), async {
        while let Some(chunk) = res.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("event: job.succeeded") && text.contains(&job) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stream so far:\n{text}");
    assert!(
        !text.contains(&other),
        "beta's job on acme's stream:\n{text}"
    );
    assert!(
        text.contains("\nid: ") || text.starts_with("id: "),
        "{text}"
    );

    // The same events as pages, continuing after a cursor.
    let (s, page) = api.get("/v1/events?limit=1000", Some(ACME)).await;
    assert_eq!(s, StatusCode::OK, "{page:#}");
    let events = page["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "job.succeeded" && e["payload"]["job_id"] == job.as_str()),
        "{page:#}"
    );
    assert!(
        events.iter().all(|e| e["payload"]["tenant"] == "acme"),
        "{page:#}"
    );
    let next = page["next_cursor"].as_i64().unwrap();
    let (_, rest) = api
        .get(&format!("/v1/events?after={next}&tenant=acme"), Some(ACME))
        .await;
    assert!(
        rest["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"].as_i64().unwrap() > next),
        "{rest:#}"
    );
    assert_error(
        api.get("/v1/events?tenant=beta", Some(ACME)).await,
        403,
        "forbidden",
    );
    assert_error(
        api.get("/v1/events?after=-1", Some(ADMIN)).await,
        400,
        "bad_request",
    );
    let (_, all) = api.get("/v1/events?limit=1000", Some(ADMIN)).await;
    assert!(
        all["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["payload"]["job_id"] == other.as_str()),
        "{all:#}"
    );
}

/// A POST with an Idempotency-Key; returns status, body and whether it was replayed.
async fn keyed(
    api: &Api,
    token: &str,
    key: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value, bool) {
    let (s, b, h) = api
        .finish(
            api.http
                .post(format!("{}{path}", api.base))
                .bearer_auth(token)
                .header("idempotency-key", key)
                .json(&body),
        )
        .await;
    let replayed = h.get("idempotent-replayed").is_some_and(|v| v == "true");
    (s, b, replayed)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_replays_the_first_answer_for_its_token() {
    let (env, api) = two_tenants(None).await;
    let ping = json!({"kind": "analyze"});
    let path = "/v1/tenants/acme/jobs";
    let (s1, b1, r1) = keyed(&api, ACME, "k-1", path, ping.clone()).await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{b1:#}");
    assert!(!r1);
    let (s2, b2, r2) = keyed(&api, ACME, "k-1", path, ping.clone()).await;
    assert_eq!((s2, &b2, r2), (StatusCode::ACCEPTED, &b1, true));
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'analyze'", 1)
        .await;

    // The same key with another request is refused and runs nothing.
    let (s, b, _) = keyed(&api, ACME, "k-1", path, json!({"kind": "backup"})).await;
    assert_error((s, b), 422, "idempotency_key_reused");
    // Another token's key is another key.
    let (s, b, r) = keyed(&api, ADMIN, "k-1", path, ping.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b:#}");
    assert!(!r);
    assert_ne!(b["job_id"], b1["job_id"]);
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'analyze'", 2)
        .await;

    // Refusals are answers too; a bad key is refused before anything runs.
    let (s, b, _) = keyed(&api, ACME, "k-2", path, json!({"kind": "nope"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b:#}");
    let (s, _, r) = keyed(&api, ACME, "k-2", path, json!({"kind": "nope"})).await;
    assert_eq!((s, r), (StatusCode::UNPROCESSABLE_ENTITY, true));
    let long = "x".repeat(256);
    for bad in [long.as_str(), "with space"] {
        let (s, b, _) = keyed(&api, ACME, bad, path, ping.clone()).await;
        assert_error((s, b), 400, "bad_request");
    }
    // Without a valid token nothing is claimed.
    let (s, b, _) = keyed(&api, "nope", "k-3", path, ping.clone()).await;
    assert_error((s, b), 401, "unauthorized");
    env.assert_count("SELECT count(*) FROM api_idempotency", 3)
        .await;
    env.assert_count("SELECT count(*) FROM jobs WHERE kind = 'analyze'", 2)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_every_check_to_an_admin() {
    let (_env, api) = two_tenants(None).await;
    let (s, d) = api.get("/v1/doctor", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{d:#}");
    let checks = d["checks"].as_array().unwrap();
    assert!(checks.iter().any(|c| c["name"] == "catalog"), "{d:#}");
    assert_eq!(
        d["ok"].as_bool().unwrap(),
        checks.iter().all(|c| c["ok"] == true)
    );
    assert_error(api.get("/v1/doctor", Some(ACME)).await, 403, "forbidden");
}

const VIEWER: &str = "viewer-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_token_reads_everything_but_credentials_and_changes_nothing() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let api = Api::start(&env, &format!("{},viewer={VIEWER}", tokens())).await;
    let job = api
        .accepted("acme", ADMIN, json!({"kind": "analyze"}))
        .await;
    for path in [
        "/v1/tenants".to_string(),
        "/v1/tenants/acme".into(),
        "/v1/jobs".into(),
        format!("/v1/jobs/{job}"),
        "/v1/tenants/acme/backups".into(),
        "/v1/audit".into(),
        "/v1/events".into(),
        "/v1/doctor".into(),
    ] {
        let (s, b) = api.get(&path, Some(VIEWER)).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {b:#}");
    }
    // It sees jobs as a tenant token does, without the internals.
    let (_, j) = api.get(&format!("/v1/jobs/{job}"), Some(VIEWER)).await;
    assert!(j.get("lease_owner").is_none(), "{j:#}");
    assert_error(
        api.get("/v1/tenants/acme/credentials", Some(VIEWER)).await,
        403,
        "forbidden",
    );
    let jobs = env.count("SELECT count(*) FROM jobs").await;
    let audits = env.count("SELECT count(*) FROM audit_log").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/tenants/acme/suspend",
            Some(json!({"reason": "x"})),
        ),
        (
            Method::POST,
            "/v1/tenants/acme/jobs",
            Some(json!({"kind": "analyze"})),
        ),
        (Method::POST, &format!("/v1/jobs/{job}/cancel"), None),
        (
            Method::PATCH,
            "/v1/tenants/acme/settings",
            Some(json!({"unset": ["language"]})),
        ),
        (Method::DELETE, "/v1/tenants/acme", None),
        (
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "x", "name": "X", "plan": "pro", "owner": "x@example.com"})),
        ),
    ] {
        let got = api.send(method.clone(), path, Some(VIEWER), body).await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{method} {path}: {:#}", got.1);
        assert_error(got, 403, "forbidden");
    }
    assert_eq!(env.count("SELECT count(*) FROM jobs").await, jobs);
    assert_eq!(env.count("SELECT count(*) FROM audit_log").await, audits);
    let (_, t) = api.get("/v1/tenants/acme", Some(VIEWER)).await;
    assert_eq!(t["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_are_listed_by_creation_time_window() {
    let (env, api) = two_tenants(None).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            api.accepted("acme", ADMIN, json!({"kind": "analyze"}))
                .await,
        );
    }
    // One of them was created two days ago.
    sqlx::query("UPDATE jobs SET created_at = now() - interval '2 days' WHERE id = $1::uuid")
        .bind(&ids[0])
        .execute(&env.catalog)
        .await
        .unwrap();
    let day_ago = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let listed = |b: &Value| -> Vec<String> {
        b["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, recent) = api
        .get(&format!("/v1/jobs?since={day_ago}"), Some(ADMIN))
        .await;
    assert_eq!(s, StatusCode::OK, "{recent:#}");
    assert_eq!(
        listed(&recent),
        [ids[2].clone(), ids[1].clone()],
        "{recent:#}"
    );
    let (_, old) = api
        .get(&format!("/v1/jobs?until={day_ago}"), Some(ADMIN))
        .await;
    assert_eq!(listed(&old), [ids[0].clone()], "{old:#}");
    // Paged inside the window: the cursor continues it, nothing repeated or skipped.
    let (_, p1) = api
        .get(&format!("/v1/jobs?since={day_ago}&limit=1"), Some(ACME))
        .await;
    assert_eq!(listed(&p1), [ids[2].clone()], "{p1:#}");
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = api
        .get(
            &format!("/v1/jobs?since={day_ago}&limit=1&cursor={cursor}"),
            Some(ACME),
        )
        .await;
    assert_eq!(listed(&p2), [ids[1].clone()], "{p2:#}");
    assert_error(
        api.get("/v1/jobs?since=yesterday", Some(ADMIN)).await,
        400,
        "bad_request",
    );
    let nojob = Uuid::now_v7();
    assert_error(
        api.get(
            &format!("/v1/jobs?since={day_ago}&cursor={nojob}"),
            Some(ADMIN),
        )
        .await,
        400,
        "bad_request",
    );
}
