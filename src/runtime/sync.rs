//! `--sync`: run a job in this process, through the same executor the fleet
//! uses, without a broker. The job is recorded in the catalog like any other;
//! its events are published by the caller if a broker answers, else by the
//! next relay.
//!
//! A `--sync` job (`origin = 'sync'`) must never reach the fleet: it has no
//! message, a give-back leaves it for this process to claim again once due
//! (`drive`), and should this process stop, the reaper ends it `failed`
//! (`store::SYNC_RUN_STOPPED`) or the republish pass cancels it, instead of a
//! worker redoing a run its operator saw stop. (`run_existing` is different:
//! it follows a fleet job.)

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::Settings,
    runtime::{
        Ending, Executor, Registry,
        store::{self, EnqueueError, EnqueueRequest, JobRow, Origin},
        tenant_lock::TenantLock,
        worker::owner_id,
    },
};

/// Waits for a tenant's lock, saying once that it waits.
async fn lock_tenant(catalog: &PgPool, tenant_id: i64) -> Result<TenantLock> {
    crate::db::require_session_pooling(catalog).await?;
    let mut said = false;
    loop {
        if let Some(l) = TenantLock::try_acquire(catalog, tenant_id).await? {
            return Ok(l);
        }
        if !said {
            eprintln!("tenant is busy with another job; waiting for it to finish…");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Claims and runs `id` until it ends; a postponed run is retried here after
/// its delay. If another process claims the job first, follows that run.
async fn drive(
    catalog: &PgPool,
    exec: &Executor,
    id: Uuid,
    tenant_id: Option<i64>,
    exclusive: bool,
    mut lock: Option<TenantLock>,
    sync: bool,
) -> Result<()> {
    loop {
        if exclusive
            && lock.is_none()
            && let Some(tid) = tenant_id
        {
            lock = Some(lock_tenant(catalog, tid).await?);
        }
        match store::claim(catalog, id, &exec.owner, exec.settings.worker.lease).await? {
            Some(claimed) => {
                let tenant = store::tenant_of(catalog, &claimed).await?;
                let ending = exec
                    .execute(claimed, tenant, lock.take(), CancellationToken::new(), sync)
                    .await?;
                match ending {
                    Ending::Postponed | Ending::Failed(store::FailOutcome::Retrying { .. }, _) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Ending::Lost => eprintln!("the job was cancelled or taken over while running"),
                    _ => {}
                }
                return Ok(());
            }
            None => {
                if let Some(l) = lock.take() {
                    l.release().await;
                }
                let row = store::get(catalog, id).await?.context("job vanished")?;
                if row.is_terminal() {
                    return Ok(());
                }
                if row.status.is_claimable() {
                    // Not due yet (postponed): wait for its time, then claim.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                // Running elsewhere: wait for that run to end.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Runs one job to its end in-process and returns its final row.
pub async fn run_sync(
    catalog: &PgPool,
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
    let lock = match (exclusive, tenant_id) {
        (true, Some(tid)) => Some(lock_tenant(catalog, tid).await?),
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
        settings,
        registry,
        owner: owner_id("sync"),
    };
    drive(catalog, &exec, enq.id, tenant_id, exclusive, lock, true).await?;
    Ok(store::get(catalog, enq.id).await?.context("job vanished")?)
}

/// Runs a job that is already in the catalog (written with its outbox row by
/// a caller such as `tenants create`) in this process, retries included. If a worker claims it
/// first, this follows that run instead. Should this process die, the fleet
/// still has the job.
pub async fn run_existing(
    catalog: &PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    id: Uuid,
) -> Result<JobRow> {
    let row = store::get(catalog, id).await?.context("no such job")?;
    let exclusive = registry
        .get(&row.kind)
        .map(|s| s.tenant_exclusive)
        .unwrap_or(false);
    let exec = Executor {
        catalog: catalog.clone(),
        settings,
        registry,
        owner: owner_id("sync"),
    };
    // The job belongs to the fleet too (it has its outbox row), so it keeps
    // the fleet's retries: a transient error must not fail a tenant.
    drive(catalog, &exec, id, row.tenant_id, exclusive, None, false).await?;
    store::get(catalog, id).await?.context("job vanished")
}
