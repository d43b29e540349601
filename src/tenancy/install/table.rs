//! Bringing each table to the plan: which tables to look at, what their
//! row-level security switches were before landlord (the registry
//! `landlord_tenancy.managed`), and installing, updating or removing the one
//! policy and two triggers on a table.
//!
//! Every name spliced into SQL here is quoted ([`quote_ident`], the policy
//! comment through `quote_literal`); this module must never touch a policy or
//! trigger it did not install, and when it stops protecting a table it puts
//! the switches back as they were.

use anyhow::{Context, Result, bail};
use sqlx::{Postgres, Transaction};

use super::{
    Applied, FILL_TRIGGER, GUARD_TRIGGER, POLICY_NAME, Plan, SCHEMA, is_exempt, policy_version,
    run,
    state::{TableState, table_states},
};
use crate::ident::quote_ident;
use crate::tenancy::EnforcementMode;

/// Tables `apply` looks at: those with the column and those carrying any of
/// our objects, parents of partitions before their partitions.
const CANDIDATES_SQL: &str = include_str!("../sql/candidates.sql");

/// `landlord_tenancy.managed` as `apply` found it: whether it exists, and
/// each registered table's switches from before.
struct Registry {
    present: bool,
    managed: Vec<(i64, bool, bool)>,
}

impl Registry {
    /// The registry without the rows of tables dropped since.
    async fn read(tx: &mut Transaction<'_, Postgres>) -> Result<Self> {
        let present: bool =
            sqlx::query_scalar("SELECT to_regclass('landlord_tenancy.managed') IS NOT NULL")
                .fetch_one(&mut **tx)
                .await?;
        let mut managed: Vec<(i64, bool, bool)> = Vec::new();
        if present {
            sqlx::query(
                "DELETE FROM landlord_tenancy.managed m
                  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = m.rel::oid)",
            )
            .execute(&mut **tx)
            .await?;
            managed = sqlx::query_as(
                "SELECT rel::oid::int8, rls_was_enabled, rls_was_forced FROM landlord_tenancy.managed",
            )
            .fetch_all(&mut **tx)
            .await?;
        }
        Ok(Self { present, managed })
    }

    fn oids(&self) -> Vec<i64> {
        self.managed.iter().map(|m| m.0).collect()
    }

    /// `None` without a registry, `Some(None)` when `oid` is not registered.
    fn record(&self, oid: i64) -> Option<Option<Prior>> {
        self.present.then(|| {
            self.managed
                .iter()
                .find(|m| m.0 == oid)
                .map(|&(_, enabled, forced)| Prior { enabled, forced })
        })
    }
}

/// Every candidate table brought to the plan, parents before partitions;
/// what was done to each one of concern.
pub(super) async fn apply_all(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
) -> Result<Vec<Applied>> {
    let registry = Registry::read(tx).await?;
    let candidates: Vec<(i64,)> = sqlx::query_as(CANDIDATES_SQL)
        .bind(plan.column)
        .bind(POLICY_NAME)
        .bind([FILL_TRIGGER, GUARD_TRIGGER])
        .bind(registry.oids())
        .fetch_all(&mut **tx)
        .await
        .context("listing the tables with the tenant column")?;

    let mut applied = Vec::with_capacity(candidates.len());
    for (oid,) in candidates {
        // Read each table's state afresh: installing triggers on a
        // partitioned table changes its partitions.
        let Some(state) = table_states(tx, plan.column, Some(oid))
            .await?
            .into_iter()
            .next()
        else {
            continue;
        };
        let action = apply_table(tx, plan, &state, registry.record(oid))
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
    Ok(applied)
}

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
            register(tx, state).await?;
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

/// First protection (or a registry lost since): remember the table's
/// switches as they were.
async fn register(tx: &mut Transaction<'_, Postgres>, state: &TableState) -> Result<()> {
    // A policy of ours already there means landlord switched RLS on, unless
    // other policies need it.
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
    Ok(())
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

/// The policy (with its version comment), forced row-level security, and
/// the two triggers.
async fn protect_table(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    state: &TableState,
) -> Result<()> {
    let Some(column_type) = state.column_type.as_deref() else {
        bail!("has no column {}", plan.column);
    };
    install_policy(tx, plan, state, column_type).await?;
    install_triggers(tx, plan, state).await
}

async fn install_policy(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    state: &TableState,
    column_type: &str,
) -> Result<()> {
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
    .context("installing the isolation policy")
}

/// The fill and guard triggers, replacing ours; those cloned from a
/// partitioned parent are left to the parent.
async fn install_triggers(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
    state: &TableState,
) -> Result<()> {
    let table = state.qualified();
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

    #[test]
    fn policy_expressions() {
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
}
