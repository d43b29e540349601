//! `landlord serve`: worker, scheduler and API in one process for small
//! installs, on one catalog pool and one broker session, with one
//! `/metrics`, `/healthz`, `/readyz` listener for all of them.
//!
//! One shutdown (SIGTERM) reaches every role at once: the worker drains
//! within its grace period and hands back the rest, the API finishes its
//! in-flight requests, the scheduler lets go of the lead; the connections
//! close after the last of them stopped. This module only composes the
//! roles' `run_on`; it must never hold logic of its own about jobs,
//! schedules or requests.

use std::{future::Future, sync::Arc};

use anyhow::{Result, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    api::ApiSettings, config::Settings, connections::Connections, runtime::Registry,
    runtime::worker::owner_id, scheduler::Schedule,
};

/// Catalog connections `serve` adds to the worker's pool: the scheduler's
/// leader lock and fan-out, and the API's requests.
pub const EXTRA_CONNECTIONS: u32 = 6;

/// Which roles run.
pub struct Roles {
    pub worker: bool,
    /// The parsed schedules, or `None` for no scheduler.
    pub scheduler: Option<Vec<Schedule>>,
    /// The API's listen address and tokens, or `None` for no API.
    pub api: Option<ApiSettings>,
}

/// Runs the roles until `shutdown` resolves, then stops them all.
pub async fn run(
    mut settings: Settings,
    registry: Arc<Registry>,
    roles: Roles,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if !roles.worker && roles.scheduler.is_none() && roles.api.is_none() {
        bail!("landlord serve with every role turned off has nothing to run");
    }
    settings.catalog.max_connections += EXTRA_CONNECTIONS;
    // The one health listener is this module's, not the worker's.
    let listen = settings.observability.listen.take();
    let settings = Arc::new(settings);
    let owner = owner_id("serve");
    let conns = Connections::for_sessions(&settings, &owner).await?;
    let stop = CancellationToken::new();
    let health = CancellationToken::new();
    if let Some(addr) = &listen {
        crate::http::serve(
            addr,
            conns.catalog.clone(),
            Some(conns.broker.clone()),
            health.clone(),
        )
        .await?;
    }
    let ran = run_roles(&settings, registry, roles, &conns, owner, &stop, shutdown).await;
    health.cancel();
    conns.close().await;
    tracing::info!("serve stopped");
    ran
}

async fn run_roles(
    settings: &Arc<Settings>,
    registry: Arc<Registry>,
    roles: Roles,
    conns: &Connections,
    owner: String,
    stop: &CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut running: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
    if roles.worker {
        let (s, r, c, o, stop) = (
            settings.clone(),
            registry.clone(),
            conns.clone(),
            format!("{owner}:worker"),
            stop.clone(),
        );
        running.spawn(async move {
            let ran = crate::runtime::worker::run_on(s, r, &c, o, stop.cancelled_owned()).await;
            ("worker", ran)
        });
    }
    if let Some(schedules) = roles.scheduler {
        let (r, c, o, stop) = (
            registry.clone(),
            conns.clone(),
            format!("{owner}:scheduler"),
            stop.clone(),
        );
        running.spawn(async move {
            let ran = crate::scheduler::run_on(r, schedules, &c, o, stop.cancelled_owned()).await;
            ("scheduler", ran)
        });
    }
    if let Some(api) = roles.api {
        let (s, r, c, stop) = (settings.clone(), registry, conns.clone(), stop.clone());
        running.spawn(async move {
            let ran =
                crate::api::run_on(s, r, api, crate::ui::router(), &c, stop.cancelled_owned())
                    .await;
            ("api", ran)
        });
    }
    tracing::info!(roles = running.len(), "serve started");
    tokio::pin!(shutdown);
    let mut first_error = None;
    loop {
        tokio::select! {
            () = &mut shutdown, if !stop.is_cancelled() => {
                tracing::info!("serve shutting down every role");
                stop.cancel();
            }
            done = running.join_next() => match done {
                None => break,
                Some(Ok((role, Ok(())))) => tracing::info!(role, "role stopped"),
                Some(Ok((role, Err(e)))) => {
                    // One role failing stops the others: a half-running serve
                    // would look healthy while, say, nothing fires schedules.
                    tracing::error!(role, error = %format!("{e:#}"), "role failed; stopping the others");
                    stop.cancel();
                    first_error.get_or_insert(e.context(format!("{role} failed")));
                }
                Some(Err(e)) => {
                    stop.cancel();
                    first_error.get_or_insert(anyhow::anyhow!("a role panicked: {e}"));
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
