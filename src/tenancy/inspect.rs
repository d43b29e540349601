//! What a database has of row-level tenancy, for `landlord tenancy status`:
//! per table whether the tenant column, an index on it, row-level security
//! and landlord's current policy are there, plus plain-sentence warnings
//! about everything that weakens the isolation or makes it slow.
//!
//! This file only reads the catalog and the violation count. It must never
//! change anything in the database, never read the signing secret, and never
//! fail because landlord was not installed yet (a database without the
//! `landlord_tenancy` schema is a valid, reportable state).

use anyhow::{Context, Result};
use sqlx::PgPool;

use super::EnforcementMode;
use super::install::{self, TableState, is_exempt, policy_version, validate_column};

/// One user table as seen by `tenancy status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TableStatus {
    pub schema: String,
    pub table: String,
    pub has_column: bool,
    /// The column's declared type (`bigint`, `character varying(20)`, …).
    pub column_type: Option<String>,
    /// A valid, non-partial index whose first column is the tenant column.
    pub indexed: bool,
    pub rls_enabled: bool,
    pub rls_forced: bool,
    /// The comment (version) of landlord's policy, `Some("")` if it has none.
    pub policy: Option<String>,
    /// The table is exactly as `apply` with this configuration would leave
    /// it: protected with the current policy, RLS switches and triggers, or
    /// (exempt, no column, disabled mode) carrying nothing of landlord's.
    pub policy_current: bool,
    pub exempt: bool,
}

/// Everything `tenancy status` reports about one database.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatabaseStatus {
    pub tables: Vec<TableStatus>,
    pub warnings: Vec<String>,
    /// Rows in `landlord_tenancy.violations`, 0 if absent or unreadable.
    pub violations: i64,
    /// When the latest of them was recorded.
    pub last_violation: Option<chrono::DateTime<chrono::Utc>>,
}

/// What `inspect` compares the database with.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub mode: EnforcementMode,
    pub column: &'a str,
    pub exempt: &'a [String],
    /// The exempt list was configured (not the seed's default): warn about
    /// entries that match no table, which are likely typos.
    pub exempt_configured: bool,
    /// The role the application connects as (warn if it is a superuser, has
    /// BYPASSRLS, or owns a protected table without FORCE).
    pub app_role: Option<&'a str>,
}

/// The state of `db` against the configuration in `want`.
pub async fn inspect(db: &PgPool, want: Expected<'_>) -> Result<DatabaseStatus> {
    let Expected {
        mode,
        column,
        exempt,
        exempt_configured,
        app_role,
    } = want;
    validate_column(column)?;
    let mut conn = db
        .acquire()
        .await
        .context("connecting for tenancy status")?;
    let states = install::table_states(&mut conn, column, None).await?;
    let mut warnings = Vec::new();

    let protected: Vec<&TableState> = states
        .iter()
        .filter(|s| s.should_protect(mode, exempt))
        .collect();
    let protected_oids: Vec<i64> = protected.iter().map(|s| s.oid).collect();

    for s in &states {
        table_warnings(s, mode, column, exempt, &mut warnings);
    }
    for entry in exempt.iter().filter(|_| exempt_configured) {
        let entry = entry.trim();
        let matched = states
            .iter()
            .any(|s| is_exempt(&[entry.to_owned()], &s.schema, &s.table));
        if !matched {
            warnings.push(format!(
                "The exempt entry {entry:?} matches no table in this database."
            ));
        }
    }

    let (violations, last_violation, installed_mode) =
        support_state(&mut conn, &mut warnings).await?;
    if let Some(installed) = installed_mode
        && installed != mode.as_str()
    {
        warnings.push(format!(
            "The database's landlord_tenancy functions are installed for mode {installed}, \
             but the configuration says {}; run `landlord tenancy apply`.",
            mode.as_str()
        ));
    }

    if let Some(role) = app_role {
        role_warnings(&mut conn, role, &protected_oids, &mut warnings).await?;
    }
    setting_warnings(&mut conn, &mut warnings).await?;
    view_warnings(&mut conn, &protected_oids, &mut warnings).await?;

    let tables = states
        .iter()
        .map(|s| {
            let protect = s.should_protect(mode, exempt);
            TableStatus {
                schema: s.schema.clone(),
                table: s.table.clone(),
                has_column: s.has_column(),
                column_type: s.column_type_full.clone(),
                indexed: s.indexed,
                rls_enabled: s.rls_enabled,
                rls_forced: s.rls_forced,
                policy: s
                    .policy_exists
                    .then(|| s.policy_comment.clone().unwrap_or_default()),
                policy_current: if protect {
                    s.is_current(mode, column)
                } else {
                    !s.has_removable()
                },
                exempt: s.has_column() && is_exempt(exempt, &s.schema, &s.table),
            }
        })
        .collect();
    Ok(DatabaseStatus {
        tables,
        warnings,
        violations,
        last_violation,
    })
}

fn table_warnings(
    s: &TableState,
    mode: EnforcementMode,
    column: &str,
    exempt: &[String],
    warnings: &mut Vec<String>,
) {
    let name = format!("{}.{}", s.schema, s.table);
    if s.should_protect(mode, exempt) {
        if !s.indexed {
            warnings.push(format!(
                "Table {name} has no index whose first column is {column}: every tenant-scoped \
                 query on it scans the whole table (CREATE INDEX ON {name} ({column}))."
            ));
        }
        if !s.is_current(mode, column) {
            let mut why = Vec::new();
            if !s.rls_enabled {
                why.push("row-level security is not enabled".to_owned());
            }
            if !s.rls_forced {
                why.push(
                    "row-level security is not forced, so the table's owner bypasses it".to_owned(),
                );
            }
            let expected = policy_version(mode, column);
            match (&s.policy_exists, s.policy_comment.as_deref()) {
                (false, _) => why.push("landlord's policy is missing".to_owned()),
                (true, Some(c)) if c == expected && s.policy_shape_ok => {}
                (true, c) => why.push(format!(
                    "landlord's policy is outdated ({:?}, expected {expected:?})",
                    c.unwrap_or("")
                )),
            }
            if !s.fill.ok || !s.guard.ok {
                why.push("landlord's triggers are missing or disabled".to_owned());
            }
            warnings.push(format!(
                "Table {name} has the tenant column {column} but is not protected as configured \
                 ({}); run `landlord tenancy apply`.",
                why.join("; ")
            ));
        }
        if !s.other_permissive.is_empty() {
            warnings.push(format!(
                "Table {name} has other permissive policies ({}); PostgreSQL ORs permissive \
                 policies, so they can show rows of other tenants: recreate them AS RESTRICTIVE.",
                s.other_permissive.join(", ")
            ));
        }
    } else if s.rls_enabled && !s.policy_exists && s.other_policies.is_empty() {
        warnings.push(format!(
            "Table {name} has row-level security enabled but no policy: nobody subject to it sees \
             or changes any row. If landlord protected it before, `landlord tenancy apply` \
             switches it back."
        ));
    } else if s.has_removable() {
        let why = if mode == EnforcementMode::Disabled {
            "the enforcement mode is disabled".to_owned()
        } else if !s.has_column() {
            format!("it has no column {column}")
        } else {
            "it is exempt".to_owned()
        };
        warnings.push(format!(
            "Table {name} still has landlord's policies or triggers although {why}; \
             run `landlord tenancy apply`."
        ));
    }
}

/// The violation count, the latest violation and the mode the support
/// functions were installed for.
async fn support_state(
    conn: &mut sqlx::PgConnection,
    warnings: &mut Vec<String>,
) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>, Option<String>)> {
    let (violations_exist, violations_readable, settings_readable): (bool, bool, bool) =
        sqlx::query_as(
            "SELECT to_regclass('landlord_tenancy.violations') IS NOT NULL,
                    COALESCE(pg_catalog.has_table_privilege(
                        to_regclass('landlord_tenancy.violations'), 'SELECT'), false),
                    COALESCE(pg_catalog.has_table_privilege(
                        to_regclass('landlord_tenancy.settings'), 'SELECT'), false)",
        )
        .fetch_one(&mut *conn)
        .await
        .context("looking for the landlord_tenancy schema")?;
    let mut violations = 0;
    let mut last = None;
    if violations_readable {
        (violations, last) =
            sqlx::query_as("SELECT count(*), max(at) FROM landlord_tenancy.violations")
                .fetch_one(&mut *conn)
                .await
                .context("counting the tenancy violations")?;
    } else if violations_exist {
        warnings.push(
            "This connection may not read landlord_tenancy.violations, so the violation count \
             is reported as 0; run the status as the installing role."
                .to_owned(),
        );
    }
    let mode = if settings_readable {
        sqlx::query_scalar("SELECT mode FROM landlord_tenancy.settings WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?
    } else {
        None
    };
    Ok((violations, last, mode))
}

async fn role_warnings(
    conn: &mut sqlx::PgConnection,
    role: &str,
    protected: &[i64],
    warnings: &mut Vec<String>,
) -> Result<()> {
    let attrs: Option<(bool, bool)> =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1")
            .bind(role)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((superuser, bypass)) = attrs else {
        warnings.push(format!("The application role {role} does not exist."));
        return Ok(());
    };
    if superuser {
        warnings.push(format!(
            "The application role {role} is a superuser: row-level security never applies to it, \
             so it sees and changes every tenant's rows."
        ));
        return Ok(());
    }
    if bypass {
        warnings.push(format!(
            "The application role {role} has BYPASSRLS: row-level security never applies to it, \
             so it sees and changes every tenant's rows."
        ));
    }
    let escalations: Vec<(String,)> = sqlx::query_as(
        "SELECT r.rolname::text FROM pg_catalog.pg_roles r
          WHERE (r.rolsuper OR r.rolbypassrls) AND r.rolname <> $1
            AND pg_catalog.pg_has_role($1, r.oid, 'MEMBER')
          ORDER BY 1",
    )
    .bind(role)
    .fetch_all(&mut *conn)
    .await?;
    for (other,) in escalations {
        warnings.push(format!(
            "The application role {role} is a member of {other}, which bypasses row-level \
             security; a SET ROLE {other} escapes the tenant isolation."
        ));
    }
    let secret: bool = sqlx::query_scalar(
        "SELECT COALESCE(pg_catalog.has_table_privilege($1, to_regclass('landlord_tenancy.secret'), 'SELECT'), false)
             OR COALESCE(pg_catalog.pg_has_role($1, (SELECT c.relowner FROM pg_catalog.pg_class c
                                                     WHERE c.oid = to_regclass('landlord_tenancy.secret')),
                                               'MEMBER'), false)",
    )
    .bind(role)
    .fetch_one(&mut *conn)
    .await?;
    if secret {
        warnings.push(format!(
            "The application role {role} can read landlord_tenancy.secret (it owns it, belongs to \
             its owner or was granted access): it can sign any tenant's context; install with \
             another role."
        ));
    }
    let tables: Vec<(String, String, bool, bool, bool)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text,
                pg_catalog.pg_has_role($1, c.relowner, 'MEMBER'), c.relforcerowsecurity,
                pg_catalog.has_table_privilege($1, c.oid, 'TRUNCATE')
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = ANY (SELECT o::oid FROM unnest($2::int8[]) o)
          ORDER BY 1, 2",
    )
    .bind(role)
    .bind(protected)
    .fetch_all(&mut *conn)
    .await?;
    let mut owned_forced = Vec::new();
    for (schema, table, owns, forced, truncate) in tables {
        if owns && !forced {
            warnings.push(format!(
                "The application role {role} owns {schema}.{table} (or belongs to its owner), \
                 whose row-level security is not forced: the owner bypasses it; run \
                 `landlord tenancy apply`."
            ));
        } else if owns {
            owned_forced.push(format!("{schema}.{table}"));
        }
        if truncate {
            warnings.push(format!(
                "The application role {role} may TRUNCATE {schema}.{table}; TRUNCATE ignores \
                 row-level security and empties every tenant's rows."
            ));
        }
    }
    if !owned_forced.is_empty() {
        warnings.push(format!(
            "The application role {role} owns {} protected table(s) ({}); row-level security is \
             forced on them, but an owner can switch it off with ALTER TABLE: let another role \
             own the tables.",
            owned_forced.len(),
            owned_forced.join(", ")
        ));
    }
    Ok(())
}

async fn setting_warnings(conn: &mut sqlx::PgConnection, warnings: &mut Vec<String>) -> Result<()> {
    let stored: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT COALESCE(r.rolname::text, ''), COALESCE(d.datname::text, ''), cfg
           FROM pg_catalog.pg_db_role_setting s
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
           LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
           CROSS JOIN LATERAL unnest(s.setconfig) cfg
          WHERE (s.setdatabase = 0 OR d.datname = current_database())
            AND (cfg LIKE 'landlord.tenant\\_id=%' OR cfg LIKE 'landlord.tenant\\_sig=%')
          ORDER BY 1, 2, 3",
    )
    .fetch_all(&mut *conn)
    .await
    .context("reading role and database settings")?;
    for (role, database, setting) in stored {
        let name = setting.split('=').next().unwrap_or_default().to_owned();
        let scope = match (role.is_empty(), database.is_empty()) {
            (true, true) => "for every role in every database".to_owned(),
            (true, false) => format!("for database {database}"),
            (false, true) => format!("for role {role}"),
            (false, false) => format!("for role {role} in database {database}"),
        };
        warnings.push(format!(
            "{name} is set at session level {scope} (ALTER ROLE/DATABASE … SET); session-level \
             tenant settings leak across a transaction pooler's clients: RESET it."
        ));
    }
    let server: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, source FROM pg_catalog.pg_settings
          WHERE name IN ('landlord.tenant_id', 'landlord.tenant_sig')
            AND source IN ('configuration file', 'command line', 'environment variable')",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (name, source) in server {
        warnings.push(format!(
            "{name} is set server-wide ({source}); session-level tenant settings leak across a \
             transaction pooler's clients: remove it."
        ));
    }
    Ok(())
}

/// View schema and name, its relkind, the protected table's schema and name,
/// whether the view's owner bypasses RLS, the view's options.
type ViewRow = (String, String, String, String, String, bool, Vec<String>);

/// Views that read protected tables with a bypassing owner's rights, and
/// materialized views (which have no row-level security) over them.
async fn view_warnings(
    conn: &mut sqlx::PgConnection,
    protected: &[i64],
    warnings: &mut Vec<String>,
) -> Result<()> {
    if protected.is_empty() {
        return Ok(());
    }
    let views: Vec<ViewRow> = sqlx::query_as(
        "SELECT DISTINCT vn.nspname::text, v.relname::text, v.relkind::text,
                    tn.nspname::text, t.relname::text,
                    (o.rolsuper OR o.rolbypassrls), COALESCE(v.reloptions, '{}')::text[]
               FROM pg_catalog.pg_rewrite rw
               JOIN pg_catalog.pg_class v ON v.oid = rw.ev_class
               JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
               JOIN pg_catalog.pg_roles o ON o.oid = v.relowner
               JOIN pg_catalog.pg_depend d
                 ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = rw.oid
                AND d.refclassid = 'pg_catalog.pg_class'::regclass
               JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
               JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
              WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid
                AND t.oid = ANY (SELECT x::oid FROM unnest($1::int8[]) x)
              ORDER BY 1, 2, 4, 5",
    )
    .bind(protected)
    .fetch_all(&mut *conn)
    .await
    .context("looking for views over protected tables")?;
    for (vs, vt, kind, ts, tt, owner_bypasses, options) in views {
        if kind == "m" {
            warnings.push(format!(
                "Materialized view {vs}.{vt} stores rows of protected table {ts}.{tt}; \
                 materialized views have no row-level security, so its readers see whatever \
                 its last refresh saw."
            ));
            continue;
        }
        let invoker = options.iter().any(|o| {
            o.split_once('=').is_some_and(|(k, v)| {
                k == "security_invoker" && matches!(v, "true" | "on" | "1" | "yes")
            })
        });
        if owner_bypasses && !invoker {
            warnings.push(format!(
                "View {vs}.{vt} reads protected table {ts}.{tt} with its owner's rights, and its \
                 owner bypasses row-level security: every tenant's rows show through it; \
                 recreate it WITH (security_invoker = true)."
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    /// `inspect` must be usable from spawned tasks and axum handlers.
    #[allow(dead_code)]
    fn inspect_future_is_send(db: PgPool) {
        let exempt = vec!["countries".to_owned()];
        assert_send(&async move {
            inspect(
                &db,
                Expected {
                    mode: EnforcementMode::Strict,
                    column: "tenant_id",
                    exempt: &exempt,
                    exempt_configured: true,
                    app_role: Some("app"),
                },
            )
            .await
        });
    }
}
