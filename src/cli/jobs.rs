//! `landlord jobs …`: list, show, retry, cancel, enqueue any kind, and ping.

use std::{process::ExitCode, str::FromStr, sync::Arc};

use anyhow::Result;
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::{
    cli::{BadInput, RunOpts, actor, catalog, enqueue},
    config::Settings,
    runtime::{
        Compensation, Job, JobStatus, Registry,
        store::{self, DedupeKey, EnqueueRequest, JobActionError, ListFilter},
    },
    workers::ping::{FailMode, Ping},
};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Recent jobs, newest first.
    List(ListArgs),
    /// One job in full.
    Show {
        /// Job id (a UUID).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Queue again a dead, failed or cancelled job (attempts reset).
    Retry {
        /// Job id (a UUID).
        id: String,
        #[command(flatten)]
        run: WaitOpts,
    },
    /// Cancel a queued, retrying or running job.
    Cancel {
        /// Job id (a UUID).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue any job kind with JSON arguments (operators and scripts).
    Enqueue(EnqueueArgs),
    /// A no-op job that proves the fleet answers.
    Ping(PingArgs),
}

#[derive(Debug, Args)]
pub struct WaitOpts {
    /// Follow the job to the end; exit non-zero if it did not succeed.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs with this status: queued, running, retrying, succeeded, failed, dead or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Only jobs of this kind, e.g. backup or ping.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs of the tenant with this slug.
    #[arg(long)]
    pub tenant: Option<String>,
    /// At most this many jobs, newest first (clamped to 1-10000).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    pub limit: i64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Job kind, e.g. analyze or ping.
    pub kind: String,
    /// Tenant slug, for per-tenant kinds.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Arguments as a JSON object.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Job family to publish on instead of the kind's own: provision, backup, maintenance or mail.
    #[arg(long)]
    pub queue: Option<String>,
    /// Return the live job of the same kind and tenant with this key instead of adding a
    /// duplicate (keys given here live in the command line's own namespace, never landlord's).
    #[arg(long)]
    pub dedupe_key: Option<String>,
    /// Attempts before the job is dead (default: the kind's own).
    #[arg(long, allow_negative_numbers = true)]
    pub max_attempts: Option<u32>,
    #[command(flatten)]
    pub run: RunOpts,
}

#[derive(Debug, Args)]
pub struct PingArgs {
    /// Keep a worker busy this many seconds before answering (0-86400).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub hold: f64,
    /// Tenant slug whose lock the ping holds while running.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Job family to send the ping through: provision, backup, maintenance or mail.
    #[arg(long, default_value = "maintenance")]
    pub queue: String,
    /// Make attempts fail: retryable, fatal or panic.
    #[arg(long, value_parser = parse_fail)]
    pub fail: Option<FailMode>,
    /// Fail only the first N attempts.
    #[arg(long, requires = "fail", allow_negative_numbers = true)]
    pub fail_times: Option<u32>,
    /// Attempts before the job is dead (default: 3).
    #[arg(long, allow_negative_numbers = true)]
    pub max_attempts: Option<u32>,
    /// Return the live job of the same kind and tenant with this key instead of adding a
    /// duplicate (keys given here live in the command line's own namespace, never landlord's).
    #[arg(long)]
    pub dedupe_key: Option<String>,
    #[command(flatten)]
    pub run: RunOpts,
}

fn parse_fail(s: &str) -> Result<FailMode, String> {
    match s {
        "retryable" => Ok(FailMode::Retryable),
        "fatal" => Ok(FailMode::Fatal),
        "panic" => Ok(FailMode::Panic),
        _ => Err("expected retryable, fatal or panic".into()),
    }
}

fn parse_id(s: &str) -> Result<Uuid> {
    Uuid::from_str(s.trim()).map_err(|_| {
        BadInput(format!(
            "{:?} is not a job id (a UUID)",
            crate::message::truncate(s)
        ))
        .into()
    })
}

/// The namespace of dedupe keys given with `--dedupe-key` (one for every
/// operator, so two operators' runs of the same key meet).
const CLI_ACTOR: &str = "cli";

fn action_err(e: JobActionError) -> anyhow::Error {
    match e {
        JobActionError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    }
}

pub async fn run(
    cmd: JobsCommand,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let pool = catalog(&settings).await?;
    match cmd {
        JobsCommand::List(a) => {
            let status = a
                .status
                .as_deref()
                .map(JobStatus::from_str)
                .transpose()
                .map_err(|e| BadInput(e.to_string()))?;
            let rows = store::list(
                &pool,
                &ListFilter {
                    status,
                    kind: a.kind,
                    tenant: a.tenant,
                    limit: a.limit,
                },
            )
            .await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = super::table::TextTable::new(&[
                    "id", "kind", "queue", "tenant", "status", "attempts", "created", "",
                ])
                .right(5);
                for r in rows {
                    // A job's leftovers still to undo are worth a glance.
                    let compensation = match r.compensation {
                        Some(Compensation::Pending) => "compensation pending",
                        Some(Compensation::Done) | None => "",
                    };
                    t.row([
                        r.id.to_string(),
                        r.kind,
                        r.queue,
                        r.tenant.unwrap_or_else(|| "-".into()),
                        r.status.to_string(),
                        format!("{}/{}", r.attempts, r.max_attempts),
                        r.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        compensation.to_string(),
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id, json } => {
            let id = parse_id(&id)?;
            let row = store::get(&pool, id)
                .await?
                .ok_or_else(|| BadInput(format!("no job {id}")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&row)?);
            } else {
                let v = serde_json::to_value(&row)?;
                if let Some(obj) = v.as_object() {
                    for (k, v) in obj {
                        println!("{k:<17} {v}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Retry { id, run } => {
            let id = parse_id(&id)?;
            let outbox = store::retry(&pool, id, &actor())
                .await
                .map_err(action_err)?;
            enqueue::publish_now(&pool, &settings, outbox.as_slice()).await;
            println!("{id}\tqueued again");
            if run.wait {
                let rows = crate::cli::wait::follow(&pool, &[id], run.json).await?;
                return enqueue::report(&rows, run.json);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { id, json } => {
            let id = parse_id(&id)?;
            store::cancel(&pool, id, &actor())
                .await
                .map_err(action_err)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"job_id": id, "status": "cancelled"})
                );
            } else {
                println!("{id}\tcancelled");
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Enqueue(a) => {
            let args: serde_json::Value = serde_json::from_str(&a.args)
                .map_err(|e| BadInput(format!("--args is not valid JSON: {e}")))?;
            if !args.is_object() {
                return Err(BadInput("--args must be a JSON object".into()).into());
            }
            let req = EnqueueRequest {
                kind: a.kind,
                tenant: a.tenant,
                args,
                queue: a.queue,
                dedupe_key: a.dedupe_key.map(|k| DedupeKey::caller(CLI_ACTOR, k)),
                max_attempts: a.max_attempts,
                run_at: None,
            };
            enqueue::submit(&pool, settings, registry, vec![req], &a.run).await
        }
        JobsCommand::Ping(a) => {
            let ping = Ping {
                hold_seconds: a.hold,
                fail: a.fail,
                fail_times: a.fail_times,
            };
            // Before it becomes JSON, where NaN and infinity turn into null.
            ping.validate().map_err(BadInput)?;
            let req = EnqueueRequest {
                queue: Some(a.queue),
                max_attempts: a.max_attempts,
                ..ping.request(
                    a.tenant.as_deref(),
                    a.dedupe_key.map(|k| DedupeKey::caller(CLI_ACTOR, k)),
                    None,
                )?
            };
            enqueue::submit(&pool, settings, registry, vec![req], &a.run).await
        }
    }
}
