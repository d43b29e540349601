//! Row-level tenancy against the real PostgreSQL: policies installed by
//! `landlord tenancy apply`, queries through the scoped executor as a plain
//! application role, strict/soft/disabled, bypass attempts, the JWT layer's
//! resolution, `tenancy status`, and shared tenants through backup/restore
//! and deletion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{PG_SERVER, TestEnv, secs};
use landlord::tenancy::{
    EnforcementMode,
    config::{FileTenancy, TenancyConfig},
    context::{TenantContext, TenantDb},
    install,
};
use rand::Rng;
use serde_json::Value;
use sqlx::{Connection as _, PgConnection, PgPool, Row};

const SECRET: &str = "4c616e646c6f72642074656e616e637920746573742073656372657420212121";

fn config(pairs: &[(&str, &str)]) -> TenancyConfig {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TenancyConfig::resolve(&|k| map.get(k).cloned(), &FileTenancy::default()).unwrap()
}

fn strict() -> TenancyConfig {
    config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "strict"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_EXEMPT_TABLES", "audit_events"),
    ])
}

/// A shared database with two tenant tables, a lookup table and an exempt
/// one, and an application role that owns nothing and bypasses nothing.
struct Shared {
    db: String,
    role: String,
}

async fn admin_exec(db: &str, sql: &str) {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    c.close().await.ok();
}

async fn shared_db(env: &TestEnv, tenants: i64, per_tenant: i64) -> Shared {
    let db = format!("{}_shared", env.catalog_db);
    let role = format!("{}_app", env.catalog_db);
    admin_exec("postgres", &format!("CREATE DATABASE {db}")).await;
    admin_exec(
        "postgres",
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS"),
    )
    .await;
    admin_exec(
        &db,
        &format!(
            "CREATE TABLE customers (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, name text NOT NULL);
             CREATE INDEX customers_tenant ON customers (tenant_id);
             CREATE TABLE orders (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
                 customer_id bigint NOT NULL REFERENCES customers (id), total numeric NOT NULL, note text);
             CREATE INDEX orders_tenant ON orders (tenant_id, customer_id);
             CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
             INSERT INTO countries VALUES ('es', 'Spain'), ('fr', 'France');
             CREATE TABLE audit_events (id bigserial PRIMARY KEY, tenant_id bigint, what text);
             INSERT INTO customers (tenant_id, name)
               SELECT t, 'customer ' || c || ' of ' || t FROM generate_series(1, {tenants}) t, generate_series(1, {per_tenant}) c;
             INSERT INTO orders (tenant_id, customer_id, total, note)
               SELECT tenant_id, id, id % 100, 'order of ' || name FROM customers;
             INSERT INTO audit_events (tenant_id, what) SELECT t, 'seen' FROM generate_series(1, {tenants}) t;
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role};
             ANALYZE;"
        ),
    )
    .await;
    Shared { db, role }
}

async fn pool_as(role: &str, db: &str) -> PgPool {
    PgPool::connect(&format!("postgres://{role}@127.0.0.1:5432/{db}"))
        .await
        .unwrap()
}

async fn apply(db: &str, cfg: &TenancyConfig) -> Vec<install::Applied> {
    let pool = PgPool::connect(&format!("{PG_SERVER}/{db}")).await.unwrap();
    let secret = hex(SECRET);
    let out = install::apply(
        &pool,
        &install::Plan {
            mode: cfg.effective_mode(),
            column: &cfg.tenant_column.value,
            exempt: &cfg.exempt_tables.value,
            secret: &secret,
        },
    )
    .await
    .unwrap();
    pool.close().await;
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn ctx(tenant: Option<i64>) -> TenantContext {
    TenantContext {
        tenant: tenant.map(|t| t.to_string()),
        channel: "admin".into(),
        actor: "test".into(),
        superuser: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_isolates_every_statement_and_refuses_bypasses() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 20, 5).await;
    let cfg = strict();
    let applied = apply(&s.db, &cfg).await;
    let actions: HashMap<String, String> = applied
        .iter()
        .map(|a| (a.table.clone(), a.action.clone()))
        .collect();
    assert_eq!(actions["customers"], "installed");
    assert_eq!(actions["orders"], "installed");
    assert_eq!(
        actions.get("audit_events").map(String::as_str),
        Some("exempt")
    );
    assert!(!actions.contains_key("countries"));
    // Idempotent.
    let again = apply(&s.db, &cfg).await;
    assert!(
        again
            .iter()
            .filter(|a| a.table != "audit_events")
            .all(|a| a.action == "unchanged"),
        "{again:?}"
    );

    let app = pool_as(&s.role, &s.db).await;
    let tdb = TenantDb::new(app.clone(), None, &cfg).unwrap();

    // No context: a clear error, not an empty result.
    let err = sqlx::query("SELECT count(*) FROM customers")
        .fetch_one(&app)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no tenant context"), "{err}");
    let mut tx = tdb.begin(&ctx(None)).await.unwrap();
    assert!(
        sqlx::query("SELECT * FROM orders")
            .fetch_all(&mut *tx)
            .await
            .is_err()
    );
    drop(tx);
    // Tables without the column and exempt tables are unaffected.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM countries")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(n, 20);

    // With a context: only that tenant, for reads, joins, raw SQL and writes.
    let mut tx = tdb.begin(&ctx(Some(7))).await.unwrap();
    let tenants: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(tenants, vec![7]);
    let joined: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.tenant_id <> 7 OR o.tenant_id <> 7",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(joined, 0);
    let raw = sqlx::raw_sql("SELECT count(*) AS n FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(raw.get::<i64, _>("n"), 5);
    let updated = sqlx::query("UPDATE customers SET name = name || '!'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 5, "UPDATE touches only the tenant's rows");
    let deleted = sqlx::query("DELETE FROM orders WHERE total >= 0")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 5, "DELETE touches only the tenant's rows");
    // INSERT: the column is filled from the context; another tenant's row is refused.
    let filled: i64 =
        sqlx::query_scalar("INSERT INTO customers (name) VALUES ('new') RETURNING tenant_id")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(filled, 7);
    tx.commit().await.unwrap();
    let mut tx = tdb.begin(&ctx(Some(7))).await.unwrap();
    let err = sqlx::query("INSERT INTO customers (tenant_id, name) VALUES (8, 'intruder')")
        .execute(&mut *tx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("row-level security"), "{err}");
    drop(tx);
    // A row's tenant cannot change.
    let mut tx = tdb.begin(&ctx(Some(7))).await.unwrap();
    let err = sqlx::query("UPDATE customers SET tenant_id = 8")
        .execute(&mut *tx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot be changed") || err.contains("row-level security"),
        "{err}"
    );
    drop(tx);

    // SQL on a tenant-scoped connection cannot switch tenant or bypass.
    let mut tx = tdb.begin(&ctx(Some(7))).await.unwrap();
    sqlx::query("SELECT set_config('landlord.tenant_id', '8', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not signed"), "{err}");
    drop(tx);
    let mut c = app.acquire().await.unwrap();
    for attempt in [
        "SET row_security = off",
        "SET ROLE postgres",
        "ALTER TABLE customers DISABLE ROW LEVEL SECURITY",
        "SELECT * FROM landlord_tenancy.secret",
    ] {
        let r = sqlx::raw_sql(attempt).execute(&mut *c).await;
        if attempt == "SET row_security = off" {
            // Allowed to set, but then every protected query errors instead of bypassing.
            r.unwrap();
            let e = sqlx::query("SELECT count(*) FROM customers")
                .fetch_one(&mut *c)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("row-level security") || e.contains("no tenant context"),
                "{e}"
            );
            sqlx::raw_sql("RESET row_security")
                .execute(&mut *c)
                .await
                .unwrap();
        } else {
            assert!(r.is_err(), "{attempt} must fail for the application role");
        }
    }
    drop(c);
    // for_tenant / without_tenant: superusers only.
    assert!(tdb.for_tenant(&ctx(Some(7)), "8", "look").await.is_err());
    assert!(tdb.without_tenant(&ctx(Some(7)), "look").await.is_err());

    // Randomized probes: many tenants, every query sees only its own rows.
    let mut rng = rand::rng();
    for _ in 0..200 {
        let t: i64 = rng.random_range(1..=20);
        let mut tx = tdb.begin(&ctx(Some(t))).await.unwrap();
        let probe = match rng.random_range(0..4) {
            0 => "SELECT tenant_id FROM customers",
            1 => "SELECT o.tenant_id FROM orders o JOIN customers c ON c.id = o.customer_id",
            2 => "SELECT tenant_id FROM customers WHERE tenant_id <> $1::bigint OR true",
            _ => "SELECT tenant_id FROM orders WHERE id IN (SELECT id FROM orders)",
        };
        let seen: Vec<i64> = sqlx::query_scalar(probe)
            .bind(t)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert!(
            seen.iter().all(|x| *x == t),
            "tenant {t} saw {seen:?} via {probe}"
        );
        tx.rollback().await.unwrap();
    }
    app.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_mode_records_and_disabled_removes_everything() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 4, 3).await;
    let soft = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "soft"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
    ]);
    apply(&s.db, &soft).await;
    let app = pool_as(&s.role, &s.db).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(n, 12, "soft mode lets an unscoped query run");
    let tdb = TenantDb::new(app.clone(), None, &soft).unwrap();
    let mut tx = tdb.begin(&ctx(Some(2))).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 3, "with a context, soft mode still isolates");
    drop(tx);
    let mut admin = PgConnection::connect(&format!("{PG_SERVER}/{}", s.db))
        .await
        .unwrap();
    let violations: i64 = sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.violations")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(violations >= 1, "the unscoped query was recorded");

    // Disabled: nothing installed, zero overhead.
    let off = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "disabled"),
    ]);
    apply(&s.db, &off).await;
    let policies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(policies, 0);
    let rls: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname IN ('customers', 'orders') AND (relrowsecurity OR relforcerowsecurity)",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(rls, 0);
    let triggers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'landlord_tenancy%'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(triggers, 0);
    admin.close().await.ok();
    app.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn superuser_bypasses_are_audited_and_jwt_contexts_follow_the_channels() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 3, 2).await;
    let cfg = strict();
    apply(&s.db, &cfg).await;
    let app = pool_as(&s.role, &s.db).await;
    let bypass = PgPool::connect(&format!("{PG_SERVER}/{}", s.db))
        .await
        .unwrap();
    let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();
    let root = TenantContext {
        tenant: None,
        channel: "admin".into(),
        actor: "ops@example.com".into(),
        superuser: true,
    };
    assert!(
        tdb.without_tenant(&root, "").await.is_err(),
        "a reason is required"
    );
    let mut tx = tdb.without_tenant(&root, "monthly report").await.unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(all, 6);
    tx.rollback().await.unwrap();
    let mut tx = tdb
        .for_tenant(&root, "2", "support ticket 42")
        .await
        .unwrap();
    let two: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(two, vec![2]);
    tx.rollback().await.unwrap();
    let audit: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT actor, action, tenant, reason FROM landlord_tenancy.bypasses ORDER BY id",
    )
    .fetch_all(&bypass)
    .await
    .unwrap();
    assert_eq!(
        audit,
        vec![
            (
                "ops@example.com".into(),
                "without_tenant".into(),
                None,
                "monthly report".into()
            ),
            (
                "ops@example.com".into(),
                "for_tenant".into(),
                Some("2".into()),
                "support ticket 42".into()
            ),
        ]
    );

    // Tokens: tid + aud resolve the context; a token for another channel is refused.
    let jwt_secret = "a-test-signing-secret-of-at-least-32-bytes!";
    let cfg = std::sync::Arc::new(config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_JWT_SECRET", jwt_secret),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]));
    let token = |aud: &str, tid: Option<&str>| {
        let mut claims = serde_json::json!({"sub": "u1", "aud": aud, "exp": chrono::Utc::now().timestamp() + 600});
        if let Some(t) = tid {
            claims["tid"] = t.into();
        }
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        )
        .unwrap()
    };
    let gate = |ch: &str| landlord::tenancy::jwt::ChannelGate {
        config: cfg.clone(),
        channel: ch.into(),
    };
    let c = landlord::tenancy::jwt::resolve(&gate("admin"), &token("admin", Some("3"))).unwrap();
    assert_eq!(c.tenant.as_deref(), Some("3"));
    assert!(
        landlord::tenancy::jwt::resolve(&gate("admin"), &token("site", Some("3"))).is_err(),
        "audience must match the channel"
    );
    assert!(
        landlord::tenancy::jwt::resolve(&gate("admin"), &token("admin", None)).is_err(),
        "multi-tenant channel needs tid"
    );
    let site = landlord::tenancy::jwt::resolve(&gate("site"), &token("site", Some("3"))).unwrap();
    assert_eq!(site.tenant, None, "single-tenant channel: no filter");
    assert!(landlord::tenancy::jwt::resolve(&gate("admin"), "not.a.token").is_err());
    app.close().await;
    bypass.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_config_sources_tables_and_warnings() {
    let mut env = TestEnv::new().await;
    let s = shared_db(&env, 2, 2).await;
    admin_exec(
        &s.db,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, tenant_id bigint, body text)",
    )
    .await;
    env.extra_env.extend([
        ("TENANCY_ENABLED".to_string(), "true".to_string()),
        ("TENANCY_ENFORCEMENT_MODE".to_string(), "strict".to_string()),
        ("TENANCY_CONTEXT_SECRET".to_string(), SECRET.to_string()),
        ("TENANCY_SITE_ENABLED".to_string(), "false".to_string()),
        (
            "TENANCY_EXEMPT_TABLES".to_string(),
            "audit_events".to_string(),
        ),
    ]);
    let out = env.ok(&["tenancy", "apply", "--database", &s.db]);
    assert!(
        out.contains("installed") && out.contains("public.customers"),
        "{out}"
    );
    let st = env.run(&[
        "tenancy",
        "status",
        "--detailed",
        "--database",
        &s.db,
        "--app-role",
        "postgres",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["config"]["enabled"]["value"], true);
    assert_eq!(v["config"]["enabled"]["source"]["env"], "TENANCY_ENABLED");
    let site = v["config"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "site")
        .unwrap();
    assert_eq!(site["enabled"]["value"], false);
    let tables = v["database"]["tables"].as_array().unwrap();
    let notes = tables.iter().find(|t| t["table"] == "notes").unwrap();
    assert_eq!(notes["indexed"], false);
    assert_eq!(notes["rls_forced"], true);
    let customers = tables.iter().find(|t| t["table"] == "customers").unwrap();
    assert_eq!(customers["indexed"], true);
    assert_eq!(customers["policy_current"], true);
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("notes"),
        "missing index warned: {warnings}"
    );
    assert!(
        warnings.contains("postgres"),
        "superuser app role warned: {warnings}"
    );
    assert_eq!(st.status.code(), Some(1), "warnings make status exit 1");
    // Without secret, apply refuses and changes nothing.
    env.extra_env.remove("TENANCY_CONTEXT_SECRET");
    let out = env.run(&["tenancy", "apply", "--database", &s.db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TENANCY_CONTEXT_SECRET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_tenant_backs_up_restores_and_deletes_only_its_rows() {
    let mut env = TestEnv::new().await;
    let s = shared_db(&env, 0, 0).await;
    env.extra_env.extend([
        ("TENANCY_ENABLED".to_string(), "true".to_string()),
        ("TENANCY_CONTEXT_SECRET".to_string(), SECRET.to_string()),
        (
            "TENANCY_EXEMPT_TABLES".to_string(),
            "audit_events".to_string(),
        ),
    ]);
    env.ok(&["tenancy", "apply", "--database", &s.db]);
    // Three shared tenants, created through the lifecycle.
    let mut keys = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let slug = format!("{name}-{}", &env.id[..6]);
        env.ok(&[
            "tenants",
            "create",
            &slug,
            "--name",
            name,
            "--plan",
            "enterprise",
            "--owner",
            &format!("{name}-{}@example.test", env.id),
            "--shared",
            &s.db,
            "--sync",
        ]);
        let t = landlord::tenants::get(&env.catalog, &slug).await.unwrap();
        assert_eq!(t.isolation, "shared");
        assert_eq!(t.status, "active");
        keys.push((slug, t.key()));
    }
    for (_, key) in &keys {
        admin_exec(
            &s.db,
            &format!(
                "INSERT INTO customers (tenant_id, name) SELECT {key}, 'c' || g FROM generate_series(1, 50) g;
                 INSERT INTO orders (tenant_id, customer_id, total, note)
                   SELECT tenant_id, id, id, E'tab\\there, newline\\n, backslash \\\\ and \\\\L' FROM customers WHERE tenant_id = {key};"
            ),
        )
        .await;
    }
    let snapshot = |db: String| async move {
        let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
            .await
            .unwrap();
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT tenant_id, count(*), md5(string_agg(x::text, '|' ORDER BY x::text)) FROM \
             (SELECT tenant_id, row(c.*)::text AS x FROM customers c UNION ALL SELECT tenant_id, row(o.*)::text FROM orders o) s \
             GROUP BY tenant_id ORDER BY 1",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        rows
    };
    let before = snapshot(s.db.clone()).await;
    let (beta, beta_key) = keys[1].clone();
    let out = env.run(&["backup", "--tenant", &beta, "--sync", "--json"]);
    let job: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    // Damage beta, and change alpha (which the restore must not undo).
    admin_exec(
        &s.db,
        &format!(
            "DELETE FROM orders WHERE tenant_id = {beta_key} AND id % 2 = 0;
             UPDATE customers SET name = 'renamed' WHERE tenant_id = {beta_key};
             UPDATE customers SET name = 'alpha changed' WHERE tenant_id = {}",
            keys[0].1
        ),
    )
    .await;
    let alpha_after = snapshot(s.db.clone()).await[0].clone();
    env.ok(&["restore", &beta, "--latest", "--yes", "--sync"]);
    let after = snapshot(s.db.clone()).await;
    assert_eq!(after[1], before[1], "beta restored exactly");
    assert_eq!(after[0], alpha_after, "alpha untouched by beta's restore");
    assert_eq!(after[2], before[2], "gamma untouched");
    // verify --restore-test is a rolled-back import.
    let out = env.run(&[
        "backups",
        "verify",
        "--tenant",
        &beta,
        "--restore-test",
        "--sync",
        "--json",
    ]);
    let job: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(snapshot(s.db.clone()).await, after);
    // Deleting beta removes its rows only; the shared database stays.
    env.ok(&[
        "tenants",
        "delete",
        &beta,
        "--no-final-backup",
        "--now",
        "--sync",
    ]);
    let left = snapshot(s.db.clone()).await;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|r| r.0.to_string() != beta_key));
    let mut admin = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&s.db)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(exists);
    admin.close().await.ok();
    let _ = secs(1);
}

#[test]
fn disabled_mode_needs_no_secret_and_enforced_modes_do() {
    let off = config(&[("TENANCY_ENABLED", "false")]);
    assert_eq!(off.effective_mode(), EnforcementMode::Disabled);
    let on = config(&[("TENANCY_ENABLED", "true")]);
    assert!(on.context_secret.is_none());
    assert_eq!(on.effective_mode(), EnforcementMode::Strict);
}
