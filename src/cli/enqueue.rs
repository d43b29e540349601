//! Shared by every command that enqueues: write the jobs, publish them at once
//! (the relay catches up if the broker is down), print their ids, and follow
//! them with `--wait` or run them in-process with `--sync`.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Result;
use sqlx::PgPool;

use crate::{
    broker::Broker,
    cli::{BadInput, JobFailed, RunOpts, wait},
    config::Settings,
    runtime::{
        Job, JobStatus, Registry,
        relay::relay_once,
        store::{self, EnqueueError, EnqueueRequest, JobRow, Origin},
        sync::run_sync,
    },
};

fn bad(e: EnqueueError) -> anyhow::Error {
    match e {
        EnqueueError::Other(e) => e,
        other => BadInput(other.to_string()).into(),
    }
}

/// One request for `job` per tenant in `slugs`, each with the same arguments.
pub fn per_tenant<J: Job>(job: &J, slugs: &[String]) -> Result<Vec<EnqueueRequest>> {
    Ok(slugs
        .iter()
        .map(|slug| job.request(Some(slug), None, None))
        .collect::<Result<_, _>>()?)
}

/// Enqueues (or runs with `--sync`) every request, then reports.
pub async fn submit(
    pool: &PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    reqs: Vec<EnqueueRequest>,
    opts: &RunOpts,
) -> Result<ExitCode> {
    if opts.sync {
        let mut rows = Vec::new();
        for req in &reqs {
            let row = run_sync(pool, settings.clone(), registry.clone(), req)
                .await
                .map_err(bad)?;
            rows.push(row);
        }
        // Publish the runs' events now if a broker answers; otherwise a worker's relay will.
        let broker = Broker::new(&settings.broker, &crate::runtime::worker::owner_id("cli"));
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_once(pool, &broker, None)).await;
        broker.close().await;
        return report(&rows, opts.json);
    }

    let mut ids = Vec::new();
    let mut outbox = Vec::new();
    for req in &reqs {
        let enq = store::enqueue(pool, &registry, req, Origin::Catalog)
            .await
            .map_err(bad)?;
        let tenant = req.tenant.as_deref().unwrap_or("-");
        if opts.json {
            println!(
                "{}",
                serde_json::json!({"job_id": enq.id, "kind": req.kind, "tenant": req.tenant, "existing": enq.existing})
            );
        } else if enq.existing {
            println!(
                "{}\t{}\t{}\texisting (same dedupe key, still live)",
                enq.id, req.kind, tenant
            );
        } else {
            println!("{}\t{}\t{}\tqueued", enq.id, req.kind, tenant);
        }
        ids.push(enq.id);
        outbox.extend(enq.outbox_id);
    }

    publish_now(pool, &settings, &outbox).await;

    if opts.wait {
        let rows = wait::follow(pool, &ids, opts.json).await?;
        return report(&rows, opts.json);
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes just-written outbox rows now, or says (once) that the relay will.
pub async fn publish_now(pool: &PgPool, settings: &Settings, outbox_ids: &[i64]) {
    if outbox_ids.is_empty() {
        return;
    }
    let broker = Broker::new(&settings.broker, &crate::runtime::worker::owner_id("cli"));
    for &id in outbox_ids {
        let res =
            tokio::time::timeout(Duration::from_secs(10), relay_once(pool, &broker, Some(id)))
                .await;
        let why = match res {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => "timed out".to_string(),
        };
        eprintln!(
            "warning: could not publish now ({why}); the job is safe in the catalog and a worker's relay will publish it"
        );
        break;
    }
    broker.close().await;
}

/// Prints final rows; fails when any did not succeed.
pub fn report(rows: &[JobRow], json: bool) -> Result<ExitCode> {
    let mut failures = Vec::new();
    for r in rows {
        let tenant = r.tenant.as_deref().unwrap_or("-");
        if json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            let took = match (r.started_at, r.finished_at) {
                (Some(s), Some(f)) => {
                    format!(" in {:.2}s", (f - s).num_milliseconds() as f64 / 1000.0)
                }
                _ => String::new(),
            };
            println!(
                "{}\t{}\t{}\t{} after {} attempt(s){}",
                r.id, r.kind, tenant, r.status, r.attempts, took
            );
            if let Some(res) = &r.result {
                println!("  result: {res}");
            }
            if r.status != JobStatus::Succeeded
                && let Some(e) = &r.last_error
            {
                println!("  error: {e}");
            }
        }
        if r.status != JobStatus::Succeeded {
            failures.push(format!(
                "{} ({}, tenant {tenant}): {}",
                r.id,
                r.kind,
                r.last_error.as_deref().unwrap_or(r.status.as_str())
            ));
        }
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(JobFailed(format!(
            "{} of {} job(s) did not succeed:\n  {}",
            failures.len(),
            rows.len(),
            failures.join("\n  ")
        ))
        .into())
    }
}
