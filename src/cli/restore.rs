//! `landlord restore TENANT` (the seed's tenants:restore): `--list` the
//! backups, or restore `--latest` / `--backup NAME` after confirmation
//! (`--yes` to skip it). A name in the seed's format that the catalog does
//! not know is looked up in the store and imported first.

use std::{
    io::{BufRead, IsTerminal, Write},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Result;
use clap::Args;

use crate::{
    backup::{Store, catalog, import},
    cli::{BadInput, RunOpts, backups, catalog as open_catalog, enqueue, targets},
    config::Settings,
    runtime::{Job, Registry},
    workers::restore::Restore,
};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The tenant's slug.
    pub tenant: String,
    /// Restore this backup (file name as listed, or backup id).
    #[arg(long, conflicts_with_all = ["latest", "list"])]
    pub backup: Option<String>,
    /// Restore the newest complete backup.
    #[arg(long, conflicts_with = "list")]
    pub latest: bool,
    /// List the tenant's backups and exit.
    #[arg(long)]
    pub list: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub run: RunOpts,
}

pub async fn run(
    a: RestoreArgs,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let pool = open_catalog(&settings).await?;
    let t = targets::tenant(&pool, &a.tenant).await?;
    if a.list {
        return backups::print_list(&pool, &t, a.run.json).await;
    }
    let chosen = match (&a.backup, a.latest) {
        (Some(name), _) => match catalog::find(&pool, t.id, name).await? {
            Some(b) => b,
            None => {
                let store = Store::open(&settings.backup).await?;
                import::import_named(&pool, &store, &t, name)
                    .await
                    .map_err(|e| BadInput(format!("{e:#}")))?
                    .ok_or_else(|| {
                        BadInput(format!(
                            "tenant {} has no backup named {name:?} (see `landlord restore {} --list`)",
                            t.slug, t.slug
                        ))
                    })?
            }
        },
        (None, true) => catalog::complete_of(&pool, t.id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BadInput(format!("tenant {} has no complete backup", t.slug)))?,
        (None, false) => {
            return Err(BadInput("choose --latest, --backup NAME or --list".into()).into());
        }
    };
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(BadInput(
                "restore replaces the live database: confirm with --yes (no terminal to ask on)"
                    .into(),
            )
            .into());
        }
        eprint!(
            "Restore {} from {} (taken {}) over its live database {}? The current database is kept for {} h.\nType the tenant slug to confirm: ",
            t.slug,
            chosen.name(),
            chosen
                .completed_at
                .map(|c| c.to_rfc3339())
                .unwrap_or_default(),
            t.db_name,
            settings.backup.keep_pre_restore.as_secs() / 3600
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != t.slug {
            eprintln!("not confirmed; nothing changed");
            return Ok(ExitCode::from(super::EXIT_BAD_INPUT));
        }
    }
    let job = Restore {
        backup: Some(chosen.id.to_string()),
    };
    job.validate().map_err(BadInput)?;
    let req = job.request(Some(&t.slug), None, None)?;
    enqueue::submit(&pool, settings, registry, vec![req], &a.run).await
}
