//! The catalog's CHECK lists against the enums that mirror them: for every
//! column an enum (or a constant list) maps, the values its `CHECK (… IN (…))`
//! allows in a freshly migrated catalog must be exactly the Rust set. A value
//! added to a migration but not to its enum (or the reverse) fails here, with
//! what is missing on which side.
//!
//! Needs `DATABASE_URL` at run time (`ops/sqlx test-url`): `#[sqlx::test]`
//! creates, migrates and drops a catalog for the test.
//!
//! Every `text_enum!` that maps a column is listed in [`COLUMNS`]; a new one
//! belongs there too. [`TargetStatus`] maps no column of its own (it is a
//! subset of `tenants.status`), so it is checked as a subset in [`SUBSETS`].
//! No mapped column lacks a CHECK list today.

use std::collections::BTreeSet;

use sqlx::PgPool;

use crate::{
    backup::{BackupFormat, BackupStatus, Codec, RestoreStatus},
    lifecycle::TargetStatus,
    runtime::{Compensation, JobStatus, Origin},
    scheduler::FiringStatus,
    tenants::{Isolation, ProvisionStep, TenantStatus},
};

/// A catalog column and the Rust set of the values it may hold.
struct Column {
    table: &'static str,
    column: &'static str,
    /// The Rust side, for the report.
    rust: &'static str,
    names: &'static [&'static str],
}

/// Columns whose CHECK list must equal the Rust set.
const COLUMNS: &[Column] = &[
    Column {
        table: "jobs",
        column: "status",
        rust: "JobStatus",
        names: JobStatus::NAMES,
    },
    Column {
        table: "jobs",
        column: "origin",
        rust: "Origin",
        names: Origin::NAMES,
    },
    Column {
        table: "jobs",
        column: "compensation",
        rust: "Compensation",
        names: Compensation::NAMES,
    },
    // Not an enum: the job families are a constant list (a queue name is
    // configuration, checked by `config::parse_queues`).
    Column {
        table: "jobs",
        column: "queue",
        rust: "config::QUEUES",
        names: &crate::config::QUEUES,
    },
    Column {
        table: "tenants",
        column: "status",
        rust: "TenantStatus",
        names: TenantStatus::NAMES,
    },
    Column {
        table: "tenants",
        column: "isolation",
        rust: "Isolation",
        names: Isolation::NAMES,
    },
    Column {
        table: "tenants",
        column: "provision_step",
        rust: "ProvisionStep",
        names: ProvisionStep::NAMES,
    },
    Column {
        table: "backups",
        column: "status",
        rust: "BackupStatus",
        names: BackupStatus::NAMES,
    },
    Column {
        table: "backups",
        column: "format",
        rust: "BackupFormat",
        names: BackupFormat::NAMES,
    },
    Column {
        table: "backups",
        column: "codec",
        rust: "Codec",
        names: Codec::NAMES,
    },
    Column {
        table: "restores",
        column: "status",
        rust: "RestoreStatus",
        names: RestoreStatus::NAMES,
    },
    Column {
        table: "schedule_firings",
        column: "status",
        rust: "FiringStatus",
        names: FiringStatus::NAMES,
    },
];

/// Sets written to a column that need only be allowed by its CHECK list.
const SUBSETS: &[Column] = &[Column {
    table: "tenants",
    column: "status",
    rust: "TargetStatus",
    names: TargetStatus::NAMES,
}];

/// The values a column's CHECK list allows, or why there is no one list.
async fn check_list(pool: &PgPool, table: &str, column: &str) -> Result<BTreeSet<String>, String> {
    let checks = sqlx::query!(
        r#"SELECT c.conname::text AS "name!", pg_get_constraintdef(c.oid) AS "definition!"
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
           WHERE c.contype = 'c' AND c.conrelid = $1::text::regclass
             AND a.attname::text = $2 AND cardinality(c.conkey) = 1
           ORDER BY 1"#,
        table,
        column,
    )
    .fetch_all(pool)
    .await
    .map_err(|e| format!("reading the CHECK constraints of {table}.{column}: {e}"))?;
    // `CHECK (x IN ('a', 'b'))` reads back as `CHECK ((x = ANY (ARRAY['a'::text, 'b'::text])))`.
    let lists: Vec<_> = checks
        .iter()
        .filter(|c| c.definition.contains("ANY (ARRAY["))
        .collect();
    match lists.as_slice() {
        [one] => Ok(quoted(&one.definition).into_iter().collect()),
        [] => Err(format!("{table}.{column} has no CHECK (… IN (…)) list")),
        many => Err(format!(
            "{table}.{column} has {} CHECK lists: {}",
            many.len(),
            many.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The SQL string literals in `sql`, in order (`''` is a quote inside one).
fn quoted(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut lit = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    lit.push('\'');
                }
                '\'' => break,
                c => lit.push(c),
            }
        }
        out.push(lit);
    }
    out
}

/// What differs between a column's CHECK list and its Rust set, if anything.
/// With `exact`, the CHECK may allow no value the Rust set lacks.
fn compare(col: &Column, allowed: &BTreeSet<String>, exact: bool) -> Option<String> {
    let rust: BTreeSet<String> = col.names.iter().map(|s| s.to_string()).collect();
    let not_allowed: Vec<_> = rust.difference(allowed).collect();
    let not_in_rust: Vec<_> = if exact {
        allowed.difference(&rust).collect()
    } else {
        Vec::new()
    };
    if not_allowed.is_empty() && not_in_rust.is_empty() {
        return None;
    }
    let mut why = Vec::new();
    if !not_in_rust.is_empty() {
        why.push(format!(
            "allowed by the CHECK but missing from {}: {not_in_rust:?}",
            col.rust
        ));
    }
    if !not_allowed.is_empty() {
        why.push(format!(
            "in {} but not allowed by the CHECK: {not_allowed:?}",
            col.rust
        ));
    }
    Some(format!(
        "{}.{} vs {}: {}",
        col.table,
        col.column,
        col.rust,
        why.join("; ")
    ))
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn every_enum_matches_its_columns_check_list(pool: PgPool) {
    let mut problems = Vec::new();
    let all = COLUMNS
        .iter()
        .map(|c| (c, true))
        .chain(SUBSETS.iter().map(|c| (c, false)));
    for (col, exact) in all {
        match check_list(&pool, col.table, col.column).await {
            Ok(allowed) => problems.extend(compare(col, &allowed, exact)),
            Err(e) => problems.push(format!("{} ({}): {e}", col.rust, col.names.join(", "))),
        }
    }
    assert!(
        problems.is_empty(),
        "the enums and the catalog's CHECK lists disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn quoted_reads_literals_with_escaped_quotes() {
    assert_eq!(
        quoted("CHECK ((s = ANY (ARRAY['a'::text, 'it''s'::text, ''::text])))"),
        ["a", "it's", ""]
    );
}
