//! Prometheus metrics, all named `landlord_*` with their unit in the name.
//! One process-wide registry, exposed on `/metrics` by [`crate::http`].
//!
//! The dashboard and the alert rules under `ops/observability/` use these
//! names; a test (`observability::`) fails when one of them is no longer
//! exported, so rename a metric there too. This module only defines and
//! renders metrics; it must never query the catalog or the broker itself.

use std::sync::OnceLock;

use tokio::sync::Notify;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, core::Collector,
};

pub struct Metrics {
    pub registry: Registry,
    /// Every registered metric's name, sorted (a labelled metric is exported
    /// only once it has a series; this says what can be).
    pub names: Vec<String>,
    /// Finished attempts by kind and outcome (succeeded, retrying, dead, failed, lost, handed_back).
    pub jobs: IntCounterVec,
    pub job_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub retries: IntCounterVec,
    pub tenant_busy: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub leases_reaped: IntCounter,
    pub republished: IntCounter,
    pub dead_lettered: IntCounterVec,
    pub outbox_published: IntCounterVec,
    pub outbox_backlog: IntGauge,
    /// Schedule firings by schedule and outcome (fired, missed).
    pub firings: IntCounterVec,
    /// 1 while this process leads the schedulers.
    pub scheduler_leader: IntGauge,
    /// Bytes written to the backup store by completed backups.
    pub backup_bytes: IntCounter,
    pub backup_duration: prometheus::Histogram,
    /// From `backups monitor`: tenants by check (stale, oversize, healthy).
    pub backup_monitor: IntGaugeVec,
    /// Per tenant: completion time of the newest complete backup (0: none).
    pub backup_newest: IntGaugeVec,
    /// Per tenant: bytes its complete backups take in the store.
    pub backup_tenant_bytes: IntGaugeVec,
    /// When this process last refreshed the backup-monitor gauges.
    pub backup_monitor_refreshed: IntGauge,
    /// Per queue: seconds since the longest-waiting due job became due.
    pub queue_oldest: IntGaugeVec,
    /// Heavy slots (`runtime::heavy`) this process holds, by database server.
    pub heavy_in_use: IntGaugeVec,
    /// The configured heavy slots per database server.
    pub heavy_limit: IntGauge,
    /// Times a job found every heavy slot of its server taken.
    pub heavy_waits: IntCounterVec,
    /// Outbox rows the broker refused or did not confirm, by exchange.
    pub outbox_failures: IntCounterVec,
    /// Relay passes that published nothing because of an error.
    pub relay_failures: IntCounter,
    /// Restore tests (`verify_backup` with `restore_test`) by outcome.
    pub restore_drills: IntCounterVec,
}

/// Registers `c` and records its name.
fn add<C: Collector + Clone + 'static>(
    registry: &Registry,
    names: &mut Vec<String>,
    c: &C,
) -> Result<(), prometheus::Error> {
    names.extend(c.desc().iter().map(|d| d.fq_name.clone()));
    registry.register(Box::new(c.clone()))
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let mut names = Vec::new();
    let jobs = IntCounterVec::new(
        Opts::new(
            "landlord_jobs_total",
            "Job attempts finished, by kind and outcome",
        ),
        &["kind", "outcome"],
    )?;
    let job_duration = HistogramVec::new(
        HistogramOpts::new(
            "landlord_job_duration_seconds",
            "Wall time of one job attempt",
        )
        .buckets(vec![
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0,
        ]),
        &["kind"],
    )?;
    let in_flight = IntGauge::new(
        "landlord_jobs_in_flight",
        "Job attempts running in this process",
    )?;
    let retries = IntCounterVec::new(
        Opts::new(
            "landlord_job_retries_total",
            "Attempts that failed and were scheduled again",
        ),
        &["kind"],
    )?;
    let tenant_busy = IntCounterVec::new(
        Opts::new(
            "landlord_jobs_postponed_total",
            "Jobs postponed because their tenant was busy or a shared slot was taken",
        ),
        &["kind"],
    )?;
    let queue_depth = IntGaugeVec::new(
        Opts::new(
            "landlord_queue_depth_messages",
            "Messages ready in each work queue",
        ),
        &["queue"],
    )?;
    let leases_reaped = IntCounter::new(
        "landlord_leases_reaped_total",
        "Running jobs whose lease expired and were re-driven",
    )?;
    let republished = IntCounter::new(
        "landlord_jobs_republished_total",
        "Queued jobs published again because their message went missing",
    )?;
    let dead_lettered = IntCounterVec::new(
        Opts::new(
            "landlord_messages_dead_lettered_total",
            "Messages sent to the dead-letter queue",
        ),
        &["queue"],
    )?;
    let outbox_published = IntCounterVec::new(
        Opts::new(
            "landlord_outbox_published_total",
            "Outbox rows confirmed by the broker",
        ),
        &["exchange"],
    )?;
    let outbox_backlog = IntGauge::new(
        "landlord_outbox_backlog_messages",
        "Outbox rows due but not yet published",
    )?;
    let firings = IntCounterVec::new(
        Opts::new(
            "landlord_schedule_firings_total",
            "Schedule firings, fired or missed",
        ),
        &["schedule", "outcome"],
    )?;
    let scheduler_leader = IntGauge::new(
        "landlord_scheduler_leader",
        "1 while this process is the leading scheduler",
    )?;
    let backup_bytes = IntCounter::new(
        "landlord_backup_stored_bytes_total",
        "Bytes written to the backup store by completed backups",
    )?;
    let backup_duration = prometheus::Histogram::with_opts(
        HistogramOpts::new(
            "landlord_backup_duration_seconds",
            "Wall time of completed backups",
        )
        .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0]),
    )?;
    let backup_monitor = IntGaugeVec::new(
        Opts::new(
            "landlord_backup_monitor_tenants",
            "Tenants per backup health check result (stale, oversize, healthy)",
        ),
        &["check"],
    )?;
    let backup_newest = IntGaugeVec::new(
        Opts::new(
            "landlord_backup_newest_timestamp_seconds",
            "Per tenant: completion time of the newest complete backup, 0 if it has none",
        ),
        &["tenant"],
    )?;
    let backup_tenant_bytes = IntGaugeVec::new(
        Opts::new(
            "landlord_backup_tenant_stored_bytes",
            "Per tenant: bytes its complete backups take in the store",
        ),
        &["tenant"],
    )?;
    let backup_monitor_refreshed = IntGauge::new(
        "landlord_backup_monitor_refreshed_timestamp_seconds",
        "When this process last refreshed the backup monitor gauges from the catalog",
    )?;
    let queue_oldest = IntGaugeVec::new(
        Opts::new(
            "landlord_queue_oldest_job_age_seconds",
            "Per queue: seconds since the longest-waiting due job (queued or retrying) became due, 0 if none",
        ),
        &["queue"],
    )?;
    let heavy_in_use = IntGaugeVec::new(
        Opts::new(
            "landlord_heavy_slots_in_use",
            "Heavy slots (backups, restore tests, VACUUM, REINDEX) this process holds, by database server",
        ),
        &["server"],
    )?;
    let heavy_limit = IntGauge::new(
        "landlord_heavy_slots_per_server",
        "Heavy slots each database server has (LANDLORD_HEAVY_PER_SERVER)",
    )?;
    let heavy_waits = IntCounterVec::new(
        Opts::new(
            "landlord_heavy_slot_waits_total",
            "Times a job found every heavy slot of its database server taken and was postponed",
        ),
        &["server"],
    )?;
    let outbox_failures = IntCounterVec::new(
        Opts::new(
            "landlord_outbox_publish_failures_total",
            "Outbox rows the broker refused or did not confirm (backed off and retried)",
        ),
        &["exchange"],
    )?;
    let relay_failures = IntCounter::new(
        "landlord_relay_failures_total",
        "Outbox relay passes that failed without publishing anything",
    )?;
    let restore_drills = IntCounterVec::new(
        Opts::new(
            "landlord_restore_drills_total",
            "Restore tests (verify_backup with restore_test) by outcome (passed, failed), per attempt",
        ),
        &["outcome"],
    )?;
    add(&registry, &mut names, &backup_newest)?;
    add(&registry, &mut names, &backup_tenant_bytes)?;
    add(&registry, &mut names, &backup_monitor_refreshed)?;
    add(&registry, &mut names, &queue_oldest)?;
    add(&registry, &mut names, &heavy_in_use)?;
    add(&registry, &mut names, &heavy_limit)?;
    add(&registry, &mut names, &heavy_waits)?;
    add(&registry, &mut names, &outbox_failures)?;
    add(&registry, &mut names, &relay_failures)?;
    add(&registry, &mut names, &restore_drills)?;
    add(&registry, &mut names, &backup_bytes)?;
    add(&registry, &mut names, &backup_duration)?;
    add(&registry, &mut names, &backup_monitor)?;
    add(&registry, &mut names, &firings)?;
    add(&registry, &mut names, &scheduler_leader)?;
    add(&registry, &mut names, &jobs)?;
    add(&registry, &mut names, &job_duration)?;
    add(&registry, &mut names, &in_flight)?;
    add(&registry, &mut names, &retries)?;
    add(&registry, &mut names, &tenant_busy)?;
    add(&registry, &mut names, &queue_depth)?;
    add(&registry, &mut names, &leases_reaped)?;
    add(&registry, &mut names, &republished)?;
    add(&registry, &mut names, &dead_lettered)?;
    add(&registry, &mut names, &outbox_published)?;
    add(&registry, &mut names, &outbox_backlog)?;
    names.sort();
    Ok(Metrics {
        registry,
        names,
        jobs,
        job_duration,
        in_flight,
        retries,
        tenant_busy,
        queue_depth,
        leases_reaped,
        republished,
        dead_lettered,
        outbox_published,
        outbox_backlog,
        firings,
        scheduler_leader,
        backup_bytes,
        backup_duration,
        backup_monitor,
        backup_newest,
        backup_tenant_bytes,
        backup_monitor_refreshed,
        queue_oldest,
        heavy_in_use,
        heavy_limit,
        heavy_waits,
        outbox_failures,
        relay_failures,
        restore_drills,
    })
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    METRICS.get_or_init(|| match build() {
        Ok(m) => m,
        // Names and labels are constants; a failure here is a programming error.
        Err(e) => panic!("metric definitions are invalid: {e}"),
    })
}

/// Woken when this process completed a backup, so its backup-monitor gauges
/// are refreshed at once rather than at the next interval.
static BACKUPS_CHANGED: Notify = Notify::const_new();

/// Counts a completed backup.
pub fn backup_done(stored_bytes: u64, duration_ms: i64) {
    let m = get();
    m.backup_bytes.inc_by(stored_bytes);
    m.backup_duration.observe(duration_ms as f64 / 1000.0);
    BACKUPS_CHANGED.notify_one();
}

/// Resolves after this process completed a backup (see [`backup_done`]).
pub async fn backups_changed() {
    BACKUPS_CHANGED.notified().await;
}

/// Counts one restore test's attempt.
pub fn restore_drill(passed: bool) {
    get()
        .restore_drills
        .with_label_values(&[if passed { "passed" } else { "failed" }])
        .inc();
}

/// The text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = get().registry.gather();
    if TextEncoder::new().encode(&families, &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}
