//! `landlord schedule …`: what the scheduler will fire (`list`), firing a
//! schedule now (`run`), and past firings (`history`).
//!
//! Times come from the catalog's clock (`scheduler::catalog_now`), never
//! this host's: `run` records its firing at the catalog's now, and `list`
//! shows the next fire time after it.

use std::{process::ExitCode, sync::Arc};

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Subcommand;

use crate::{
    broker::Broker,
    cli::{BadInput, catalog},
    config::Settings,
    runtime::{Registry, relay, worker::owner_id},
    scheduler::{self, FiringStatus, IfBusy, Schedule},
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
    schedules.iter().find(|s| s.name() == name).ok_or_else(|| {
        BadInput(format!(
            "unknown schedule {:?}; schedules: {}",
            crate::message::truncate(name),
            schedules
                .iter()
                .map(|s| s.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into()
    })
}

#[derive(sqlx::FromRow, serde::Serialize)]
struct Firing {
    fire_at: DateTime<Utc>,
    status: FiringStatus,
    jobs: i32,
    skipped: i32,
    leader: Option<String>,
    finished_at: Option<DateTime<Utc>>,
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
            let now = scheduler::catalog_now(&pool).await?;
            let mut rows = Vec::new();
            for s in &schedules {
                let last: Option<Firing> = sqlx::query_as(
                    "SELECT fire_at, status, jobs, skipped, leader, finished_at FROM schedule_firings \
                     WHERE schedule = $1 ORDER BY fire_at DESC LIMIT 1",
                )
                .bind(s.name())
                .fetch_optional(&pool)
                .await?;
                let outcomes: Vec<(String, i64)> = match &last {
                    Some(f) => sqlx::query_as(
                        "SELECT status, count(*) FROM jobs WHERE dedupe_key LIKE $1 GROUP BY status ORDER BY status",
                    )
                    .bind(scheduler::firing_pattern(s.name(), f.fire_at))
                    .fetch_all(&pool)
                    .await?,
                    None => Vec::new(),
                };
                rows.push(serde_json::json!({
                    "name": s.name(),
                    "cron": s.spec.cron,
                    "timezone": s.spec.timezone,
                    "kind": s.spec.kind,
                    "args": s.spec.args,
                    "next": s.next_local(now),
                    "last": last,
                    "last_outcomes": outcomes.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = super::table::TextTable::new(&[
                    "name", "cron", "timezone", "kind", "next", "last",
                ]);
                for r in &rows {
                    let last = match r["last"].as_object() {
                        Some(l) => format!(
                            "{} {} jobs={} {}",
                            l["fire_at"].as_str().unwrap_or(""),
                            l["status"].as_str().unwrap_or(""),
                            l["jobs"],
                            r["last_outcomes"]
                        ),
                        None => "never".into(),
                    };
                    t.row([
                        r["name"].as_str().unwrap_or(""),
                        r["cron"].as_str().unwrap_or(""),
                        r["timezone"].as_str().unwrap_or(""),
                        r["kind"].as_str().unwrap_or(""),
                        r["next"].as_str().unwrap_or("-"),
                        &last,
                    ]);
                }
                t.print();
            }
            Ok(ExitCode::SUCCESS)
        }
        ScheduleCommand::Run { name, json } => {
            let s = find(&schedules, &name)?;
            // The catalog's now, to the second (fire times in dedupe keys are).
            let now = scheduler::catalog_now(&pool).await?;
            let fire_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
            let me = owner_id("cli");
            // Waits while another process (the scheduler) fans this schedule out.
            let f = scheduler::fan_out(&pool, &registry, s, fire_at, &me, IfBusy::Wait)
                .await?
                .unwrap_or_default();
            let broker = Broker::new(&settings.broker, &me);
            relay::drain(&pool, &broker).await;
            broker.close().await;
            if json {
                let v = serde_json::json!({
                    "schedule": name, "fire_at": fire_at, "jobs": f.jobs, "skipped": f.skipped,
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
            let rows: Vec<Firing> = sqlx::query_as(
                "SELECT fire_at, status, jobs, skipped, leader, finished_at FROM schedule_firings \
                 WHERE schedule = $1 ORDER BY fire_at DESC LIMIT $2",
            )
            .bind(&name)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&pool)
            .await?;
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
