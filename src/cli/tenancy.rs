//! `landlord tenancy apply | status` (the seed's tenancy:status, plus the
//! command that installs the database-side enforcement).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::{
    cli::{BadInput, exit_status},
    config::Settings,
    tenancy::{
        EnforcementMode,
        config::{Source, TenancyConfig},
        inspect, install,
    },
    tenant_schema,
};

#[derive(Debug, Subcommand)]
pub enum TenancyCommand {
    /// Install row-level security on a shared database (strict/soft), or remove it (disabled). Idempotent.
    Apply {
        /// The shared database.
        #[arg(long)]
        database: String,
        /// Its server (a configured name).
        #[arg(long, default_value = "default")]
        server: String,
        /// Remove the protection even though tenancy is off only because
        /// auto-detect found no multi-tenant channel (TENANCY_ENABLED unset).
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The resolved configuration and where each value came from; --detailed adds every table of
    /// --database, or of every shared database the catalog knows.
    Status {
        /// Per table: tenant column, index, RLS enabled/forced, policy current, exempt; plus warnings.
        #[arg(long)]
        detailed: bool,
        /// The shared database to inspect (with --detailed; default: every shared database
        /// of the catalog's shared tenants, each on its server).
        #[arg(long)]
        database: Option<String>,
        /// Its server (a configured name).
        #[arg(long, default_value = "default")]
        server: String,
        /// The role the application connects as (warned about if it bypasses RLS).
        #[arg(long)]
        app_role: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn check_db(settings: &Settings, server: &str, db: &str) -> Result<()> {
    if !settings.servers.contains_key(server) {
        return Err(BadInput(format!("database server {server:?} is not configured")).into());
    }
    crate::ident::validate_db_name(db).map_err(|e| BadInput(format!("database {db:?}: {e}")))?;
    Ok(())
}

pub async fn run(c: TenancyCommand, settings: &Settings) -> Result<ExitCode> {
    match c {
        TenancyCommand::Apply {
            database,
            server,
            force,
            json,
        } => apply(settings, &server, &database, force, json).await,
        TenancyCommand::Status {
            detailed,
            database,
            server,
            app_role,
            json,
        } => {
            let targets = match (detailed, database) {
                (false, _) => Vec::new(),
                (true, Some(db)) => vec![(server, db)],
                (true, None) => shared_databases(settings).await?,
            };
            status(settings, &targets, detailed, app_role.as_deref(), json).await
        }
    }
}

/// Every (server, database) holding shared tenants in the catalog, once each.
async fn shared_databases(settings: &Settings) -> Result<Vec<(String, String)>> {
    let pool = crate::cli::catalog(settings).await?;
    let tenants = crate::tenants::list(&pool, None).await?;
    pool.close().await;
    let found: std::collections::BTreeSet<(String, String)> = tenants
        .into_iter()
        .filter(|t| t.isolation == crate::tenants::Isolation::Shared)
        .map(|t| (t.db_server, t.db_name))
        .collect();
    Ok(found.into_iter().collect())
}

/// `tenancy apply`: checks the inputs and the secret, refuses a removal that
/// only auto-detect asked for, installs (or removes) the policies, prints them.
async fn apply(
    settings: &Settings,
    server: &str,
    database: &str,
    force: bool,
    json: bool,
) -> Result<ExitCode> {
    let cfg = &settings.tenancy;
    check_db(settings, server, database)?;
    let mode = cfg.effective_mode();
    let secret = context_secret(cfg, mode)?;
    let pool = tenant_schema::pool_on(settings, server, database).await?;
    if disabled_by_auto_detect(cfg)
        && !force
        && let Err(e) = refuse_guessed_removal(&pool, cfg, database).await
    {
        pool.close().await;
        return Err(e);
    }
    let applied = install::apply(
        &pool,
        &install::Plan {
            mode,
            column: &cfg.tenant_column.value,
            exempt: &cfg.exempt_tables.value,
            secret: &secret,
        },
    )
    .await;
    pool.close().await;
    let applied = applied?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"mode": mode, "database": database, "tables": applied})
            )?
        );
    } else {
        println!("{database}: mode {}", mode.as_str());
        for a in &applied {
            println!("  {:<10} {}.{}", a.action, a.schema, a.table);
        }
        if applied.is_empty() {
            println!(
                "  no table has the tenant column {:?}",
                cfg.tenant_column.value
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret the policies verify tenant contexts with; none is needed to
/// remove them.
fn context_secret(cfg: &TenancyConfig, mode: EnforcementMode) -> Result<Vec<u8>> {
    match (&cfg.context_secret, mode) {
        (Some(s), _) => Ok(s.expose_secret().to_vec()),
        (None, EnforcementMode::Disabled) => Ok(Vec::new()),
        (None, _) => Err(BadInput(
            "tenancy is on but TENANCY_CONTEXT_SECRET is not set (64 hex characters); nothing was changed".into(),
        )
        .into()),
    }
}

/// Removing every policy is never a guess: refuses unless there is nothing
/// to remove (the caller skips this when the operator said so).
async fn refuse_guessed_removal(pool: &PgPool, cfg: &TenancyConfig, database: &str) -> Result<()> {
    let protected = install::protected_tables(pool, &cfg.tenant_column.value).await?;
    if protected.is_empty() {
        return Ok(());
    }
    Err(BadInput(format!(
        "tenancy is off only because auto-detect found no channel with \
         tenant_mode = \"multi\" (TENANCY_ENABLED and [tenancy] enabled are unset), \
         and applying that would remove the row-level security of {} table(s) of \
         {database} ({}); nothing was changed. To remove it, say so: \
         TENANCY_ENABLED=false, TENANCY_ENFORCEMENT_MODE=disabled, or --force. \
         To keep it, set TENANCY_ENABLED=true or a channel's tenant_mode = \"multi\".",
        protected.len(),
        protected.join(", ")
    ))
    .into())
}

/// One inspected shared database.
#[derive(serde::Serialize)]
struct Inspected {
    server: String,
    database: String,
    #[serde(flatten)]
    status: inspect::DatabaseStatus,
}

/// `tenancy status`: the configuration, with each of `targets` (the
/// --detailed databases) inspected table by table; exits 1 when there is a warning.
async fn status(
    settings: &Settings,
    targets: &[(String, String)],
    detailed: bool,
    app_role: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let cfg = &settings.tenancy;
    let mut warnings = config_warnings(cfg);
    let mut inspected = Vec::new();
    for (server, db) in targets {
        let st = inspect_database(settings, server, db, app_role).await?;
        let prefix = if targets.len() > 1 {
            format!("{db} (server {server}): ")
        } else {
            String::new()
        };
        warnings.extend(st.warnings.iter().map(|w| format!("{prefix}{w}")));
        if let Some(w) = violation_warning(cfg, &st) {
            warnings.push(format!("{prefix}{w}"));
        }
        inspected.push(Inspected {
            server: server.clone(),
            database: db.clone(),
            status: st,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "config": cfg,
                "effective_mode": cfg.effective_mode(),
                "secrets": {
                    "context_secret": cfg.context_secret.is_some(),
                    "jwt_secret": cfg.jwt_secret.is_some(),
                    "bypass_url": cfg.bypass_url.is_some(),
                },
                // The one database of --database (as before), else null.
                "database": if targets.len() == 1 { inspected.first().map(|i| &i.status) } else { None },
                "databases": inspected,
                "warnings": warnings,
            }))?
        );
    } else {
        print_config(cfg);
        if detailed && inspected.is_empty() {
            println!();
            println!("no shared tenant in the catalog: nothing to inspect (--database names one)");
        }
        for i in &inspected {
            if targets.len() > 1 {
                println!();
                println!("database {} (server {})", i.database, i.server);
            }
            print_tables(&i.status);
        }
        for w in &warnings {
            println!("warning: {w}");
        }
    }
    Ok(exit_status(warnings.is_empty()))
}

async fn inspect_database(
    settings: &Settings,
    server: &str,
    db: &str,
    app_role: Option<&str>,
) -> Result<inspect::DatabaseStatus> {
    let cfg = &settings.tenancy;
    check_db(settings, server, db)?;
    let pool = tenant_schema::pool_on(settings, server, db).await?;
    let st = inspect::inspect(
        &pool,
        inspect::Expected {
            mode: cfg.effective_mode(),
            column: &cfg.tenant_column.value,
            exempt: &cfg.exempt_tables.value,
            exempt_configured: cfg.exempt_tables.source != Source::Default,
            app_role,
        },
    )
    .await;
    pool.close().await;
    st
}

fn print_tables(st: &inspect::DatabaseStatus) {
    println!();
    let mut table = super::table::TextTable::new(&[
        "TABLE", "COLUMN", "TYPE", "INDEX", "RLS", "FORCED", "POLICY", "EXEMPT",
    ]);
    for t in &st.tables {
        table.row([
            format!("{}.{}", t.schema, t.table),
            yes(t.has_column).to_string(),
            t.column_type.clone().unwrap_or_else(|| "-".into()),
            yes(t.indexed).to_string(),
            yes(t.rls_enabled).to_string(),
            yes(t.rls_forced).to_string(),
            if t.policy_current {
                "current"
            } else if t.policy.is_some() {
                "old"
            } else {
                "-"
            }
            .to_string(),
            yes(t.exempt).to_string(),
        ]);
    }
    table.print();
    println!("violations recorded (soft mode): {}", st.violations);
}

/// Mode in force `disabled` only because `enabled` was left to auto-detect
/// and no channel is multi-tenant (not an explicit TENANCY_ENABLED=false or
/// enforcement mode `disabled`).
fn disabled_by_auto_detect(cfg: &TenancyConfig) -> bool {
    cfg.effective_mode() == EnforcementMode::Disabled
        && cfg.enabled.source == Source::AutoDetect
        && cfg.enforcement_mode.value != EnforcementMode::Disabled
}

/// TENANCY_ALERT_VIOLATIONS: queries that ran without a tenant context
/// (soft mode records them) are a warning, so `status` exits 1.
fn violation_warning(cfg: &TenancyConfig, st: &inspect::DatabaseStatus) -> Option<String> {
    if !cfg.alert_violations.value
        || st.violations == 0
        || cfg.effective_mode() == EnforcementMode::Disabled
    {
        return None;
    }
    let last = st
        .last_violation
        .map(|t| format!(", the latest at {}", t.to_rfc3339()))
        .unwrap_or_default();
    Some(format!(
        "{} quer{} ran without a tenant context (soft mode let {} through unfiltered{last}); strict \
         mode would refuse {}: see landlord_tenancy.violations, fix the code, then delete the rows \
         (or set TENANCY_ALERT_VIOLATIONS=false).",
        st.violations,
        if st.violations == 1 { "y" } else { "ies" },
        if st.violations == 1 { "it" } else { "them" },
        if st.violations == 1 { "it" } else { "them" },
    ))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn config_warnings(cfg: &TenancyConfig) -> Vec<String> {
    let mut w = Vec::new();
    if cfg.effective_mode() != EnforcementMode::Disabled {
        if cfg.context_secret.is_none() {
            w.push("tenancy is on but TENANCY_CONTEXT_SECRET is not set: no tenant context can be signed".into());
        }
        if cfg.jwt_secret.is_none() {
            w.push("TENANCY_JWT_SECRET is not set: the request layer cannot resolve tenants from tokens".into());
        }
    }
    w
}

fn print_config(cfg: &TenancyConfig) {
    println!("{:<20} {}", "enabled", cfg.enabled);
    println!(
        "{:<20} {} (in force: {})",
        "enforcement_mode",
        cfg.enforcement_mode,
        cfg.effective_mode().as_str()
    );
    println!("{:<20} {}", "tenant_column", cfg.tenant_column);
    println!(
        "{:<20} {:?} ({})",
        "exempt_tables", cfg.exempt_tables.value, cfg.exempt_tables.source
    );
    for ch in &cfg.channels {
        println!(
            "{:<20} {} (tenant_mode {})",
            format!("channel {}", ch.name),
            if ch.enabled.value {
                format!("on ({})", ch.enabled.source)
            } else {
                format!("off ({})", ch.enabled.source)
            },
            ch.tenant_mode.as_deref().unwrap_or("unset")
        );
    }
    println!("{:<20} {}", "log_bypasses", cfg.log_bypasses);
    println!("{:<20} {}", "alert_violations", cfg.alert_violations);
    println!("{:<20} {}", "cache_context", cfg.cache_context);
    println!(
        "{:<20} context {}, jwt {}, bypass role {}",
        "secrets",
        if cfg.context_secret.is_some() {
            "set"
        } else {
            "missing"
        },
        if cfg.jwt_secret.is_some() {
            "set"
        } else {
            "missing"
        },
        if cfg.bypass_url.is_some() {
            "set"
        } else {
            "missing"
        }
    );
}
