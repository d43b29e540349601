//! `landlord backups …`: list, stats, delete, hold, prune, verify, monitor,
//! reconcile (the seed's TenantBackupService list/delete/getStats, plus
//! laravel-backup's monitor and a store/catalog reconcile).

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::{Args, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    backup::{
        Store, catalog, manage, manage::BackupChangeError, monitor, prune, reconcile, retention,
    },
    cli::{BadInput, RunOpts, actor, catalog as open_catalog, enqueue, exit_status, targets},
    config::Settings,
    runtime::Registry,
    tenants::Tenant,
    workers::verify_backup::VerifyBackup,
};

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// A tenant's complete backups, newest first.
    List {
        /// The tenant's slug.
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A tenant's backup figures from the catalog (count, bytes, oldest, newest, ratio, last duration).
    Stats {
        /// The tenant's slug.
        tenant: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete one backup (object, manifest, then the row). Held backups are refused.
    Delete {
        /// Backup id (a UUID).
        id: Uuid,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put a backup on legal hold (never pruned or deleted), or release it.
    Hold {
        /// Backup id (a UUID).
        id: Uuid,
        /// Release the hold instead.
        #[arg(long)]
        release: bool,
        /// Why (recorded in the catalog and the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply retention now; --dry-run shows what would be deleted and why the rest is kept.
    Prune(PruneArgs),
    /// Read backups back and check them (checksum, decryption, archive listing); --restore-test restores into a scratch database.
    Verify(VerifyArgs),
    /// Exit 1 naming tenants whose newest backup is too old or whose backups are too big.
    Monitor(MonitorArgs),
    /// Compare the store with the catalog: orphan objects, missing objects, incomplete uploads.
    Reconcile {
        /// Abort stale uploads, delete orphan landlord objects, mark rows without objects failed.
        #[arg(long)]
        fix: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Tenant slug(s); repeat the flag or separate with commas.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub tenant: Vec<String>,
    /// Every tenant with backups.
    #[arg(long)]
    pub all: bool,
    /// Keep this many newest backups per tenant, at least 1 (default: LANDLORD_BACKUP_RETENTION, keep:5).
    #[arg(long, allow_negative_numbers = true)]
    pub keep: Option<u32>,
    /// Retention policy instead of --keep: keep:N or gfs:days=D,daily=N,weekly=N,monthly=N,yearly=N.
    #[arg(long, conflicts_with = "keep")]
    pub retention: Option<String>,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Tenant slug(s); repeat the flag or separate with commas.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub tenant: Vec<String>,
    /// Every active tenant.
    #[arg(long)]
    pub all: bool,
    /// A backup (file name or id) instead of the newest; only with one tenant.
    #[arg(long)]
    pub backup: Option<String>,
    /// Also restore into a scratch database, check it and drop it.
    #[arg(long)]
    pub restore_test: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Maximum age of a tenant's newest backup, in hours.
    #[arg(long, default_value_t = monitor::DEFAULT_MAX_AGE_HOURS, allow_negative_numbers = true)]
    pub max_age_hours: u64,
    /// Maximum total size of a tenant's stored backups, in MiB (default: no limit).
    #[arg(long, allow_negative_numbers = true)]
    pub max_storage_mib: Option<u64>,
    /// Also write the counts in Prometheus text format to this file (node exporter textfile collector).
    #[arg(long)]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    c: BackupsCommand,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let pool = open_catalog(&settings).await?;
    match c {
        BackupsCommand::List { tenant, json } => {
            let t = targets::tenant(&pool, &tenant).await?;
            print_list(&pool, &t, json).await
        }
        BackupsCommand::Stats { tenant, json } => stats(&pool, &tenant, json).await,
        BackupsCommand::Delete { id, json } => delete(&pool, &settings, id, json).await,
        BackupsCommand::Hold {
            id,
            release,
            reason,
            json,
        } => hold(&pool, id, release, reason.as_deref(), json).await,
        BackupsCommand::Prune(a) => prune_cmd(&pool, &settings, a).await,
        BackupsCommand::Verify(a) => verify(&pool, settings, registry, a).await,
        BackupsCommand::Monitor(a) => monitor_cmd(&pool, a).await,
        BackupsCommand::Reconcile { fix, json } => reconcile_cmd(&pool, &settings, fix, json).await,
    }
}

/// `backups stats`: the catalog's figures for one tenant.
async fn stats(pool: &PgPool, tenant: &str, json: bool) -> Result<ExitCode> {
    let t = targets::tenant(pool, tenant).await?;
    let s = catalog::stats(pool, t.id).await?;
    let ratio = if s.stored_bytes > 0 {
        s.raw_bytes as f64 / s.stored_bytes as f64
    } else {
        0.0
    };
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["tenant"] = t.slug.clone().into();
        v["ratio"] = ratio.into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |d: Option<chrono::DateTime<chrono::Utc>>| {
        d.map(|d| d.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    println!("tenant          {}", t.slug);
    println!("backups         {} ({} held)", s.count, s.held);
    println!(
        "stored          {} ({} raw, ratio {ratio:.2})",
        human(s.stored_bytes),
        human(s.raw_bytes)
    );
    println!("oldest          {}", or_dash(s.oldest));
    println!("newest          {}", or_dash(s.newest));
    println!(
        "last duration   {}",
        s.last_duration_ms
            .map(|d| format!("{:.1} s", d as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    );
    println!("failed (7 days) {}", s.failed_last_7d);
    Ok(ExitCode::SUCCESS)
}

/// Refusals are bad input; anything else is a failure.
fn change_err(e: BackupChangeError) -> anyhow::Error {
    match e {
        BackupChangeError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    }
}

/// `backups delete`.
async fn delete(pool: &PgPool, settings: &Settings, id: Uuid, json: bool) -> Result<ExitCode> {
    let b = manage::delete(pool, &settings.backup, id, &actor())
        .await
        .map_err(change_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!("deleted {} ({})", b.id, b.name());
    }
    Ok(ExitCode::SUCCESS)
}

/// `backups hold [--release]`.
async fn hold(
    pool: &PgPool,
    id: Uuid,
    release: bool,
    reason: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let b = manage::set_hold(pool, id, !release, reason, &actor())
        .await
        .map_err(change_err)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
    } else {
        println!(
            "{} {id} ({})",
            if release { "released" } else { "held" },
            b.name()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `backups verify`: one `verify_backup` job per tenant.
async fn verify(
    pool: &PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    a: VerifyArgs,
) -> Result<ExitCode> {
    if a.backup.is_some() && (a.all || a.tenant.len() != 1) {
        return Err(BadInput("--backup needs exactly one --tenant".into()).into());
    }
    let job = VerifyBackup {
        backup: a.backup.clone(),
        restore_test: a.restore_test,
    };
    let slugs = targets::slugs(pool, &a.tenant, a.all, Tenant::is_provisioned).await?;
    let reqs = enqueue::per_tenant(&job, &slugs)?;
    enqueue::submit(pool, settings, registry, reqs, &a.run).await
}

/// `backups monitor`: exit 1 when any tenant is stale or over the limit.
async fn monitor_cmd(pool: &PgPool, a: MonitorArgs) -> Result<ExitCode> {
    let report = monitor::run(pool, a.max_age_hours, a.max_storage_mib.map(|m| m << 20)).await?;
    if let Some(path) = &a.metrics_file {
        let text = format!(
            "# HELP landlord_backup_monitor_tenants Tenants per backup health check result\n\
             # TYPE landlord_backup_monitor_tenants gauge\n\
             landlord_backup_monitor_tenants{{check=\"stale\"}} {}\n\
             landlord_backup_monitor_tenants{{check=\"oversize\"}} {}\n\
             landlord_backup_monitor_tenants{{check=\"healthy\"}} {}\n",
            report.stale.len(),
            report.oversize.len(),
            report.healthy
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} tenants: {} healthy, {} stale (newest backup older than {} h), {} over the storage limit",
            report.tenants,
            report.healthy,
            report.stale.len(),
            report.max_age_hours,
            report.oversize.len()
        );
        for (slug, newest) in &report.stale {
            match newest {
                Some(n) => println!("stale     {slug}: newest backup {}", n.to_rfc3339()),
                None => println!("stale     {slug}: no backup"),
            }
        }
        for (slug, bytes) in &report.oversize {
            println!("oversize  {slug}: {}", human(*bytes));
        }
    }
    Ok(exit_status(report.is_healthy()))
}

/// `backups reconcile [--fix]`: exit 1 when unclean and not fixed.
async fn reconcile_cmd(
    pool: &PgPool,
    settings: &Settings,
    fix: bool,
    json: bool,
) -> Result<ExitCode> {
    let store = Store::open(&settings.backup).await?;
    let report = reconcile::run(pool, &store, fix).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let done = |what: &'static str| if fix { what } else { "" };
        println!("{}: {} objects", report.store, report.objects);
        for k in &report.orphan_objects {
            println!("orphan object      {k}{}", done(" (deleted)"));
        }
        for (id, k) in &report.missing_objects {
            println!(
                "missing object     {k} of backup {id}{}",
                done(" (row marked failed)")
            );
        }
        for (k, id) in &report.incomplete_uploads {
            println!("incomplete upload  {k} ({id}){}", done(" (aborted)"));
        }
        for k in &report.importable {
            println!("importable         {k} (restore --backup NAME imports it)");
        }
        if report.is_clean() {
            println!("clean");
        }
    }
    Ok(exit_status(report.is_clean() || fix))
}

/// `backups prune`: apply a policy to each tenant, or show what it would do.
async fn prune_cmd(pool: &PgPool, settings: &Settings, a: PruneArgs) -> Result<ExitCode> {
    let policy = match (a.keep, &a.retention) {
        (Some(0), _) => return Err(BadInput("--keep must be at least 1".into()).into()),
        (Some(n), _) => retention::Policy::KeepLast(n),
        (None, Some(r)) => retention::parse(r).map_err(BadInput)?,
        (None, None) => settings.backup.retention.clone(),
    };
    let slugs = if a.all {
        prune::tenants_with_backups(pool).await?
    } else {
        targets::slugs(pool, &a.tenant, false, Tenant::is_provisioned).await?
    };
    let store = Store::open(&settings.backup).await?;
    let mut reports = Vec::new();
    for slug in slugs {
        let t = targets::tenant(pool, &slug).await?;
        reports.push(prune::apply(pool, &store, &t, &policy, a.dry_run).await?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!(
                "{}: policy {}, {} kept, {} {}",
                r.tenant,
                r.policy,
                r.kept,
                r.deleted.len(),
                if r.dry_run {
                    "would be deleted"
                } else {
                    "deleted"
                }
            );
            for (name, verdict) in &r.plan {
                println!("  {verdict:<18} {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a tenant's complete backups (also `restore TENANT --list`).
pub async fn print_list(pool: &PgPool, t: &Tenant, json: bool) -> Result<ExitCode> {
    let rows = catalog::complete_of(pool, t.id).await?;
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                v["name"] = b.name().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("tenant {} has no backups", t.slug);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t =
        super::table::TextTable::new(&["ID", "TAKEN", "STORED", "RAW", "CODEC", "HOLD", "NAME"])
            .right(2)
            .right(3);
    for b in &rows {
        t.row([
            b.id.to_string(),
            b.completed_at
                .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default(),
            human(b.stored_bytes.unwrap_or(0)),
            b.raw_bytes.map(human).unwrap_or_else(|| "-".into()),
            format!("{}{}", b.codec, if b.encrypted { "+age" } else { "" }),
            if b.held { "yes" } else { "" }.to_string(),
            b.name().to_string(),
        ]);
    }
    t.print();
    Ok(ExitCode::SUCCESS)
}

fn human(bytes: i64) -> String {
    let b = bytes as f64;
    if b >= 1073741824.0 {
        format!("{:.2} GiB", b / 1073741824.0)
    } else if b >= 1048576.0 {
        format!("{:.1} MiB", b / 1048576.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}
