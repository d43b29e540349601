//! Prometheus metrics, all named `landlord_*` with their unit in the name.
//! One process-wide registry, exposed on `/metrics` by [`crate::http`].

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
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
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
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
    registry.register(Box::new(backup_bytes.clone()))?;
    registry.register(Box::new(backup_duration.clone()))?;
    registry.register(Box::new(backup_monitor.clone()))?;
    registry.register(Box::new(firings.clone()))?;
    registry.register(Box::new(scheduler_leader.clone()))?;
    registry.register(Box::new(jobs.clone()))?;
    registry.register(Box::new(job_duration.clone()))?;
    registry.register(Box::new(in_flight.clone()))?;
    registry.register(Box::new(retries.clone()))?;
    registry.register(Box::new(tenant_busy.clone()))?;
    registry.register(Box::new(queue_depth.clone()))?;
    registry.register(Box::new(leases_reaped.clone()))?;
    registry.register(Box::new(republished.clone()))?;
    registry.register(Box::new(dead_lettered.clone()))?;
    registry.register(Box::new(outbox_published.clone()))?;
    registry.register(Box::new(outbox_backlog.clone()))?;
    Ok(Metrics {
        registry,
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

/// Counts a completed backup.
pub fn backup_done(stored_bytes: u64, duration_ms: i64) {
    let m = get();
    m.backup_bytes.inc_by(stored_bytes);
    m.backup_duration.observe(duration_ms as f64 / 1000.0);
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
