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
//! This module is the security boundary of seed 004. It must never splice a
//! name or value into SQL unquoted (table, schema and role names from the
//! catalog pass [`quote_ident`], the tenant column is validated first, the
//! secret is always a bound parameter), never let anyone but the installing
//! owner read `landlord_tenancy.secret`, never install into a schema another
//! role owns, never leave a function with a caller-controlled `search_path`,
//! and never touch policies or triggers it did not install: when it stops
//! protecting a table it drops only its own objects and puts the table's
//! row-level security switches back as they were before landlord.
//!
//! Files: this one holds the plan and [`apply`]'s phases (check the plan, take
//! the lock, check who owns the schema, install the support objects, bring
//! every table to the plan, remove the support objects when disabling);
//! `support` the `landlord_tenancy` schema, its tables and functions; `state`
//! what the catalog says about one table; `table` protecting and unprotecting
//! one table and the registry of switches from before. The static SQL is in
//! `src/tenancy/sql/`; SQL that names a table, a role or the column is built
//! in Rust, every name quoted.

mod state;
mod support;
mod table;

use anyhow::{Context, Result, bail};
use sqlx::{PgPool, Postgres, Transaction};

use super::EnforcementMode;
use crate::ident::quote_ident;

pub(crate) use state::{TableState, table_states};

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
    check_plan(plan)?;
    let mut tx = begin(db).await?;
    support::check_owners(&mut tx).await?;
    if plan.mode != EnforcementMode::Disabled {
        support::install(&mut tx, plan.mode, plan.secret).await?;
    }
    let mut applied = table::apply_all(&mut tx, plan).await?;
    if plan.mode != EnforcementMode::Disabled {
        support::grant_recorders(&mut tx).await?;
    }
    if plan.mode == EnforcementMode::Disabled {
        // Every table is unprotected by now: nothing of ours uses the
        // functions any more.
        support::remove(&mut tx).await?;
    }
    tx.commit()
        .await
        .context("committing the tenancy changes")?;
    applied.sort_by(|a, b| (&a.schema, &a.table).cmp(&(&b.schema, &b.table)));
    Ok(applied)
}

/// A valid column, and a secret long enough unless the plan disables.
fn check_plan(plan: &Plan<'_>) -> Result<()> {
    validate_column(plan.column)?;
    if plan.mode != EnforcementMode::Disabled && plan.secret.len() < MIN_SECRET_LEN {
        bail!(
            "the tenancy signing secret is {} bytes long; at least {MIN_SECRET_LEN} are required",
            plan.secret.len()
        );
    }
    Ok(())
}

/// The transaction `apply` runs in, with the catalog-only search path, the
/// lock timeout and the advisory lock that serialises `apply` runs.
async fn begin(db: &PgPool) -> Result<Transaction<'static, Postgres>> {
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
    Ok(tx)
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
    fn versions() {
        assert_eq!(
            policy_version(EnforcementMode::Strict, "tenant_id"),
            "landlord-tenancy v2 mode=strict column=tenant_id"
        );
        assert_ne!(
            policy_version(EnforcementMode::Soft, "tenant_id"),
            policy_version(EnforcementMode::Strict, "tenant_id")
        );
    }
}
