//! What the catalog says about one table (or every user table): the tenant
//! column and its type, an index on it, the row-level security switches,
//! landlord's policy and triggers and the table's other policies. Read by
//! `apply` before it touches a table and by `inspect` for `tenancy status`.
//!
//! This module only reads the catalog; it must never change anything, and
//! its query looks at `pg_catalog` only (no user object can shadow a name).

use anyhow::{Context, Result};

use super::{EnforcementMode, FILL_TRIGGER, GUARD_TRIGGER, POLICY_NAME, is_exempt, policy_version};
use crate::ident::quote_ident;

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

    pub(super) fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

/// One row per table: `$1` the column, `$2` the policy, `$3`/`$4` the
/// triggers, `$5` one table's oid or NULL for all.
const STATES_SQL: &str = include_str!("../sql/table_states.sql");

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
