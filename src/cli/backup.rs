//! `landlord backup` (the seed's tenants:backup): one `backup` job per
//! tenant, retention after each; `--check` runs the requirement checks
//! (`landlord doctor`) instead.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Args;

use crate::{
    cli::{BadInput, RunOpts, catalog, enqueue},
    config::Settings,
    runtime::{Job, Registry, store::EnqueueRequest},
    tenants::{self, TenantStatus},
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
    #[arg(long)]
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
    let slugs: Vec<String> = if a.all {
        tenants::list(&pool, Some(TenantStatus::Active))
            .await?
            .into_iter()
            .filter(|t| t.is_provisioned())
            .map(|t| t.slug)
            .collect()
    } else {
        for s in &a.tenant {
            tenants::get(&pool, s)
                .await
                .map_err(|e| BadInput(e.to_string()))?;
        }
        a.tenant.clone()
    };
    if slugs.is_empty() {
        eprintln!("no active tenants");
        return Ok(ExitCode::SUCCESS);
    }
    let args = serde_json::to_value(&job)?;
    let reqs = slugs
        .into_iter()
        .map(|slug| EnqueueRequest {
            kind: Backup::KIND.into(),
            tenant: Some(slug),
            args: args.clone(),
            ..Default::default()
        })
        .collect();
    enqueue::submit(&pool, settings, registry, reqs, &a.run).await
}
