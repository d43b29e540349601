//! The `landlord` command line: argument definitions and dispatch.
//! Each subcommand's work lives in its own file; this one only routes.
//! Every flag's documentation is its doc comment here or in that file, shown
//! by `--help`.
//!
//! Nothing outside this module and `src/main.rs` imports it. It never writes
//! to the catalog itself: commands call the lifecycle library, the job store
//! or the backup modules, exactly as the HTTP API and the `Landlord` client do.

mod backup;
mod backups;
mod docs;
mod doctor;
mod enqueue;
#[cfg(test)]
mod help_text;
mod jobs;
mod maintenance;
mod restore;
mod schedule;
mod secrets;
mod table;
mod targets;
mod tenancy;
mod tenants;
mod wait;

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Settings};
pub use crate::error::{BadInput, EXIT_BAD_INPUT, EXIT_FAILED};

/// A followed job that did not succeed: exit code 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JobFailed(pub String);

#[derive(Debug, Parser)]
#[command(
    name = "landlord",
    version,
    about = "Tenant lifecycle for multi-tenant SaaS on PostgreSQL, run as a queue-driven worker fleet",
    long_about = "Tenant lifecycle for multi-tenant SaaS on PostgreSQL, run as a queue-driven worker fleet.\n\n\
Configuration comes from LANDLORD_* environment variables and an optional landlord.toml \
(LANDLORD_CONFIG names another file); the environment wins. `landlord config show` prints \
the effective settings with secrets masked."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the catalog database if needed and apply its migrations.
    Migrate,
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a worker: take jobs from RabbitMQ and run them until SIGTERM.
    Worker(WorkerArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Per-tenant maintenance (the seed's tenants:maintenance): cleanup, vacuum, optimize, analyze, dry run.
    Maintenance(maintenance::MaintenanceArgs),
    /// Back up tenant databases (the seed's tenants:backup); --check tests the requirements.
    Backup(backup::BackupArgs),
    /// Restore a tenant from a backup (the seed's tenants:restore): --list, --latest, --backup NAME.
    Restore(restore::RestoreArgs),
    /// Inspect and manage backups: list, stats, delete, hold, prune, verify, monitor, reconcile.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Row-level tenancy for shared databases (the seed's tenancy:status): apply, status.
    #[command(subcommand)]
    Tenancy(tenancy::TenancyCommand),
    /// Check requirements: pg_dump/pg_restore versions, servers, catalog, broker, backup store, disk.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and steer jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Serve the HTTP API for producers that are not Rust (see openapi.json).
    Api(ApiArgs),
    /// Run a scheduler: fire the configured schedules (one leader among replicas).
    Scheduler,
    /// Run worker, scheduler and API in one process (small installs): one catalog pool, one broker session, one /metrics; SIGTERM drains all three.
    Serve(ServeArgs),
    /// Inspect and fire schedules.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// The catalog key that seals tenant passwords: status, rekey (rotation).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Print a shell completion script: `source <(landlord completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), made from these definitions: `landlord man > landlord.1`.
    Man(docs::ManArgs),
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Address to listen on (default LANDLORD_API_LISTEN or 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Address of the HTTP API (default LANDLORD_API_LISTEN or 127.0.0.1:8080).
    #[arg(long)]
    pub api_listen: Option<String>,
    /// Run no worker (take no jobs).
    #[arg(long)]
    pub no_worker: bool,
    /// Run no scheduler (fire no schedules).
    #[arg(long)]
    pub no_scheduler: bool,
    /// Serve no HTTP API.
    #[arg(long)]
    pub no_api: bool,
}

impl ServeArgs {
    /// The roles to run, each resolved and checked before anything starts.
    fn roles(
        &self,
        settings: &Settings,
        registry: &crate::runtime::Registry,
    ) -> Result<crate::serve::Roles> {
        if self.no_worker && self.no_scheduler && self.no_api {
            return Err(BadInput(
                "--no-worker, --no-scheduler and --no-api together leave serve nothing to run"
                    .into(),
            )
            .into());
        }
        let scheduler = if self.no_scheduler {
            None
        } else {
            Some(
                crate::scheduler::parse_all(&settings.schedules, registry)
                    .map_err(|e| BadInput(format!("invalid schedules:\n{e}")))?,
            )
        };
        let api = if self.no_api {
            None
        } else {
            Some(
                crate::api::ApiSettings::from_env(self.api_listen.clone())
                    .map_err(|e| BadInput(format!("{e:#}")))?,
            )
        };
        Ok(crate::serve::Roles {
            worker: !self.no_worker,
            scheduler,
            api,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets masked.
    Show,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Job families to take work from, comma-separated: provision, backup, maintenance, mail (default: LANDLORD_WORKER_QUEUES, else all).
    #[arg(long, value_delimiter = ',')]
    pub queues: Option<Vec<String>>,
    /// Jobs run at once by this process, 1-256 (default: LANDLORD_WORKER_CONCURRENCY, else 4).
    #[arg(long, allow_negative_numbers = true)]
    pub concurrency: Option<usize>,
    /// Address of /metrics, /healthz and /readyz, "off" to disable (default: LANDLORD_LISTEN, else 127.0.0.1:9464).
    #[arg(long)]
    pub listen: Option<String>,
}

impl WorkerArgs {
    /// Puts the flags over the configured worker settings.
    fn apply(self, settings: &mut Settings) -> Result<()> {
        if let Some(q) = self.queues {
            settings.worker.queues =
                config::parse_queues(&q.join(",")).map_err(|e| BadInput(e.to_string()))?;
        }
        if let Some(c) = self.concurrency {
            if c == 0 || c > 256 {
                return Err(BadInput("--concurrency must be between 1 and 256".into()).into());
            }
            settings.worker.concurrency = c;
            settings.catalog.max_connections = config::CatalogSettings::pool_size(c);
        }
        if let Some(l) = self.listen {
            settings.observability.listen = (l != "off").then_some(l);
        }
        Ok(())
    }
}

/// Options every enqueuing command shares.
#[derive(Debug, Args, Clone, Default)]
pub struct RunOpts {
    /// Follow the job(s) to the end; exit non-zero if any did not succeed.
    #[arg(long, conflicts_with = "sync")]
    pub wait: bool,
    /// Run in this process, without a broker (same handler, same records).
    #[arg(long)]
    pub sync: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Documents of the command line need no configuration.
    if let Some(code) = docs::run(&cli.command) {
        return code;
    }
    crate::tls::install_default_crypto();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => return fail(BadInput(format!("{e:#}")).into()),
    };
    // Before the runtime: the trace exporter has a thread and a blocking client of its own.
    let telemetry = match start_telemetry(&cli, &settings) {
        Ok(t) => t,
        Err(e) => return fail(BadInput(format!("{e:#}")).into()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match runtime.block_on(run(cli, settings)) {
        Ok(code) => code,
        Err(e) => fail(e),
    };
    drop(runtime);
    telemetry.shutdown();
    code
}

fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    crate::error::exit_code(&e)
}

/// Long-running roles log at the configured filter; one-shot commands only
/// warnings unless `LANDLORD_LOG` asks for more. Spans are exported whenever
/// an OTLP endpoint is configured.
fn start_telemetry(cli: &Cli, settings: &Settings) -> Result<crate::telemetry::Telemetry> {
    let role = match &cli.command {
        Command::Worker(_) => "worker",
        Command::Api(_) => "api",
        Command::Scheduler => "scheduler",
        Command::Serve(_) => "serve",
        _ => "cli",
    };
    let filter = if role != "cli" || std::env::var("LANDLORD_LOG").is_ok() {
        settings.observability.log_filter.clone()
    } else {
        "warn".to_string()
    };
    crate::telemetry::init(
        settings.observability.log_format,
        &filter,
        settings.observability.traces.as_ref(),
        role,
    )
}

async fn run(cli: Cli, mut settings: Settings) -> Result<ExitCode> {
    let registry = Arc::new(crate::workers::registry());
    match cli.command {
        c @ (Command::Completions { .. } | Command::Man(_)) => {
            Ok(docs::run(&c).unwrap_or(ExitCode::SUCCESS))
        }
        Command::Migrate => {
            crate::db::ensure_database(&settings).await?;
            let pool = crate::db::connect(&settings).await?;
            crate::db::migrate(&pool).await?;
            println!("catalog is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show) => {
            print!("{}", settings.show());
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(a) => {
            a.apply(&mut settings)?;
            crate::runtime::worker::run(Arc::new(settings), registry, crate::shutdown::signal())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(c) => tenants::run(c, Arc::new(settings), registry).await,
        Command::Maintenance(a) => maintenance::run(a, Arc::new(settings), registry).await,
        Command::Jobs(c) => jobs::run(c, Arc::new(settings), registry).await,
        Command::Backup(a) => backup::run(a, Arc::new(settings), registry).await,
        Command::Restore(a) => restore::run(a, Arc::new(settings), registry).await,
        Command::Backups(c) => backups::run(c, Arc::new(settings), registry).await,
        Command::Doctor { json } => doctor::run(&settings, json).await,
        Command::Tenancy(c) => tenancy::run(c, &settings).await,
        Command::Scheduler => {
            let schedules = crate::scheduler::parse_all(&settings.schedules, &registry)
                .map_err(|e| BadInput(format!("invalid schedules:\n{e}")))?;
            let settings = Arc::new(settings);
            crate::scheduler::run(settings, registry, schedules, crate::shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schedule(c) => schedule::run(c, Arc::new(settings), registry).await,
        Command::Secrets(c) => secrets::run(c, &settings).await,
        Command::Serve(a) => {
            let roles = a.roles(&settings, &registry)?;
            a.worker.apply(&mut settings)?;
            crate::serve::run(settings, registry, roles, crate::shutdown::signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Api(a) => {
            let api = crate::api::ApiSettings::from_env(a.listen)
                .map_err(|e| BadInput(format!("{e:#}")))?;
            crate::api::run(
                Arc::new(settings),
                registry,
                api,
                crate::ui::router(),
                crate::shutdown::signal(),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Connects to the catalog and makes sure it is migrated.
pub(crate) async fn catalog(settings: &Settings) -> Result<sqlx::PgPool> {
    let pool = crate::db::connect(settings).await?;
    crate::db::migrate(&pool).await?;
    Ok(pool)
}

/// Exit 0 when `ok`, else 1 (a check that found problems).
pub(crate) fn exit_status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// The actor recorded in the audit log for CLI actions.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}
