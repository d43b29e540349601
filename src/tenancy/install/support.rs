//! The `landlord_tenancy` schema: the signing secret, the settings, the
//! violation log, the bypass audit, the registry of protected tables, and the
//! functions the policies and triggers call (`current_tenant()` with the mode
//! baked in, `fill_tenant()`, `guard_tenant()`, `record_bypass()`). Their DDL
//! and PL/pgSQL are in `src/tenancy/sql/`.
//!
//! This module must never install into a schema another role owns, never
//! leave the secret readable by anyone but its owner (every object is locked
//! down, then only what the policies need is granted), and never drop the
//! logs while they hold rows or anything still uses an object.

use anyhow::{Context, Result, bail};
use sqlx::{Postgres, Transaction};

use super::{SCHEMA, qualified_support, run};
use crate::ident::quote_ident;
use crate::tenancy::EnforcementMode;

/// Objects in the schema owned by neither a superuser nor the current user.
const FOREIGN_OWNERS_SQL: &str = include_str!("../sql/foreign_owners.sql");
/// The schema and its tables, with their comments.
const SCHEMA_SQL: &str = include_str!("../sql/support_schema.sql");
/// What everyone may use once everything is locked down.
const GRANTS_SQL: &str = include_str!("../sql/support_grants.sql");
/// `current_tenant()`, with `{attributes}`, `{unscoped}` and `{mode}` to fill in.
const CURRENT_TENANT_SQL: &str = include_str!("../sql/current_tenant.sql");
/// Strict mode's unscoped branch of `current_tenant()`: the query fails.
const STRICT_UNSCOPED: &str = include_str!("../sql/unscoped_strict.sql");
/// Soft mode: one violation row per statement (deduplicated through a
/// transaction-local marker), logged to the server log as well, never failing
/// the query (read-only transactions and hot standbys only log).
const SOFT_UNSCOPED: &str = include_str!("../sql/unscoped_soft.sql");
/// `record_bypass()`, `fill_tenant()` and `guard_tenant()`.
const FUNCTIONS_SQL: &str = include_str!("../sql/support_functions.sql");
/// The functions, the secret, the settings and the registry (not the logs).
const REMOVE_SQL: &str = include_str!("../sql/support_remove.sql");

/// Refuses to install into a `landlord_tenancy` schema (or objects in it)
/// that someone other than a superuser or the installing role owns: its
/// owner could read the secret or replace the functions.
pub(super) async fn check_owners(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    let foreign: Vec<(String, String, String)> = sqlx::query_as(FOREIGN_OWNERS_SQL)
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
pub(super) async fn remove(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
    )
    .bind(SCHEMA)
    .fetch_one(&mut **tx)
    .await?;
    if !exists {
        return Ok(());
    }
    run(tx, REMOVE_SQL).await.context(
        "removing landlord_tenancy's functions and secret (if other objects still use them, \
         drop those first or keep mode strict or soft)",
    )?;
    drop_unused_logs(tx).await?;
    drop_schema_if_empty(tx).await
}

/// The violation log and the bypass audit, each if it is empty and nothing
/// depends on it.
async fn drop_unused_logs(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
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
    Ok(())
}

/// The schema, when no object is left in it and nothing depends on it.
async fn drop_schema_if_empty(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
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

/// The schema, its tables and functions; the secret; the mode.
pub(super) async fn install(
    tx: &mut Transaction<'_, Postgres>,
    mode: EnforcementMode,
    secret: &[u8],
) -> Result<()> {
    run(tx, SCHEMA_SQL)
        .await
        .context("creating the landlord_tenancy schema")?;

    lock_down(tx, "schema", SCHEMA).await?;
    for table in ["secret", "violations", "settings", "managed", "bypasses"] {
        lock_down(tx, "table", &format!("landlord_tenancy.{table}")).await?;
    }
    for sequence in ["violations_id_seq", "bypasses_id_seq"] {
        lock_down(tx, "sequence", &format!("landlord_tenancy.{sequence}")).await?;
    }
    run(tx, GRANTS_SQL).await?;

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
    run(tx, FUNCTIONS_SQL)
        .await
        .context("creating the tenancy trigger and audit functions")?;
    Ok(())
}

/// The signature of the audit function, as GRANT and REVOKE name it.
const RECORD_BYPASS: &str = "landlord_tenancy.record_bypass(text, text, text, text, text)";

/// Who may call `record_bypass()`: not PUBLIC (anyone who can connect
/// could write audit rows), but exactly the roles holding a privilege on a
/// protected table, the application's roles whose bypasses it records (the
/// owners and superusers need no grant). Run by `apply` after the tables,
/// so a role granted a protected table later gets it on the next `apply`;
/// a role that lost its table privileges loses it.
pub(super) async fn grant_recorders(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    let present: bool = sqlx::query_scalar(
        "SELECT pg_catalog.to_regprocedure('landlord_tenancy.record_bypass(text, text, text, text, text)') IS NOT NULL",
    )
    .fetch_one(&mut **tx)
    .await?;
    if !present {
        return Ok(());
    }
    let granted: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT r.rolname::text FROM pg_catalog.pg_proc p
           CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
           JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
          WHERE p.oid = pg_catalog.to_regprocedure('landlord_tenancy.record_bypass(text, text, text, text, text)')
            AND a.grantee <> p.proowner",
    )
    .fetch_all(&mut **tx)
    .await?;
    let users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT r.rolname::text FROM landlord_tenancy.managed m
           JOIN pg_catalog.pg_class c ON c.oid = m.rel
           CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
           JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
          WHERE a.grantee <> c.relowner AND NOT r.rolsuper ORDER BY 1",
    )
    .fetch_all(&mut **tx)
    .await
    .context("finding the roles of the protected tables")?;
    run(
        tx,
        &format!("REVOKE ALL ON FUNCTION {RECORD_BYPASS} FROM PUBLIC"),
    )
    .await?;
    for role in granted.iter().filter(|r| !users.contains(r)) {
        run(
            tx,
            &format!(
                "REVOKE ALL ON FUNCTION {RECORD_BYPASS} FROM {}",
                quote_ident(role)
            ),
        )
        .await?;
    }
    for role in &users {
        run(
            tx,
            &format!(
                "GRANT EXECUTE ON FUNCTION {RECORD_BYPASS} TO {}",
                quote_ident(role)
            ),
        )
        .await?;
    }
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
    CURRENT_TENANT_SQL
        .replace("{attributes}", attributes)
        .replace("{unscoped}", unscoped.trim_end())
        .replace("{mode}", mode.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn current_tenant_has_no_placeholder_left() {
        for mode in [EnforcementMode::Strict, EnforcementMode::Soft] {
            let sql = current_tenant_sql(mode);
            assert!(!sql.contains('{') && !sql.contains('}'), "{sql}");
            assert!(sql.contains(&format!("mode={}';", mode.as_str())), "{sql}");
        }
    }
}
