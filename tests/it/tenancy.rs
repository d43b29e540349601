//! Row-level tenancy against the real PostgreSQL: policies installed by
//! `landlord tenancy apply`, queries through the scoped executor as a plain
//! application role, strict/soft/disabled, bypass attempts, the JWT layer's
//! resolution, `tenancy status`, and shared tenants through backup/restore
//! and deletion.

use std::collections::HashMap;

use crate::common::{
    PG_SERVER, TestEnv, database_exists, exec_in as admin_exec, json_line as sync_result, rows_in,
    scalar_in, stderr, stdout,
};
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
    let sql = format!("SELECT tenant_id, count(*) FROM {table} GROUP BY 1");
    rows_in::<(i64, i64)>(db, &sql).await.into_iter().collect()
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

/// The customers `tdb` shows `ctx` (in a committed transaction).
async fn customers_seen(tdb: &TenantDb, ctx: &TenantContext) -> i64 {
    count_in(tdb, ctx, "SELECT count(*) FROM customers").await
}

/// `sql` (a count) straight on `pool`, with no tenant context.
async fn count_on(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The error `sql` straight on `pool`, with no tenant context, must fail with.
async fn refused_on(pool: &PgPool, sql: &str) -> String {
    sqlx::query(sql)
        .fetch_one(pool)
        .await
        .unwrap_err()
        .to_string()
}

/// The error statement `sql` must fail with in a transaction of `tdb` as `ctx`
/// (rolled back).
async fn refused_in(tdb: &TenantDb, ctx: &TenantContext, sql: &str) -> String {
    let mut tx = tdb.begin(ctx).await.unwrap();
    let err = sqlx::query(sql)
        .execute(&mut *tx)
        .await
        .unwrap_err()
        .to_string();
    drop(tx);
    err
}

fn ctx(tenant: Option<i64>) -> TenantContext {
    TenantContext {
        tenant: tenant.map(|t| t.to_string()),
        channel: "admin".into(),
        actor: "test".into(),
        superuser: false,
    }
}

/// A strict-mode shared database (20 tenants of 5 customers and 5 orders
/// each unless told otherwise), with the scoped executor over the
/// application role and the BYPASSRLS role.
struct Strict {
    s: Shared,
    app: PgPool,
    bypass: PgPool,
    tdb: TenantDb,
}

impl Strict {
    async fn new(env: &TestEnv) -> Strict {
        let s = shared_db(env, 20, 5).await;
        let cfg = strict();
        apply(&s.db, &cfg).await;
        let app = pool_as(&s.role, &s.db).await;
        let bypass = pool_as(&s.bypass_role, &s.db).await;
        let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();
        Strict {
            s,
            app,
            bypass,
            tdb,
        }
    }

    async fn close(self) {
        self.app.close().await;
        self.bypass.close().await;
    }
}

/// An audited superuser bypass context.
fn root() -> TenantContext {
    TenantContext {
        superuser: true,
        actor: "ops@example.com".into(),
        ..ctx(None)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_apply_installs_policies_on_tenant_tables_only() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 20, 5).await;
    let applied = apply(&s.db, &strict()).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_apply_is_idempotent() {
    let env = TestEnv::new().await;
    let s = shared_db(&env, 2, 1).await;
    apply(&s.db, &strict()).await;
    let again = apply(&s.db, &strict()).await;
    assert!(
        again
            .iter()
            .filter(|a| a.table != "audit_events")
            .all(|a| a.action == "unchanged"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_refuses_a_query_without_a_context() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    // No context: a clear error, not an empty result.
    let err = refused_on(&st.app, "SELECT count(*) FROM customers").await;
    assert!(err.contains("no tenant context"), "{err}");
    let mut tx = st.tdb.begin(&ctx(None)).await.unwrap();
    assert!(
        sqlx::query("SELECT * FROM orders")
            .fetch_all(&mut *tx)
            .await
            .is_err()
    );
    drop(tx);
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_leaves_unscoped_tables_readable() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    // Tables without the column and exempt tables are unaffected.
    assert_eq!(count_on(&st.app, "SELECT count(*) FROM countries").await, 2);
    assert_eq!(
        count_on(&st.app, "SELECT count(*) FROM audit_events").await,
        20
    );
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_scopes_reads_to_the_contexts_tenant() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    // Reads, joins and raw SQL.
    let mut tx = st.tdb.begin(&ctx(Some(7))).await.unwrap();
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
    drop(tx);
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_scopes_writes_to_the_contexts_tenant() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let mut tx = st.tdb.begin(&ctx(Some(7))).await.unwrap();
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
    // INSERT: the column is filled from the context.
    let filled: i64 =
        sqlx::query_scalar("INSERT INTO customers (name) VALUES ('new') RETURNING tenant_id")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(filled, 7);
    tx.commit().await.unwrap();
    let customers = counts_by_tenant(&st.s.db, "customers").await;
    let orders = counts_by_tenant(&st.s.db, "orders").await;
    assert_eq!(customers[&7], 6, "tenant 7's writes were committed");
    assert_eq!(orders.get(&7), None, "tenant 7's orders were deleted");
    assert!(
        (1..=20)
            .filter(|t| *t != 7)
            .all(|t| customers[&t] == 5 && orders[&t] == 5),
        "other tenants untouched: {customers:?} {orders:?}"
    );
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_mode_refuses_inserting_another_tenants_row() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let intruder = "INSERT INTO customers (tenant_id, name) VALUES (8, 'intruder')";
    let err = refused_in(&st.tdb, &ctx(Some(7)), intruder).await;
    assert!(err.contains("row-level security"), "{err}");
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_transaction_cannot_move_a_row_to_another_tenant() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let err = refused_in(&st.tdb, &ctx(Some(7)), "UPDATE customers SET tenant_id = 8").await;
    assert!(
        err.contains("cannot be changed") || err.contains("row-level security"),
        "{err}"
    );
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_trigger_refuses_moving_a_row_even_under_a_bypass() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    // Where no policy applies (the BYPASSRLS role of an audited superuser
    // bypass), so this fails without the guard.
    let mut tx = st
        .tdb
        .without_tenant(&root(), "move a customer")
        .await
        .unwrap();
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
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guard_trigger_lets_other_columns_change_under_a_bypass() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let mut tx = st.tdb.without_tenant(&root(), "rename").await.unwrap();
    let n = sqlx::query("UPDATE customers SET name = name WHERE tenant_id = 7")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 5);
    tx.rollback().await.unwrap();
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scoped_connection_cannot_switch_its_tenant() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let mut tx = st.tdb.begin(&ctx(Some(7))).await.unwrap();
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
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_application_role_cannot_bypass_row_security() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    let mut c = st.app.acquire().await.unwrap();
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
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crossing_tenants_needs_a_superuser_context() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    // for_tenant / without_tenant: superusers only, even with a bypass role
    // configured (the check is the context's, not the missing pool's).
    let e = st
        .tdb
        .for_tenant(&ctx(Some(7)), "8", "look")
        .await
        .unwrap_err();
    assert!(matches!(e, TenancyError::NotSuperuser("for_tenant")), "{e}");
    let e = st
        .tdb
        .without_tenant(&ctx(Some(7)), "look")
        .await
        .unwrap_err();
    assert!(
        matches!(e, TenancyError::NotSuperuser("without_tenant")),
        "{e}"
    );
    st.close().await;
}

/// Randomized probes: many tenants, every probe is a query (`reads`) or a
/// write (otherwise) that must see or touch exactly the context tenant's
/// rows; the expected counts come from the superuser, which RLS does not
/// filter. Every probe rolls back.
async fn random_probes(st: &Strict, reads: bool) {
    let customers = counts_by_tenant(&st.s.db, "customers").await;
    let orders = counts_by_tenant(&st.s.db, "orders").await;
    assert_eq!(customers.len(), 20, "every tenant has customers");
    let mut rng = rand::rng();
    for _ in 0..200 {
        let t: i64 = rng.random_range(1..=20);
        let own_customers = customers[&t];
        let own_orders = orders.get(&t).copied().unwrap_or(0);
        let mut tx = st.tdb.begin(&ctx(Some(t))).await.unwrap();
        if reads {
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
        } else {
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
        }
        tx.rollback().await.unwrap();
    }
    // The probes rolled back: nothing changed.
    assert_eq!(counts_by_tenant(&st.s.db, "orders").await, orders);
}

#[tokio::test(flavor = "multi_thread")]
async fn random_queries_see_exactly_their_tenants_rows() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    random_probes(&st, true).await;
    st.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn random_writes_touch_exactly_their_tenants_rows() {
    let env = TestEnv::new().await;
    let st = Strict::new(&env).await;
    random_probes(&st, false).await;
    st.close().await;
}

/// The soft-mode environment of `tenancy` commands.
const SOFT_ENV: [(&str, &str); 3] = [
    ("TENANCY_ENABLED", "true"),
    ("TENANCY_ENFORCEMENT_MODE", "soft"),
    ("TENANCY_CONTEXT_SECRET", SECRET),
];

fn soft_mode() -> TenancyConfig {
    config(&SOFT_ENV)
}

fn disabled() -> TenancyConfig {
    config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "disabled"),
    ])
}

/// A soft-mode shared database (4 tenants of 3 customers) where the
/// application role ran one unscoped query: the database, an application
/// pool, a superuser connection and the recorded violations.
struct Soft {
    s: Shared,
    app: PgPool,
    admin: PgConnection,
    unscoped: i64,
    violations: i64,
}

impl Soft {
    async fn new(env: &TestEnv) -> Soft {
        let s = shared_db(env, 4, 3).await;
        apply(&s.db, &soft_mode()).await;
        let app = pool_as(&s.role, &s.db).await;
        let unscoped: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
            .fetch_one(&app)
            .await
            .unwrap();
        let mut admin = PgConnection::connect(&format!("{PG_SERVER}/{}", s.db))
            .await
            .unwrap();
        let violations = violation_count(&mut admin).await;
        Soft {
            s,
            app,
            admin,
            unscoped,
            violations,
        }
    }

    /// `tenancy status --detailed --json` in soft mode with `extra` variables.
    fn status(&self, env: &TestEnv, extra: &[(&str, &str)]) -> (Option<i32>, Value) {
        let vars: Vec<(&str, &str)> = SOFT_ENV.iter().chain(extra).copied().collect();
        let out = env.run_with(
            &[
                "tenancy",
                "status",
                "--detailed",
                "--database",
                &self.s.db,
                "--json",
            ],
            &vars,
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    }

    async fn close(self) {
        self.admin.close().await.ok();
        self.app.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_mode_records_an_unscoped_query_instead_of_refusing_it() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    assert_eq!(soft.unscoped, 12, "soft mode lets an unscoped query run");
    assert!(soft.violations >= 1, "the unscoped query was recorded");
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_mode_still_isolates_a_scoped_query() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    let tdb = TenantDb::new(soft.app.clone(), None, &soft_mode()).unwrap();
    let n = customers_seen(&tdb, &ctx(Some(2))).await;
    assert_eq!(n, 3, "with a context, soft mode still isolates");
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_warns_about_recorded_violations() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    // TENANCY_ALERT_VIOLATIONS (on by default): `tenancy status` warns (exit 1).
    let (code, v) = soft.status(&env, &[]);
    assert_eq!(v["database"]["violations"], soft.violations);
    let warned = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("ran without a tenant context"));
    assert!(warned, "{}", v["warnings"]);
    assert_eq!(code, Some(1));
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_alert_violations_false_silences_that_warning() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    let (_, v) = soft.status(&env, &[("TENANCY_ALERT_VIOLATIONS", "false")]);
    assert!(
        !v["warnings"]
            .to_string()
            .contains("without a tenant context"),
        "{}",
        v["warnings"]
    );
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_removes_everything_but_the_violation_log() {
    let env = TestEnv::new().await;
    let mut soft = Soft::new(&env).await;
    // Disabled: nothing installed, zero overhead.
    apply(&soft.s.db, &disabled()).await;
    let admin = &mut soft.admin;
    let policies: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'")
            .fetch_one(&mut *admin)
            .await
            .unwrap();
    assert_eq!(policies, 0);
    let rls: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relname IN ('customers', 'orders') AND (relrowsecurity OR relforcerowsecurity)",
    )
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    assert_eq!(rls, 0);
    let triggers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'landlord_tenancy%'")
            .fetch_one(&mut *admin)
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
    .fetch_all(&mut *admin)
    .await
    .unwrap();
    assert_eq!(left, ["relation violations"]);
    assert_eq!(
        violation_count(admin).await,
        soft.violations,
        "the violation log is kept"
    );
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_database_reads_every_row_unchecked() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    apply(&soft.s.db, &disabled()).await;
    assert_eq!(
        count_on(&soft.app, "SELECT count(*) FROM customers").await,
        12
    );
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_after_disabled_enforces_afresh() {
    let env = TestEnv::new().await;
    let soft = Soft::new(&env).await;
    apply(&soft.s.db, &disabled()).await;
    // Disabled again is a no-op; strict after disabled installs everything afresh.
    apply(&soft.s.db, &disabled()).await;
    apply(&soft.s.db, &strict()).await;
    let e = refused_on(&soft.app, "SELECT count(*) FROM customers").await;
    assert!(e.contains("no tenant context"), "{e}");
    let tdb = TenantDb::new(soft.app.clone(), None, &strict()).unwrap();
    assert_eq!(customers_seen(&tdb, &ctx(Some(3))).await, 3);
    soft.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabling_with_an_empty_violation_log_drops_the_schema() {
    let env = TestEnv::new().await;
    let mut soft = Soft::new(&env).await;
    // A database whose logs are empty loses the whole schema.
    sqlx::raw_sql("DELETE FROM landlord_tenancy.violations")
        .execute(&mut soft.admin)
        .await
        .unwrap();
    apply(&soft.s.db, &disabled()).await;
    let schema: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'landlord_tenancy')",
    )
    .fetch_one(&mut soft.admin)
    .await
    .unwrap();
    assert!(!schema, "nothing of landlord's is left");
    soft.close().await;
}

/// A strict shared database (3 tenants of 2 customers) and a scoped
/// executor whose bypass pool is the superuser, so the audit is readable.
struct Audited {
    app: PgPool,
    bypass: PgPool,
    tdb: TenantDb,
}

impl Audited {
    async fn new(env: &TestEnv) -> Audited {
        let s = shared_db(env, 3, 2).await;
        let cfg = strict();
        apply(&s.db, &cfg).await;
        let app = pool_as(&s.role, &s.db).await;
        let bypass = PgPool::connect(&format!("{PG_SERVER}/{}", s.db))
            .await
            .unwrap();
        let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();
        Audited { app, bypass, tdb }
    }

    async fn close(self) {
        self.app.close().await;
        self.bypass.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superuser_bypass_needs_a_reason() {
    let env = TestEnv::new().await;
    let a = Audited::new(&env).await;
    assert!(
        a.tdb.without_tenant(&root(), "").await.is_err(),
        "a reason is required"
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tenant_reads_across_tenants() {
    let env = TestEnv::new().await;
    let a = Audited::new(&env).await;
    let mut tx = a
        .tdb
        .without_tenant(&root(), "monthly report")
        .await
        .unwrap();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(all, 6);
    tx.rollback().await.unwrap();
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn for_tenant_reads_only_that_tenant() {
    let env = TestEnv::new().await;
    let a = Audited::new(&env).await;
    let mut tx = a
        .tdb
        .for_tenant(&root(), "2", "support ticket 42")
        .await
        .unwrap();
    let two: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(two, vec![2]);
    tx.rollback().await.unwrap();
    a.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn superuser_bypasses_are_audited_with_actor_tenant_reason() {
    let env = TestEnv::new().await;
    let Audited { app, bypass, tdb } = Audited::new(&env).await;
    let tx = tdb.without_tenant(&root(), "monthly report").await.unwrap();
    tx.rollback().await.unwrap();
    let tx = tdb
        .for_tenant(&root(), "2", "support ticket 42")
        .await
        .unwrap();
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
    app.close().await;
    bypass.close().await;
}

/// The JWT layer's configuration: admin multi-tenant, site single-tenant.
fn jwt_channels() -> std::sync::Arc<TenancyConfig> {
    std::sync::Arc::new(config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_JWT_SECRET", JWT_SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]))
}

#[test]
fn a_jwt_resolves_the_tenant_of_its_channel() {
    let cfg = jwt_channels();
    let c =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", Some("3"))).unwrap();
    assert_eq!(c.tenant.as_deref(), Some("3"));
}

#[test]
fn a_jwt_for_another_channel_is_refused() {
    let cfg = jwt_channels();
    assert!(
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("site", Some("3"))).is_err(),
        "audience must match the channel"
    );
}

#[test]
fn a_multi_tenant_channel_needs_a_tid() {
    let cfg = jwt_channels();
    assert!(
        landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", None)).is_err(),
        "multi-tenant channel needs tid"
    );
}

#[test]
fn a_single_tenant_channel_resolves_no_filter() {
    let cfg = jwt_channels();
    let site =
        landlord::tenancy::jwt::resolve(&gate(&cfg, "site"), &token("site", Some("3"))).unwrap();
    assert_eq!(site.tenant, None, "single-tenant channel: no filter");
}

#[test]
fn a_malformed_jwt_is_refused() {
    let cfg = jwt_channels();
    assert!(landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), "not.a.token").is_err());
}

/// A shared database (2 tenants of 2 customers) plus a tenant table `notes`
/// without an index on its tenant column, protected by `landlord tenancy
/// apply` in strict mode with the site channel off; the test's commands get
/// that configuration.
async fn applied_by_the_cli(env: &mut TestEnv) -> Shared {
    let s = shared_db(env, 2, 2).await;
    admin_exec(
        &s.db,
        "CREATE TABLE notes (id bigserial PRIMARY KEY, tenant_id bigint, body text)",
    )
    .await;
    env.set_env(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "strict"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_SITE_ENABLED", "false"),
        ("TENANCY_EXEMPT_TABLES", "audit_events"),
    ]);
    let out = env.ok(&["tenancy", "apply", "--database", &s.db]);
    assert!(
        out.contains("installed") && out.contains("public.customers"),
        "{out}"
    );
    s
}

/// `tenancy status --detailed --json` as the superuser app role.
fn detailed_status(env: &TestEnv, s: &Shared) -> (Option<i32>, Value) {
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
    (
        st.status.code(),
        serde_json::from_slice(&st.stdout).unwrap(),
    )
}

/// Row-level security policies on the public tables of `db`.
async fn policies(db: &str) -> i64 {
    scalar_in(
        db,
        "SELECT count(*) FROM pg_policies WHERE schemaname = 'public'",
        &[],
    )
    .await
}

/// `tenancy status` warns about `needle` (naming `what`), which makes it exit 1.
async fn assert_status_warns(needle: &str, what: &str) {
    let mut env = TestEnv::new().await;
    let s = applied_by_the_cli(&mut env).await;
    let (code, v) = detailed_status(&env, &s);
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains(needle), "{what} warned: {warnings}");
    assert_eq!(code, Some(1), "warnings make status exit 1");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_reports_where_each_setting_came_from() {
    let mut env = TestEnv::new().await;
    let s = applied_by_the_cli(&mut env).await;
    let (_, v) = detailed_status(&env, &s);
    assert_eq!(v["config"]["enabled"]["value"], true);
    assert_eq!(v["config"]["enabled"]["source"]["env"], "TENANCY_ENABLED");
    let site = v["config"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "site")
        .unwrap();
    assert_eq!(site["enabled"]["value"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_reports_each_tables_protection() {
    let mut env = TestEnv::new().await;
    let s = applied_by_the_cli(&mut env).await;
    let (_, v) = detailed_status(&env, &s);
    let tables = v["database"]["tables"].as_array().unwrap();
    let notes = tables.iter().find(|t| t["table"] == "notes").unwrap();
    assert_eq!(notes["indexed"], false);
    assert_eq!(notes["rls_forced"], true);
    let customers = tables.iter().find(|t| t["table"] == "customers").unwrap();
    assert_eq!(customers["indexed"], true);
    assert_eq!(customers["policy_current"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_warns_about_an_unindexed_tenant_column() {
    assert_status_warns("notes", "missing index").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_warns_about_a_superuser_app_role() {
    assert_status_warns("postgres", "superuser app role").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenancy_apply_without_a_secret_is_refused() {
    let mut env = TestEnv::new().await;
    let s = applied_by_the_cli(&mut env).await;
    env.extra_env.remove("TENANCY_CONTEXT_SECRET");
    env.refused(
        &["tenancy", "apply", "--database", &s.db],
        "TENANCY_CONTEXT_SECRET",
    );
    assert_eq!(policies(&s.db).await, 3, "nothing was changed");
}

/// The protection applied by the CLI, then `TENANCY_ENABLED` unset with no
/// multi-tenant channel: auto-detect says off.
async fn auto_detected_off(env: &mut TestEnv) -> Shared {
    let s = applied_by_the_cli(env).await;
    env.extra_env.remove("TENANCY_CONTEXT_SECRET");
    env.extra_env.remove("TENANCY_ENABLED");
    assert_eq!(policies(&s.db).await, 3, "customers, orders, notes");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auto_detected_off_keeps_the_protection_without_force() {
    let mut env = TestEnv::new().await;
    let s = auto_detected_off(&mut env).await;
    let stderr = env.refused(&["tenancy", "apply", "--database", &s.db], "");
    assert!(
        stderr.contains("auto-detect")
            && stderr.contains("--force")
            && stderr.contains("public.customers"),
        "{stderr}"
    );
    assert_eq!(policies(&s.db).await, 3, "nothing was changed");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicitly_disabled_mode_removes_the_protection() {
    let mut env = TestEnv::new().await;
    let s = auto_detected_off(&mut env).await;
    env.ok_with(
        &["tenancy", "apply", "--database", &s.db],
        &[("TENANCY_ENFORCEMENT_MODE", "disabled")],
    );
    assert_eq!(policies(&s.db).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_force_removes_the_protection_auto_detect_turns_off() {
    let mut env = TestEnv::new().await;
    let s = auto_detected_off(&mut env).await;
    let out = env.ok(&["tenancy", "apply", "--database", &s.db, "--force"]);
    assert!(
        out.contains("removed") && out.contains("public.customers"),
        "{out}"
    );
    assert_eq!(policies(&s.db).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_with_nothing_to_remove_needs_no_force() {
    let mut env = TestEnv::new().await;
    let s = auto_detected_off(&mut env).await;
    env.ok(&["tenancy", "apply", "--database", &s.db, "--force"]);
    env.ok(&["tenancy", "apply", "--database", &s.db]);
    assert_eq!(policies(&s.db).await, 0);
}

/// Three shared tenants, alpha, beta and gamma, created through the
/// lifecycle in one protected shared database, 50 customers and 50 orders
/// each (notes full of COPY's special characters).
struct ThreeShared {
    s: Shared,
    /// (slug, tenant key) of alpha, beta and gamma.
    keys: Vec<(String, String)>,
}

async fn three_shared_tenants(env: &mut TestEnv) -> ThreeShared {
    let s = shared_db(env, 0, 0).await;
    env.set_env(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_EXEMPT_TABLES", "audit_events"),
    ]);
    env.ok(&["tenancy", "apply", "--database", &s.db]);
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
        assert_eq!(t.isolation, landlord::tenants::Isolation::Shared);
        assert_eq!(t.status, landlord::tenants::TenantStatus::Active);
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
    ThreeShared { s, keys }
}

/// Per tenant key: row count and checksum of its customers and orders.
async fn shared_snapshot(db: &str) -> Vec<(i64, i64, String)> {
    rows_in(
        db,
        "SELECT tenant_id, count(*), md5(string_agg(x, '|' ORDER BY x)) FROM \
         (SELECT tenant_id, row(c.*)::text AS x FROM customers c \
          UNION ALL SELECT tenant_id, row(o.*)::text FROM orders o) s \
         GROUP BY tenant_id ORDER BY 1",
    )
    .await
}

/// Three shared tenants and a backup of beta: the tenants and the snapshot
/// the backup holds.
async fn beta_backed_up(env: &mut TestEnv) -> (ThreeShared, Vec<(i64, i64, String)>) {
    let three = three_shared_tenants(env).await;
    let before = shared_snapshot(&three.s.db).await;
    let out = env.run(&["backup", "--tenant", &three.keys[1].0, "--sync", "--json"]);
    let job = sync_result(&out);
    assert_eq!(job["status"], "succeeded", "{job}");
    (three, before)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_tenants_restore_replaces_only_its_rows() {
    let mut env = TestEnv::new().await;
    let (three, before) = beta_backed_up(&mut env).await;
    let (beta, beta_key) = three.keys[1].clone();
    // Damage beta, and change alpha (which the restore must not undo).
    admin_exec(
        &three.s.db,
        &format!(
            "DELETE FROM orders WHERE tenant_id = {beta_key} AND id % 2 = 0;
             UPDATE customers SET name = 'renamed' WHERE tenant_id = {beta_key};
             UPDATE customers SET name = 'alpha changed' WHERE tenant_id = {}",
            three.keys[0].1
        ),
    )
    .await;
    let alpha_after = shared_snapshot(&three.s.db).await[0].clone();
    env.ok(&["restore", &beta, "--latest", "--yes", "--sync"]);
    let after = shared_snapshot(&three.s.db).await;
    assert_eq!(after[1], before[1], "beta restored exactly");
    assert_eq!(after[0], alpha_after, "alpha untouched by beta's restore");
    assert_eq!(after[2], before[2], "gamma untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_restore_test_of_a_shared_tenant_rolls_back() {
    let mut env = TestEnv::new().await;
    let (three, before) = beta_backed_up(&mut env).await;
    // verify --restore-test is a rolled-back import.
    let out = env.run(&[
        "backups",
        "verify",
        "--tenant",
        &three.keys[1].0,
        "--restore-test",
        "--sync",
        "--json",
    ]);
    let job = sync_result(&out);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(shared_snapshot(&three.s.db).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_shared_tenant_removes_only_its_rows() {
    let mut env = TestEnv::new().await;
    let three = three_shared_tenants(&mut env).await;
    let (beta, beta_key) = three.keys[1].clone();
    env.ok(&[
        "tenants",
        "delete",
        &beta,
        "--no-final-backup",
        "--now",
        "--sync",
    ]);
    let left = shared_snapshot(&three.s.db).await;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|r| r.0.to_string() != beta_key));
    // The shared database stays.
    assert!(database_exists(&three.s.db).await);
}

/// Three shared tenants whose every other order was placed 400 days ago:
/// the tenants, and alpha's and gamma's old order counts.
async fn with_old_orders(env: &mut TestEnv) -> (ThreeShared, i64, i64) {
    let three = three_shared_tenants(env).await;
    admin_exec(
        &three.s.db,
        "ALTER TABLE orders ADD COLUMN placed_at timestamptz NOT NULL DEFAULT now();
         UPDATE orders SET placed_at = now() - interval '400 days' WHERE id % 2 = 0",
    )
    .await;
    let alpha_old = old_orders(&three.s.db, &three.keys[0].1).await;
    let gamma_old = old_orders(&three.s.db, &three.keys[2].1).await;
    assert!(alpha_old > 0 && gamma_old > 0);
    (three, alpha_old, gamma_old)
}

/// Orders of tenant `key` placed more than 365 days ago.
async fn old_orders(db: &str, key: &str) -> i64 {
    let sql = format!(
        "SELECT count(*) FROM orders WHERE tenant_id = {key} AND placed_at < now() - interval '365 days'"
    );
    scalar_in(db, &sql, &[]).await
}

/// `maintenance --cleanup --days 365` of gamma's orders, waited for.
fn clean_gamma(env: &TestEnv, three: &ThreeShared, dry: bool) -> Value {
    let mut args = vec![
        "maintenance",
        "--tenant",
        three.keys[2].0.as_str(),
        "--cleanup",
        "--days",
        "365",
    ];
    if dry {
        args.push("--dry-run");
    }
    args.extend(["--sync", "--json"]);
    let out = env.run_with(&args, &[("LANDLORD_CLEANUP_RULES", "orders:placed_at")]);
    let job = sync_result(&out);
    assert_eq!(job["status"], "succeeded", "{job}\n{}", stderr(&out));
    job
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_tenants_cleanup_dry_run_counts_without_deleting() {
    let mut env = TestEnv::new().await;
    let (three, _, gamma_old) = with_old_orders(&mut env).await;
    let dry = clean_gamma(&env, &three, true);
    assert_eq!(
        dry["result"]["steps"]["cleanup"]["rows"].as_i64(),
        Some(gamma_old),
        "{dry}"
    );
    assert_eq!(old_orders(&three.s.db, &three.keys[2].1).await, gamma_old);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_tenants_cleanup_deletes_only_its_own_old_rows() {
    let mut env = TestEnv::new().await;
    let (three, alpha_old, gamma_old) = with_old_orders(&mut env).await;
    let real = clean_gamma(&env, &three, false);
    assert_eq!(
        real["result"]["steps"]["cleanup"]["rows"].as_i64(),
        Some(gamma_old),
        "{real}"
    );
    assert_eq!(
        old_orders(&three.s.db, &three.keys[2].1).await,
        0,
        "gamma's old rows gone"
    );
    assert_eq!(
        old_orders(&three.s.db, &three.keys[0].1).await,
        alpha_old,
        "alpha's untouched"
    );
}

/// A pool that never connects: `TenantDb::new` only checks the configuration.
fn lazy_pool() -> PgPool {
    PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap()
}

#[tokio::test]
async fn disabled_mode_needs_no_secret() {
    let off = config(&[("TENANCY_ENABLED", "false")]);
    assert_eq!(off.effective_mode(), EnforcementMode::Disabled);
    assert!(TenantDb::new(lazy_pool(), None, &off).is_ok());
    let explicit_off = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "disabled"),
    ]);
    assert!(TenantDb::new(lazy_pool(), None, &explicit_off).is_ok());
}

#[tokio::test]
async fn enforced_modes_need_a_secret() {
    for mode in ["strict", "soft"] {
        let on = config(&[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_ENFORCEMENT_MODE", mode),
        ]);
        assert!(on.context_secret.is_none());
        assert_eq!(on.effective_mode().as_str(), mode);
        let e = TenantDb::new(lazy_pool(), None, &on).err().unwrap();
        assert!(matches!(e, TenancyError::NoSecret), "{mode}: {e}");
        let with_secret = config(&[
            ("TENANCY_ENABLED", "true"),
            ("TENANCY_ENFORCEMENT_MODE", mode),
            ("TENANCY_CONTEXT_SECRET", SECRET),
        ]);
        assert!(
            TenantDb::new(lazy_pool(), None, &with_secret).is_ok(),
            "{mode}"
        );
    }
}

async fn violation_count(admin: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.violations")
        .fetch_one(admin)
        .await
        .unwrap()
}

/// The seed's case 3: admin isolated, the public site unfiltered, soft mode.
/// A shared database of 5 tenants × 4 customers plus `error_logs` (on the
/// seed's default exempt list), and the contexts as the JWT layer resolves
/// them, one per channel, for tenant 2.
struct Hybrid {
    s: Shared,
    applied: Vec<install::Applied>,
    cfg: std::sync::Arc<TenancyConfig>,
    app: PgPool,
    bypass: PgPool,
    tdb: TenantDb,
    /// A superuser connection, for the violation log and the bypass audit.
    admin: PgConnection,
    violations_before: i64,
    admin_ctx: TenantContext,
    site_ctx: TenantContext,
}

impl Hybrid {
    async fn new(env: &TestEnv) -> Hybrid {
        let s = shared_db(env, 5, 4).await;
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
        let app = pool_as(&s.role, &s.db).await;
        let bypass = pool_as(&s.bypass_role, &s.db).await;
        let tdb = TenantDb::new(app.clone(), Some(bypass.clone()), &cfg).unwrap();
        let mut admin = PgConnection::connect(&format!("{PG_SERVER}/{}", s.db))
            .await
            .unwrap();
        let violations_before = violation_count(&mut admin).await;
        let cfg = std::sync::Arc::new(cfg);
        let admin_ctx =
            landlord::tenancy::jwt::resolve(&gate(&cfg, "admin"), &token("admin", Some("2")))
                .unwrap();
        let site_ctx =
            landlord::tenancy::jwt::resolve(&gate(&cfg, "site"), &token("site", Some("2")))
                .unwrap();
        assert_eq!(admin_ctx.tenant.as_deref(), Some("2"));
        assert_eq!(site_ctx.tenant, None);
        Hybrid {
            s,
            applied,
            cfg,
            app,
            bypass,
            tdb,
            admin,
            violations_before,
            admin_ctx,
            site_ctx,
        }
    }

    async fn close(self) {
        self.admin.close().await.ok();
        self.app.close().await;
        self.bypass.close().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_hybrid_case_the_admin_channel_sees_only_its_tenant() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    let mut tx = h.tdb.begin(&h.admin_ctx).await.unwrap();
    let seen: Vec<i64> = sqlx::query_scalar("SELECT tenant_id FROM customers")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![2; 4], "admin sees only its tenant");
    tx.commit().await.unwrap();
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_the_hybrid_case_the_site_channel_sees_every_row() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    let mut tx = h.tdb.begin(&h.site_ctx).await.unwrap();
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
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfiltered_channel_ignores_a_contexts_tenant() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    // The channel decides, not a tenant a context happens to carry.
    let carrying_3 = TenantContext {
        tenant: Some("3".into()),
        ..h.site_ctx.clone()
    };
    assert_eq!(customers_seen(&h.tdb, &carrying_3).await, 20);
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfiltered_channel_is_neither_a_violation_nor_a_bypass() {
    let env = TestEnv::new().await;
    let mut h = Hybrid::new(&env).await;
    assert_eq!(customers_seen(&h.tdb, &h.site_ctx).await, 20);
    assert_eq!(
        violation_count(&mut h.admin).await,
        h.violations_before,
        "the unfiltered site channel is configuration, not a violation"
    );
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM landlord_tenancy.bypasses")
        .fetch_one(&mut h.admin)
        .await
        .unwrap();
    assert_eq!(audited, 0, "nor an audited bypass");
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_on_the_default_exempt_list_is_left_unfiltered() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    let error_logs = h.applied.iter().find(|a| a.table == "error_logs").unwrap();
    assert_eq!(error_logs.action, "exempt", "{:?}", h.applied);
    // Even for the isolated admin channel.
    assert_eq!(
        count_in(&h.tdb, &h.admin_ctx, "SELECT count(*) FROM error_logs").await,
        2
    );
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn in_soft_mode_an_admin_query_without_a_tenant_runs_recorded() {
    let env = TestEnv::new().await;
    let mut h = Hybrid::new(&env).await;
    // Allowed and recorded (the seed's CLI/jobs).
    let no_tenant = TenantContext {
        tenant: None,
        ..h.admin_ctx.clone()
    };
    assert_eq!(customers_seen(&h.tdb, &no_tenant).await, 20);
    assert_eq!(violation_count(&mut h.admin).await, h.violations_before + 1);
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unfiltered_channel_without_a_bypass_role_is_refused() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    let no_bypass = TenantDb::new(h.app.clone(), None, &h.cfg).unwrap();
    let e = no_bypass.begin(&h.site_ctx).await.unwrap_err();
    assert!(
        matches!(e, TenancyError::UnisolatedNoBypass(ref ch) if ch == "site"),
        "{e}"
    );
    assert!(e.to_string().contains("TENANCY_BYPASS_URL"), "{e}");
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn isolated_channels_need_no_bypass_role() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    let no_bypass = TenantDb::new(h.app.clone(), None, &h.cfg).unwrap();
    let n = customers_seen(&no_bypass, &h.admin_ctx).await;
    assert_eq!(n, 4, "isolated channels do not need it");
    h.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hybrid_channels_hold_in_strict_mode() {
    let env = TestEnv::new().await;
    let h = Hybrid::new(&env).await;
    // The same channels in strict mode: site still unfiltered, admin isolated.
    let strict_hybrid = config(&[
        ("TENANCY_ENABLED", "true"),
        ("TENANCY_ENFORCEMENT_MODE", "strict"),
        ("TENANCY_CONTEXT_SECRET", SECRET),
        ("TENANCY_ADMIN_TENANT_MODE", "multi"),
        ("TENANCY_SITE_TENANT_MODE", "single"),
    ]);
    apply(&h.s.db, &strict_hybrid).await;
    let tdb = TenantDb::new(h.app.clone(), Some(h.bypass.clone()), &strict_hybrid).unwrap();
    for (c, want) in [(&h.site_ctx, 20), (&h.admin_ctx, 4)] {
        assert_eq!(customers_seen(&tdb, c).await, want, "channel {}", c.channel);
    }
    h.close().await;
}

/// The tower/axum layer itself, in a router on a real socket: `/whoami`
/// answers the context the layer put on the request.
struct Layered {
    url: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Layered {
    async fn start() -> Layered {
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
        let app =
            Router::new()
                .route("/whoami", get(whoami))
                .layer(middleware::from_fn_with_state(
                    gate,
                    landlord::tenancy::jwt::tenant_context,
                ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Layered {
            url: format!("http://{addr}/whoami"),
            http: {
                landlord::tls::install_default_crypto();
                reqwest::Client::new()
            },
            server,
        }
    }

    /// Status and body of `/whoami` with this authorization header.
    async fn call(&self, auth: Option<String>) -> (u16, String) {
        let mut req = self.http.get(&self.url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

impl Drop for Layered {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A token of `u1` for tenant 3 on channel `aud`, expiring `exp_in` seconds from now.
fn token_for(aud: &str, exp_in: i64) -> String {
    let exp = chrono::Utc::now().timestamp() + exp_in;
    sign(&serde_json::json!({"sub": "u1", "aud": aud, "tid": "3", "exp": exp}))
}

#[tokio::test]
async fn the_axum_layer_puts_the_tokens_context_on_the_request() {
    let l = Layered::start().await;
    let (status, body) = l
        .call(Some(format!("Bearer {}", token_for("admin", 600))))
        .await;
    assert_eq!(status, 200, "{body}");
    let ctx: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ctx,
        serde_json::json!({"tenant": "3", "channel": "admin", "actor": "u1", "superuser": false})
    );
}

#[tokio::test]
async fn the_axum_layer_requires_a_bearer_token() {
    let l = Layered::start().await;
    let (status, body) = l.call(None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token is required"), "{body}");
    let (status, _) = l
        .call(Some(format!("Basic {}", token_for("admin", 600))))
        .await;
    assert_eq!(status, 401, "only Bearer");
}

#[tokio::test]
async fn the_axum_layer_refuses_an_expired_token() {
    let l = Layered::start().await;
    let (status, body) = l
        .call(Some(format!("Bearer {}", token_for("admin", -3600))))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("invalid token"), "{body}");
}

#[tokio::test]
async fn the_axum_layer_refuses_a_token_for_another_channel() {
    let l = Layered::start().await;
    let (status, _) = l
        .call(Some(format!("Bearer {}", token_for("site", 600))))
        .await;
    assert_eq!(status, 401, "audience must be the route's channel");
}

/// Shared-tenant transfers of tenant 2 ("beta") of a strict shared
/// database (3 tenants of 4 customers), through single-connection pools of
/// a chosen role.
struct Transfers {
    s: Shared,
    tenant: landlord::tenants::Tenant,
    scope: landlord::backup::shared::Scope,
}

/// Per tenant key: count and checksum of customers and orders; and the
/// number of countries (a table a tampered header would drop).
type SharedState = (Vec<(i64, i64, String)>, i64);

fn beta(db: &str) -> landlord::tenants::Tenant {
    landlord::tenants::Tenant {
        id: 2,
        slug: "beta".into(),
        name: "Beta".into(),
        plan: "pro".into(),
        status: landlord::tenants::TenantStatus::Active,
        status_reason: None,
        isolation: landlord::tenants::Isolation::Shared,
        db_server: "default".into(),
        db_name: db.to_string(),
        settings: serde_json::json!({}),
        schema_version: 0,
        owner_id: None,
        provision_step: landlord::tenants::ProvisionStep::Done,
        db_role: None,
        tenant_key: Some("2".into()),
        provisioned_at: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    }
}

impl Transfers {
    async fn new(env: &TestEnv) -> Transfers {
        use landlord::backup::shared;
        let s = shared_db(env, 3, 4).await;
        apply(&s.db, &strict()).await;
        let tenant = beta(&s.db);
        let scope = shared::Scope {
            column: "tenant_id".into(),
            exempt: vec!["audit_events".into()],
        };
        Transfers { s, tenant, scope }
    }

    async fn one(&self, role: &str) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("postgres://{role}@127.0.0.1:5432/{}", self.s.db))
            .await
            .unwrap()
    }

    /// The tenant's rows exported as `role`.
    async fn export(&self, role: &str) -> Result<Vec<u8>, String> {
        let pool = self.one(role).await;
        let (t, scope) = (self.tenant.clone(), self.scope.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let task = tokio::spawn(async move {
            let r = landlord::backup::shared::export_on(&pool, &t, &scope, tx).await;
            pool.close().await;
            r
        });
        let mut bytes = Vec::new();
        while let Some(b) = rx.recv().await {
            bytes.extend_from_slice(&b);
        }
        task.await
            .unwrap()
            .map(|_| bytes)
            .map_err(|e| format!("{e:#}"))
    }

    /// `bytes` imported as `role`, committed or rolled back.
    async fn import(
        &self,
        role: &str,
        bytes: Vec<u8>,
        commit: bool,
    ) -> Result<landlord::backup::shared::Imported, String> {
        let pool = self.one(role).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (go, decided) = tokio::sync::oneshot::channel();
        tx.send(bytes::Bytes::from(bytes)).await.unwrap();
        drop(tx);
        go.send(commit).unwrap();
        let r = landlord::backup::shared::import_on(&pool, &self.tenant, &self.scope, rx, decided)
            .await
            .map_err(|e| format!("{e:#}"));
        pool.close().await;
        r
    }

    /// The tenant's rows deleted as `role`.
    async fn delete(&self, role: &str) -> Result<(), String> {
        let pool = self.one(role).await;
        let r = landlord::backup::shared::delete_on(&pool, "2", &self.scope)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        pool.close().await;
        r
    }

    async fn snapshot(&self) -> SharedState {
        let countries = scalar_in(&self.s.db, "SELECT count(*) FROM countries", &[]).await;
        (shared_snapshot(&self.s.db).await, countries)
    }
}

/// Shared-tenant transfers trust nothing from the backup file that reaches SQL.
#[tokio::test(flavor = "multi_thread")]
async fn an_untouched_shared_export_imports_its_rows() {
    let env = TestEnv::new().await;
    let t = Transfers::new(&env).await;
    let backup = t.export("postgres").await.unwrap();
    let text = String::from_utf8(backup.clone()).unwrap();
    assert!(
        text.starts_with("\\Llandlord-shared v1 "),
        "{}",
        &text[..80.min(text.len())]
    );
    // A dry run: rolled back.
    let done = t.import("postgres", backup, false).await.unwrap();
    assert!(!done.committed);
    assert_eq!(done.rows.values().sum::<u64>(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_import_refuses_a_header_that_would_splice_sql() {
    let env = TestEnv::new().await;
    let t = Transfers::new(&env).await;
    let before = t.snapshot().await;
    let backup = t.export("postgres").await.unwrap();
    let text = String::from_utf8(backup.clone()).unwrap();
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
    let e = t.import("postgres", tampered, true).await.unwrap_err();
    assert!(e.contains("has type") && e.contains("bigint"), "{e}");
    assert_eq!(
        t.snapshot().await,
        before,
        "nothing changed, countries still there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_transfers_refuse_a_role_that_rls_filters() {
    let env = TestEnv::new().await;
    let t = Transfers::new(&env).await;
    let before = t.snapshot().await;
    let backup = t.export("postgres").await.unwrap();
    // Refused, by name, for all three.
    let role = t.s.role.clone();
    let e = t.export(&role).await.map(|_| ());
    let i = t.import(&role, backup, false).await.map(|_| ());
    let d = t.delete(&role).await;
    for r in [e, i, d] {
        let msg = r.unwrap_err();
        assert!(
            msg.contains("neither a superuser nor BYPASSRLS") && msg.contains(&role),
            "{msg}"
        );
    }
    assert_eq!(t.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_transfers_run_under_a_bypassrls_role() {
    let env = TestEnv::new().await;
    let t = Transfers::new(&env).await;
    let before = t.snapshot().await;
    let backup = t.export("postgres").await.unwrap();
    let role = t.s.bypass_role.clone();
    t.export(&role).await.unwrap();
    t.import(&role, backup, false).await.unwrap();
    t.delete(&role).await.unwrap();
    // The delete ran: tenant 2's rows are gone, the others' stay.
    let after = t.snapshot().await;
    assert_eq!(after.0.len(), 2);
    assert!(after.0.iter().all(|r| r.0 != 2));
    assert_eq!(after.0[0], before.0[0]);
    assert_eq!(after.0[1], before.0[2]);
}

/// The seed's command as written: `tenancy status --detailed` with no
/// `--database` inspects every shared database the catalog knows (it used to
/// fail with "--detailed needs --database"), and its table keeps its columns
/// aligned whatever the length of a table's name.
#[tokio::test(flavor = "multi_thread")]
async fn tenancy_status_detailed_inspects_every_shared_database_of_the_catalog() {
    let mut env = TestEnv::new().await;
    let three = three_shared_tenants(&mut env).await;
    let long = "a_table_whose_name_is_longer_than_thirty_two_characters";
    admin_exec(
        &three.s.db,
        &format!("CREATE TABLE {long} (id bigserial PRIMARY KEY, tenant_id bigint)"),
    )
    .await;
    let out = env.run(&["tenancy", "status", "--detailed", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    let dbs = v["databases"].as_array().expect("databases");
    assert_eq!(dbs.len(), 1, "one shared database, once: {v:#}");
    assert_eq!(dbs[0]["database"], three.s.db.as_str());
    assert_eq!(dbs[0]["server"], "default");
    let tables: Vec<&str> = dbs[0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains(&"customers") && tables.contains(&long),
        "{tables:?}"
    );
    // The new table has no policy: a warning, so exit 1, naming it.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        v["warnings"].to_string().contains(long),
        "{}",
        v["warnings"]
    );

    let text = stdout(&env.run(&["tenancy", "status", "--detailed"]));
    let header = text
        .lines()
        .find(|l| l.starts_with("TABLE"))
        .unwrap_or_else(|| panic!("no table in: {text}"));
    let col = header.find("COLUMN").unwrap();
    for line in text.lines().filter(|l| l.starts_with("public.")) {
        assert_eq!(
            line.char_indices().nth(col).map(|(_, c)| c == ' '),
            Some(false),
            "the COLUMN column starts at the same offset on every row:\n{text}"
        );
        assert_eq!(&line[col - 2..col], "  ", "{text}");
    }
}
