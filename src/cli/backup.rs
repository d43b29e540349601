//! `landlord backup` (the seed's tenants:backup): one `backup` job per
//! tenant, retention after each; `--check` runs the requirement checks
//! (`landlord doctor`) instead.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Args;

use crate::{
    cli::{BadInput, RunOpts, catalog, enqueue, targets},
    config::Settings,
    runtime::{Job, Registry},
    tenants::Tenant,
    workers::backup::Backup,
};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Tenant slug(s); repeat the flag or separate with commas.
    #[arg(long, value_delimiter = ',', conflicts_with = "all")]
    pub tenant: Vec<String>,
    /// Every active tenant.
    #[arg(long)]
    pub all: bool,
    /// Keep this many newest backups per tenant afterwards (default: LANDLORD_BACKUP_RETENTION, keep:5).
    #[arg(long, allow_negative_numbers = true)]
    pub keep: Option<u32>,
    /// Retention policy for this run instead of --keep: keep:N or gfs:days=D,daily=N,weekly=N,monthly=N,yearly=N.
    #[arg(long, conflicts_with = "keep")]
    pub retention: Option<String>,
    /// zstd or gzip (default: LANDLORD_BACKUP_CODEC, zstd).
    #[arg(long)]
    pub codec: Option<String>,
    /// Put the new backups on legal hold with this reason (never pruned).
    #[arg(long)]
    pub hold: Option<String>,
    /// Check the requirements (pg_dump, servers, store, broker, catalog) and exit; same as `landlord doctor`.
    #[arg(long, conflicts_with_all = ["tenant", "all"])]
    pub check: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

pub async fn run(
    a: BackupArgs,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    if a.check {
        return super::doctor::run(&settings, a.run.json).await;
    }
    if a.tenant.is_empty() && !a.all {
        return Err(
            BadInput("name tenants with --tenant, or use --all (or --check)".into()).into(),
        );
    }
    let job = Backup {
        keep: a.keep,
        retention: a.retention.clone(),
        codec: a.codec.clone(),
        hold: a.hold.clone(),
    };
    job.validate().map_err(BadInput)?;
    let pool = catalog(&settings).await?;
    let slugs = targets::slugs(&pool, &a.tenant, a.all, Tenant::is_provisioned).await?;
    if slugs.is_empty() {
        eprintln!("no active tenants");
        return Ok(ExitCode::SUCCESS);
    }
    let reqs = enqueue::per_tenant(&job, &slugs)?;
    enqueue::submit(&pool, settings, registry, reqs, &a.run).await
}
