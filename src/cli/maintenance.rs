//! `landlord maintenance`: the seed's tenants:maintenance. One `maintenance`
//! job per tenant with the chosen steps (see `workers/maintenance.rs`).

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Args;

use crate::{
    cli::{BadInput, RunOpts, catalog, enqueue, targets},
    config::Settings,
    runtime::{Job, Registry},
    workers::maintenance::Maintenance,
};

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
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
    /// Back up first; the other steps run only if the backup succeeded.
    #[arg(long)]
    pub backup: bool,
    /// Rebuild indexes (REINDEX … CONCURRENTLY; the tenant keeps working).
    #[arg(long)]
    pub optimize: bool,
    /// Delete rows older than --days per the cleanup rules (LANDLORD_CLEANUP_RULES), in small batches.
    #[arg(long)]
    pub cleanup: bool,
    /// VACUUM (ANALYZE) to reclaim space.
    #[arg(long)]
    pub vacuum: bool,
    /// With --vacuum: VACUUM FULL (locks each table while it is rewritten).
    #[arg(long, requires = "vacuum")]
    pub full: bool,
    /// Refresh planner statistics (ANALYZE).
    #[arg(long)]
    pub analyze: bool,
    /// Age in days beyond which --cleanup deletes (default: each rule's, else 90).
    #[arg(long, allow_negative_numbers = true)]
    pub days: Option<u32>,
    /// Report what each step would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

pub async fn run(
    a: MaintenanceArgs,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let job = Maintenance {
        analyze: a.analyze,
        vacuum: a.vacuum,
        full: a.full,
        optimize: a.optimize,
        cleanup: a.cleanup,
        days: a.days,
        dry_run: a.dry_run,
        backup: a.backup,
    };
    job.validate().map_err(BadInput)?;
    let pool = catalog(&settings).await?;
    let slugs = targets::slugs(&pool, &a.tenant, a.all, |_| true).await?;
    if slugs.is_empty() {
        eprintln!("no active tenants");
        return Ok(ExitCode::SUCCESS);
    }
    let reqs = enqueue::per_tenant(&job, &slugs)?;
    enqueue::submit(&pool, settings, registry, reqs, &a.run).await
}
