//! The fleet worker: takes messages from the work queues, claims their jobs in
//! the catalog, runs them, and keeps the relay and reaper going.
//!
//! Messages are taken with `basic.get`, one per free slot, and acknowledged
//! right after the catalog claim commits. A worker therefore never holds an
//! unacknowledged delivery it is not about to run, so RabbitMQ's node-wide
//! `consumer_timeout` cannot fire however long a job takes; the catalog lease
//! (heartbeated) is what protects a running job.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use lapin::{
    options::{BasicAckOptions, BasicNackOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    broker::{Broker, Delivery, topology},
    config::Settings,
    connections::Connections,
    message::JobMessage,
    metrics,
    runtime::{
        Executor, Registry,
        relay::{backlog, relay_once},
        store::{self, AdoptError, Adoption},
        tenant_lock::TenantLock,
    },
};

/// A running worker's shared parts.
#[derive(Clone)]
struct Worker {
    exec: Executor,
    broker: Broker,
    queues: Arc<Vec<String>>,
    /// Cleared when the catalog fails mid-delivery; slots take no message
    /// until a probe succeeds, so an outage does not burn deliveries.
    catalog_ok: Arc<std::sync::atomic::AtomicBool>,
}

/// A lease owner id unique to this process.
pub fn owner_id(role: &str) -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let nonce: u32 = rand::rng().random();
    format!("{role}:{host}:{}:{nonce:08x}", std::process::id())
}

/// Runs a worker until `shutdown` resolves, then drains: no new work, in-flight
/// jobs get `shutdown_grace` to finish, the rest are handed back.
pub async fn run(
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let owner = owner_id("worker");
    let conns = Connections::for_sessions(&settings, &owner).await?;
    let ran = run_on(settings, registry, &conns, owner, shutdown).await;
    conns.close().await;
    ran
}

/// [`run`] on connections it was handed (and leaves open), its leases held
/// as `owner`.
pub async fn run_on(
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    conns: &Connections,
    owner: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let registry = Arc::new(registry.as_ref().clone().without_failpoint_kinds());
    let (catalog, broker) = (conns.catalog.clone(), conns.broker.clone());
    let exec = Executor {
        catalog: catalog.clone(),
        settings: settings.clone(),
        registry,
        owner,
    };
    let w = Worker {
        exec,
        broker: broker.clone(),
        queues: Arc::new(settings.worker.queues.clone()),
        catalog_ok: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };

    let stop_taking = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let background = CancellationToken::new();

    if let Some(addr) = &settings.observability.listen {
        crate::http::serve(
            addr,
            catalog.clone(),
            Some(broker.clone()),
            background.clone(),
        )
        .await?;
    }
    if let Err(e) = broker.connect().await {
        tracing::warn!(error = %format!("{e:#}"), "RabbitMQ not reachable yet; will keep trying");
    }

    let mut bg = JoinSet::new();
    bg.spawn(relay_loop(w.clone(), background.clone()));
    bg.spawn(reaper_loop(w.clone(), background.clone()));
    bg.spawn(crate::runtime::compensation::run_loop(
        w.exec.clone(),
        background.clone(),
    ));
    bg.spawn(depth_loop(w.clone(), background.clone()));
    bg.spawn(crate::notify::run_loop(
        catalog.clone(),
        settings.clone(),
        background.clone(),
    ));
    bg.spawn(crate::backup::monitor::refresh_loop(
        catalog.clone(),
        background.clone(),
    ));
    metrics::get()
        .heavy_limit
        .set(i64::from(settings.maintenance.heavy_per_server));

    let mut slots = JoinSet::new();
    for i in 0..settings.worker.concurrency {
        let (w, stop, hard) = (w.clone(), stop_taking.clone(), hard_stop.clone());
        slots.spawn(async move { w.slot(i, stop, hard).await });
    }
    tracing::info!(
        concurrency = settings.worker.concurrency,
        queues = ?settings.worker.queues,
        owner = %w.exec.owner,
        "worker started"
    );

    shutdown.await;
    tracing::info!(
        grace_s = settings.worker.shutdown_grace.as_secs(),
        "shutting down: no new work; draining"
    );
    stop_taking.cancel();
    let drained = tokio::time::timeout(settings.worker.shutdown_grace, async {
        while slots.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over; handing back unfinished jobs");
        hard_stop.cancel();
        while slots.join_next().await.is_some() {}
    }
    // Publish what the drain wrote (hand-backs, final events) before leaving.
    if let Err(e) = relay_once(&catalog, &broker, None).await {
        tracing::warn!(error = %format!("{e:#}"), "final relay pass failed; the next worker's relay will publish");
    }
    background.cancel();
    while bg.join_next().await.is_some() {}
    tracing::info!("worker stopped");
    Ok(())
}

impl Worker {
    async fn slot(&self, index: usize, stop: CancellationToken, hard: CancellationToken) {
        let mut channel: Option<lapin::Channel> = None;
        let mut idle = Duration::from_millis(50);
        let mut turn = index;
        let mut failures: u32 = 0;
        while !stop.is_cancelled() {
            self.wait_for_catalog(&stop).await;
            let ch = match &channel {
                Some(c) if c.status().connected() => c.clone(),
                _ => match self.broker.channel().await {
                    Ok(c) => {
                        failures = 0;
                        channel = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(slot = index, error = %format!("{e:#}"), "cannot reach RabbitMQ; retrying");
                        }
                        let wait = Duration::from_millis(250 * u64::from(failures.min(8)));
                        tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stop.cancelled() => {} }
                        continue;
                    }
                },
            };
            let mut got = None;
            for k in 0..self.queues.len() {
                let family = &self.queues[(turn + k) % self.queues.len()];
                match self.broker.get(&ch, family).await {
                    Ok(Some(d)) => {
                        got = Some(d);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(slot = index, error = %format!("{e:#}"), "basic.get failed; reopening channel");
                        channel = None;
                        break;
                    }
                }
            }
            turn = turn.wrapping_add(1);
            match got {
                Some(d) => {
                    idle = Duration::from_millis(50);
                    self.handle(d, &hard).await;
                }
                None => {
                    tokio::select! { _ = tokio::time::sleep(idle) => {}, _ = stop.cancelled() => {} }
                    idle = (idle * 2).min(self.exec.settings.worker.poll_max);
                }
            }
        }
    }

    async fn handle(&self, d: Delivery, hard: &CancellationToken) {
        let msg = match JobMessage::parse(&d.delivery.data) {
            Ok(m) => m,
            Err(reason) => {
                let job = crate::message::job_id_of(&d.delivery.data);
                self.dead_letter(d, &reason).await;
                if let Some(id) = job {
                    self.end_undeliverable(id).await;
                }
                return;
            }
        };
        let span = tracing::info_span!(
            "delivery",
            job_id = %msg.job_id,
            kind = %msg.kind,
            tenant = msg.tenant.as_deref().unwrap_or("-"),
            queue = %d.family,
        );
        // The message's trace (its enqueue, or a foreign publisher's span).
        let traceparent = d
            .header(crate::trace_context::HEADER)
            .and_then(|tp| crate::trace_context::normalise(&tp));
        crate::trace_context::continue_in(&span, traceparent.as_deref());
        self.handle_message(d, msg, traceparent, hard)
            .instrument(span)
            .await
    }

    async fn handle_message(
        &self,
        d: Delivery,
        msg: JobMessage,
        traceparent: Option<String>,
        hard: &CancellationToken,
    ) {
        let pool = &self.exec.catalog;
        let row = match store::get(pool, msg.job_id).await {
            Ok(Some(r)) => r,
            Ok(None) => match store::adopt(
                pool,
                &self.exec.registry,
                &msg,
                &d.family,
                &self.exec.settings.worker.foreign_kinds,
                traceparent.as_deref(),
            )
            .await
            {
                Ok(Adoption::Adopted) => match store::get(pool, msg.job_id).await {
                    Ok(Some(r)) => {
                        tracing::info!("adopted a job published without a catalog row");
                        r
                    }
                    _ => {
                        return self
                            .catalog_down(d, "catalog unavailable after adoption")
                            .await;
                    }
                },
                Ok(Adoption::Duplicate(other)) => {
                    tracing::info!(%other, "dropping message: a live job has the same dedupe key");
                    return ack(d).await;
                }
                Err(e @ AdoptError::CatalogUnavailable(_)) => {
                    return self.catalog_down(d, &e.to_string()).await;
                }
                // Refused (unknown kind, a kind foreign producers may not
                // ask for, bad arguments…): nothing was written; the
                // message goes to the dead-letter queue with its reason,
                // counted in `landlord_messages_dead_lettered_total`.
                Err(AdoptError::Refused(reason)) => {
                    tracing::warn!(%reason, "refused a foreign message");
                    return self.dead_letter(d, &reason).await;
                }
            },
            Err(e) => return self.catalog_down(d, &format!("{e:#}")).await,
        };
        if !row.status.is_claimable() {
            tracing::debug!(status = %row.status, "dropping duplicate delivery");
            return ack(d).await;
        }
        let exclusive = self
            .exec
            .registry
            .get(&row.kind)
            .map(|s| s.tenant_exclusive)
            .unwrap_or(false);
        let lock = match (exclusive, row.tenant_id) {
            (true, Some(tid)) => match TenantLock::try_acquire(pool, tid).await {
                Ok(Some(l)) => Some(l),
                Ok(None) => {
                    let base = self.exec.settings.worker.busy_delay;
                    let jitter = rand::rng().random_range(0..=base.as_millis() as u64 / 2 + 1);
                    let delay = base + Duration::from_millis(jitter);
                    match store::postpone(pool, row.id, delay).await {
                        Ok(_) => {
                            metrics::get()
                                .tenant_busy
                                .with_label_values(&[row.kind.as_str()])
                                .inc();
                            tracing::info!(
                                delay_ms = delay.as_millis() as u64,
                                "tenant busy; postponed without spending an attempt"
                            );
                            return ack(d).await;
                        }
                        Err(e) => return self.catalog_down(d, &format!("{e:#}")).await,
                    }
                }
                Err(e) => return self.catalog_down(d, &format!("{e:#}")).await,
            },
            _ => None,
        };
        let claimed = match store::claim(
            pool,
            row.id,
            &self.exec.owner,
            self.exec.settings.worker.lease,
        )
        .await
        {
            Ok(Some(c)) => c,
            Ok(None) => {
                if let Some(l) = lock {
                    l.release().await;
                }
                // Claimed elsewhere first, or not due yet (its scheduled copy will run it).
                tracing::debug!("job not claimable now; dropping this copy");
                return ack(d).await;
            }
            Err(e) => {
                if let Some(l) = lock {
                    l.release().await;
                }
                return self.catalog_down(d, &format!("{e:#}")).await;
            }
        };
        // The claim is committed: the catalog now protects the job, not the delivery.
        ack(d).await;
        let tenant = match tenant_after_claim(pool, &claimed).await {
            Ok(t) => t,
            Err(e) => {
                // Nothing of the job has run: give it back rather than let its
                // lease expire, which would spend an attempt (and, on the last
                // one, compensate work that never started).
                self.give_back_unstarted(&claimed, &format!("{e:#}")).await;
                if let Some(l) = lock {
                    l.release().await;
                }
                return;
            }
        };
        if let Err(e) = self
            .exec
            .execute(claimed, tenant, lock, hard.clone(), false)
            .await
        {
            tracing::error!(error = %format!("{e:#}"), "could not record the job outcome; the lease will expire and the reaper will re-drive it");
        }
    }

    /// Gives a claimed job back, its attempt not spent, when the catalog
    /// failed before the handler started; retried for up to half the lease,
    /// after which the lease expiring is the only way left. Pauses taking work
    /// until the catalog answers.
    async fn give_back_unstarted(&self, job: &store::Claimed, error: &str) {
        self.catalog_ok
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let why = crate::message::limit(&format!(
            "given back unstarted: the catalog failed right after the claim: {error}"
        ));
        let settings = &self.exec.settings.worker;
        let deadline = tokio::time::Instant::now() + settings.lease / 2;
        let mut wait = Duration::from_millis(100);
        loop {
            let res = store::give_back(
                &self.exec.catalog,
                job,
                &self.exec.owner,
                settings.busy_delay,
                &why,
            )
            .await;
            match res {
                Ok(true) => {
                    tracing::warn!(%error, "catalog failed right after the claim; job given back without spending its attempt");
                    return;
                }
                Ok(false) => {
                    tracing::warn!(%error, "catalog failed right after the claim and the job is no longer ours");
                    return;
                }
                Err(e) if tokio::time::Instant::now() + wait < deadline => {
                    tracing::debug!(error = %format!("{e:#}"), "giving the job back failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(%error, give_back_error = %format!("{e:#}"), "could not give the unstarted job back; its lease will expire and the reaper will re-drive it");
                    return;
                }
            }
        }
    }

    /// Returns a message after a catalog failure and pauses taking new ones.
    async fn catalog_down(&self, d: Delivery, why: &str) {
        self.catalog_ok
            .store(false, std::sync::atomic::Ordering::SeqCst);
        requeue(d, why).await;
    }

    /// Waits until the catalog answers again (after a failure was seen).
    async fn wait_for_catalog(&self, stop: &CancellationToken) {
        let mut wait = Duration::from_millis(250);
        while !self.catalog_ok.load(std::sync::atomic::Ordering::SeqCst) && !stop.is_cancelled() {
            if sqlx::query("SELECT 1")
                .execute(&self.exec.catalog)
                .await
                .is_ok()
            {
                self.catalog_ok
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::info!("catalog reachable again; taking work");
                break;
            }
            tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stop.cancelled() => {} }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// After dead-lettering a message that names job `id`: ends the job
    /// `dead` when its own message can never be delivered (too large), so it
    /// is not published again to be dead-lettered again. A failure here is
    /// only logged: the reaper's republish pass ends such a job too.
    async fn end_undeliverable(&self, id: uuid::Uuid) {
        match store::bury_undeliverable(&self.exec.catalog, id).await {
            Ok(Some(why)) => {
                tracing::warn!(job_id = %id, reason = %why, "job ended dead: its message can never be delivered")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job_id = %id, error = %format!("{e:#}"), "could not check the job of a dead-lettered message")
            }
        }
    }

    /// Sends an unusable message to the dead-letter queue with the reason, then acks it.
    async fn dead_letter(&self, d: Delivery, reason: &str) {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("x-landlord-reason"),
            AMQPValue::LongString(LongString::from(crate::message::limit(reason))),
        );
        headers.insert(
            ShortString::from("x-landlord-queue"),
            AMQPValue::LongString(LongString::from(d.family.clone())),
        );
        let id = uuid::Uuid::now_v7().to_string();
        match self
            .broker
            .publish(topology::DEAD, "", &d.delivery.data, &id, Some(headers))
            .await
        {
            Ok(()) => {
                metrics::get()
                    .dead_lettered
                    .with_label_values(&[d.family.as_str()])
                    .inc();
                tracing::warn!(queue = %d.family, %reason, "message dead-lettered");
                ack(d).await;
            }
            Err(e) => requeue(d, &format!("dead-lettering failed: {e:#}")).await,
        }
    }
}

/// The claimed job's tenant: the first catalog read after the claim
/// (failpoint `worker.after_claim!N` makes it fail, as an outage would).
async fn tenant_after_claim(
    pool: &sqlx::PgPool,
    job: &store::Claimed,
) -> Result<Option<crate::tenants::Tenant>> {
    if crate::failpoint::fail("worker.after_claim") {
        anyhow::bail!("failpoint worker.after_claim: injected catalog error");
    }
    store::tenant_of(pool, job).await
}

async fn ack(d: Delivery) {
    if let Err(e) = d.delivery.ack(BasicAckOptions::default()).await {
        tracing::warn!(error = %e, "ack failed; the broker will redeliver and the catalog will drop the duplicate");
    }
}

async fn requeue(d: Delivery, why: &str) {
    tracing::warn!(reason = %why, "cannot take the message now; returning it to the queue");
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Err(e) = d
        .delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
    {
        tracing::warn!(error = %e, "nack failed; the broker will redeliver when the channel closes");
    }
}

async fn relay_loop(w: Worker, stop: CancellationToken) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let wait = match relay_once(&w.exec.catalog, &w.broker, None).await {
            Ok(n) if n >= crate::runtime::relay::BATCH => Duration::ZERO,
            Ok(_) => {
                failures = 0;
                w.exec.settings.worker.relay_interval
            }
            Err(e) => {
                failures += 1;
                metrics::get().relay_failures.inc();
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %format!("{e:#}"), "outbox relay failed; retrying");
                }
                Duration::from_millis(500 * u64::from(failures.min(10)))
            }
        };
        if let Ok(n) = backlog(&w.exec.catalog).await {
            metrics::get().outbox_backlog.set(n);
        }
        tokio::select! { _ = tokio::time::sleep(wait) => {}, _ = stop.cancelled() => {} }
    }
}

async fn reaper_loop(w: Worker, stop: CancellationToken) {
    let policy = w.exec.policy();
    let s = &w.exec.settings.worker;
    while !stop.is_cancelled() {
        match store::reap_expired(&w.exec.catalog, &policy).await {
            Ok(reaped) if reaped.is_empty() => {}
            Ok(reaped) => {
                metrics::get().leases_reaped.inc_by(reaped.len() as u64);
                let dead = reaped
                    .iter()
                    .filter(|(_, o)| *o == store::FailOutcome::Dead)
                    .count();
                // A job that died this way (its last attempt lost) left its
                // compensation pending: the compensation loop runs it under
                // the tenant lock, never the reaper.
                tracing::warn!(
                    count = reaped.len(),
                    dead,
                    "re-drove jobs whose lease expired"
                );
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reaper failed"),
        }
        // Per job, whatever the queue depth: a lost message behind a steady
        // backlog is made good too (`store::republish_stale` says why copies
        // are harmless and how they are bounded).
        match store::republish_stale(&w.exec.catalog, s.stale_after, &w.queues).await {
            Ok(done) => {
                if done.published > 0 {
                    metrics::get().republished.inc_by(done.published);
                    tracing::warn!(
                        count = done.published,
                        "published again queued jobs whose message went missing"
                    );
                }
                if done.undeliverable > 0 {
                    tracing::warn!(
                        count = done.undeliverable,
                        "ended dead jobs whose message can never be delivered"
                    );
                }
                if done.abandoned > 0 {
                    tracing::warn!(
                        count = done.abandoned,
                        "cancelled --sync jobs whose run stopped before running them"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "republish of stale jobs failed"),
        }
        tokio::select! { _ = tokio::time::sleep(s.reap_interval) => {}, _ = stop.cancelled() => {} }
    }
}

/// Every 5 s, per queue this worker serves: the broker's count of ready
/// messages, and the catalog's age of the longest-waiting due job (what a
/// queue that does not drain looks like even when its messages went missing).
async fn depth_loop(w: Worker, stop: CancellationToken) {
    while !stop.is_cancelled() {
        for family in w.queues.iter() {
            if let Ok(n) = w.broker.queue_depth(family).await {
                metrics::get()
                    .queue_depth
                    .with_label_values(&[family.as_str()])
                    .set(i64::from(n));
            }
            match oldest_due_age(&w.exec.catalog, family).await {
                Ok(age) => metrics::get()
                    .queue_oldest
                    .with_label_values(&[family.as_str()])
                    .set(age),
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "reading the oldest due job failed")
                }
            }
        }
        tokio::select! { _ = tokio::time::sleep(Duration::from_secs(5)) => {}, _ = stop.cancelled() => {} }
    }
}

/// Seconds since the longest-waiting due job of `queue` (queued or waiting
/// for its retry) became due; 0 when none is. One index range scan
/// (`jobs_status_run_at`).
async fn oldest_due_age(pool: &sqlx::PgPool, queue: &str) -> Result<i64> {
    let age: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(run_at))::float8 FROM jobs \
         WHERE status IN ('queued', 'retrying') AND run_at <= now() AND queue = $1",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?;
    Ok(age.map_or(0, |a| a.max(0.0) as i64))
}
