//! `landlord schedule …`: what the scheduler will fire (`list`), firing a
//! schedule now (`run`), and past firings (`history`).
//!
//! Times come from the catalog's clock (`scheduler::catalog_now`), never
//! this host's: `run` records its firing at the catalog's now, and `list`
//! shows the next fire time after it.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use clap::Subcommand;

use crate::{
    broker::Broker,
    cli::{BadInput, catalog},
    config::Settings,
    runtime::{Registry, relay, worker::owner_id},
    scheduler::{self, Schedule, report},
};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Every schedule: next fire time in its own time zone, last firing and its jobs' outcomes.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Fire a schedule now (same dedupe rules as the scheduler; waits while another process fans it out).
    Run {
        /// The schedule's name, as configured.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Past firings of a schedule, newest first.
    History {
        /// The schedule's name, as configured.
        name: String,
        /// At most this many firings, newest first (clamped to 1-10000).
        #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn find<'a>(schedules: &'a [Schedule], name: &str) -> Result<&'a Schedule> {
    report::find(schedules, name).map_err(|e| BadInput(e).into())
}

pub async fn run(
    cmd: ScheduleCommand,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
) -> Result<ExitCode> {
    let schedules = scheduler::parse_all(&settings.schedules, &registry)
        .map_err(|e| BadInput(format!("invalid schedules:\n{e}")))?;
    let pool = catalog(&settings).await?;
    match cmd {
        ScheduleCommand::List { json } => {
            let rows = report::list(&pool, &schedules).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = super::table::TextTable::new(&[
                    "name", "cron", "timezone", "kind", "next", "last",
                ]);
                for r in &rows {
                    let last = match &r.last {
                        Some(l) => format!(
                            "{} {} jobs={} {}",
                            l.fire_at
                                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                            l.status,
                            l.jobs,
                            serde_json::to_string(&r.last_outcomes)?
                        ),
                        None => "never".into(),
                    };
                    t.row([
                        r.name.as_str(),
                        &r.cron,
                        &r.timezone,
                        &r.kind,
                        r.next.as_deref().unwrap_or("-"),
                        &last,
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Run { name, json } => {
            let s = find(&schedules, &name)?;
            let me = owner_id("cli");
            let f = report::run_now(&pool, &registry, s, &me).await?;
            let broker = Broker::new(&settings.broker, &me);
            relay::drain(&pool, &broker).await;
            broker.close().await;
            let fire_at = f.fire_at;
            if json {
                let v = serde_json::json!({
                    "schedule": f.schedule, "fire_at": fire_at, "jobs": f.jobs, "skipped": f.skipped,
                });
                println!("{v}");
            } else {
                println!(
                    "{name}\t{}\tjobs={}\tskipped={}",
                    fire_at.to_rfc3339(),
                    f.jobs,
                    f.skipped
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::History { name, limit, json } => {
            find(&schedules, &name)?;
            let rows = report::history(&pool, &name, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{}\t{}\tjobs={}\tskipped={}",
                        r.fire_at.to_rfc3339(),
                        r.status,
                        r.jobs,
                        r.skipped
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
