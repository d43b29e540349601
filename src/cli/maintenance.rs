//! `landlord maintenance`: the seed's tenants:maintenance. This release runs
//! `--analyze`; the other steps come with the maintenance jobs.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Args;

use crate::{
    cli::{BadInput, RunOpts, catalog, enqueue},
    config::Settings,
    runtime::{Registry, store::EnqueueRequest},
    tenants,
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
    /// Refresh planner statistics (ANALYZE).
    #[arg(long)]
    pub analyze: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

pub async fn run(
    a: MaintenanceArgs,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    if !a.analyze {
        return Err(BadInput("choose at least one step: --analyze".into()).into());
    }
    let pool = catalog(&settings).await?;
    let slugs: Vec<String> = if a.all {
        tenants::list(&pool, Some("active"))
            .await?
            .into_iter()
            .map(|t| t.slug)
            .collect()
    } else {
        // Check every tenant before enqueueing anything: bad input changes nothing.
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
    let reqs = slugs
        .into_iter()
        .map(|slug| EnqueueRequest {
            kind: "analyze".into(),
            tenant: Some(slug),
            args: serde_json::json!({}),
            ..Default::default()
        })
        .collect();
    enqueue::submit(&pool, settings, registry, reqs, &a.run).await
}
