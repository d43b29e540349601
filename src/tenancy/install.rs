//! Installing and removing row-level tenancy in one database: the
//! `landlord_tenancy` schema (signing secret, violation log, bypass audit,
//! registry of protected tables, the definer function that verifies the
//! transaction-local tenant context) and, on every table with the tenant
//! column, forced row-level security with one policy and two triggers.
//! [`apply`] is idempotent and runs in one transaction. In mode `disabled` it
//! removes all of it again: policies, triggers, functions, the secret, the
//! registry and the settings; only the two logs (`violations`, `bypasses`)
//! are kept while they hold rows, as the record of what happened.
//!
//! This file is the security boundary of seed 004. It must never splice a
//! name or value into SQL unquoted (table, schema and role names from the
//! catalog pass [`quote_ident`], the tenant column is validated first, the
//! secret is always a bound parameter), never let anyone but the installing
//! owner read `landlord_tenancy.secret`, never install into a schema another
//! role owns, never leave a function with a caller-controlled `search_path`,
//! and never touch policies or triggers it did not install: when it stops
//! protecting a table it drops only its own objects and puts the table's
//! row-level security switches back as they were before landlord.

use anyhow::{Context, Result, bail};
use sqlx::{PgPool, Postgres, Transaction};

use super::EnforcementMode;
use crate::ident::quote_ident;

/// The schema holding the secret, the violation log and the functions.
pub const SCHEMA: &str = "landlord_tenancy";
/// The name of the one policy installed on each protected table.
pub const POLICY_NAME: &str = "landlord_tenant_isolation";
/// The BEFORE INSERT trigger filling a missing tenant from the context.
pub const FILL_TRIGGER: &str = "landlord_tenancy_fill";
/// The BEFORE UPDATE trigger refusing to move a row to another tenant.
pub const GUARD_TRIGGER: &str = "landlord_tenancy_guard";
/// Shortest signing secret accepted: anything shorter can be guessed.
pub const MIN_SECRET_LEN: usize = 16;
/// How long `apply` waits for a table lock before giving up (ALTER TABLE and
/// CREATE POLICY take ACCESS EXCLUSIVE locks; a waiting one blocks every
/// later query on the table, so it must not wait long).
const LOCK_TIMEOUT: &str = "10s";
/// Serialises concurrent `apply` runs on one database.
const ADVISORY_LOCK_KEY: i64 = 0x6c61_6e64_6c6f_7264; // "landlord"

/// What `apply` should leave in the database.
pub struct Plan<'a> {
    pub mode: EnforcementMode,
    /// The tenant column: `[a-z_][a-z0-9_]*`, at most 63 characters.
    pub column: &'a str,
    /// Tables left unprotected: `"t"` (that name in every schema) or `"schema.t"`.
    pub exempt: &'a [String],
    /// The signing secret shared with the scoped executor (unused when disabled).
    pub secret: &'a [u8],
}

/// What `apply` did to one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub schema: String,
    pub table: String,
    /// `installed`, `updated`, `unchanged`, `removed` or `exempt`.
    pub action: String,
}

/// The version string stored as the policy comment; a table whose comment
/// equals it (and whose RLS switches and triggers are in place) is current.
pub fn policy_version(mode: EnforcementMode, column: &str) -> String {
    format!("landlord-tenancy v2 mode={} column={column}", mode.as_str())
}

/// The tenant column must be a plain lowercase identifier.
pub fn validate_column(column: &str) -> Result<()> {
    let ok = !column.is_empty()
        && column.len() <= 63
        && column.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        bail!("tenant column {column:?} must match [a-z_][a-z0-9_]* and be at most 63 characters");
    }
    Ok(())
}

/// Whether `schema.table` is named by an exempt entry (`"t"` matches the
/// table in every schema, `"s.t"` only in schema `s`; names are compared
/// exactly as the catalog spells them).
pub fn is_exempt(exempt: &[String], schema: &str, table: &str) -> bool {
    exempt.iter().any(|e| {
        let e = e.trim();
        match e.split_once('.') {
            Some((s, t)) => s == schema && t == table,
            None => e == table,
        }
    })
}

/// Idempotently installs (strict/soft) or removes (disabled) enforcement on
/// every table with the column in every non-system schema. Runs as a
/// superuser/owner connection. One transaction.
pub async fn apply(db: &PgPool, plan: &Plan<'_>) -> Result<Vec<Applied>> {
    validate_column(plan.column)?;
    if plan.mode != EnforcementMode::Disabled && plan.secret.len() < MIN_SECRET_LEN {
        bail!(
            "the tenancy signing secret is {} bytes long; at least {MIN_SECRET_LEN} are required",
            plan.secret.len()
        );
    }
    let mut tx = db
        .begin()
        .await
        .context("starting the tenancy transaction")?;
    // Every name below is resolved in pg_catalog only: types in other schemas
    // come out of format_type() schema-qualified, and nothing a user created
    // can shadow an operator or function used by the policies.
    run(
        &mut tx,
        &format!(
            "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        ),
    )
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await?;

    check_schema_owners(&mut tx).await?;
    if plan.mode != EnforcementMode::Disabled {
        install_support(&mut tx, plan.mode, plan.secret).await?;
    }

    let registry: bool =
        sqlx::query_scalar("SELECT to_regclass('landlord_tenancy.managed') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
    let mut managed: Vec<(i64, bool, bool)> = Vec::new();
    if registry {
        sqlx::query(
            "DELETE FROM landlord_tenancy.managed m
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = m.rel::oid)",
        )
        .execute(&mut *tx)
        .await?;
        managed = sqlx::query_as(
            "SELECT rel::oid::int8, rls_was_enabled, rls_was_forced FROM landlord_tenancy.managed",
        )
        .fetch_all(&mut *tx)
        .await?;
    }
    let managed_oids: Vec<i64> = managed.iter().map(|m| m.0).collect();

    let candidates: Vec<(i64,)> = sqlx::query_as(CANDIDATES_SQL)
        .bind(plan.column)
        .bind(POLICY_NAME)
        .bind([FILL_TRIGGER, GUARD_TRIGGER])
        .bind(&managed_oids)
        .fetch_all(&mut *tx)
        .await
        .context("listing the tables with the tenant column")?;

    let mut applied = Vec::with_capacity(candidates.len());
    for (oid,) in candidates {
        // Read each table's state afresh: installing triggers on a
        // partitioned table changes its partitions.
        let Some(state) = table_states(&mut tx, plan.column, Some(oid))
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        let record = registry.then(|| {
            managed
                .iter()
                .find(|m| m.0 == oid)
                .map(|&(_, enabled, forced)| Prior { enabled, forced })
        });
        let action = apply_table(&mut tx, plan, &state, record)
            .await
            .with_context(|| format!("table {}.{}", state.schema, state.table))?;
        if let Some(action) = action {
            applied.push(Applied {
                schema: state.schema,
                table: state.table,
                action: action.to_owned(),
            });
        }
    }
    if plan.mode == EnforcementMode::Disabled {
        // Every table is unprotected by now: nothing of ours uses the
        // functions any more.
        remove_support(&mut tx).await?;
    }
    tx.commit()
        .await
        .context("committing the tenancy changes")?;
    applied.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    Ok(applied)
}

/// Tables `apply` looks at: those with the column and those carrying any of
/// our objects, parents of partitions before their partitions.
const CANDIDATES_SQL: &str = r#"
SELECT c.oid::int8
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'landlord_tenancy')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   AND (EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2)
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = ANY ($3))
        OR c.oid IN (SELECT x::oid FROM unnest($4::int8[]) x))
 ORDER BY (SELECT count(*) FROM pg_catalog.pg_partition_ancestors(c.oid)), n.nspname, c.relname
"#;

/// One table as the catalog describes it, with landlord's objects on it.
#[derive(Debug, Clone)]
pub(crate) struct TableState {
    pub oid: i64,
    pub schema: String,
    pub table: String,
    pub relkind: String,
    /// The column's type without typmod (what the policy casts the setting to).
    pub column_type: Option<String>,
    /// The column's declared type, for display.
    pub column_type_full: Option<String>,
    pub indexed: bool,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    pub policy_exists: bool,
    pub policy_comment: Option<String>,
    /// Our policy is permissive, FOR ALL and TO PUBLIC.
    pub policy_shape_ok: bool,
    /// Names of the table's other policies, and of those that are permissive.
    pub other_policies: Vec<String>,
    pub other_permissive: Vec<String>,
    pub fill: Trigger,
    pub guard: Trigger,
}

/// One of our triggers on a table.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Trigger {
    pub exists: bool,
    /// Cloned from a partitioned parent (managed there, cannot be dropped here).
    pub cloned: bool,
    /// Enabled and calling our function.
    pub ok: bool,
}

impl TableState {
    pub fn has_column(&self) -> bool {
        self.column_type.is_some()
    }

    /// Whether the table carries objects of ours that `apply` would drop
    /// when the table is not (or no longer) protected. Triggers cloned from a
    /// partitioned parent are the parent's business.
    pub fn has_removable(&self) -> bool {
        self.policy_exists
            || (self.fill.exists && !self.fill.cloned)
            || (self.guard.exists && !self.guard.cloned)
    }

    /// Whether the table is protected exactly as `apply` would leave it.
    pub fn is_current(&self, mode: EnforcementMode, column: &str) -> bool {
        self.policy_exists
            && self.policy_shape_ok
            && self.policy_comment.as_deref() == Some(policy_version(mode, column).as_str())
            && self.rls_enabled
            && self.rls_forced
            && self.fill.ok
            && self.guard.ok
    }

    /// Whether `apply` with this configuration would protect the table.
    pub fn should_protect(&self, mode: EnforcementMode, exempt: &[String]) -> bool {
        mode != EnforcementMode::Disabled
            && self.has_column()
            && !is_exempt(exempt, &self.schema, &self.table)
    }

    fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

const STATES_SQL: &str = r#"
SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text,
       pg_catalog.format_type(a.atttypid, NULL), pg_catalog.format_type(a.atttypid, a.atttypmod),
       c.relrowsecurity, c.relforcerowsecurity,
       COALESCE((SELECT bool_or(i.indisvalid AND i.indpred IS NULL AND i.indkey[0] = a.attnum)
                   FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), false),
       pol.oid IS NOT NULL, pg_catalog.obj_description(pol.oid, 'pg_policy'),
       COALESCE(pol.polpermissive AND pol.polcmd = '*' AND pol.polroles = '{0}'::oid[], false),
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
              WHERE p.polrelid = c.oid AND p.polname <> $2 ORDER BY 1),
       ARRAY(SELECT p.polname::text FROM pg_catalog.pg_policy p
              WHERE p.polrelid = c.oid AND p.polname <> $2 AND p.polpermissive ORDER BY 1),
       fill.oid IS NOT NULL, COALESCE(fill.tgparentid <> 0, false),
       COALESCE(fill.tgenabled <> 'D' AND fill.tgfoid = pg_catalog.to_regprocedure('landlord_tenancy.fill_tenant()'), false),
       guard.oid IS NOT NULL, COALESCE(guard.tgparentid <> 0, false),
       COALESCE(guard.tgenabled <> 'D' AND guard.tgfoid = pg_catalog.to_regprocedure('landlord_tenancy.guard_tenant()'), false)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = c.oid AND a.attname = $1 AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_policy pol ON pol.polrelid = c.oid AND pol.polname = $2
  LEFT JOIN pg_catalog.pg_trigger fill ON fill.tgrelid = c.oid AND fill.tgname = $3
  LEFT JOIN pg_catalog.pg_trigger guard ON guard.tgrelid = c.oid AND guard.tgname = $4
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'landlord_tenancy')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
   AND ($5::int8 IS NULL OR c.oid = $5::int8::oid)
 ORDER BY n.nspname, c.relname
"#;

/// The state of one table (`only`) or of every user table.
pub(crate) async fn table_states(
    conn: &mut sqlx::PgConnection,
    column: &str,
    only: Option<i64>,
) -> Result<Vec<TableState>> {
    use sqlx::Row as _;
    let rows = sqlx::query(STATES_SQL)
        .bind(column)
        .bind(POLICY_NAME)
        .bind(FILL_TRIGGER)
        .bind(GUARD_TRIGGER)
        .bind(only)
        .fetch_all(conn)
        .await
        .context("reading the tables' row-level security state")?;
    rows.iter()
        .map(|r| {
            Ok(TableState {
                oid: r.try_get(0)?,
                schema: r.try_get(1)?,
                table: r.try_get(2)?,
                relkind: r.try_get(3)?,
                column_type: r.try_get(4)?,
                column_type_full: r.try_get(5)?,
                rls_enabled: r.try_get(6)?,
                rls_forced: r.try_get(7)?,
                indexed: r.try_get(8)?,
                policy_exists: r.try_get(9)?,
                policy_comment: r.try_get(10)?,
                policy_shape_ok: r.try_get(11)?,
                other_policies: r.try_get(12)?,
                other_permissive: r.try_get(13)?,
                fill: Trigger {
                    exists: r.try_get(14)?,
                    cloned: r.try_get(15)?,
                    ok: r.try_get(16)?,
                },
                guard: Trigger {
                    exists: r.try_get(17)?,
                    cloned: r.try_get(18)?,
                    ok: r.try_get(19)?,
                },
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .context("decoding the tables' row-level security state")
}

/// Refuses to install into a `landlord_tenancy` schema (or objects in it)
/// that someone other than a superuser or the installing role owns: its
/// owner could read the secret or replace the functions.
async fn check_schema_owners(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    let foreign: Vec<(String, String, String)> = sqlx::query_as(
        r#"
SELECT o.kind, o.name, r.rolname::text
  FROM (SELECT 'schema' AS kind, n.nspname::text AS name, n.nspowner AS owner
          FROM pg_catalog.pg_namespace n WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'relation', c.relname::text, c.relowner
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'function', p.proname::text, p.proowner
          FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'landlord_tenancy'
        UNION ALL
        SELECT 'type', t.typname::text, t.typowner
          FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'landlord_tenancy') o
  JOIN pg_catalog.pg_roles r ON r.oid = o.owner
 WHERE NOT (r.rolsuper OR r.rolname = current_user)
 ORDER BY 1, 2
"#,
    )
    .fetch_all(&mut **tx)
    .await
    .context("checking who owns the landlord_tenancy schema")?;
    if !foreign.is_empty() {
        let list: Vec<String> = foreign
            .iter()
            .map(|(kind, name, owner)| format!("{kind} {name} (owned by {owner})"))
            .collect();
        bail!(
            "refusing to install row-level tenancy: objects in schema {SCHEMA} belong to a role that is \
             neither a superuser nor the installing role, which could read the signing secret or \
             replace the checks: {}; drop the schema or change its owner first",
            list.join(", ")
        );
    }
    Ok(())
}

/// Disabled mode, after every table was unprotected: drops the functions,
/// the secret, the registry and the settings. The violation log and the
/// bypass audit are kept while they hold rows (they are the record of what
/// happened); the schema goes when nothing is left in it. Anything else
/// still using the functions (a policy of another author, say) makes this
/// fail, and the whole `apply` with it: nothing is dropped under a user.
async fn remove_support(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
    )
    .bind(SCHEMA)
    .fetch_one(&mut **tx)
    .await?;
    if !exists {
        return Ok(());
    }
    run(
        tx,
        "DROP FUNCTION IF EXISTS landlord_tenancy.current_tenant();
         DROP FUNCTION IF EXISTS landlord_tenancy.fill_tenant();
         DROP FUNCTION IF EXISTS landlord_tenancy.guard_tenant();
         DROP FUNCTION IF EXISTS landlord_tenancy.record_bypass(text, text, text, text, text);
         DROP TABLE IF EXISTS landlord_tenancy.secret, landlord_tenancy.settings, landlord_tenancy.managed",
    )
    .await
    .context(
        "removing landlord_tenancy's functions and secret (if other objects still use them, \
         drop those first or keep mode strict or soft)",
    )?;
    for log in ["violations", "bypasses"] {
        let table = qualified_support(log);
        let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(format!("{SCHEMA}.{log}"))
            .fetch_one(&mut **tx)
            .await?;
        if !present {
            continue;
        }
        let empty: bool = sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"))
            .fetch_one(&mut **tx)
            .await?;
        let used: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                             WHERE d.refclassid = 'pg_catalog.pg_class'::regclass
                               AND d.refobjid = pg_catalog.to_regclass($1)
                               AND d.deptype = 'n')",
        )
        .bind(format!("{SCHEMA}.{log}"))
        .fetch_one(&mut **tx)
        .await?;
        if empty && !used {
            run(tx, &format!("DROP TABLE {table}")).await?;
        }
    }
    let left: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid)
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid)
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid)
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                         WHERE d.refclassid = 'pg_catalog.pg_namespace'::regclass
                           AND d.refobjid = n.oid AND d.deptype = 'n')
           FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
    )
    .bind(SCHEMA)
    .fetch_one(&mut **tx)
    .await?;
    if !left {
        run(tx, &format!("DROP SCHEMA {}", quote_ident(SCHEMA))).await?;
    }
    Ok(())
}

/// The tables of `db` that carry landlord's policy or triggers (`schema.table`):
/// what `apply` in mode `disabled` would unprotect.
pub async fn protected_tables(db: &PgPool, column: &str) -> Result<Vec<String>> {
    validate_column(column)?;
    let mut conn = db
        .acquire()
        .await
        .context("connecting to list protected tables")?;
    Ok(table_states(&mut conn, column, None)
        .await?
        .into_iter()
        .filter(TableState::has_removable)
        .map(|s| format!("{}.{}", s.schema, s.table))
        .collect())
}

/// Revokes every privilege on an object from everyone but its owner (default
/// privileges of the installing role could have granted some).
async fn lock_down(tx: &mut Transaction<'_, Postgres>, kind: &str, object: &str) -> Result<()> {
    let (catalog_sql, keyword) = match kind {
        "schema" => (
            "SELECT DISTINCT a.grantee = 0, COALESCE(r.rolname::text, '')
               FROM pg_catalog.pg_namespace n
               CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
               LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
              WHERE n.nspname = $1 AND a.grantee <> n.nspowner",
            "SCHEMA",
        ),
        "sequence" | "table" => (
            "SELECT DISTINCT a.grantee = 0, COALESCE(r.rolname::text, '')
               FROM pg_catalog.pg_class c
               CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
               LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
              WHERE c.oid = pg_catalog.to_regclass($1) AND a.grantee <> c.relowner",
            if kind == "table" { "TABLE" } else { "SEQUENCE" },
        ),
        other => bail!("cannot lock down a {other}"),
    };
    let grantees: Vec<(bool, String)> = sqlx::query_as(catalog_sql)
        .bind(object)
        .fetch_all(&mut **tx)
        .await?;
    let target = if kind == "schema" {
        quote_ident(object)
    } else {
        qualified_support(object)
    };
    run(tx, &format!("REVOKE ALL ON {keyword} {target} FROM PUBLIC")).await?;
    for (public, role) in grantees {
        if public {
            continue;
        }
        run(
            tx,
            &format!(
                "REVOKE ALL ON {keyword} {target} FROM {}",
                quote_ident(&role)
            ),
        )
        .await?;
    }
    Ok(())
}

/// Runs SQL text (one or more statements, no parameters) through the simple
/// query protocol: nothing is prepared or cached.
async fn run(conn: &mut sqlx::PgConnection, sql: &str) -> Result<()> {
    use sqlx::Executor as _;
    conn.execute(sql).await?;
    Ok(())
}

/// `landlord_tenancy.<name>`, quoted.
fn qualified_support(name: &str) -> String {
    let bare = name.strip_prefix("landlord_tenancy.").unwrap_or(name);
    format!("{}.{}", quote_ident(SCHEMA), quote_ident(bare))
}

/// The schema, its tables and functions; the secret; the mode.
async fn install_support(
    tx: &mut Transaction<'_, Postgres>,
    mode: EnforcementMode,
    secret: &[u8],
) -> Result<()> {
    run(tx,
        r#"
CREATE SCHEMA IF NOT EXISTS landlord_tenancy;
CREATE TABLE IF NOT EXISTS landlord_tenancy.secret (
    id int PRIMARY KEY CHECK (id = 1),
    key bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.violations (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    role name DEFAULT current_user,
    application text,
    query text
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.settings (
    id int PRIMARY KEY CHECK (id = 1),
    mode text NOT NULL
);
CREATE TABLE IF NOT EXISTS landlord_tenancy.bypasses (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    role name NOT NULL,
    actor text NOT NULL,
    channel text,
    action text NOT NULL,
    tenant text,
    reason text NOT NULL
);
COMMENT ON TABLE landlord_tenancy.bypasses IS 'superuser bypasses of the tenant isolation (for_tenant, without_tenant), written before the work';
CREATE TABLE IF NOT EXISTS landlord_tenancy.managed (
    rel regclass PRIMARY KEY,
    rls_was_enabled bool NOT NULL,
    rls_was_forced bool NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE landlord_tenancy.managed IS 'tables landlord protects, with their row-level security switches from before';
COMMENT ON SCHEMA landlord_tenancy IS 'landlord row-level tenancy: signing secret, violation log and the functions the policies call';
COMMENT ON TABLE landlord_tenancy.secret IS 'landlord tenancy signing secret; readable only by its owner and the definer functions';
COMMENT ON TABLE landlord_tenancy.violations IS 'queries run without a tenant context in soft mode';
"#,
    ).await
    .context("creating the landlord_tenancy schema")?;

    lock_down(tx, "schema", SCHEMA).await?;
    for table in ["secret", "violations", "settings", "managed", "bypasses"] {
        lock_down(tx, "table", &format!("landlord_tenancy.{table}")).await?;
    }
    for sequence in ["violations_id_seq", "bypasses_id_seq"] {
        lock_down(tx, "sequence", &format!("landlord_tenancy.{sequence}")).await?;
    }
    run(
        tx,
        "GRANT USAGE ON SCHEMA landlord_tenancy TO PUBLIC;
         GRANT SELECT ON landlord_tenancy.settings TO PUBLIC",
    )
    .await?;

    sqlx::query(
        "INSERT INTO landlord_tenancy.secret (id, key) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key
         WHERE landlord_tenancy.secret.key IS DISTINCT FROM EXCLUDED.key",
    )
    .bind(secret)
    .execute(&mut **tx)
    .await
    .context("storing the signing secret")?;
    sqlx::query(
        "INSERT INTO landlord_tenancy.settings (id, mode) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET mode = EXCLUDED.mode",
    )
    .bind(mode.as_str())
    .execute(&mut **tx)
    .await?;

    run(tx, &current_tenant_sql(mode))
        .await
        .context("creating landlord_tenancy.current_tenant()")?;
    run(tx, SUPPORT_FUNCTIONS_SQL)
        .await
        .context("creating the tenancy trigger and audit functions")?;
    Ok(())
}

/// `landlord_tenancy.current_tenant()`, with the mode baked in (`apply`
/// replaces it on every run, so switching modes takes effect at commit).
///
/// Strict: STABLE and PARALLEL SAFE (it only reads), so protected tables
/// still get parallel plans. Soft: VOLATILE and PARALLEL UNSAFE, because an
/// unscoped call writes a violation row.
fn current_tenant_sql(mode: EnforcementMode) -> String {
    let (attributes, unscoped) = match mode {
        EnforcementMode::Soft => ("VOLATILE PARALLEL UNSAFE", SOFT_UNSCOPED),
        _ => ("STABLE PARALLEL SAFE", STRICT_UNSCOPED),
    };
    format!(
        r#"
CREATE OR REPLACE FUNCTION landlord_tenancy.current_tenant() RETURNS text
LANGUAGE plpgsql {attributes} SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $landlord$
DECLARE
    -- After a transaction that set them locally, the settings read as ''.
    tenant text := nullif(current_setting('landlord.tenant_id', true), '');
    sig text := nullif(current_setting('landlord.tenant_sig', true), '');
    secret bytea;
BEGIN
    IF tenant IS NULL THEN
{unscoped}
    END IF;
    SELECT s.key INTO secret FROM landlord_tenancy.secret s WHERE s.id = 1;
    IF secret IS NULL
       OR sig IS NULL
       OR sig <> encode(sha256(secret || sha256(convert_to(tenant, 'UTF8'))), 'hex') THEN
        RAISE EXCEPTION 'landlord tenancy: the tenant context is not signed by landlord'
            USING ERRCODE = '42501';
    END IF;
    RETURN tenant;
END
$landlord$;
COMMENT ON FUNCTION landlord_tenancy.current_tenant() IS
    'the verified tenant of the current transaction (landlord.tenant_id signed in landlord.tenant_sig); mode={mode}';
REVOKE ALL ON FUNCTION landlord_tenancy.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION landlord_tenancy.current_tenant() TO PUBLIC;
"#,
        mode = mode.as_str()
    )
}

const STRICT_UNSCOPED: &str = r#"        RAISE EXCEPTION 'landlord tenancy: no tenant context; run queries through a tenant-scoped transaction'
            USING ERRCODE = '42501';"#;

/// Soft mode: one violation row per statement (deduplicated through a
/// transaction-local marker), logged to the server log as well, never failing
/// the query (read-only transactions and hot standbys only log).
const SOFT_UNSCOPED: &str = r#"        DECLARE
            statement_key text := statement_timestamp()::text || ' ' || md5(coalesce(current_query(), ''));
            who text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                             ELSE current_setting('role') END;
        BEGIN
            IF current_setting('landlord_tenancy.recorded', true) IS DISTINCT FROM statement_key THEN
                PERFORM set_config('landlord_tenancy.recorded', statement_key, true);
                RAISE LOG 'landlord tenancy: query without a tenant context by role %: %',
                    who, left(current_query(), 1000);
                IF current_setting('transaction_read_only') = 'off' THEN
                    BEGIN
                        INSERT INTO landlord_tenancy.violations (role, application, query)
                        VALUES (who, nullif(current_setting('application_name'), ''),
                                left(current_query(), 10000));
                    EXCEPTION WHEN OTHERS THEN
                        RAISE LOG 'landlord tenancy: could not record a violation: %', SQLERRM;
                    END;
                END IF;
            END IF;
        END;
        RETURN NULL;"#;

const SUPPORT_FUNCTIONS_SQL: &str = r#"
-- The audit record the scoped executor (context.rs) writes before a
-- superuser bypass. Callable by everyone, it can only append (capped) rows.
CREATE OR REPLACE FUNCTION landlord_tenancy.record_bypass(
    actor text, channel text, action text, tenant text, why text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF coalesce(actor, '') = '' OR coalesce(action, '') = '' OR coalesce(why, '') = '' THEN
        RAISE EXCEPTION 'landlord tenancy: a bypass needs an actor, an action and a reason'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO landlord_tenancy.bypasses (role, actor, channel, action, tenant, reason)
    VALUES (CASE WHEN current_setting('role') = 'none' THEN session_user::text
                 ELSE current_setting('role') END,
            left(actor, 200), left(channel, 200), left(action, 100), left(tenant, 200),
            left(why, 2000));
END
$landlord$;
REVOKE ALL ON FUNCTION landlord_tenancy.record_bypass(text, text, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION landlord_tenancy.record_bypass(text, text, text, text, text) TO PUBLIC;
CREATE OR REPLACE FUNCTION landlord_tenancy.fill_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF TG_NARGS <> 1 THEN
        RAISE EXCEPTION 'landlord tenancy: fill_tenant() takes the tenant column as its one argument';
    END IF;
    IF to_jsonb(NEW) ->> TG_ARGV[0] IS NULL THEN
        NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], landlord_tenancy.current_tenant()));
    END IF;
    RETURN NEW;
END
$landlord$;
CREATE OR REPLACE FUNCTION landlord_tenancy.guard_tenant() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $landlord$
BEGIN
    IF TG_NARGS <> 1 THEN
        RAISE EXCEPTION 'landlord tenancy: guard_tenant() takes the tenant column as its one argument';
    END IF;
    IF (to_jsonb(NEW) -> TG_ARGV[0]) IS DISTINCT FROM (to_jsonb(OLD) -> TG_ARGV[0]) THEN
        RAISE EXCEPTION 'landlord tenancy: a row''s tenant cannot be changed'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END
$landlord$;
"#;

/// A protected table's row-level security switches from before landlord
/// enabled them (`landlord_tenancy.managed`).
#[derive(Debug, Clone, Copy)]
struct Prior {
    enabled: bool,
    forced: bool,
}

/// Brings one table to the state the plan asks for; `None` when the table
/// is of no concern (no column and nothing of ours on it). `record` is
/// `None` when there is no registry (disabled mode, never installed),
/// `Some(None)` when the table is not registered.
async fn apply_table(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    state: &TableState,
    record: Option<Option<Prior>>,
) -> Result<Option<&'static str>> {
    if state.should_protect(plan.mode, plan.exempt) {
        if matches!(record, Some(None)) {
            // First protection (or a registry lost since): remember the
            // switches as they were. A policy of ours already there means
            // landlord switched RLS on, unless other policies need it.
            let before = if state.policy_exists {
                let others = !state.other_policies.is_empty();
                Prior {
                    enabled: others && state.rls_enabled,
                    forced: others && state.rls_forced,
                }
            } else {
                Prior {
                    enabled: state.rls_enabled,
                    forced: state.rls_forced,
                }
            };
            sqlx::query(
                "INSERT INTO landlord_tenancy.managed (rel, rls_was_enabled, rls_was_forced)
                 VALUES ($1::int8::oid::regclass, $2, $3) ON CONFLICT (rel) DO NOTHING",
            )
            .bind(state.oid)
            .bind(before.enabled)
            .bind(before.forced)
            .execute(&mut **tx)
            .await?;
        }
        if state.is_current(plan.mode, plan.column) {
            return Ok(Some("unchanged"));
        }
        let action = if state.policy_exists {
            "updated"
        } else {
            "installed"
        };
        protect_table(tx, plan, state).await?;
        return Ok(Some(action));
    }
    let registered = matches!(record, Some(Some(_)));
    if state.has_removable() || registered {
        unprotect_table(tx, state, record).await?;
        return Ok(Some("removed"));
    }
    if !state.has_column() {
        return Ok(None);
    }
    if is_exempt(plan.exempt, &state.schema, &state.table) {
        Ok(Some("exempt"))
    } else {
        Ok(Some("unchanged"))
    }
}

/// The policy expression: the setting is cast to the column's type (never
/// the column to text) so an index on the column serves it, and the scalar
/// subquery makes the check an InitPlan evaluated once per query. The cast
/// is inside the subquery: outside it, it would run again for every row the
/// filter looks at (a text-to-bigint parse per row on a backward scan).
fn policy_expression(mode: EnforcementMode, column: &str, column_type: &str) -> String {
    let col = quote_ident(column);
    let schema = quote_ident(SCHEMA);
    let typed = format!("(SELECT {schema}.current_tenant()::{column_type})");
    match mode {
        EnforcementMode::Soft => {
            format!("(SELECT {schema}.current_tenant()) IS NULL OR {col} = {typed}")
        }
        _ => format!("{col} = {typed}"),
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn protect_table(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    state: &TableState,
) -> Result<()> {
    let Some(column_type) = state.column_type.as_deref() else {
        bail!("has no column {}", plan.column);
    };
    let table = state.qualified();
    let policy = quote_ident(POLICY_NAME);
    let expr = policy_expression(plan.mode, plan.column, column_type);
    run(
        tx,
        &format!(
            "DROP POLICY IF EXISTS {policy} ON {table};
         CREATE POLICY {policy} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC
             USING ({expr}) WITH CHECK ({expr});
         COMMENT ON POLICY {policy} ON {table} IS {version};
         ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
            version = quote_literal(&policy_version(plan.mode, plan.column)),
        ),
    )
    .await
    .context("installing the isolation policy")?;

    let col = quote_ident(plan.column);
    let arg = quote_literal(plan.column);
    let triggers = [
        (
            FILL_TRIGGER,
            state.fill,
            format!(
                "BEFORE INSERT ON {table} FOR EACH ROW WHEN (NEW.{col} IS NULL)
                 EXECUTE FUNCTION landlord_tenancy.fill_tenant({arg})"
            ),
        ),
        (
            GUARD_TRIGGER,
            state.guard,
            format!(
                "BEFORE UPDATE ON {table} FOR EACH ROW WHEN (OLD.{col} IS DISTINCT FROM NEW.{col})
                 EXECUTE FUNCTION landlord_tenancy.guard_tenant({arg})"
            ),
        ),
    ];
    for (name, existing, definition) in triggers {
        if existing.cloned {
            // Managed on the partitioned parent, which was handled first.
            continue;
        }
        let quoted = quote_ident(name);
        if existing.exists {
            run(tx, &format!("DROP TRIGGER {quoted} ON {table}")).await?;
        }
        if state.relkind == "p" {
            drop_partition_triggers(tx, state.oid, name).await?;
        }
        run(tx, &format!("CREATE TRIGGER {quoted} {definition}"))
            .await
            .with_context(|| format!("creating trigger {name}"))?;
    }
    Ok(())
}

/// A partitioned table's trigger is cloned onto its partitions, which fails
/// if one already has its own trigger of that name: drop those first.
async fn drop_partition_triggers(
    tx: &mut Transaction<'_, Postgres>,
    parent: i64,
    trigger: &str,
) -> Result<()> {
    let own: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text
           FROM pg_catalog.pg_partition_tree($1::int8::oid) p
           JOIN pg_catalog.pg_class c ON c.oid = p.relid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE p.relid <> $1::int8::oid
            AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                         WHERE t.tgrelid = c.oid AND t.tgname = $2 AND t.tgparentid = 0)",
    )
    .bind(parent)
    .bind(trigger)
    .fetch_all(&mut **tx)
    .await?;
    for (schema, table) in own {
        run(
            tx,
            &format!(
                "DROP TRIGGER {} ON {}.{}",
                quote_ident(trigger),
                quote_ident(&schema),
                quote_ident(&table)
            ),
        )
        .await?;
    }
    Ok(())
}

/// Removes our policy and triggers and puts the RLS switches back as they
/// were before landlord (from the registry; without a record: off unless
/// other policies are left on the table).
async fn unprotect_table(
    tx: &mut Transaction<'_, Postgres>,
    state: &TableState,
    record: Option<Option<Prior>>,
) -> Result<()> {
    let table = state.qualified();
    if state.policy_exists {
        run(
            tx,
            &format!(
                "DROP POLICY IF EXISTS {} ON {table}",
                quote_ident(POLICY_NAME)
            ),
        )
        .await?;
    }
    for (name, trigger) in [(FILL_TRIGGER, state.fill), (GUARD_TRIGGER, state.guard)] {
        if trigger.exists && !trigger.cloned {
            run(
                tx,
                &format!("DROP TRIGGER IF EXISTS {} ON {table}", quote_ident(name)),
            )
            .await?;
        }
    }
    // Undo what landlord switched: back to the recorded switches, but RLS
    // stays on while other policies need it. Without a record, switch off
    // only a table with no other policy.
    let others = !state.other_policies.is_empty();
    let want = match record.flatten() {
        Some(prior) => Prior {
            enabled: prior.enabled || others,
            forced: prior.forced,
        },
        None => Prior {
            enabled: others && state.rls_enabled,
            forced: others && state.rls_forced,
        },
    };
    if state.rls_enabled != want.enabled || state.rls_forced != want.forced {
        run(
            tx,
            &format!(
                "ALTER TABLE {table} {} ROW LEVEL SECURITY, {} ROW LEVEL SECURITY",
                if want.enabled { "ENABLE" } else { "DISABLE" },
                if want.forced { "FORCE" } else { "NO FORCE" },
            ),
        )
        .await?;
    }
    if record.is_some() {
        sqlx::query("DELETE FROM landlord_tenancy.managed WHERE rel = $1::int8::oid::regclass")
            .bind(state.oid)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// `apply` must be usable from spawned tasks and axum handlers (sqlx's
    /// `raw_sql` would break this; see [`run`]).
    #[allow(dead_code)]
    fn apply_future_is_send(db: PgPool) {
        let exempt = vec!["countries".to_owned()];
        assert_send(&async move {
            let plan = Plan {
                mode: EnforcementMode::Strict,
                column: "tenant_id",
                exempt: &exempt,
                secret: b"0123456789abcdef",
            };
            apply(&db, &plan).await
        });
    }

    #[test]
    fn columns() {
        assert!(validate_column("tenant_id").is_ok());
        assert!(validate_column("_org9").is_ok());
        for bad in [
            "",
            "Tenant",
            "9t",
            "t-id",
            "t\"id",
            "t id",
            "t;",
            &"a".repeat(64),
        ] {
            assert!(validate_column(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn exemptions() {
        let exempt = vec!["countries".to_owned(), "app.plans".to_owned()];
        assert!(is_exempt(&exempt, "public", "countries"));
        assert!(is_exempt(&exempt, "app", "countries"));
        assert!(is_exempt(&exempt, "app", "plans"));
        assert!(!is_exempt(&exempt, "public", "plans"));
        assert!(!is_exempt(&exempt, "public", "orders"));
    }

    #[test]
    fn versions_and_expressions() {
        assert_eq!(
            policy_version(EnforcementMode::Strict, "tenant_id"),
            "landlord-tenancy v2 mode=strict column=tenant_id"
        );
        assert_ne!(
            policy_version(EnforcementMode::Soft, "tenant_id"),
            policy_version(EnforcementMode::Strict, "tenant_id")
        );
        assert_eq!(
            policy_expression(EnforcementMode::Strict, "tenant_id", "bigint"),
            "\"tenant_id\" = (SELECT \"landlord_tenancy\".current_tenant()::bigint)"
        );
        assert!(
            policy_expression(EnforcementMode::Soft, "tenant_id", "uuid")
                .starts_with("(SELECT \"landlord_tenancy\".current_tenant()) IS NULL OR ")
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn the_mode_is_baked_into_current_tenant() {
        let strict = current_tenant_sql(EnforcementMode::Strict);
        assert!(strict.contains("no tenant context") && strict.contains("STABLE PARALLEL SAFE"));
        assert!(!strict.contains("INSERT INTO"));
        let soft = current_tenant_sql(EnforcementMode::Soft);
        assert!(soft.contains("INSERT INTO landlord_tenancy.violations"));
        assert!(soft.contains("VOLATILE PARALLEL UNSAFE"));
        assert!(!soft.contains("no tenant context"));
    }
}
