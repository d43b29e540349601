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
    context::{TenancyError, TenantContext, TenantDb},
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
/// one, an application role that owns nothing and bypasses nothing, and a
/// BYPASSRLS role (not a superuser) as `TENANCY_BYPASS_URL` would name.
struct Shared {
    db: String,
    role: String,
    bypass_role: String,
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
    let bypass_role = format!("{}_bypass", env.catalog_db);
    admin_exec("postgres", &format!("CREATE DATABASE {db}")).await;
    admin_exec(
        "postgres",
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS;
             DROP ROLE IF EXISTS {bypass_role}; CREATE ROLE {bypass_role} LOGIN NOSUPERUSER BYPASSRLS"
        ),
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
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}, {bypass_role};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}, {bypass_role};
             ANALYZE;"
        ),
    )
    .await;
    Shared {
        db,
        role,
        bypass_role,
    }
}

/// Rows per tenant of `table`, read by the superuser (which RLS does not filter).
async fn counts_by_tenant(db: &str, table: &str) -> HashMap<i64, i64> {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .unwrap();
    let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT tenant_id, count(*) FROM {table} GROUP BY 1"
    ))
    .fetch_all(&mut c)
    .await
    .unwrap();
    c.close().await.ok();
    rows.into_iter().collect()
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

/// The JWT signing secret of these tests.
const JWT_SECRET: &str = "a-test-signing-secret-of-at-least-32-bytes!";

/// A token signed with [`JWT_SECRET`].
fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A token of actor `u1` for channel `aud`, valid ten minutes.
fn token(aud: &str, tid: Option<&str>) -> String {
    let mut claims =
        serde_json::json!({"sub": "u1", "aud": aud, "exp": chrono::Utc::now().timestamp() + 600});
    if let Some(t) = tid {
        claims["tid"] = t.into();
    }
    sign(&claims)
}

/// The layer's gate for one channel.
fn gate(cfg: &std::sync::Arc<TenancyConfig>, channel: &str) -> landlord::tenancy::jwt::ChannelGate {
    landlord::tenancy::jwt::ChannelGate {
        config: cfg.clone(),
        channel: channel.into(),
    }
}

/// `sql` (a count) in a committed transaction of `tdb` as `ctx`.
async fn count_in(tdb: &TenantDb, ctx: &TenantContext, sql: &str) -> i64 {
    let mut tx = tdb.begin(ctx).await.unwrap();
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    n
}

/// The job row a `--sync --json` command printed first.
fn sync_result(out: &std::process::Output) -> Value {
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap()
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
    let bypass = pool_as(&s.bypass_role, &s.db).await;
    let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();

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
    // A row's tenant cannot change: refused in a scoped transaction, and by
    // the guard trigger itself where no policy applies (the BYPASSRLS role
    // of an audited superuser bypass), so this fails without the guard.
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
    let root = TenantContext {
        superuser: true,
        actor: "ops@example.com".into(),
        ..ctx(None)
    };
    let mut tx = tdb.without_tenant(&root, "move a customer").await.unwrap();
    let err = sqlx::query("UPDATE customers SET tenant_id = 8 WHERE tenant_id = 7")
        .execute(&mut *tx)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("landlord tenancy: a row's tenant cannot be changed"),
        "the guard trigger refuses, not a policy: {err}"
    );
    tx.rollback().await.unwrap();
    // Other columns still change under the bypass: the guard only watches the tenant.
    let mut tx = tdb.without_tenant(&root, "rename").await.unwrap();
    let n = sqlx::query("UPDATE customers SET name = name WHERE tenant_id = 7")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 6);
    tx.rollback().await.unwrap();

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
    // for_tenant / without_tenant: superusers only, even with a bypass role
    // configured (the check is the context's, not the missing pool's).
    let e = tdb
        .for_tenant(&ctx(Some(7)), "8", "look")
        .await
        .unwrap_err();
    assert!(matches!(e, TenancyError::NotSuperuser("for_tenant")), "{e}");
    let e = tdb.without_tenant(&ctx(Some(7)), "look").await.unwrap_err();
    assert!(
        matches!(e, TenancyError::NotSuperuser("without_tenant")),
        "{e}"
    );

    // Randomized probes: many tenants, every query sees exactly its own rows
    // (the expected counts come from the superuser, which RLS does not filter),
    // and UPDATE/DELETE touch exactly its own rows.
    let customers = counts_by_tenant(&s.db, "customers").await;
    let orders = counts_by_tenant(&s.db, "orders").await;
    assert_eq!(customers.len(), 20, "every tenant has customers");
    assert_eq!(customers[&7], 6, "tenant 7's writes were committed");
    assert_eq!(orders.get(&7), None, "tenant 7's orders were deleted");
    let mut rng = rand::rng();
    for _ in 0..200 {
        let t: i64 = rng.random_range(1..=20);
        let own_customers = customers[&t];
        let own_orders = orders.get(&t).copied().unwrap_or(0);
        let mut tx = tdb.begin(&ctx(Some(t))).await.unwrap();
        let (probe, expected) = match rng.random_range(0..4) {
            0 => ("SELECT tenant_id FROM customers", own_customers),
            1 => (
                "SELECT o.tenant_id FROM orders o JOIN customers c ON c.id = o.customer_id",
                own_orders,
            ),
            2 => (
                "SELECT tenant_id FROM customers WHERE tenant_id <> $1::bigint OR true",
                own_customers,
            ),
            _ => (
                "SELECT tenant_id FROM orders WHERE id IN (SELECT id FROM orders)",
                own_orders,
            ),
        };
        let seen: Vec<i64> = sqlx::query_scalar(probe)
            .bind(t)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        assert_eq!(
            seen.len() as i64,
            expected,
            "tenant {t} saw {seen:?} via {probe}"
        );
        assert!(
            seen.iter().all(|x| *x == t),
            "tenant {t} saw {seen:?} via {probe}"
        );
        let (write, expected) = match rng.random_range(0..4) {
            0 => ("UPDATE customers SET name = name", own_customers),
            1 => (
                "UPDATE orders SET note = note WHERE tenant_id <> $1::bigint OR true",
                own_orders,
            ),
            2 => (
                "DELETE FROM orders WHERE total >= 0 OR $1::bigint > 0",
                own_orders,
            ),
            _ => (
                "DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE $1::bigint > 0)",
                own_orders,
            ),
        };
        let touched = sqlx::query(write)
            .bind(t)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(
            touched as i64, expected,
            "tenant {t}: {write} touched {touched} rows"
        );
        tx.rollback().await.unwrap();
    }
    // The probes rolled back: nothing changed.
    assert_eq!(counts_by_tenant(&s.db, "orders").await, orders);
    app.close().await;
    bypass.close().await;
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

    // TENANCY_ALERT_VIOLATIONS: `tenancy status` warns about them (exit 1).
    let soft_env = [
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "soft"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
    ];
    let status = |extra: &[(&'static str, &'static str)]| {
        let vars: Vec<(&str, &str)> = soft_env.iter().chain(extra).copied().collect();
        let out = env.run_with(
            &[
                "tenancy",
                "status",
                "--detailed",
                "--database",
                &s.db,
                "--json",
            ],
            &vars,
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = status(&[]);
    assert_eq!(v["database"]["violations"], violations);
    let warned = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("ran without a tenant context"));
    assert!(warned, "{}", v["warnings"]);
    assert_eq!(code, Some(1));
    let (_, v) = status(&[("TENANCY_ALERT_VIOLATIONS", "false")]);
    assert!(
        !v["warnings"]
            .to_string()
            .contains("without a tenant context"),
        "{}",
        v["warnings"]
    );

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
    // The support objects go too; only the violation log (it has rows) stays.
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT kind || ' ' || name FROM (
            SELECT 'relation' AS kind, c.relname::text AS name FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'landlord_tenancy'
            UNION ALL
            SELECT 'function', p.proname::text FROM pg_proc p
              JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'landlord_tenancy') o
          WHERE kind = 'function' OR name NOT LIKE '%\\_pkey' AND name NOT LIKE '%\\_seq'
          ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(left, ["relation violations"]);
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.violations")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(kept, violations, "the violation log is kept");
    // With nothing in force, the app role reads every row unchecked.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(n, 12);
    // Disabled again is a no-op; strict after disabled installs everything afresh.
    apply(&s.db, &off).await;
    apply(&s.db, &strict()).await;
    let e = sqlx::query("SELECT count(*) FROM customers")
        .fetch_one(&app)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tenant context"), "{e}");
    let tdb = TenantDb::new(app.clone(), None, &strict()).unwrap();
    let mut tx = tdb.begin(&ctx(Some(3))).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 3);
    drop(tx);
    // A database whose logs are empty loses the whole schema.
    sqlx::raw_sql("DELETE FROM landlord_tenancy.violations")
        .execute(&mut admin)
        .await
        .unwrap();
    apply(&s.db, &off).await;
    let schema: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'landlord_tenancy')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(!schema, "nothing of landlord's is left");
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
    let cfg = std::sync::Arc::new(config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_JWT_SECRET", JWT_SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]));
    let c =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", Some("3"))).unwrap();
    assert_eq!(c.tenant.as_deref(), Some("3"));
    assert!(
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("site", Some("3"))).is_err(),
        "audience must match the channel"
    );
    assert!(
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", None)).is_err(),
        "multi-tenant channel needs tid"
    );
    let site =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "site"), &token("site", Some("3"))).unwrap();
    assert_eq!(site.tenant, None, "single-tenant channel: no filter");
    assert!(landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), "not.a.token").is_err());
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

    // TENANCY_ENABLED unset and no multi-tenant channel: auto-detect says off,
    // but that guess does not remove the protection without --force.
    env.extra_env.remove("TENANCY_ENABLED");
    let policies = || {
        let db = s.db.clone();
        async move {
            let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
                .await
                .unwrap();
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'")
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            c.close().await.ok();
            n
        }
    };
    assert_eq!(policies().await, 3, "customers, orders, notes");
    let out = env.run(&["tenancy", "apply", "--database", &s.db]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auto-detect")
            && stderr.contains("--force")
            && stderr.contains("public.customers"),
        "{stderr}"
    );
    assert_eq!(policies().await, 3, "nothing was changed");
    // Saying so explicitly removes it, as does --force.
    let out = env.run_with(
        &["tenancy", "apply", "--database", &s.db],
        &[("TENANCY_ENFORCEMENT_MODE", "disabled")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(policies().await, 0);
    env.run_with(
        &["tenancy", "apply", "--database", &s.db],
        &[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_CONTEXT_SECRET", SECRET),
        ],
    );
    assert_eq!(policies().await, 3);
    let out = env.ok(&["tenancy", "apply", "--database", &s.db, "--force"]);
    assert!(
        out.contains("removed") && out.contains("public.customers"),
        "{out}"
    );
    assert_eq!(policies().await, 0);
    // Nothing left to remove: no --force needed.
    env.ok(&["tenancy", "apply", "--database", &s.db]);
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
    let job: Value = sync_result(&out);
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
    let job: Value = sync_result(&out);
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

    // maintenance --cleanup on a shared tenant deletes only its own old rows.
    admin_exec(
        &s.db,
        "ALTER TABLE orders ADD COLUMN placed_at timestamptz NOT NULL DEFAULT now();
         UPDATE orders SET placed_at = now() - interval '400 days' WHERE id % 2 = 0",
    )
    .await;
    let old_rows = |db: String, key: String| async move {
        let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM orders WHERE tenant_id = {key} AND placed_at < now() - interval '365 days'"
        ))
        .fetch_one(&mut c)
        .await
        .unwrap();
        c.close().await.ok();
        n
    };
    let (alpha_key, (gamma, gamma_key)) = (keys[0].1.clone(), keys[2].clone());
    let alpha_old = old_rows(s.db.clone(), alpha_key.clone()).await;
    let gamma_old = old_rows(s.db.clone(), gamma_key.clone()).await;
    assert!(alpha_old > 0 && gamma_old > 0);
    let rules = [("LANDLORD_CLEANUP_RULES", "orders:placed_at")];
    let maintenance = |dry: bool| {
        let mut args = vec![
            "maintenance",
            "--tenant",
            gamma.as_str(),
            "--cleanup",
            "--days",
            "365",
        ];
        if dry {
            args.push("--dry-run");
        }
        args.extend(["--sync", "--json"]);
        let out = env.run_with(&args, &rules);
        let job: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap())
                .unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        job
    };
    let dry = maintenance(true);
    assert_eq!(old_rows(s.db.clone(), gamma_key.clone()).await, gamma_old);
    let real = maintenance(false);
    for job in [&dry, &real] {
        assert_eq!(
            job["result"]["steps"]["cleanup"]["rows"].as_i64(),
            Some(gamma_old),
            "{job}"
        );
    }
    assert_eq!(
        old_rows(s.db.clone(), gamma_key).await,
        0,
        "gamma's old rows gone"
    );
    assert_eq!(
        old_rows(s.db.clone(), alpha_key).await,
        alpha_old,
        "alpha's untouched"
    );
    let _ = secs(1);
}

#[tokio::test]
async fn disabled_mode_needs_no_secret_and_enforced_modes_do() {
    // Never connects: TenantDb::new only checks the configuration.
    let lazy = || PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
    let off = config(&[("TENANCY_ENABLED", "false")]);
    assert_eq!(off.effective_mode(), EnforcementMode::Disabled);
    assert!(TenantDb::new(lazy(), None, &off).is_ok());
    let explicit_off = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "disabled"),
    ]);
    assert!(TenantDb::new(lazy(), None, &explicit_off).is_ok());
    for mode in ["strict", "soft"] {
        let on = config(&[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_ENFORCEMENT_MODE", mode),
        ]);
        assert!(on.context_secret.is_none());
        assert_eq!(on.effective_mode().as_str(), mode);
        let e = TenantDb::new(lazy(), None, &on).err().unwrap();
        assert!(matches!(e, TenancyError::NoSecret), "{mode}: {e}");
        let with_secret = config(&[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_ENFORCEMENT_MODE", mode),
            ("TENANCY_CONTEXT_SECRET", SECRET),
        ]);
        assert!(TenantDb::new(lazy(), None, &with_secret).is_ok(), "{mode}");
    }
}

async fn violation_count(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.violations")
        .fetch_one(admin)
        .await
        .unwrap()
}

/// The seed's case 3: admin isolated, the public site unfiltered, soft mode.
#[tokio::test(flavor = "multi_thread")]
async fn hybrid_case_admin_is_isolated_and_site_runs_unfiltered() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 5, 4).await;
    // A table the seed's default exempt list names: left alone.
    admin_exec(
        &s.db,
        &format!(
            "CREATE TABLE error_logs (id bigserial PRIMARY KEY, tenant_id bigint, message text);
             INSERT INTO error_logs (tenant_id, message) VALUES (1, 'a'), (2, 'b');
             GRANT SELECT ON error_logs TO {}",
            s.role
        ),
    )
    .await;
    let cfg = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "soft"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_JWT_SECRET", JWT_SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]);
    assert!(cfg.channel_enabled("admin") && !cfg.channel_enabled("site"));
    let applied = apply(&s.db, &cfg).await;
    let error_logs = applied.iter().find(|a| a.table == "error_logs").unwrap();
    assert_eq!(error_logs.action, "exempt", "{applied:?}");

    let app = pool_as(&s.role, &s.db).await;
    let bypass = pool_as(&s.bypass_role, &s.db).await;
    let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();
    let mut admin = PgConnection::connect(&format!("{PG_SERVER}/{}", s.db))
        .await
        .unwrap();
    let before = violation_count(&mut admin).await;

    // The contexts as the JWT layer resolves them, one per channel.
    let cfg = std::sync::Arc::new(cfg);
    let admin_ctx =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", Some("2"))).unwrap();
    let site_ctx =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "site"), &token("site", Some("2"))).unwrap();
    assert_eq!(admin_ctx.tenant.as_deref(), Some("2"));
    assert_eq!(site_ctx.tenant, None);

    let mut tx = tdb.begin(&admin_ctx).await.unwrap();
    let seen: Vec<i64> = sqlx::query_scalar("SELECT tenant_id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![2; 4], "admin sees only its tenant");
    tx.commit().await.unwrap();

    let mut tx = tdb.begin(&site_ctx).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 20, "site sees every row");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(n, 20);
    tx.commit().await.unwrap();
    // The channel decides, not a tenant a context happens to carry.
    assert_eq!(
        count_in(
            &tdb,
            &TenantContext {
                tenant: Some("3".into()),
                ..site_ctx.clone()
            },
            "SELECT count(*) FROM customers"
        )
        .await,
        20
    );
    assert_eq!(
        violation_count(&mut admin).await,
        before,
        "the unfiltered site channel is configuration, not a violation"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.bypasses")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(audited, 0, "nor an audited bypass");
    // The exempt table is unfiltered for everyone.
    assert_eq!(
        count_in(&tdb, &admin_ctx, "SELECT count(*) FROM error_logs").await,
        2
    );
    // Admin without a tenant in soft mode: allowed and recorded (the seed's CLI/jobs).
    assert_eq!(
        count_in(
            &tdb,
            &TenantContext {
                tenant: None,
                ..admin_ctx.clone()
            },
            "SELECT count(*) FROM customers"
        )
        .await,
        20
    );
    assert_eq!(violation_count(&mut admin).await, before + 1);

    // No bypass role configured: the site channel is refused with a clear error.
    let no_bypass = TenantDb::new(app.clone(), None, &cfg).unwrap();
    let e = no_bypass.begin(&site_ctx).await.unwrap_err();
    assert!(
        matches!(e, TenancyError::UnisolatedNoBypass(ref ch) if ch == "site"),
        "{e}"
    );
    assert!(e.to_string().contains("TENANCY_BYPASS_URL"), "{e}");
    let mut tx = no_bypass.begin(&admin_ctx).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 4, "isolated channels do not need it");
    drop(tx);

    // The same channels in strict mode: site still unfiltered, admin isolated.
    let strict_hybrid = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "strict"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]);
    apply(&s.db, &strict_hybrid).await;
    let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &strict_hybrid).unwrap();
    for (c, want) in [(&site_ctx, 20), (&admin_ctx, 4)] {
        let mut tx = tdb.begin(c).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, want, "channel {}", c.channel);
        drop(tx);
    }
    admin.close().await.ok();
    app.close().await;
    bypass.close().await;
}

/// The tower/axum layer itself, in a router on a real socket.
#[tokio::test]
async fn the_axum_layer_resolves_contexts_and_refuses_bad_tokens() {
    use axum::{Extension, Router, middleware, routing::get};
    let cfg = std::sync::Arc::new(config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_JWT_SECRET", JWT_SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
    ]));
    let gate = gate(&cfg, "admin");
    async fn whoami(Extension(ctx): Extension<TenantContext>) -> String {
        serde_json::to_string(&ctx).unwrap()
    }
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(middleware::from_fn_with_state(
            gate,
            landlord::tenancy::jwt::tenant_context,
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/whoami");
    let now = chrono::Utc::now().timestamp();
    let http = reqwest::Client::new();
    let call = |auth: Option<String>| {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    let (status, body) = call(None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token is required"), "{body}");
    let expired =
        sign(&serde_json::json!({"sub": "u1", "aud": "admin", "tid": "3", "exp": now - 3600}));
    let (status, body) = call(Some(format!("Bearer {expired}"))).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid token"), "{body}");
    let good =
        sign(&serde_json::json!({"sub": "u1", "aud": "admin", "tid": "3", "exp": now + 600}));
    let (status, _) = call(Some(format!("Basic {good}"))).await;
    assert_eq!(status, 401, "only Bearer");
    let other =
        sign(&serde_json::json!({"sub": "u1", "aud": "site", "tid": "3", "exp": now + 600}));
    let (status, _) = call(Some(format!("Bearer {other}"))).await;
    assert_eq!(status, 401, "audience must be the route's channel");
    let (status, body) = call(Some(format!("Bearer {good}"))).await;
    assert_eq!(status, 200, "{body}");
    let ctx: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ctx,
        serde_json::json!({"tenant": "3", "channel": "admin", "actor": "u1", "superuser": false})
    );
    server.abort();
}

/// Shared-tenant transfers trust nothing from the backup file that reaches
/// SQL, and refuse a connection that row-level security would filter.
#[tokio::test(flavor = "multi_thread")]
async fn shared_transfers_refuse_tampered_headers_and_filtered_roles() {
    use landlord::backup::shared;
    let env = TestEnv::new().await;
    let s = shared_db(&env, 3, 4).await;
    apply(&s.db, &strict()).await;
    let one = |role: String| {
        let db = s.db.clone();
        async move {
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&format!("postgres://{role}@127.0.0.1:5432/{db}"))
                .await
                .unwrap()
        }
    };
    let tenant = landlord::tenants::Tenant {
        id: 2,
        slug: "beta".into(),
        name: "Beta".into(),
        plan: "pro".into(),
        status: "active".into(),
        status_reason: None,
        isolation: "shared".into(),
        db_server: "default".into(),
        db_name: s.db.clone(),
        settings: serde_json::json!({}),
        schema_version: 0,
        owner_id: None,
        provision_step: "done".into(),
        db_role: None,
        tenant_key: Some("2".into()),
        provisioned_at: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let scope = shared::Scope {
        column: "tenant_id".into(),
        exempt: vec!["audit_events".into()],
    };
    let export = |pool: PgPool| {
        let (t, scope) = (tenant.clone(), scope.clone());
        async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(4);
            let task = tokio::spawn(async move {
                let r = shared::export_on(&pool, &t, &scope, tx).await;
                pool.close().await;
                r
            });
            let mut bytes = Vec::new();
            while let Some(b) = rx.recv().await {
                bytes.extend_from_slice(&b);
            }
            task.await.unwrap().map(|_| bytes)
        }
    };
    let import = |pool: PgPool, bytes: Vec<u8>, commit: bool| {
        let (t, scope) = (tenant.clone(), scope.clone());
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let (go, decided) = tokio::sync::oneshot::channel();
            tx.send(bytes::Bytes::from(bytes)).await.unwrap();
            drop(tx);
            go.send(commit).unwrap();
            let r = shared::import_on(&pool, &t, &scope, rx, decided).await;
            pool.close().await;
            r
        }
    };
    let snapshot = || {
        let db = s.db.clone();
        async move {
            let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
                .await
                .unwrap();
            let v: Vec<(i64, i64, String)> = sqlx::query_as(
                "SELECT tenant_id, count(*), md5(string_agg(x, '|' ORDER BY x)) FROM
               (SELECT tenant_id, row(c.*)::text AS x FROM customers c
                UNION ALL SELECT tenant_id, row(o.*)::text FROM orders o) s GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            let countries: i64 = sqlx::query_scalar("SELECT count(*) FROM countries")
                .fetch_one(&mut c)
                .await
                .unwrap();
            c.close().await.ok();
            (v, countries)
        }
    };

    let before = snapshot().await;
    let backup = export(one("postgres".into()).await).await.unwrap();
    let text = String::from_utf8(backup.clone()).unwrap();
    assert!(
        text.starts_with("\\Llandlord-shared v1 "),
        "{}",
        &text[..80.min(text.len())]
    );
    // The untouched stream restores (a dry run: rolled back).
    let done = import(one("postgres".into()).await, backup.clone(), false)
        .await
        .unwrap();
    assert!(!done.committed);
    assert_eq!(done.rows.values().sum::<u64>(), 8);

    // A header whose key type would be spliced into SQL is refused before
    // anything is deleted or loaded.
    let evil = "bigint OR true; DROP TABLE countries; --";
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for l in lines.iter_mut() {
        for prefix in ["\\Llandlord-shared v1 ", "\\Ltable "] {
            if let Some(j) = l.strip_prefix(prefix) {
                let mut v: Value = serde_json::from_str(j).unwrap();
                if prefix.ends_with("v1 ") {
                    for t in v["tables"].as_array_mut().unwrap() {
                        if t["table"] == "customers" {
                            t["key_type"] = evil.into();
                        }
                    }
                } else if v["table"] == "customers" {
                    v["key_type"] = evil.into();
                }
                *l = format!("{prefix}{v}");
            }
        }
    }
    let tampered = (lines.join("\n") + "\n").into_bytes();
    assert_ne!(tampered, backup);
    let e = import(one("postgres".into()).await, tampered, true)
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("has type") && e.contains("bigint"), "{e}");
    assert_eq!(
        snapshot().await,
        before,
        "nothing changed, countries still there"
    );

    // A role that row-level security filters is refused, by name, for all three.
    for role in [s.role.clone(), s.bypass_role.clone()] {
        let filtered = role == s.role;
        let e = export(one(role.clone()).await).await.map(|_| ());
        let i = import(one(role.clone()).await, backup.clone(), false)
            .await
            .map(|_| ());
        let pool = one(role.clone()).await;
        let d = shared::delete_on(&pool, "2", &scope).await.map(|_| ());
        pool.close().await;
        for r in [e, i, d] {
            if filtered {
                let msg = format!("{:#}", r.unwrap_err());
                assert!(
                    msg.contains("neither a superuser nor BYPASSRLS") && msg.contains(&role),
                    "{msg}"
                );
            } else {
                r.unwrap();
            }
        }
    }
    // The BYPASSRLS role's delete ran: tenant 2's rows are gone, the others' stay.
    let after = snapshot().await;
    assert_eq!(after.0.len(), 2);
    assert!(after.0.iter().all(|r| r.0 != 2));
    assert_eq!(after.0[0], before.0[0]);
    assert_eq!(after.0[1], before.0[2]);
}
