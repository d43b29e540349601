//! `--sync`: run a job in this process, through the same executor the fleet
//! uses, without a broker. The job is recorded in the catalog like any other;
//! its events wait in the outbox for the next relay.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Settings,
    runtime::{
        Ending, Executor, Registry,
        store::{self, EnqueueError, EnqueueRequest, JobRow, Origin},
        tenant_lock::TenantLock,
        worker::owner_id,
    },
};

/// Runs one job to its end in-process and returns its final row.
pub async fn run_sync(
    catalog: &sqlx::PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    req: &EnqueueRequest,
) -> Result<JobRow, EnqueueError> {
    // Take the tenant lock first, so the job row is written only when it can
    // be claimed at once (a row left queued by an interrupted wait would
    // otherwise hold its dedupe key).
    let exclusive = registry
        .get(&req.kind)
        .map(|s| s.tenant_exclusive)
        .unwrap_or(false);
    let tenant_id = match &req.tenant {
        Some(slug) => Some(crate::tenants::get(catalog, slug).await?.id),
        None => None,
    };
    let mut waited = false;
    let lock = match (exclusive, tenant_id) {
        (true, Some(tid)) => loop {
            if let Some(l) = TenantLock::try_acquire(catalog, tid).await? {
                break Some(l);
            }
            if !waited {
                eprintln!("tenant is busy with another job; waiting for it to finish…");
                waited = true;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        },
        _ => None,
    };
    let enq = store::enqueue(catalog, &registry, req, Origin::Sync).await?;
    if enq.existing {
        return Err(EnqueueError::Invalid(format!(
            "a live job with the same dedupe key exists: {}",
            enq.id
        )));
    }
    let exec = Executor {
        catalog: catalog.clone(),
        settings: settings.clone(),
        registry: registry.clone(),
        owner: owner_id("sync"),
    };
    let claimed = store::claim(catalog, enq.id, &exec.owner, settings.worker.lease)
        .await?
        .context("could not claim the job just written")?;
    let tenant = store::tenant_of(catalog, &claimed).await?;
    let ending = exec
        .execute(claimed, tenant, lock, CancellationToken::new(), true)
        .await?;
    if let Ending::Lost = ending {
        eprintln!("the job was cancelled or taken over while running");
    }
    Ok(store::get(catalog, enq.id).await?.context("job vanished")?)
}

/// Runs a job that is already in the catalog (written with its outbox row by
/// a caller such as `tenants create`) in this process. If a worker claims it
/// first, this follows that run instead. Should this process die, the fleet
/// still has the job.
pub async fn run_existing(
    catalog: &sqlx::PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    id: uuid::Uuid,
) -> Result<JobRow> {
    let row = store::get(catalog, id).await?.context("no such job")?;
    let exclusive = registry
        .get(&row.kind)
        .map(|s| s.tenant_exclusive)
        .unwrap_or(false);
    let lock = match (exclusive, row.tenant_id) {
        (true, Some(tid)) => loop {
            if let Some(l) = TenantLock::try_acquire(catalog, tid).await? {
                break Some(l);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        },
        _ => None,
    };
    let exec = Executor {
        catalog: catalog.clone(),
        settings: settings.clone(),
        registry,
        owner: owner_id("sync"),
    };
    match store::claim(catalog, id, &exec.owner, settings.worker.lease).await? {
        Some(claimed) => {
            let tenant = store::tenant_of(catalog, &claimed).await?;
            exec.execute(claimed, tenant, lock, CancellationToken::new(), true)
                .await?;
        }
        None => {
            if let Some(l) = lock {
                l.release().await;
            }
            // A worker got there first: wait for its outcome.
            loop {
                let r = store::get(catalog, id).await?.context("job vanished")?;
                if r.is_terminal() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    store::get(catalog, id).await?.context("job vanished")
}
