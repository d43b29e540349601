//! The extended hostile-input suite (issue 13): hundreds of cases over the
//! HTTP API, the command line and the work exchange, each a real call
//! against the real services — one `landlord api` process, `landlord`
//! command lines, raw AMQP publishes to this test's `{prefix}.work` consumed
//! by a real worker.
//!
//! Every case must be refused clearly (API: the documented 4xx and error
//! code, never a 5xx; CLI: exit 2 naming the problem; AMQP: dead-lettered
//! with its reason, the worker still up), must create and change nothing
//! (catalog rows, databases and roles under the test's prefix, objects under
//! its store prefix, compared before and after) and must leak nothing
//! (tokens, passwords, other tenants' data, SQL or server internals).
//! The squatting cases are the exception that proves the rule: a caller's
//! dedupe key is accepted, but only ever in the caller's own namespace.
//!
//! Each table runs to the end and collects every failure, then fails once,
//! naming each failing case. It never weakens a case to make it pass.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Instant,
};

use crate::common::{TestEnv, free_port, ms, secs, stderr, stdout};
use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const ADMIN: &str = "admin-token-hinputs-0123456789";
const ACME: &str = "acme-token-hinputs-0123456789";
const BETA: &str = "beta-token-hinputs-0123456789";
/// The token of a suspended tenant: it only reads its own tenant.
const GAMMA: &str = "gamma-token-hinputs-0123456789";
/// The token of a tenant that does not exist (removed, or never created).
const GHOST: &str = "ghost-token-hinputs-0123456789";
const TOKENS: [&str; 5] = [ADMIN, ACME, BETA, GAMMA, GHOST];

// ---------------------------------------------------------------------------
// What must not change: the catalog, databases and roles, the store.

/// Catalog tables and what identifies a row's content (jobs and outbox
/// without the stamps the relay writes when it publishes).
const TABLES: [(&str, &str, Filter); 12] = [
    ("tenants", "t::text", Filter::None),
    ("owners", "t::text", Filter::None),
    ("plans", "t::text", Filter::None),
    ("audit_log", "t::text", Filter::JobId),
    ("tenant_credentials", "t::text", Filter::None),
    ("backups", "t::text", Filter::None),
    ("restores", "t::text", Filter::None),
    ("schedule_firings", "t::text", Filter::None),
    ("tenant_templates", "t::text", Filter::None),
    ("mail_receipts", "t::text", Filter::None),
    (
        "jobs",
        "concat_ws(',', t.id, t.kind, t.queue, t.tenant_id, t.args, t.status, t.max_attempts, t.dedupe_key, t.origin)",
        Filter::Id,
    ),
    (
        "outbox",
        "concat_ws(',', t.id, t.exchange, t.routing_key, t.payload, t.message_id, t.job_id)",
        Filter::JobId,
    ),
];

/// Rows of jobs a case was allowed to make (a squatter's own job) are left
/// out of the comparison through these columns.
#[derive(Clone, Copy)]
enum Filter {
    None,
    Id,
    JobId,
}

/// Everything a refused case must leave as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    /// Per table: row count and a digest of every row.
    rows: BTreeMap<&'static str, (i64, String)>,
    /// Databases and roles named with the test's prefix.
    databases: BTreeSet<String>,
    roles: BTreeSet<String>,
}

impl Snapshot {
    /// The state now, leaving out rows of the jobs in `allowed`.
    async fn take(env: &TestEnv, allowed: &[Uuid]) -> Snapshot {
        let mut rows = BTreeMap::new();
        for (table, expr, filter) in TABLES {
            let clause = match filter {
                Filter::None => "",
                Filter::Id => "WHERE NOT (t.id = ANY($1))",
                Filter::JobId => "WHERE t.job_id IS NULL OR NOT (t.job_id = ANY($1))",
            };
            let sql = format!(
                "SELECT count(*), coalesce(md5(string_agg({expr}, '|' ORDER BY {expr})), '') \
                 FROM {table} t {clause}"
            );
            let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
            if !matches!(filter, Filter::None) {
                q = q.bind(allowed);
            }
            let row: (i64, String) = q
                .fetch_one(&env.catalog)
                .await
                .unwrap_or_else(|e| panic!("snapshot of {table}: {e}"));
            rows.insert(table, row);
        }
        let like = format!("{}%", env.catalog_db);
        let databases = crate::common::scalars_in::<String>(
            "postgres",
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1",
            &[like.as_str()],
        )
        .await
        .into_iter()
        .collect();
        let roles = crate::common::scalars_in::<String>(
            "postgres",
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1",
            &[like.as_str()],
        )
        .await
        .into_iter()
        .collect();
        Snapshot {
            rows,
            databases,
            roles,
        }
    }

    /// What changed from `self` to `after`, in words; empty when nothing did.
    fn diff(&self, after: &Snapshot) -> String {
        let mut out = Vec::new();
        for (table, before) in &self.rows {
            let now = &after.rows[table];
            if before != now {
                out.push(format!(
                    "{table} changed ({} row(s) before, {} after)",
                    before.0, now.0
                ));
            }
        }
        for (what, b, a) in [
            ("database", &self.databases, &after.databases),
            ("role", &self.roles, &after.roles),
        ] {
            for new in a.difference(b) {
                out.push(format!("new {what} {new}"));
            }
            for gone in b.difference(a) {
                out.push(format!("{what} {gone} disappeared"));
            }
        }
        out.join("; ")
    }
}

/// Object keys under this test's store prefix.
async fn objects(env: &TestEnv) -> BTreeSet<String> {
    env.store()
        .await
        .list(&format!("{}/", env.prefix))
        .await
        .expect("listing the store")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Fails once, naming every failing case of `table`.
#[track_caller]
fn report(table: &str, total: usize, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {total} {table} case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    eprintln!("{table}: all {total} cases refused cleanly");
}

/// Text that must never reach a caller: tokens, passwords, connection
/// strings, SQL, server internals (panics, source paths, driver errors).
fn leaks(text: &str, env: &TestEnv, extra: &[String]) -> Vec<String> {
    let mut found: Vec<String> = TOKENS
        .iter()
        .filter(|t| text.contains(**t))
        .map(|t| format!("a token ({}…)", &t[..8]))
        .collect();
    for needle in [
        "postgres://",
        "amqp://",
        "guest:guest",
        "error returned from database",
        "sqlx",
        "SELECT ",
        "INSERT ",
        "UPDATE ",
        "pg_timezone_names",
        "panicked",
        "stack backtrace",
        "/src/",
        ".rs:",
        "invalid byte sequence",
    ] {
        if text.contains(needle) {
            found.push(format!("{needle:?}"));
        }
    }
    // The catalog's name (tenant databases are named after it).
    if text.contains(&env.catalog_db) {
        found.push(format!("the catalog database name {}", env.catalog_db));
    }
    for e in extra {
        if text.contains(e.as_str()) {
            found.push(format!("{e:?}"));
        }
    }
    found
}

// ---------------------------------------------------------------------------
// The HTTP API, spoken byte for byte (paths, headers and bodies exactly as
// a hostile client sends them: no client-side normalization).

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(&'static str),
    /// The raw value of the Authorization header.
    Raw(Vec<u8>),
}

/// A request body.
#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    /// Raw bytes with this content type (none when `None`).
    Raw(Option<&'static str>, Vec<u8>),
}

struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// One HTTP/1.1 request on its own connection.
async fn http(
    addr: &str,
    method: &str,
    path: &str,
    auth: &Auth,
    body: &Body,
) -> Result<Reply, String> {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => req.extend(format!("Authorization: Bearer {t}\r\n").bytes()),
        Auth::Raw(v) => {
            req.extend(b"Authorization: ");
            req.extend(v);
            req.extend(b"\r\n");
        }
    }
    let (ct, bytes) = match body {
        Body::None => (None, Vec::new()),
        Body::Json(v) => (Some("application/json"), serde_json::to_vec(v).unwrap()),
        Body::Raw(ct, b) => (*ct, b.clone()),
    };
    if let Some(ct) = ct {
        req.extend(format!("Content-Type: {ct}\r\n").bytes());
    }
    if !matches!(body, Body::None) || method != "GET" {
        req.extend(format!("Content-Length: {}\r\n", bytes.len()).bytes());
    }
    req.extend(b"\r\n");
    req.extend(&bytes);
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(&req).await.map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        // The server may answer (413) before reading everything; what it sent still counts.
        let _ = s.read_to_end(&mut raw).await;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_string())??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line: {head}"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Reply { status, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

/// `landlord api` of this test, knowing every token, with no rate limit
/// and no live-job cap (the squatting cases take many keys): its address.
async fn start_api(env: &mut TestEnv) -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    let tokens = format!(
        "admin={ADMIN},tenant:acme={ACME},tenant:beta={BETA},tenant:gamma={GAMMA},tenant:ghost={GHOST}"
    );
    env.spawn(
        &["api", "--listen", &addr],
        &[
            ("LANDLORD_API_TOKENS", &tokens),
            ("LANDLORD_API_RATE_PER_MINUTE", "0"),
            ("LANDLORD_API_MAX_LIVE_JOBS_PER_TENANT", "0"),
            ("LANDLORD_LOG", "info"),
        ],
    );
    let deadline = Instant::now() + secs(30);
    loop {
        if let Ok(r) = http(&addr, "GET", "/healthz", &Auth::None, &Body::None).await
            && r.status == 200
        {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "landlord api never answered /healthz:\n{}",
            env.worker_logs()
        );
        tokio::time::sleep(ms(100)).await;
    }
}

/// An API request that must be refused.
struct ApiCase {
    name: String,
    method: &'static str,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    code: &'static str,
    /// What the message must mention (the field or value at fault).
    mention: Option<String>,
}

fn refused(
    name: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    auth: Auth,
    body: Body,
    status: u16,
    code: &'static str,
) -> ApiCase {
    ApiCase {
        name: name.into(),
        method,
        path: path.into(),
        auth,
        body,
        status,
        code,
        mention: None,
    }
}

impl ApiCase {
    fn mentions(mut self, what: &str) -> Self {
        self.mention = Some(what.to_string());
        self
    }
}

/// Checks an error answer: the status, the one-key error shape with its
/// code and a bounded message, nothing leaked. Empty when all is well.
fn check_answer(c: &ApiCase, r: &Reply, env: &TestEnv) -> Vec<String> {
    let mut why = Vec::new();
    let text = String::from_utf8_lossy(&r.body).to_string();
    if r.status >= 500 {
        why.push(format!("server error {}", r.status));
    }
    if r.status != c.status {
        why.push(format!("status {} (expected {})", r.status, c.status));
    }
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(v) => {
            if v["error"]["code"] != c.code {
                why.push(format!("code {} (expected {})", v["error"]["code"], c.code));
            }
            match v["error"]["message"].as_str() {
                Some(m) if !m.is_empty() && m.chars().count() <= 1100 => {
                    if let Some(what) = &c.mention
                        && !m.to_lowercase().contains(&what.to_lowercase())
                    {
                        why.push(format!("message does not name {what:?}"));
                    }
                }
                _ => why.push("no (bounded) message".into()),
            }
            if v.as_object().map(|o| o.len()) != Some(1) {
                why.push("more than `error` in the body".into());
            }
        }
        Err(_) => why.push("the body is not JSON".into()),
    }
    // Tenant tokens must learn nothing about the other tenants.
    let others: Vec<String> = match &c.auth {
        Auth::Bearer(t) if *t != ADMIN => ["acme", "beta", "gamma"]
            .iter()
            .filter(|s| !t.starts_with(**s))
            .map(|s| format!("Tenant {s}"))
            .collect(),
        _ => Vec::new(),
    };
    let leaked = leaks(&text, env, &others);
    if !leaked.is_empty() {
        why.push(format!("leaks {}", leaked.join(", ")));
    }
    if !why.is_empty() {
        why.push(format!("body: {}", short(&text)));
    }
    why
}

/// Runs `cases` against the API at `addr`, each between two snapshots;
/// returns the failures, each with its case name.
async fn run_api_cases(env: &TestEnv, addr: &str, cases: &[ApiCase]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let before = Snapshot::take(env, &[]).await;
        let mut why = match http(addr, c.method, &c.path, &c.auth, &c.body).await {
            Ok(r) => check_answer(c, &r, env),
            Err(e) => vec![format!("no answer: {e}")],
        };
        let changed = before.diff(&Snapshot::take(env, &[]).await);
        if !changed.is_empty() {
            why.push(format!("changed: {changed}"));
        }
        if !why.is_empty() {
            failures.push(format!(
                "[{}] {} {}: {}",
                c.name,
                c.method,
                short(&c.path),
                why.join("; ")
            ));
        }
    }
    failures
}

/// Registered tenants acme, beta and gamma (suspended), the API, and jobs
/// to point at: beta's, acme's (dedupe key `mine`) and one of no tenant.
struct ApiFixture {
    addr: String,
    beta_job: Uuid,
    acme_job: Uuid,
    tenantless_job: Uuid,
}

async fn api_fixture(env: &mut TestEnv) -> ApiFixture {
    env.tenant("acme").await;
    env.tenant("beta").await;
    env.tenant("gamma").await;
    env.ok(&["tenants", "suspend", "gamma", "--reason", "unpaid"]);
    let beta_job = env.enqueue(&["jobs", "ping", "--tenant", "beta"]);
    let tenantless_job = env.enqueue(&["jobs", "ping"]);
    let addr = start_api(env).await;
    let r = http(
        &addr,
        "POST",
        "/v1/tenants/acme/jobs",
        &Auth::Bearer(ACME),
        &Body::Json(json!({"kind": "ping", "dedupe_key": "mine"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let acme_job = Uuid::parse_str(v["job_id"].as_str().unwrap()).unwrap();
    ApiFixture {
        addr,
        beta_job,
        acme_job,
        tenantless_job,
    }
}

/// Values no identifier (slug, plan, server, database, key) may take.
fn hostile_identifiers() -> Vec<(&'static str, String)> {
    vec![
        ("sql", "x'); DROP TABLE tenants; --".into()),
        ("double quote", "a\"b".into()),
        ("backslash", "a\\b".into()),
        ("nul", "a\u{0}b".into()),
        ("newline", "a\nb".into()),
        ("tab", "a\tb".into()),
        ("accented", "ácme".into()),
        ("cyrillic homoglyph", "\u{0430}cme".into()),
        ("rtl override", "\u{202e}emca".into()),
        ("zero width", "ac\u{200b}me".into()),
        ("traversal", "../etc".into()),
        ("absolute path", "/etc/passwd".into()),
        ("overlong", "a".repeat(5000)),
        ("empty", String::new()),
        ("percent encoded", "%2e%2e".into()),
    ]
}

/// Every field of a tenant creation × every hostile value: 422 naming the field.
fn create_field_cases() -> Vec<ApiCase> {
    let good = json!({"slug": "delta", "name": "Delta", "plan": "pro", "owner": "d@example.com"});
    let with = |pairs: &[(&str, Value)]| {
        let mut b = good.clone();
        for (k, v) in pairs {
            b[*k] = v.clone();
        }
        Body::Json(b)
    };
    let create = |name: String, body: Body, mention: &str| {
        refused(
            name,
            "POST",
            "/v1/tenants",
            Auth::Bearer(ADMIN),
            body,
            422,
            "invalid_input",
        )
        .mentions(mention)
    };
    let mut cases = Vec::new();
    for (what, v) in hostile_identifiers() {
        cases.push(create(
            format!("create slug {what}"),
            with(&[("slug", json!(v))]),
            "slug",
        ));
        cases.push(create(
            format!("create plan {what}"),
            with(&[("plan", json!(v))]),
            "plan",
        ));
        cases.push(create(
            format!("create server {what}"),
            with(&[("server", json!(v))]),
            "server",
        ));
        cases.push(create(
            format!("create shared_database {what}"),
            with(&[("shared_database", json!(v))]),
            "database",
        ));
        if what != "uppercase" {
            // Upper-case letters are allowed in a tenant key; every other value is no key.
            cases.push(create(
                format!("create tenant_key {what}"),
                with(&[
                    ("shared_database", json!("shared_db")),
                    ("tenant_key", json!(v)),
                ]),
                "tenant key",
            ));
        }
    }
    for (what, owner) in [
        ("sql", "o'; DROP TABLE owners; --@example.com".to_string()),
        ("no domain dot", "a@b".into()),
        ("no local part", "@example.com".into()),
        ("two ats", "a@@example.com".into()),
        ("nul", "a@example.com\u{0}".into()),
        ("newline", "a\n@example.com".into()),
        (
            "header injection",
            "a@example.com\r\nBcc: x@evil.example".into(),
        ),
        ("leading dot domain", "a@.com".into()),
        ("overlong", format!("{}@example.com", "a".repeat(400))),
        ("empty", String::new()),
    ] {
        cases.push(create(
            format!("create owner {what}"),
            with(&[("owner", json!(owner))]),
            "owner",
        ));
    }
    for (what, name) in [
        ("empty", String::new()),
        ("blank", "   ".to_string()),
        ("nul", "a\u{0}b".into()),
        ("newline", "a\nb".into()),
        ("carriage return", "a\rb".into()),
        ("bell", "\u{7}bell".into()),
        ("escape sequence", "\u{1b}[31mred".into()),
        ("overlong", "n".repeat(201)),
    ] {
        cases.push(create(
            format!("create name {what}"),
            with(&[("name", json!(name))]),
            "name",
        ));
    }
    for (what, key) in [
        ("sql", "timezone'--".to_string()),
        ("uppercase", "TIMEZONE".into()),
        ("padded", " timezone".into()),
        ("nul", "time\u{0}zone".into()),
        ("overlong", "k".repeat(1000)),
        ("proto", "__proto__".into()),
        ("traversal", "../timezone".into()),
    ] {
        cases.push(create(
            format!("create setting key {what}"),
            with(&[("settings", json!({key: "UTC"}))]),
            "setting",
        ));
    }
    for (setting, what, v) in [
        ("timezone", "unknown", json!("Mars/Olympus")),
        ("timezone", "sql", json!("Europe/Madrid'; --")),
        ("timezone", "traversal", json!("../../../etc/localtime")),
        ("timezone", "absolute path", json!("/etc/localtime")),
        ("timezone", "nul", json!("UTC\u{0}")),
        ("timezone", "newline", json!("UTC\n")),
        ("timezone", "overlong", json!("x".repeat(5000))),
        ("timezone", "number", json!(42)),
        ("timezone", "null", json!(null)),
        ("timezone", "array", json!(["UTC"])),
        ("timezone", "object", json!({"a": 1})),
        ("language", "sql", json!("es'; --")),
        ("language", "uppercase", json!("ES")),
        ("language", "nul", json!("e\u{0}s")),
        ("language", "empty", json!("")),
        ("language", "number", json!(1)),
        ("display_name", "empty", json!("")),
        ("display_name", "nul", json!("a\u{0}")),
        ("display_name", "newline", json!("a\nb")),
        ("display_name", "overlong", json!("x".repeat(201))),
        ("display_name", "bool", json!(true)),
    ] {
        cases.push(create(
            format!("create setting {setting} {what}"),
            with(&[("settings", json!({setting: v}))]),
            setting,
        ));
    }
    cases
}

/// Wrong JSON types, missing and extra fields, and bodies that are no JSON
/// object at all: 400 (or 413, 415).
fn body_shape_cases() -> Vec<ApiCase> {
    let good = json!({"slug": "delta", "name": "Delta", "plan": "pro", "owner": "d@example.com"});
    let create = |name: String, body: Body, status: u16, code: &'static str| {
        refused(
            name,
            "POST",
            "/v1/tenants",
            Auth::Bearer(ADMIN),
            body,
            status,
            code,
        )
    };
    let mut cases = Vec::new();
    for (field, what, v) in [
        ("slug", "number", json!(42)),
        ("slug", "null", json!(null)),
        ("slug", "array", json!(["delta"])),
        ("slug", "object", json!({"s": "delta"})),
        ("name", "bool", json!(true)),
        ("plan", "float", json!(1.5)),
        ("owner", "array", json!([])),
        ("settings", "string", json!("timezone=UTC")),
        ("settings", "array", json!(["timezone"])),
        ("server", "number", json!(0)),
        ("shared_database", "object", json!({})),
        ("tenant_key", "number", json!(7)),
    ] {
        let mut b = good.clone();
        b[field] = v;
        cases.push(create(
            format!("create {field} is {what}"),
            Body::Json(b),
            400,
            "bad_request",
        ));
    }
    for field in ["slug", "name", "plan", "owner"] {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        cases.push(
            create(
                format!("create without {field}"),
                Body::Json(b),
                400,
                "bad_request",
            )
            .mentions(field),
        );
    }
    for (field, v) in [
        ("id", json!(1)),
        ("status", json!("active")),
        ("db_name", json!("postgres")),
        ("owner_id", json!(1)),
    ] {
        let mut b = good.clone();
        b[field] = v;
        cases.push(
            create(
                format!("create with extra {field}"),
                Body::Json(b),
                400,
                "bad_request",
            )
            .mentions(field),
        );
    }
    for (what, v) in [
        ("array", json!(["delta"])),
        ("string", json!("delta")),
        ("null", json!(null)),
        ("number", json!(42)),
    ] {
        cases.push(create(
            format!("create body is {what}"),
            Body::Json(v),
            400,
            "bad_request",
        ));
    }
    let good_bytes = serde_json::to_vec(&good).unwrap();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        Some("application/jsonp"),
        Some("json"),
    ] {
        cases.push(create(
            format!("create with content type {ct:?}"),
            Body::Raw(ct, good_bytes.clone()),
            415,
            "unsupported_media_type",
        ));
    }
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    let raw_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", b"{\"slug\": \"delta\",".to_vec()),
        ("not json", b"slug=delta".to_vec()),
        ("invalid utf-8", b"{\"slug\": \"d\xffelta\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\"}".to_vec()),
        ("byte order mark", [b"\xef\xbb\xbf".as_slice(), &good_bytes].concat()),
        ("utf-16", "{\"slug\":\"delta\"}".encode_utf16().flat_map(|u| u.to_le_bytes()).collect()),
        ("trailing garbage", [good_bytes.as_slice(), b" x"].concat()),
        ("two objects", [good_bytes.as_slice(), &good_bytes].concat()),
        ("NaN", b"{\"slug\": NaN}".to_vec()),
        ("number overflow", b"{\"slug\": \"delta\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\", \"server\": 1e999}".to_vec()),
        ("lone surrogate", b"{\"slug\": \"\\ud800\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\"}".to_vec()),
        ("deep nesting", format!("{{\"slug\": \"delta\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\", \"settings\": {{\"timezone\": {deep}}}}}").into_bytes()),
        ("duplicate slug", b"{\"slug\": \"delta\", \"slug\": \"acme\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\"}".to_vec()),
        ("duplicate setting", b"{\"slug\": \"delta\", \"name\": \"D\", \"plan\": \"pro\", \"owner\": \"d@example.com\", \"settings\": {\"language\": \"en\", \"language\": \"es\"}}".to_vec()),
        ("single quotes", b"{'slug': 'delta'}".to_vec()),
        ("comment", b"{\"slug\": \"delta\" /* x */}".to_vec()),
    ];
    for (what, b) in raw_bodies {
        cases.push(create(
            format!("create body {what}"),
            Body::Raw(Some("application/json"), b),
            400,
            "bad_request",
        ));
    }
    let huge = serde_json::to_vec(&json!({"slug": "delta", "name": "n".repeat(70 * 1024), "plan": "pro", "owner": "d@example.com"})).unwrap();
    cases.push(create(
        "create body over 64 KiB".into(),
        Body::Raw(Some("application/json"), huge),
        413,
        "payload_too_large",
    ));
    let huge_job =
        serde_json::to_vec(&json!({"kind": "ping", "args": {"pad": "x".repeat(200 * 1024)}}))
            .unwrap();
    cases.push(refused(
        "enqueue body over 64 KiB",
        "POST",
        "/v1/tenants/acme/jobs",
        Auth::Bearer(ACME),
        Body::Raw(Some("application/json"), huge_job),
        413,
        "payload_too_large",
    ));
    cases.push(refused(
        "enqueue duplicate kind (restore hidden behind ping)",
        "POST",
        "/v1/tenants/acme/jobs",
        Auth::Bearer(ACME),
        Body::Raw(
            Some("application/json"),
            b"{\"kind\": \"restore\", \"kind\": \"ping\"}".to_vec(),
        ),
        400,
        "bad_request",
    ));
    cases.push(refused(
        "enqueue duplicate args key",
        "POST",
        "/v1/tenants/acme/jobs",
        Auth::Bearer(ACME),
        Body::Raw(
            Some("application/json"),
            b"{\"kind\": \"backup\", \"args\": {\"codec\": \"zstd\", \"codec\": \"gzip\"}}"
                .to_vec(),
        ),
        400,
        "bad_request",
    ));
    cases.push(refused(
        "enqueue deep nesting in args",
        "POST",
        "/v1/tenants/acme/jobs",
        Auth::Bearer(ACME),
        Body::Raw(
            Some("application/json"),
            format!("{{\"kind\": \"ping\", \"args\": {{\"a\": {deep}}}}}").into_bytes(),
        ),
        400,
        "bad_request",
    ));
    cases
}

/// Hostile slugs in the path of every per-tenant route, and hostile job ids.
fn path_cases(f: &ApiFixture) -> Vec<ApiCase> {
    let slugs: Vec<(&str, String)> = vec![
        ("sql", "%27%3B%20DROP%20TABLE%20tenants%3B--".into()),
        ("traversal", "..%2f..%2fetc%2fpasswd".into()),
        ("dot dot", "%2e%2e".into()),
        ("raw dot dot", "..".into()),
        ("nul", "%00".into()),
        ("invalid utf-8", "%FF".into()),
        ("unknown", "ghost".into()),
        ("uppercase", "ACME".into()),
        ("accented", "%C3%A1cme".into()),
        ("overlong", "a".repeat(5000)),
        ("nul suffix", "acme%00".into()),
        ("slash into other", "acme%2f..%2fbeta".into()),
    ];
    let routes: [(&str, &str, Body); 5] = [
        ("GET", "", Body::None),
        ("POST", "/status", Body::Json(json!({"status": "active"}))),
        (
            "PATCH",
            "/settings",
            Body::Json(json!({"set": {"language": "en"}})),
        ),
        ("GET", "/credentials", Body::None),
        ("POST", "/jobs", Body::Json(json!({"kind": "ping"}))),
    ];
    let mut cases = Vec::new();
    for (what, slug) in &slugs {
        for (method, tail, body) in &routes {
            let (status, code) = if *what == "invalid utf-8" {
                (400, "bad_request")
            } else {
                (404, "not_found")
            };
            cases.push(refused(
                format!("admin {method} tenant{tail} slug {what}"),
                method,
                format!("/v1/tenants/{slug}{tail}"),
                Auth::Bearer(ADMIN),
                body.clone(),
                status,
                code,
            ));
        }
        // A tenant token is refused before anything is looked up.
        cases.push(refused(
            format!("tenant token GET tenant slug {what}"),
            "GET",
            format!("/v1/tenants/{slug}"),
            Auth::Bearer(ACME),
            Body::None,
            if *what == "invalid utf-8" { 400 } else { 403 },
            if *what == "invalid utf-8" {
                "bad_request"
            } else {
                "forbidden"
            },
        ));
    }
    for (what, id) in [
        ("not a uuid", "not-a-uuid".to_string()),
        ("sql", "%27%20OR%201%3D1--".into()),
        ("nul", "%00".into()),
        ("overlong", "1".repeat(5000)),
        ("traversal", "..%2f..%2fetc%2fpasswd".into()),
        ("invalid utf-8", "%FF".into()),
        ("uuid with sql suffix", format!("{}%27--", f.beta_job)),
    ] {
        cases.push(refused(
            format!("job id {what}"),
            "GET",
            format!("/v1/jobs/{id}"),
            Auth::Bearer(ADMIN),
            Body::None,
            400,
            "bad_request",
        ));
    }
    for (what, id) in [
        ("nil", Uuid::nil().to_string()),
        ("unknown", Uuid::new_v4().to_string()),
    ] {
        cases.push(refused(
            format!("job id {what}"),
            "GET",
            format!("/v1/jobs/{id}"),
            Auth::Bearer(ADMIN),
            Body::None,
            404,
            "not_found",
        ));
    }
    for (what, method, path) in [
        ("delete tenants", "DELETE", "/v1/tenants".to_string()),
        ("put tenant", "PUT", "/v1/tenants/acme".into()),
        ("get jobs of tenant", "GET", "/v1/tenants/acme/jobs".into()),
        ("trace", "TRACE", "/v1/tenants".into()),
    ] {
        cases.push(refused(
            format!("method {what}"),
            method,
            path,
            Auth::Bearer(ADMIN),
            Body::None,
            405,
            "method_not_allowed",
        ));
    }
    for (what, path) in [
        ("unversioned", "/tenants"),
        ("v2", "/v2/tenants"),
        ("dot segments", "/v1/tenants/acme/../beta"),
        ("encoded slash route", "/v1/tenants%2facme"),
    ] {
        cases.push(refused(
            format!("route {what}"),
            "GET",
            path,
            Auth::Bearer(ADMIN),
            Body::None,
            404,
            "not_found",
        ));
    }
    cases
}

/// Missing, malformed and foreign tokens, tenant tokens out of their scope,
/// and operator-only arguments.
fn auth_cases(f: &ApiFixture) -> Vec<ApiCase> {
    let raw = |v: &[u8]| Auth::Raw(v.to_vec());
    let mut cases = Vec::new();
    let truncated = &ACME[..ACME.len() - 1];
    for (what, auth) in [
        ("no header", Auth::None),
        ("bearer without token", raw(b"Bearer")),
        ("bearer blank", raw(b"Bearer   ")),
        ("basic", raw(format!("Basic {ACME}").as_bytes())),
        ("token scheme", raw(format!("Token {ACME}").as_bytes())),
        ("no scheme", raw(ACME.as_bytes())),
        ("suffixed", raw(format!("Bearer {ACME}x").as_bytes())),
        ("truncated", raw(format!("Bearer {truncated}").as_bytes())),
        (
            "upper-cased",
            raw(format!("Bearer {}", ACME.to_uppercase()).as_bytes()),
        ),
        ("twice", raw(format!("Bearer {ACME} {ACME}").as_bytes())),
        (
            "comma list",
            raw(format!("Bearer {ACME},{ADMIN}").as_bytes()),
        ),
        ("scope as token", raw(b"Bearer admin")),
        (
            "config entry as token",
            raw(format!("Bearer admin={ADMIN}").as_bytes()),
        ),
        ("non-ascii bytes", raw(b"Bearer \xff\xfe\xfd")),
        ("sql", raw(b"Bearer ' OR '1'='1")),
        (
            "overlong",
            raw(format!("Bearer {}", "x".repeat(8000)).as_bytes()),
        ),
    ] {
        cases.push(refused(
            format!("auth {what}"),
            "GET",
            "/v1/tenants/acme",
            auth,
            Body::None,
            401,
            "unauthorized",
        ));
    }
    cases.push(refused(
        "auth no header on create",
        "POST",
        "/v1/tenants",
        Auth::None,
        Body::Json(json!({"slug": "delta", "name": "D", "plan": "pro", "owner": "d@example.com"})),
        401,
        "unauthorized",
    ));
    cases.push(refused(
        "auth no header on enqueue",
        "POST",
        "/v1/tenants/acme/jobs",
        Auth::None,
        Body::Json(json!({"kind": "ping"})),
        401,
        "unauthorized",
    ));
    let ping = || Body::Json(json!({"kind": "ping"}));
    let scoped: Vec<(&str, &'static str, &str, String, Body)> = vec![
        // The token of a tenant that does not exist.
        (
            "ghost reads itself",
            GHOST,
            "GET",
            "/v1/tenants/ghost".into(),
            Body::None,
        ),
        (
            "ghost reads acme",
            GHOST,
            "GET",
            "/v1/tenants/acme".into(),
            Body::None,
        ),
        (
            "ghost enqueues",
            GHOST,
            "POST",
            "/v1/tenants/ghost/jobs".into(),
            ping(),
        ),
        // The token of a suspended tenant.
        (
            "suspended enqueues",
            GAMMA,
            "POST",
            "/v1/tenants/gamma/jobs".into(),
            ping(),
        ),
        (
            "suspended changes settings",
            GAMMA,
            "PATCH",
            "/v1/tenants/gamma/settings".into(),
            Body::Json(json!({"set": {"language": "es"}})),
        ),
        (
            "suspended reads credentials",
            GAMMA,
            "GET",
            "/v1/tenants/gamma/credentials".into(),
            Body::None,
        ),
        (
            "suspended reactivates itself",
            GAMMA,
            "POST",
            "/v1/tenants/gamma/status".into(),
            Body::Json(json!({"status": "active"})),
        ),
        // Admin routes.
        (
            "tenant creates",
            ACME,
            "POST",
            "/v1/tenants".into(),
            Body::Json(
                json!({"slug": "delta", "name": "D", "plan": "pro", "owner": "d@example.com"}),
            ),
        ),
        (
            "tenant lists",
            ACME,
            "GET",
            "/v1/tenants".into(),
            Body::None,
        ),
        (
            "tenant lists active",
            ACME,
            "GET",
            "/v1/tenants?status=active".into(),
            Body::None,
        ),
        (
            "tenant changes own status",
            ACME,
            "POST",
            "/v1/tenants/acme/status".into(),
            Body::Json(json!({"status": "inactive"})),
        ),
        (
            "tenant suspends another",
            ACME,
            "POST",
            "/v1/tenants/beta/status".into(),
            Body::Json(json!({"status": "suspended", "reason": "x"})),
        ),
        // Another tenant's routes.
        (
            "tenant reads another",
            ACME,
            "GET",
            "/v1/tenants/beta".into(),
            Body::None,
        ),
        (
            "tenant sets another's settings",
            ACME,
            "PATCH",
            "/v1/tenants/beta/settings".into(),
            Body::Json(json!({"set": {"language": "es"}})),
        ),
        (
            "tenant reads another's credentials",
            ACME,
            "GET",
            "/v1/tenants/beta/credentials".into(),
            Body::None,
        ),
        (
            "tenant enqueues for another",
            ACME,
            "POST",
            "/v1/tenants/beta/jobs".into(),
            ping(),
        ),
        (
            "tenant enqueues for the suspended one",
            ACME,
            "POST",
            "/v1/tenants/gamma/jobs".into(),
            ping(),
        ),
        (
            "tenant reads another's job",
            ACME,
            "GET",
            format!("/v1/jobs/{}", f.beta_job),
            Body::None,
        ),
        (
            "other tenant reads acme's job",
            BETA,
            "GET",
            format!("/v1/jobs/{}", f.acme_job),
            Body::None,
        ),
        (
            "tenant reads a tenantless job",
            ACME,
            "GET",
            format!("/v1/jobs/{}", f.tenantless_job),
            Body::None,
        ),
        // Operator-only kinds and arguments.
        (
            "tenant backup keep",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "backup", "args": {"keep": 1}})),
        ),
        (
            "tenant backup retention",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "backup", "args": {"retention": "keep:1"}})),
        ),
        (
            "tenant backup gfs",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "backup", "args": {"retention": "gfs:days=1"}})),
        ),
        (
            "tenant backup hold",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "backup", "args": {"hold": "mine"}})),
        ),
        (
            "tenant restore test",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "verify_backup", "args": {"restore_test": true}})),
        ),
        (
            "tenant restore test as string",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "verify_backup", "args": {"restore_test": "yes"}})),
        ),
        (
            "tenant restore",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "restore"})),
        ),
        (
            "tenant migrate",
            ACME,
            "POST",
            "/v1/tenants/acme/jobs".into(),
            Body::Json(json!({"kind": "migrate", "args": {"concurrency": 256}})),
        ),
    ];
    for (what, token, method, path, body) in scoped {
        cases.push(refused(
            what,
            method,
            path,
            Auth::Bearer(token),
            body,
            403,
            "forbidden",
        ));
    }
    cases
}

/// Kinds, arguments and dedupe keys of enqueue requests.
fn job_cases() -> Vec<ApiCase> {
    let enqueue =
        |name: String, token: &'static str, body: Value, status: u16, code: &'static str| {
            refused(
                name,
                "POST",
                "/v1/tenants/acme/jobs",
                Auth::Bearer(token),
                Body::Json(body),
                status,
                code,
            )
        };
    let mut cases = Vec::new();
    for kind in [
        "provision",
        "drop_tenant",
        "welcome_mail",
        "drop_pre_restore",
    ] {
        cases.push(enqueue(
            format!("admin enqueues lifecycle kind {kind}"),
            ADMIN,
            json!({"kind": kind}),
            422,
            "invalid_input",
        ));
    }
    for (what, kind) in [
        ("unknown", "backflip".to_string()),
        ("uppercase", "PING".into()),
        ("sql", "ping'; DROP TABLE jobs; --".into()),
        ("empty", String::new()),
        ("overlong", "k".repeat(5000)),
        ("accented", "pïng".into()),
        ("nul", "ping\u{0}".into()),
        ("traversal", "../ping".into()),
    ] {
        cases.push(
            enqueue(
                format!("kind {what}"),
                ACME,
                json!({"kind": kind}),
                422,
                "invalid_input",
            )
            .mentions("kind"),
        );
    }
    for (what, kind, args) in [
        ("ping hold negative", "ping", json!({"hold_seconds": -1})),
        (
            "ping hold over a day",
            "ping",
            json!({"hold_seconds": 86401}),
        ),
        ("ping hold string", "ping", json!({"hold_seconds": "soon"})),
        ("ping hold huge", "ping", json!({"hold_seconds": 1e308})),
        ("ping hold null", "ping", json!({"hold_seconds": null})),
        ("ping fail unknown", "ping", json!({"fail": "explode"})),
        (
            "ping fail_times negative",
            "ping",
            json!({"fail": "fatal", "fail_times": -1}),
        ),
        ("ping unknown field", "ping", json!({"surprise": true})),
        ("args array", "ping", json!([1])),
        ("args string", "ping", json!("hold")),
        ("args number", "ping", json!(5)),
        ("backup codec unknown", "backup", json!({"codec": "lz4"})),
        (
            "backup codec traversal",
            "backup",
            json!({"codec": "../zstd"}),
        ),
        ("backup codec nul", "backup", json!({"codec": "zstd\u{0}"})),
        (
            "verify backup traversal",
            "verify_backup",
            json!({"backup": "../../beta/x.dump"}),
        ),
        (
            "verify backup absolute",
            "verify_backup",
            json!({"backup": "/etc/passwd"}),
        ),
        (
            "verify backup nul",
            "verify_backup",
            json!({"backup": "x\u{0}.dump"}),
        ),
        (
            "verify backup empty",
            "verify_backup",
            json!({"backup": ""}),
        ),
        (
            "verify backup overlong traversal",
            "verify_backup",
            json!({"backup": "b/../".repeat(1000)}),
        ),
        ("maintenance no step", "maintenance", json!({})),
        (
            "maintenance days zero",
            "maintenance",
            json!({"analyze": true, "cleanup": true, "days": 0}),
        ),
        (
            "maintenance days negative",
            "maintenance",
            json!({"cleanup": true, "days": -1}),
        ),
        (
            "maintenance days overflow",
            "maintenance",
            json!({"cleanup": true, "days": 99_999_999_999u64}),
        ),
        (
            "maintenance full without vacuum",
            "maintenance",
            json!({"analyze": true, "full": true}),
        ),
        ("analyze unknown field", "analyze", json!({"tables": ["x"]})),
    ] {
        cases.push(enqueue(
            format!("args {what}"),
            ACME,
            json!({"kind": kind, "args": args}),
            422,
            "invalid_input",
        ));
    }
    for (what, args) in [
        ("traversal", json!({"backup": "../../beta/x.dump"})),
        ("absolute", json!({"backup": "/etc/passwd"})),
        ("nul", json!({"backup": "\u{0}"})),
        ("sql", json!({"backup": "x'; DROP DATABASE acme; --"})),
        ("unknown field", json!({"target": "beta"})),
    ] {
        cases.push(enqueue(
            format!("admin restore backup {what}"),
            ADMIN,
            json!({"kind": "restore", "args": args}),
            422,
            "invalid_input",
        ));
    }
    cases.push(enqueue(
        "admin migrate concurrency zero".into(),
        ADMIN,
        json!({"kind": "migrate", "args": {"concurrency": 0}}),
        422,
        "invalid_input",
    ));
    cases.push(enqueue(
        "admin migrate concurrency huge".into(),
        ADMIN,
        json!({"kind": "migrate", "args": {"concurrency": 100_000}}),
        422,
        "invalid_input",
    ));
    cases.push(enqueue(
        "admin backup hold nul".into(),
        ADMIN,
        json!({"kind": "backup", "args": {"hold": "legal\u{0}"}}),
        422,
        "invalid_input",
    ));
    cases.push(enqueue(
        "admin backup retention garbage".into(),
        ADMIN,
        json!({"kind": "backup", "args": {"retention": "forever"}}),
        422,
        "invalid_input",
    ));
    for (what, key) in [
        ("empty", String::new()),
        ("overlong", "k".repeat(501)),
        ("nul", "a\u{0}b".into()),
    ] {
        cases.push(
            enqueue(
                format!("dedupe key {what}"),
                ACME,
                json!({"kind": "ping", "dedupe_key": key}),
                422,
                "invalid_input",
            )
            .mentions("dedupe"),
        );
    }
    cases.push(enqueue(
        "dedupe key wrong type".into(),
        ACME,
        json!({"kind": "ping", "dedupe_key": 7}),
        400,
        "bad_request",
    ));
    // The token's own live key, for another kind: never returned, never written.
    cases.push(enqueue(
        "dedupe key of own live job, other kind".into(),
        ACME,
        json!({"kind": "analyze", "dedupe_key": "mine"}),
        409,
        "conflict",
    ));
    cases.push(enqueue(
        "enqueue without kind".into(),
        ACME,
        json!({"args": {}}),
        400,
        "bad_request",
    ));
    cases.push(enqueue(
        "enqueue extra field tenant".into(),
        ACME,
        json!({"kind": "ping", "tenant": "beta"}),
        400,
        "bad_request",
    ));
    cases.push(enqueue(
        "enqueue extra field queue".into(),
        ACME,
        json!({"kind": "ping", "queue": "provision"}),
        400,
        "bad_request",
    ));
    cases
}

/// Status changes and settings updates.
fn status_and_settings_cases() -> Vec<ApiCase> {
    let status = |name: &str, body: Value, code_status: u16, code: &'static str| {
        refused(
            name,
            "POST",
            "/v1/tenants/beta/status",
            Auth::Bearer(ADMIN),
            Body::Json(body),
            code_status,
            code,
        )
    };
    let settings = |name: &str, body: Value, code_status: u16, code: &'static str| {
        refused(
            name,
            "PATCH",
            "/v1/tenants/acme/settings",
            Auth::Bearer(ACME),
            Body::Json(body),
            code_status,
            code,
        )
    };
    vec![
        status(
            "status deleted",
            json!({"status": "deleted"}),
            422,
            "invalid_input",
        ),
        status(
            "status deleting",
            json!({"status": "deleting"}),
            422,
            "invalid_input",
        ),
        status(
            "status uppercase",
            json!({"status": "ACTIVE"}),
            422,
            "invalid_input",
        ),
        status(
            "status sql",
            json!({"status": "active'; --"}),
            422,
            "invalid_input",
        ),
        status(
            "status nul",
            json!({"status": "active\u{0}"}),
            422,
            "invalid_input",
        ),
        status("status number", json!({"status": 1}), 400, "bad_request"),
        status("status missing", json!({}), 400, "bad_request"),
        status(
            "status extra field",
            json!({"status": "active", "db_name": "x"}),
            400,
            "bad_request",
        ),
        status(
            "suspend without reason",
            json!({"status": "suspended"}),
            422,
            "invalid_input",
        ),
        status(
            "suspend blank reason",
            json!({"status": "suspended", "reason": "   "}),
            422,
            "invalid_input",
        ),
        status(
            "suspend overlong reason",
            json!({"status": "suspended", "reason": "r".repeat(1001)}),
            422,
            "invalid_input",
        ),
        status(
            "suspend nul reason",
            json!({"status": "suspended", "reason": "unpaid\u{0}"}),
            422,
            "invalid_input",
        ),
        status(
            "suspend reason not a string",
            json!({"status": "suspended", "reason": ["unpaid"]}),
            400,
            "bad_request",
        ),
        settings(
            "settings set not an object",
            json!({"set": ["language"]}),
            400,
            "bad_request",
        ),
        settings(
            "settings unset not an array",
            json!({"unset": "language"}),
            400,
            "bad_request",
        ),
        settings(
            "settings unset number",
            json!({"unset": [1]}),
            400,
            "bad_request",
        ),
        settings(
            "settings set and unset",
            json!({"set": {"language": "en"}, "unset": ["language"]}),
            422,
            "invalid_input",
        ),
        settings(
            "settings unset unknown",
            json!({"unset": ["colour"]}),
            422,
            "invalid_input",
        ),
        settings(
            "settings unset nul",
            json!({"unset": ["lang\u{0}uage"]}),
            422,
            "invalid_input",
        ),
        settings(
            "settings set unknown",
            json!({"set": {"colour": "red"}}),
            422,
            "invalid_input",
        ),
        settings(
            "settings timezone nul",
            json!({"set": {"timezone": "Europe/Madrid\u{0}"}}),
            422,
            "invalid_input",
        ),
        settings(
            "settings timezone sql",
            json!({"set": {"timezone": "UTC' OR '1'='1"}}),
            422,
            "invalid_input",
        ),
        settings(
            "settings timezone traversal",
            json!({"set": {"timezone": "../../etc/passwd"}}),
            422,
            "invalid_input",
        ),
        settings(
            "settings display name escape",
            json!({"set": {"display_name": "\u{1b}[2J"}}),
            422,
            "invalid_input",
        ),
        settings(
            "settings extra field",
            json!({"set": {}, "tenant": "beta"}),
            400,
            "bad_request",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn api_bad_identifiers_and_bodies_are_refused_changing_nothing() {
    let mut env = TestEnv::new().await;
    let f = api_fixture(&mut env).await;
    let store_before = objects(&env).await;
    let mut cases = create_field_cases();
    cases.extend(body_shape_cases());
    cases.extend(job_cases());
    cases.extend(status_and_settings_cases());
    let failures = run_api_cases(&env, &f.addr, &cases).await;
    let mut failures = failures;
    if objects(&env).await != store_before {
        failures.push("[store] objects appeared under the test's prefix".into());
    }
    check_api_log(&env, &mut failures);
    report("API identifier and body", cases.len(), &failures);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_paths_tokens_and_scopes_are_refused_changing_nothing() {
    let mut env = TestEnv::new().await;
    let f = api_fixture(&mut env).await;
    let mut cases = path_cases(&f);
    cases.extend(auth_cases(&f));
    let mut failures = run_api_cases(&env, &f.addr, &cases).await;
    let squats = api_squats(&env, &f.addr).await;
    let total = cases.len() + squats.0;
    failures.extend(squats.1);
    check_api_log(&env, &mut failures);
    report("API path, token and scope", total, &failures);
}

/// The API's log: no token, no panic.
fn check_api_log(env: &TestEnv, failures: &mut Vec<String>) {
    // The whole log of every process this test started (the API is one).
    let log: String = std::fs::read_dir(&env.log_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("worker-"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    if !log.contains("api listening on") {
        failures.push("[log] the API's log was not found".into());
    }
    for t in TOKENS {
        if log.contains(t) {
            failures.push(format!("[log] the API logged a token ({}…)", &t[..8]));
        }
    }
    if log.contains("panicked") {
        failures.push("[log] the API panicked".into());
    }
}

/// Dedupe keys landlord uses itself (and other callers' namespaces), taken
/// with acme's token: each is accepted only as a key of acme's own, stored
/// in its namespace, and nothing but that job (and its message) is written.
/// Returns the number of cases and the failures.
async fn api_squats(env: &TestEnv, addr: &str) -> (usize, Vec<String>) {
    let keys = [
        "final-backup:beta".to_string(),
        "drop:beta".into(),
        "provision:beta".into(),
        "welcome:beta".into(),
        "migrate:beta".into(),
        "restore:beta".into(),
        "sched:daily-backup:beta:2030-01-01T00:00:00Z".into(),
        "caller:api:tenant:beta:k".into(),
        "caller:api:admin:k".into(),
        "caller:cli:k".into(),
        "caller:amqp:k".into(),
        "caller:sha256:0000".into(),
    ];
    let mut failures = Vec::new();
    for key in &keys {
        let name = format!("[squat {key}]");
        let before = Snapshot::take(env, &[]).await;
        let r = http(
            addr,
            "POST",
            "/v1/tenants/acme/jobs",
            &Auth::Bearer(ACME),
            &Body::Json(json!({"kind": "ping", "dedupe_key": key})),
        )
        .await;
        let Ok(r) = r else {
            failures.push(format!("{name} no answer"));
            continue;
        };
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let Some(id) = v["job_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
            failures.push(format!(
                "{name} not accepted as acme's own key: {} {v}",
                r.status
            ));
            continue;
        };
        let (stored, tenant): (Option<String>, Option<String>) = sqlx::query_as(
            "SELECT j.dedupe_key, t.slug FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id WHERE j.id = $1",
        )
        .bind(id)
        .fetch_one(&env.catalog)
        .await
        .unwrap();
        let expected = format!("caller:api:tenant:acme:{key}");
        if stored.as_deref() != Some(expected.as_str()) || tenant.as_deref() != Some("acme") {
            failures.push(format!(
                "{name} stored as {stored:?} for {tenant:?}, not {expected:?} for acme"
            ));
        }
        let changed = before.diff(&Snapshot::take(env, &[id]).await);
        if !changed.is_empty() {
            failures.push(format!("{name} wrote more than its own job: {changed}"));
        }
        // The raw key is nobody's: no job holds it as given.
        let raw = env
            .count(&format!(
                "SELECT count(*) FROM jobs WHERE dedupe_key = '{}'",
                key.replace('\'', "''")
            ))
            .await;
        if raw != 0 {
            failures.push(format!("{name} a job holds the raw key"));
        }
    }
    (keys.len(), failures)
}

// ---------------------------------------------------------------------------
// The command line.

/// A command line that must be refused: exit 2, stderr naming the problem.
struct CliCase {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mention: &'static str,
}

fn cli(name: &str, args: &[&str], mention: &'static str) -> CliCase {
    CliCase {
        name: name.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        mention,
    }
}

fn cli_owned(name: String, args: Vec<String>, mention: &'static str) -> CliCase {
    CliCase {
        name,
        args,
        env: Vec::new(),
        mention,
    }
}

fn cli_cases(env: &TestEnv, beta_db: &str) -> Vec<CliCase> {
    let mut cases = Vec::new();
    let create = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "tenants",
            "create",
            "delta",
            "--name",
            "Delta",
            "--plan",
            "pro",
            "--owner",
            "d@example.com",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Identifiers of `tenants create`.
    for (what, v) in hostile_identifiers() {
        if v.contains('\0') {
            continue; // argv cannot carry NUL; the API and AMQP cases cover it
        }
        let mut slug = create(&[]);
        slug[2] = v.clone();
        cases.push(cli_owned(format!("create slug {what}"), slug, "slug"));
        cases.push(cli_owned(
            format!("create plan {what}"),
            {
                let mut a = create(&[]);
                a[6] = v.clone();
                a
            },
            "plan",
        ));
        cases.push(cli_owned(
            format!("create server {what}"),
            create(&["--server", &v]),
            "server",
        ));
        cases.push(cli_owned(
            format!("create shared {what}"),
            create(&["--shared", &v]),
            "database",
        ));
    }
    for (what, owner) in [
        ("no at", "nobody"),
        ("header injection", "a@example.com\r\nBcc: x@evil.example"),
        ("spaces", "a b@example.com"),
    ] {
        cases.push(cli_owned(
            format!("create owner {what}"),
            {
                let mut a = create(&[]);
                a[8] = owner.into();
                a
            },
            "owner",
        ));
    }
    for (what, setting, mention) in [
        ("unknown setting", "colour=red", "colour"),
        ("not key=value", "timezone", "key=value"),
        ("bad timezone", "timezone=Mars/Olympus", "timezone"),
        (
            "timezone traversal",
            "timezone=../../etc/passwd",
            "timezone",
        ),
        ("bad language", "language=tlh", "language"),
        (
            "display name escape",
            "display_name=\u{1b}[2J",
            "display_name",
        ),
    ] {
        cases.push(cli_owned(
            format!("create setting {what}"),
            create(&["--setting", setting]),
            mention,
        ));
    }
    cases.push(cli_owned(
        "create key without shared".into(),
        create(&["--key", "k1"]),
        "--shared",
    ));
    cases.push(cli_owned(
        "create key sql".into(),
        create(&["--shared", beta_db, "--key", "k'; DROP"]),
        "key",
    ));
    cases.push(cli_owned(
        "create taken slug".into(),
        {
            let mut a = create(&[]);
            a[2] = "acme".into();
            a
        },
        "already exists",
    ));
    cases.push(cli(
        "create name too long",
        &[
            "tenants",
            "create",
            "delta",
            "--name",
            &"n".repeat(300),
            "--plan",
            "pro",
            "--owner",
            "d@example.com",
        ],
        "name",
    ));
    cases.push(cli(
        "create name control",
        &[
            "tenants",
            "create",
            "delta",
            "--name",
            "a\u{7}b",
            "--plan",
            "pro",
            "--owner",
            "d@example.com",
        ],
        "name",
    ));
    cases.push(cli(
        "create missing owner",
        &["tenants", "create", "delta", "--name", "D", "--plan", "pro"],
        "--owner",
    ));
    // Other tenant commands.
    for (name, args, mention) in [
        (
            "settings unknown",
            vec!["tenants", "settings", "acme", "--set", "colour=red"],
            "colour",
        ),
        (
            "settings bad timezone",
            vec![
                "tenants",
                "settings",
                "acme",
                "--set",
                "timezone=Mars/Olympus",
            ],
            "timezone",
        ),
        (
            "settings bad language",
            vec!["tenants", "settings", "acme", "--set", "language=tlh"],
            "language",
        ),
        (
            "settings set and unset",
            vec![
                "tenants",
                "settings",
                "acme",
                "--set",
                "language=en",
                "--unset",
                "language",
            ],
            "language",
        ),
        (
            "settings not key=value",
            vec!["tenants", "settings", "acme", "--set", "language"],
            "key=value",
        ),
        (
            "settings unknown tenant",
            vec!["tenants", "settings", "ghost"],
            "ghost",
        ),
        (
            "settings sql slug",
            vec!["tenants", "settings", "x'; DROP TABLE tenants; --"],
            "tenant",
        ),
        (
            "suspend without reason",
            vec!["tenants", "suspend", "acme"],
            "--reason",
        ),
        (
            "suspend blank reason",
            vec!["tenants", "suspend", "acme", "--reason", "  "],
            "reason",
        ),
        (
            "deactivate unknown",
            vec!["tenants", "deactivate", "ghost"],
            "ghost",
        ),
        (
            "activate traversal",
            vec!["tenants", "activate", "../acme"],
            "tenant",
        ),
        (
            "delete sql slug",
            vec!["tenants", "delete", "x'; DROP DATABASE acme; --"],
            "tenant",
        ),
        (
            "delete unknown",
            vec!["tenants", "delete", "ghost", "--now"],
            "ghost",
        ),
        (
            "credentials of adopted",
            vec!["tenants", "credentials", "acme"],
            "no landlord-managed role",
        ),
        (
            "rotate unknown",
            vec!["tenants", "rotate-credentials", "ghost"],
            "ghost",
        ),
        (
            "show traversal",
            vec!["tenants", "show", "../../etc/passwd"],
            "tenant",
        ),
        (
            "list bad status",
            vec!["tenants", "list", "--status", "bogus"],
            "status",
        ),
        (
            "migrate concurrency zero",
            vec![
                "tenants",
                "migrate",
                "--tenant",
                "acme",
                "--concurrency",
                "0",
            ],
            "concurrency",
        ),
        (
            "migrate concurrency over",
            vec![
                "tenants",
                "migrate",
                "--tenant",
                "acme",
                "--concurrency",
                "257",
            ],
            "concurrency",
        ),
        (
            "migrate concurrency negative",
            vec![
                "tenants",
                "migrate",
                "--tenant",
                "acme",
                "--concurrency",
                "-1",
            ],
            "concurrency",
        ),
        (
            "migrate concurrency overflow",
            vec![
                "tenants",
                "migrate",
                "--tenant",
                "acme",
                "--concurrency",
                "99999999999999999999999",
            ],
            "concurrency",
        ),
        (
            "migrate concurrency NaN",
            vec![
                "tenants",
                "migrate",
                "--tenant",
                "acme",
                "--concurrency",
                "NaN",
            ],
            "concurrency",
        ),
        ("migrate no target", vec!["tenants", "migrate"], "--tenant"),
        (
            "migrate tenant and all",
            vec!["tenants", "migrate", "--tenant", "acme", "--all"],
            "--all",
        ),
        (
            "migrate unknown tenant",
            vec!["tenants", "migrate", "--tenant", "ghost"],
            "ghost",
        ),
        (
            "can-provision bad owner",
            vec!["tenants", "can-provision", "not-an-email", "free"],
            "owner",
        ),
        (
            "can-provision bad plan",
            vec!["tenants", "can-provision", "a@example.com", "platinum"],
            "plan",
        ),
        (
            "register system database",
            vec![
                "tenants",
                "register",
                "fresh",
                "--database",
                "postgres",
                "--name",
                "x",
            ],
            "system database",
        ),
        (
            "register template",
            vec![
                "tenants",
                "register",
                "fresh",
                "--database",
                "template1",
                "--name",
                "x",
            ],
            "system database",
        ),
        (
            "register another's database",
            vec![
                "tenants",
                "register",
                "fresh",
                "--database",
                beta_db,
                "--name",
                "x",
            ],
            "already belongs",
        ),
        (
            "register traversal slug",
            vec![
                "tenants",
                "register",
                "../etc",
                "--database",
                beta_db,
                "--name",
                "x",
            ],
            "slug",
        ),
        (
            "register quoted database",
            vec![
                "tenants",
                "register",
                "fresh",
                "--database",
                "x\"; DROP DATABASE x; --",
                "--name",
                "x",
            ],
            "database name",
        ),
    ] {
        cases.push(cli(name, &args, mention));
    }
    // Jobs.
    let nul_args = r#"{"hold":"legal\u0000"}"#;
    for (name, args, mention) in [
        (
            "enqueue unknown kind",
            vec!["jobs", "enqueue", "launch_rockets"],
            "unknown job kind",
        ),
        (
            "enqueue sql kind",
            vec!["jobs", "enqueue", "ping'; DROP TABLE jobs; --"],
            "kind",
        ),
        (
            "enqueue needs tenant",
            vec!["jobs", "enqueue", "analyze"],
            "tenant",
        ),
        (
            "enqueue unknown tenant",
            vec!["jobs", "enqueue", "analyze", "--tenant", "ghost"],
            "ghost",
        ),
        (
            "enqueue sql tenant",
            vec!["jobs", "enqueue", "analyze", "--tenant", "a'--"],
            "tenant",
        ),
        (
            "enqueue args not json",
            vec!["jobs", "enqueue", "ping", "--args", "{oops"],
            "JSON",
        ),
        (
            "enqueue args NaN",
            vec![
                "jobs",
                "enqueue",
                "ping",
                "--args",
                r#"{"hold_seconds":NaN}"#,
            ],
            "JSON",
        ),
        (
            "enqueue args array",
            vec!["jobs", "enqueue", "ping", "--args", "[1]"],
            "JSON object",
        ),
        (
            "enqueue args negative hold",
            vec![
                "jobs",
                "enqueue",
                "ping",
                "--args",
                r#"{"hold_seconds":-1}"#,
            ],
            "hold_seconds",
        ),
        (
            "enqueue args overflow",
            vec![
                "jobs",
                "enqueue",
                "ping",
                "--args",
                r#"{"hold_seconds":1e999}"#,
            ],
            "JSON",
        ),
        (
            "enqueue args unknown field",
            vec!["jobs", "enqueue", "ping", "--args", r#"{"surprise":true}"#],
            "unknown field",
        ),
        (
            "enqueue args nul escape",
            vec![
                "jobs", "enqueue", "backup", "--tenant", "acme", "--args", nul_args,
            ],
            "NUL",
        ),
        (
            "enqueue args nul in enum",
            vec!["jobs", "enqueue", "ping", "--args", r#"{"fail":"\u0000"}"#],
            "invalid arguments for ping",
        ),
        (
            "enqueue verify traversal",
            vec![
                "jobs",
                "enqueue",
                "verify_backup",
                "--tenant",
                "acme",
                "--args",
                r#"{"backup":"../../beta/x.dump"}"#,
            ],
            "backup",
        ),
        (
            "enqueue restore absolute",
            vec![
                "jobs",
                "enqueue",
                "restore",
                "--tenant",
                "acme",
                "--args",
                r#"{"backup":"/etc/passwd"}"#,
            ],
            "backup",
        ),
        (
            "enqueue queue unknown",
            vec!["jobs", "enqueue", "ping", "--queue", "nowhere"],
            "queue",
        ),
        (
            "enqueue queue traversal",
            vec!["jobs", "enqueue", "ping", "--queue", "../dead"],
            "queue",
        ),
        (
            "enqueue max attempts negative",
            vec!["jobs", "enqueue", "ping", "--max-attempts", "-1"],
            "--max-attempts",
        ),
        (
            "enqueue max attempts overflow",
            vec!["jobs", "enqueue", "ping", "--max-attempts", "99999999999"],
            "--max-attempts",
        ),
        (
            "enqueue dedupe key empty",
            vec!["jobs", "enqueue", "ping", "--dedupe-key", ""],
            "dedupe key",
        ),
        (
            "enqueue wait and sync",
            vec!["jobs", "enqueue", "ping", "--wait", "--sync"],
            "--sync",
        ),
        (
            "ping hold negative",
            vec!["jobs", "ping", "--hold", "-1"],
            "hold",
        ),
        (
            "ping hold NaN",
            vec!["jobs", "ping", "--hold", "NaN"],
            "hold",
        ),
        (
            "ping hold infinite",
            vec!["jobs", "ping", "--hold", "inf"],
            "hold",
        ),
        (
            "ping hold over a day",
            vec!["jobs", "ping", "--hold", "86401"],
            "hold",
        ),
        (
            "ping hold word",
            vec!["jobs", "ping", "--hold", "soon"],
            "--hold",
        ),
        (
            "ping fail unknown",
            vec!["jobs", "ping", "--fail", "explode"],
            "--fail",
        ),
        (
            "ping fail times without fail",
            vec!["jobs", "ping", "--fail-times", "2"],
            "--fail",
        ),
        (
            "ping queue unknown",
            vec!["jobs", "ping", "--queue", "bogus"],
            "queue",
        ),
        (
            "show not a uuid",
            vec!["jobs", "show", "not-a-uuid"],
            "not a job id",
        ),
        (
            "show sql",
            vec!["jobs", "show", "' OR 1=1 --"],
            "not a job id",
        ),
        (
            "show unknown",
            vec!["jobs", "show", "00000000-0000-0000-0000-000000000000"],
            "no job",
        ),
        (
            "cancel unknown",
            vec!["jobs", "cancel", "00000000-0000-0000-0000-000000000001"],
            "job",
        ),
        (
            "retry unknown",
            vec!["jobs", "retry", "00000000-0000-0000-0000-000000000002"],
            "job",
        ),
        (
            "retry not a uuid",
            vec!["jobs", "retry", "../../etc/passwd"],
            "not a job id",
        ),
        (
            "list bad status",
            vec!["jobs", "list", "--status", "bogus"],
            "status",
        ),
        (
            "list limit word",
            vec!["jobs", "list", "--limit", "many"],
            "--limit",
        ),
        (
            "list limit overflow",
            vec!["jobs", "list", "--limit", "99999999999999999999"],
            "--limit",
        ),
    ] {
        cases.push(cli(name, &args, mention));
    }
    // Backups and restores.
    for (name, args, mention) in [
        ("backup no target", vec!["backup"], "--tenant"),
        (
            "backup unknown tenant",
            vec!["backup", "--tenant", "ghost"],
            "ghost",
        ),
        (
            "backup tenant and all",
            vec!["backup", "--tenant", "acme", "--all"],
            "--all",
        ),
        (
            "backup keep negative",
            vec!["backup", "--tenant", "acme", "--keep", "-1"],
            "--keep",
        ),
        (
            "backup keep zero",
            vec!["backup", "--tenant", "acme", "--keep", "0"],
            "keep",
        ),
        (
            "backup keep and retention",
            vec![
                "backup",
                "--tenant",
                "acme",
                "--keep",
                "1",
                "--retention",
                "keep:1",
            ],
            "--retention",
        ),
        (
            "backup retention empty keep",
            vec!["backup", "--tenant", "acme", "--retention", "keep:"],
            "retention",
        ),
        (
            "backup retention negative",
            vec!["backup", "--tenant", "acme", "--retention", "keep:-1"],
            "retention",
        ),
        (
            "backup retention word",
            vec!["backup", "--tenant", "acme", "--retention", "forever"],
            "retention",
        ),
        (
            "backup retention gfs garbage",
            vec!["backup", "--tenant", "acme", "--retention", "gfs:days=abc"],
            "gfs key \"days\"",
        ),
        (
            "backup retention gfs repeated",
            vec![
                "backup",
                "--tenant",
                "acme",
                "--retention",
                "gfs:daily=1,daily=2",
            ],
            "daily",
        ),
        (
            "backup retention sql",
            vec![
                "backup",
                "--tenant",
                "acme",
                "--retention",
                "keep:1; DROP TABLE backups",
            ],
            "retention",
        ),
        (
            "backup codec unknown",
            vec!["backup", "--tenant", "acme", "--codec", "lz4"],
            "codec",
        ),
        (
            "backup codec traversal",
            vec!["backup", "--tenant", "acme", "--codec", "../zstd"],
            "codec",
        ),
        (
            "restore traversal",
            vec!["restore", "acme", "--backup", "../beta/x.dump", "--yes"],
            "backup",
        ),
        (
            "restore absolute",
            vec!["restore", "acme", "--backup", "/etc/passwd", "--yes"],
            "backup",
        ),
        (
            "restore encoded traversal",
            vec![
                "restore",
                "acme",
                "--backup",
                "%2e%2e%2fbeta%2fx.dump",
                "--yes",
            ],
            "backup",
        ),
        (
            "restore hidden file",
            vec!["restore", "acme", "--backup", ".x.dump", "--yes"],
            "backup",
        ),
        (
            "restore nothing chosen",
            vec!["restore", "acme"],
            "--latest",
        ),
        (
            "restore latest without backups",
            vec!["restore", "acme", "--latest", "--yes"],
            "no complete backup",
        ),
        (
            "restore unconfirmed",
            vec!["restore", "acme", "--latest"],
            "backup",
        ),
        (
            "restore unknown tenant",
            vec!["restore", "ghost", "--list"],
            "ghost",
        ),
        (
            "restore latest and list",
            vec!["restore", "acme", "--latest", "--list"],
            "--list",
        ),
        (
            "backups delete not a uuid",
            vec!["backups", "delete", "../x"],
            "ID",
        ),
        (
            "backups hold not a uuid",
            vec!["backups", "hold", "x'; --"],
            "ID",
        ),
        (
            "backups hold unknown",
            vec![
                "backups",
                "hold",
                "00000000-0000-0000-0000-000000000000",
                "--reason",
                "x",
            ],
            "backup",
        ),
        (
            "backups delete unknown",
            vec!["backups", "delete", "00000000-0000-0000-0000-000000000000"],
            "backup",
        ),
        (
            "backups prune keep word",
            vec!["backups", "prune", "--tenant", "acme", "--keep", "all"],
            "--keep",
        ),
        (
            "backups prune retention garbage",
            vec![
                "backups",
                "prune",
                "--tenant",
                "acme",
                "--retention",
                "keep:x",
            ],
            "retention",
        ),
        (
            "backups prune no target",
            vec!["backups", "prune"],
            "--tenant",
        ),
        (
            "backups verify traversal",
            vec![
                "backups",
                "verify",
                "--tenant",
                "acme",
                "--backup",
                "../../beta/x.dump",
            ],
            "backup",
        ),
        (
            "backups verify unknown tenant",
            vec!["backups", "verify", "--tenant", "ghost"],
            "ghost",
        ),
        (
            "backups monitor negative age",
            vec!["backups", "monitor", "--max-age-hours", "-1"],
            "--max-age-hours",
        ),
        (
            "backups list unknown",
            vec!["backups", "list", "ghost"],
            "ghost",
        ),
        (
            "backups stats sql",
            vec!["backups", "stats", "x' OR '1'='1"],
            "tenant",
        ),
    ] {
        cases.push(cli(name, &args, mention));
    }
    // Maintenance, workers, schedules.
    for (name, args, mention) in [
        (
            "maintenance no step",
            vec!["maintenance", "--tenant", "acme"],
            "step",
        ),
        (
            "maintenance days zero",
            vec![
                "maintenance",
                "--tenant",
                "acme",
                "--cleanup",
                "--days",
                "0",
            ],
            "days",
        ),
        (
            "maintenance days negative",
            vec![
                "maintenance",
                "--tenant",
                "acme",
                "--cleanup",
                "--days",
                "-1",
            ],
            "--days",
        ),
        (
            "maintenance days over",
            vec![
                "maintenance",
                "--tenant",
                "acme",
                "--cleanup",
                "--days",
                "36501",
            ],
            "days",
        ),
        (
            "maintenance days NaN",
            vec![
                "maintenance",
                "--tenant",
                "acme",
                "--cleanup",
                "--days",
                "NaN",
            ],
            "--days",
        ),
        (
            "maintenance full without vacuum",
            vec!["maintenance", "--tenant", "acme", "--full"],
            "--vacuum",
        ),
        (
            "maintenance unknown tenant",
            vec!["maintenance", "--tenant", "ghost", "--analyze"],
            "ghost",
        ),
        (
            "worker concurrency zero",
            vec!["worker", "--concurrency", "0"],
            "concurrency",
        ),
        (
            "worker concurrency over",
            vec!["worker", "--concurrency", "257"],
            "concurrency",
        ),
        (
            "worker concurrency negative",
            vec!["worker", "--concurrency", "-4"],
            "--concurrency",
        ),
        (
            "worker queue unknown",
            vec!["worker", "--queues", "backup,bogus"],
            "queue",
        ),
        (
            "schedule run unknown",
            vec!["schedule", "run", "ghost"],
            "unknown schedule",
        ),
        (
            "schedule history sql",
            vec!["schedule", "history", "x'; DROP TABLE schedule_firings; --"],
            "unknown schedule",
        ),
        (
            "schedule history limit word",
            vec!["schedule", "history", "x", "--limit", "all"],
            "--limit",
        ),
    ] {
        cases.push(cli(name, &args, mention));
    }
    // Configured schedules: bad cron, time zones, kinds, names, arguments.
    for (name, schedule, mention) in [
        (
            "cron out of range",
            r#"name = "s"
cron = "61 * * * *"
kind = "backup""#,
            "cron",
        ),
        (
            "cron too short",
            r#"name = "s"
cron = "* * *"
kind = "backup""#,
            "cron",
        ),
        (
            "cron sql",
            r#"name = "s"
cron = "'; DROP TABLE schedule_firings; --"
kind = "backup""#,
            "cron",
        ),
        (
            "cron empty",
            r#"name = "s"
cron = ""
kind = "backup""#,
            "cron",
        ),
        (
            "timezone unknown",
            r#"name = "s"
cron = "0 3 * * *"
timezone = "Mars/Olympus"
kind = "backup""#,
            "time zone",
        ),
        (
            "timezone traversal",
            r#"name = "s"
cron = "0 3 * * *"
timezone = "../../etc/localtime"
kind = "backup""#,
            "time zone",
        ),
        (
            "timezone offset garbage",
            r#"name = "s"
cron = "0 3 * * *"
timezone = "UTC+99"
kind = "backup""#,
            "time zone",
        ),
        (
            "kind unknown",
            r#"name = "s"
cron = "0 3 * * *"
kind = "launch_rockets""#,
            "kind",
        ),
        (
            "name with spaces",
            r#"name = "my schedule"
cron = "0 3 * * *"
kind = "backup""#,
            "name",
        ),
        (
            "name with quote",
            r#"name = "s'--"
cron = "0 3 * * *"
kind = "backup""#,
            "name",
        ),
        (
            "bad args",
            r#"name = "s"
cron = "0 3 * * *"
kind = "backup"
args = { codec = "lz4" }"#,
            "codec",
        ),
        (
            "bad tenant slug",
            r#"name = "s"
cron = "0 3 * * *"
kind = "backup"
tenants = ["../beta"]"#,
            "tenant",
        ),
        (
            "negative spread",
            r#"name = "s"
cron = "0 3 * * *"
kind = "backup"
spread_seconds = -1"#,
            "spread_seconds",
        ),
        (
            "retention garbage",
            r#"name = "s"
cron = "0 3 * * *"
kind = "backup"
args = { retention = "keep:-3" }"#,
            "retention",
        ),
    ] {
        let file = env
            .log_dir
            .join(format!("bad-{}.toml", name.replace(' ', "-")));
        std::fs::write(&file, format!("[[schedules]]\n{schedule}\n")).unwrap();
        cases.push(CliCase {
            name: format!("schedule config {name}"),
            args: vec!["schedule".into(), "list".into()],
            env: vec![("LANDLORD_CONFIG".into(), file.display().to_string())],
            mention,
        });
    }
    let dup = env.log_dir.join("dup.toml");
    std::fs::write(&dup, "[[schedules]]\nname = \"s\"\ncron = \"0 3 * * *\"\nkind = \"backup\"\n[[schedules]]\nname = \"s\"\ncron = \"0 4 * * *\"\nkind = \"backup\"\n").unwrap();
    cases.push(CliCase {
        name: "schedule config defined twice".into(),
        args: vec!["schedule".into(), "list".into()],
        env: vec![("LANDLORD_CONFIG".into(), dup.display().to_string())],
        mention: "twice",
    });
    // Environment garbage.
    for (name, var, value, args, mention) in [
        (
            "retention env garbage",
            "LANDLORD_BACKUP_RETENTION",
            "forever",
            vec!["backup", "--tenant", "acme"],
            "LANDLORD_BACKUP_RETENTION",
        ),
        (
            "grace days negative",
            "LANDLORD_DELETE_GRACE_DAYS",
            "-1",
            vec!["tenants", "delete", "acme"],
            "LANDLORD_DELETE_GRACE_DAYS",
        ),
        (
            "lease seconds word",
            "LANDLORD_LEASE_SECONDS",
            "abc",
            vec!["jobs", "ping"],
            "LANDLORD_LEASE_SECONDS",
        ),
        (
            "concurrency NaN",
            "LANDLORD_WORKER_CONCURRENCY",
            "NaN",
            vec!["jobs", "ping"],
            "LANDLORD_WORKER_CONCURRENCY",
        ),
        (
            "foreign kinds garbage",
            "LANDLORD_FOREIGN_KINDS",
            "ping,Restore!",
            vec!["jobs", "ping"],
            "LANDLORD_FOREIGN_KINDS",
        ),
        (
            "api tokens bad scope",
            "LANDLORD_API_TOKENS",
            "root=hunter2-hunter2-hunter2",
            vec!["api", "--listen", "127.0.0.1:0"],
            "unknown scope",
        ),
        (
            "api rate garbage",
            "LANDLORD_API_RATE_PER_MINUTE",
            "1e9",
            vec!["api", "--listen", "127.0.0.1:0"],
            "LANDLORD_API_RATE_PER_MINUTE",
        ),
    ] {
        cases.push(CliCase {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![(var.into(), value.into())],
            mention,
        });
    }
    cases
}

/// Dedupe keys landlord uses, taken on the command line: accepted only in
/// the command line's own namespace (`caller:cli:`).
const CLI_SQUATS: [&str; 6] = [
    "final-backup:beta",
    "drop:beta",
    "provision:beta",
    "welcome:beta",
    "migrate:beta",
    "sched:daily-backup:beta:2030-01-01T00:00:00Z",
];

#[tokio::test(flavor = "multi_thread")]
async fn cli_bad_flags_and_values_exit_2_changing_nothing() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    let beta_db = env.tenant("beta").await;
    let cases = cli_cases(&env, &beta_db);
    let mut store_before = objects(&env).await;
    let mut failures = Vec::new();
    for c in &cases {
        let before = Snapshot::take(&env, &[]).await;
        let argv: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let vars: Vec<(&str, &str)> = c
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = env.run_with(&argv, &vars);
        let (err, text) = (stderr(&out), format!("{}{}", stdout(&out), stderr(&out)));
        let mut why = Vec::new();
        if out.status.code() != Some(2) {
            why.push(format!("exit {:?} (expected 2)", out.status.code()));
        }
        if !err.to_lowercase().contains(&c.mention.to_lowercase()) {
            why.push(format!("stderr does not name {:?}", c.mention));
        }
        if err.len() > 2500 {
            why.push(format!("stderr echoes too much ({} bytes)", err.len()));
        }
        let leaked: Vec<&str> = [
            "panicked",
            "stack backtrace",
            "guest:guest",
            "hunter2",
            "error returned from database",
            "invalid byte sequence",
        ]
        .into_iter()
        .filter(|n| text.contains(n))
        .collect();
        if !leaked.is_empty() {
            why.push(format!("leaks {leaked:?}"));
        }
        let changed = before.diff(&Snapshot::take(&env, &[]).await);
        if !changed.is_empty() {
            why.push(format!("changed: {changed}"));
        }
        let now = objects(&env).await;
        if now != store_before {
            why.push(format!(
                "new objects: {:?}",
                now.difference(&store_before).collect::<Vec<_>>()
            ));
            store_before = now;
        }
        if !why.is_empty() {
            failures.push(format!("[{}] {}: {}", c.name, why.join("; "), short(&err)));
        }
    }
    for key in CLI_SQUATS {
        let before = Snapshot::take(&env, &[]).await;
        let out = env.run(&[
            "jobs",
            "ping",
            "--tenant",
            "acme",
            "--dedupe-key",
            key,
            "--json",
        ]);
        let id = stdout(&out)
            .lines()
            .next()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v["job_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
        let Some(id) = id else {
            failures.push(format!(
                "[squat {key}] not accepted as the command line's key: {}",
                stderr(&out)
            ));
            continue;
        };
        let stored: Option<String> =
            sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&env.catalog)
                .await
                .unwrap();
        if stored.as_deref() != Some(format!("caller:cli:{key}").as_str()) {
            failures.push(format!("[squat {key}] stored as {stored:?}"));
        }
        let changed = before.diff(&Snapshot::take(&env, &[id]).await);
        if !changed.is_empty() {
            failures.push(format!(
                "[squat {key}] wrote more than its own job: {changed}"
            ));
        }
    }
    if objects(&env).await != store_before {
        failures.push("[store] objects appeared under the test's prefix".into());
    }
    report("CLI", cases.len() + CLI_SQUATS.len(), &failures);
}

// ---------------------------------------------------------------------------
// The work exchange: messages published by anything with broker access.

/// What must become of a published message.
enum Fate {
    /// Dead-lettered with a reason containing this.
    Dead(&'static str),
    /// Dropped (unroutable, or a copy naming a job that is not claimable):
    /// nothing written, nothing dead-lettered.
    Dropped,
    /// Adopted as a foreign job with this stored dedupe key.
    Adopted(String),
}

struct AmqpCase {
    name: String,
    family: &'static str,
    body: Vec<u8>,
    props: BasicProperties,
    fate: Fate,
}

fn message(kind: &str, tenant: Option<&str>, args: Value) -> Value {
    let mut m = json!({"v": 1, "job_id": Uuid::new_v4(), "kind": kind, "args": args});
    if let Some(t) = tenant {
        m["tenant"] = json!(t);
    }
    m
}

fn amqp_cases(succeeded: Uuid, cancelled: Uuid) -> Vec<AmqpCase> {
    let json_props = || {
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
    };
    let dead = |name: String, family: &'static str, body: Vec<u8>, reason: &'static str| AmqpCase {
        name,
        family,
        body,
        props: json_props(),
        fate: Fate::Dead(reason),
    };
    let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
    let mut cases = Vec::new();
    // Kinds no outsider may ask for, on their own family and on another.
    for (kind, family) in [
        ("restore", "backup"),
        ("drop_tenant", "provision"),
        ("migrate", "maintenance"),
        ("provision", "provision"),
        ("welcome_mail", "mail"),
        ("drop_pre_restore", "backup"),
    ] {
        let other = if family == "maintenance" {
            "backup"
        } else {
            "maintenance"
        };
        for fam in [family, other] {
            let body = bytes(&message(kind, Some("acme"), json!({})));
            cases.push(dead(
                format!("forged {kind} on {fam}"),
                fam,
                body,
                "not accepted from foreign producers",
            ));
        }
    }
    // Unknown and malformed kinds.
    for (what, kind, reason) in [
        ("unknown", "launch_rockets".to_string(), "unknown job kind"),
        ("uppercase", "PING".into(), "invalid job kind"),
        (
            "sql",
            "ping'; DROP TABLE jobs; --".into(),
            "invalid job kind",
        ),
        ("empty", String::new(), "invalid job kind"),
        ("overlong", "k".repeat(64), "invalid job kind"),
        ("accented", "pïng".into(), "invalid job kind"),
        ("nul", "ping\u{0}".into(), "invalid job kind"),
    ] {
        cases.push(dead(
            format!("kind {what}"),
            "maintenance",
            bytes(&message(&kind, None, json!({}))),
            reason,
        ));
    }
    // Forged tenant fields.
    for (what, tenant, reason) in [
        ("unknown", json!("ghost"), "unknown tenant"),
        (
            "sql",
            json!("a'; DROP DATABASE x; --"),
            "invalid tenant slug",
        ),
        ("traversal", json!("../beta"), "invalid tenant slug"),
        ("uppercase", json!("ACME"), "invalid tenant slug"),
        ("nul", json!("acme\u{0}"), "invalid tenant slug"),
        ("empty", json!(""), "invalid tenant slug"),
        ("number", json!(42), "not a v1 job message"),
        ("array", json!(["acme", "beta"]), "not a v1 job message"),
        ("null for a per-tenant kind", json!(null), "needs a tenant"),
    ] {
        let mut m = message("analyze", None, json!({}));
        m["tenant"] = tenant;
        cases.push(dead(
            format!("tenant {what}"),
            "maintenance",
            bytes(&m),
            reason,
        ));
    }
    // Contract versions and fields.
    for (what, field, value, reason) in [
        ("version 2", "v", json!(2), "unsupported message version"),
        ("version 0", "v", json!(0), "unsupported message version"),
        ("version string", "v", json!("1"), "not a v1 job message"),
        ("version negative", "v", json!(-1), "not a v1 job message"),
        ("version fraction", "v", json!(1.5), "not a v1 job message"),
        (
            "job id not a uuid",
            "job_id",
            json!("not-a-uuid"),
            "not a v1 job message",
        ),
        ("job id number", "job_id", json!(42), "not a v1 job message"),
        ("job id null", "job_id", json!(null), "not a v1 job message"),
        ("extra field", "origin", json!("catalog"), "unknown field"),
        (
            "extra field queue",
            "queue",
            json!("provision"),
            "unknown field",
        ),
        (
            "args array",
            "args",
            json!([1]),
            "args must be a JSON object",
        ),
        (
            "args string",
            "args",
            json!("x"),
            "args must be a JSON object",
        ),
        (
            "args null",
            "args",
            json!(null),
            "args must be a JSON object",
        ),
        ("dedupe key empty", "dedupe_key", json!(""), "dedupe_key"),
        (
            "dedupe key overlong",
            "dedupe_key",
            json!("k".repeat(501)),
            "dedupe_key",
        ),
        ("dedupe key nul", "dedupe_key", json!("a\u{0}b"), "NUL"),
        (
            "dedupe key number",
            "dedupe_key",
            json!(5),
            "not a v1 job message",
        ),
    ] {
        let mut m = message("ping", None, json!({}));
        m[field] = value;
        cases.push(dead(
            format!("field {what}"),
            "maintenance",
            bytes(&m),
            reason,
        ));
    }
    let mut missing_v = message("ping", None, json!({}));
    missing_v.as_object_mut().unwrap().remove("v");
    cases.push(dead(
        "field v missing".into(),
        "maintenance",
        bytes(&missing_v),
        "not a v1 job message",
    ));
    let mut missing_kind = message("ping", None, json!({}));
    missing_kind.as_object_mut().unwrap().remove("kind");
    cases.push(dead(
        "field kind missing".into(),
        "maintenance",
        bytes(&missing_kind),
        "not a v1 job message",
    ));
    // Arguments of allowed kinds.
    for (what, kind, tenant, args, reason) in [
        (
            "ping hold string",
            "ping",
            None,
            json!({"hold_seconds": "soon"}),
            "invalid arguments for ping",
        ),
        (
            "ping hold negative",
            "ping",
            None,
            json!({"hold_seconds": -1}),
            "hold_seconds",
        ),
        (
            "ping unknown field",
            "ping",
            None,
            json!({"surprise": 1}),
            "invalid arguments for ping",
        ),
        (
            "verify backup nul",
            "verify_backup",
            Some("acme"),
            json!({"backup": "x\u{0}.dump"}),
            "NUL",
        ),
        (
            "verify backup traversal",
            "verify_backup",
            Some("acme"),
            json!({"backup": "../../beta/x.dump"}),
            "backup",
        ),
        (
            "analyze args nul key",
            "analyze",
            Some("acme"),
            json!({"a\u{0}": 1}),
            "NUL",
        ),
        (
            "backup retention from outsider",
            "backup",
            Some("acme"),
            json!({"keep": 1}),
            "retention",
        ),
        (
            "backup gfs retention from outsider",
            "backup",
            Some("acme"),
            json!({"retention": "gfs:days=1"}),
            "retention",
        ),
        (
            "backup hold from outsider",
            "backup",
            Some("acme"),
            json!({"hold": "mine"}),
            "hold",
        ),
        (
            "restore test from outsider",
            "verify_backup",
            Some("acme"),
            json!({"restore_test": true}),
            "restore_test",
        ),
        (
            "maintenance no step",
            "maintenance",
            Some("acme"),
            json!({}),
            "step",
        ),
    ] {
        cases.push(dead(
            format!("args {what}"),
            if kind == "backup" || kind == "verify_backup" {
                "backup"
            } else {
                "maintenance"
            },
            bytes(&message(kind, tenant, args)),
            reason,
        ));
    }
    // Bytes that are no message.
    let good = bytes(&message("ping", None, json!({})));
    let deep = format!(
        "{{\"v\":1,\"job_id\":\"{}\",\"kind\":\"ping\",\"args\":{{\"a\":{}1{}}}}}",
        Uuid::new_v4(),
        "[".repeat(300),
        "]".repeat(300)
    );
    for (what, body, reason) in [
        ("empty", Vec::new(), "not a v1 job message"),
        ("truncated", b"{\"v\":1,".to_vec(), "not a v1 job message"),
        ("not json", b"restore acme please".to_vec(), "not a v1 job message"),
        ("null", b"null".to_vec(), "not a v1 job message"),
        ("array", b"[1,2]".to_vec(), "not a v1 job message"),
        ("invalid utf-8", b"{\"v\":1,\"kind\":\"p\xffing\"}".to_vec(), "not a v1 job message"),
        ("byte order mark", [b"\xef\xbb\xbf".as_slice(), &good].concat(), "not a v1 job message"),
        ("trailing garbage", [good.as_slice(), b"x"].concat(), "not a v1 job message"),
        ("two messages", [good.as_slice(), &bytes(&message("restore", Some("acme"), json!({})))].concat(), "not a v1 job message"),
        ("deep nesting", deep.into_bytes(), "not a v1 job message"),
        ("duplicate kind", format!("{{\"v\":1,\"job_id\":\"{}\",\"kind\":\"ping\",\"kind\":\"restore\",\"tenant\":\"acme\"}}", Uuid::new_v4()).into_bytes(), "duplicate field"),
        ("oversize", format!("{{\"v\":1,\"kind\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes(), "at most 262144"),
        ("oversize args", bytes(&message("ping", None, json!({"pad": "x".repeat(300 * 1024)}))), "at most 262144"),
    ] {
        cases.push(dead(format!("bytes {what}"), "maintenance", body, reason));
    }
    // Wrong content types and headers claiming to be landlord's.
    let restore = |props: BasicProperties, name: &str| AmqpCase {
        name: name.into(),
        family: "backup",
        body: bytes(&message("restore", Some("acme"), json!({}))),
        props,
        fate: Fate::Dead("not accepted from foreign producers"),
    };
    let mut landlord_headers = FieldTable::default();
    landlord_headers.insert(
        ShortString::from("x-landlord-origin"),
        AMQPValue::LongString(LongString::from("catalog")),
    );
    landlord_headers.insert(
        ShortString::from("x-landlord-reason"),
        AMQPValue::LongString(LongString::from("trusted")),
    );
    landlord_headers.insert(
        ShortString::from("x-landlord-queue"),
        AMQPValue::LongString(LongString::from("backup")),
    );
    cases.push(restore(
        json_props().with_content_type(ShortString::from("text/plain")),
        "restore as text/plain",
    ));
    cases.push(restore(
        BasicProperties::default(),
        "restore without properties",
    ));
    cases.push(restore(
        json_props().with_headers(landlord_headers.clone()),
        "restore with landlord's headers",
    ));
    cases.push(restore(
        json_props()
            .with_app_id(ShortString::from("landlord"))
            .with_message_id(ShortString::from(succeeded.to_string())),
        "restore claiming landlord's app id and a job's message id",
    ));
    cases.push(restore(
        json_props()
            .with_priority(9)
            .with_expiration(ShortString::from("60000")),
        "restore with priority",
    ));
    cases.push(AmqpCase {
        name: "ping as gzip".into(),
        family: "maintenance",
        body: b"\x1f\x8b\x08\x00\x00\x00\x00\x00".to_vec(),
        props: json_props().with_content_encoding(ShortString::from("gzip")),
        fate: Fate::Dead("not a v1 job message"),
    });
    cases.push(AmqpCase {
        name: "xml".into(),
        family: "maintenance",
        body: b"<job kind=\"restore\" tenant=\"acme\"/>".to_vec(),
        props: json_props().with_content_type(ShortString::from("application/xml")),
        fate: Fate::Dead("not a v1 job message"),
    });
    // Forged job ids of existing jobs: the message only points at the row,
    // which is not claimable; kind, tenant and arguments are ignored.
    for (what, id) in [("succeeded", succeeded), ("cancelled", cancelled)] {
        for (kind, family, args) in [
            ("restore", "backup", json!({})),
            ("drop_tenant", "provision", json!({})),
            ("ping", "maintenance", json!({"hold_seconds": 1})),
        ] {
            let mut m = message(kind, Some("beta"), args);
            m["job_id"] = json!(id);
            cases.push(AmqpCase {
                name: format!("forged {kind} with the id of a {what} job"),
                family,
                body: bytes(&m),
                props: json_props().with_message_id(ShortString::from(id.to_string())),
                fate: Fate::Dropped,
            });
        }
    }
    // Unroutable: no queue is bound to these keys.
    for rk in ["", "dead", "nosuch", "backup.restore", "#"] {
        cases.push(AmqpCase {
            name: format!("routing key {rk:?}"),
            family: rk,
            body: bytes(&message("restore", Some("acme"), json!({}))),
            props: json_props(),
            fate: Fate::Dropped,
        });
    }
    // Squatting landlord's keys from the broker: adopted, in the foreign namespace.
    for key in [
        "final-backup:acme",
        "drop:acme",
        "sched:daily-backup:acme:2030-01-01T00:00:00Z",
        "caller:api:tenant:acme:k",
    ] {
        let mut m = message("ping", Some("acme"), json!({}));
        m["dedupe_key"] = json!(key);
        cases.push(AmqpCase {
            name: format!("squat {key}"),
            family: "maintenance",
            body: bytes(&m),
            props: json_props(),
            fate: Fate::Adopted(format!("caller:amqp:{key}")),
        });
    }
    cases
}

#[tokio::test(flavor = "multi_thread")]
async fn amqp_forged_and_malformed_messages_change_nothing() {
    let mut env = TestEnv::new().await;
    env.tenant("acme").await;
    env.tenant("beta").await;
    let (_conn, ch) = env.channel().await;
    // Jobs whose ids forged messages will name: one cancelled before any
    // worker runs (so none can finish it first), one succeeded.
    let cancelled = env.enqueue(&["jobs", "ping", "--tenant", "beta", "--queue", "mail"]);
    env.ok(&["jobs", "cancel", &cancelled.to_string()]);
    let w = env.spawn_worker(&[], &[]);
    let succeeded = env.enqueue(&["jobs", "ping", "--tenant", "beta"]);
    assert_eq!(
        env.wait_job(succeeded, secs(30)).await["status"],
        "succeeded"
    );
    tokio::time::sleep(secs(1)).await;
    let cases = amqp_cases(succeeded, cancelled);
    let adopted_ids: Vec<Uuid> = cases
        .iter()
        .filter(|c| matches!(c.fate, Fate::Adopted(_)))
        .filter_map(|c| serde_json::from_slice::<Value>(&c.body).ok())
        .filter_map(|v| v["job_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()))
        .collect();
    let before = Snapshot::take(&env, &adopted_ids).await;
    let store_before = objects(&env).await;
    for c in &cases {
        ch.basic_publish(
            ShortString::from(env.topology.work_exchange()),
            ShortString::from(c.family.to_string()),
            BasicPublishOptions::default(),
            &c.body,
            c.props.clone(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    }
    // Every dead letter, matched to its case by its body.
    let expected_dead = cases
        .iter()
        .filter(|c| matches!(c.fate, Fate::Dead(_)))
        .count();
    let mut reasons: Vec<(Vec<u8>, String)> = Vec::new();
    let deadline = Instant::now() + secs(60);
    while reasons.len() < expected_dead && Instant::now() < deadline {
        match ch
            .basic_get(
                env.topology.dead_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            Some(m) => {
                let reason = m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| match h.inner().get("x-landlord-reason") {
                        Some(AMQPValue::LongString(s)) => Some(s.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default();
                reasons.push((m.delivery.data.clone(), reason));
            }
            None => tokio::time::sleep(ms(200)).await,
        }
    }
    let mut failures = Vec::new();
    for c in &cases {
        let got: Vec<&String> = reasons
            .iter()
            .filter(|(b, _)| *b == c.body)
            .map(|(_, r)| r)
            .collect();
        match &c.fate {
            Fate::Dead(want) => match got.as_slice() {
                [r] if r.contains(want) && r.chars().count() <= 1100 => {
                    let leaked = leaks(r, &env, &[]);
                    if !leaked.is_empty() {
                        failures.push(format!(
                            "[{}] the reason leaks {}",
                            c.name,
                            leaked.join(", ")
                        ));
                    }
                }
                [] => failures.push(format!("[{}] not dead-lettered (want {want:?})", c.name)),
                [r] => failures.push(format!(
                    "[{}] reason {:?} does not say {want:?}",
                    c.name,
                    short(r)
                )),
                _ => failures.push(format!("[{}] dead-lettered {} times", c.name, got.len())),
            },
            Fate::Dropped | Fate::Adopted(_) if !got.is_empty() => {
                failures.push(format!("[{}] dead-lettered: {:?}", c.name, got))
            }
            Fate::Dropped => {}
            Fate::Adopted(key) => {
                let v: Value = serde_json::from_slice(&c.body).unwrap();
                let id = Uuid::parse_str(v["job_id"].as_str().unwrap()).unwrap();
                let j = env.wait_job(id, secs(30)).await;
                if j["dedupe_key"] != key.as_str()
                    || j["tenant"] != "acme"
                    || j["status"] != "succeeded"
                {
                    failures.push(format!(
                        "[{}] adopted as {} {} {}",
                        c.name, j["dedupe_key"], j["tenant"], j["status"]
                    ));
                }
            }
        }
    }
    // Let what was dropped be dropped, then compare.
    crate::common::poll(secs(30), ms(200), || async {
        let mut ready = 0;
        for family in landlord::config::QUEUES {
            let q = ch
                .queue_declare(
                    env.topology.queue(family).into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            ready += q.message_count();
        }
        match ready {
            0 => Ok(()),
            n => Err(format!("{n} message(s) still queued")),
        }
    })
    .await;
    tokio::time::sleep(secs(2)).await;
    let after = Snapshot::take(&env, &adopted_ids).await;
    let changed = before.diff(&after);
    if !changed.is_empty() {
        let new: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
            "SELECT j.id, j.kind, t.slug FROM jobs j LEFT JOIN tenants t ON t.id = j.tenant_id \
             WHERE NOT (j.id = ANY($1)) AND j.id NOT IN ($2, $3)",
        )
        .bind(&adopted_ids)
        .bind(succeeded)
        .bind(cancelled)
        .fetch_all(&env.catalog)
        .await
        .unwrap();
        let named: Vec<String> = new
            .iter()
            .map(|(id, kind, t)| {
                let case = cases
                    .iter()
                    .find(|c| String::from_utf8_lossy(&c.body).contains(&id.to_string()))
                    .map(|c| c.name.as_str())
                    .unwrap_or("?");
                format!("{kind} for {t:?} from [{case}]")
            })
            .collect();
        failures.push(format!("[catalog] changed: {changed}; jobs: {named:?}"));
    }
    for (id, want) in [(succeeded, "succeeded"), (cancelled, "cancelled")] {
        let j = env.job(id).await;
        if j["status"] != want || j["kind"] != "ping" || j["tenant"] != "beta" {
            failures.push(format!(
                "[forged ids] job {id} is now {} {} {}",
                j["kind"], j["tenant"], j["status"]
            ));
        }
    }
    if objects(&env).await != store_before {
        failures.push("[store] objects appeared under the test's prefix".into());
    }
    // The worker is still up and takes work.
    let after = env.enqueue(&["jobs", "ping"]);
    if env.wait_job(after, secs(30)).await["status"] != "succeeded" {
        failures.push("[worker] no longer runs jobs".into());
    }
    let dead: f64 = {
        let mut n = 0.0;
        for family in landlord::config::QUEUES {
            n += env
                .metric(
                    &w,
                    &format!(r#"landlord_messages_dead_lettered_total{{queue="{family}"}}"#),
                )
                .await;
        }
        n
    };
    if dead as usize != expected_dead {
        failures.push(format!(
            "[metrics] {dead} dead-lettered counted, {expected_dead} expected"
        ));
    }
    if w.log_text().contains("panicked") {
        failures.push("[worker] panicked".into());
    }
    report("AMQP", cases.len(), &failures);
}

/// A reply or message shortened for a failure report.
fn short(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= 300 {
        flat
    } else {
        format!("{}…", flat.chars().take(300).collect::<String>())
    }
}
