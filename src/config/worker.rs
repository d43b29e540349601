//! How workers run jobs: concurrency, the job families they take
//! ([`QUEUES`]), leases, timeouts, retry and polling delays
//! (`LANDLORD_WORKER_*`, `LANDLORD_*_SECONDS`, `LANDLORD_*_MS`, the file's
//! `[worker]` table).
//!
//! This module must never let a worker start with a value the job state
//! machine cannot live with (no queue, zero concurrency, a lease too short to
//! heartbeat within).

use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::env::{env, env_parse};

/// The job families; each has one durable quorum queue.
pub const QUEUES: [&str; 4] = ["provision", "backup", "maintenance", "mail"];

/// How workers run jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub queues: Vec<String>,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How long in-flight jobs may run after SIGTERM before they are handed back.
    pub shutdown_grace: Duration,
    /// Default per-job timeout (a job kind may choose its own).
    pub job_timeout: Duration,
    /// How often the relay looks for unpublished outbox rows.
    pub relay_interval: Duration,
    /// How often the reaper looks for expired leases and stale queued jobs.
    pub reap_interval: Duration,
    /// A queued job whose message has not been seen for this long is published again.
    pub stale_after: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// Upper bound of a retry delay.
    pub retry_max: Duration,
    /// Delay before trying again a job whose tenant is busy.
    pub busy_delay: Duration,
    /// Longest pause between polls of an idle queue (the pickup latency bound).
    pub poll_max: Duration,
    /// Delay before a job whose kind this worker does not know is offered
    /// again (to a worker that knows it, during a rolling deploy).
    pub unknown_kind_delay: Duration,
    /// The job kinds a message published by another program (no catalog
    /// row; adopted) may ask for. Anything that can publish to the work
    /// exchange is such a producer, so kinds that replace or drop data
    /// (`restore`, `drop_tenant`) or set fleet-wide limits (`migrate`) are
    /// not in the default.
    pub foreign_kinds: Vec<String>,
}

/// The kinds adopted from foreign producers unless `LANDLORD_FOREIGN_KINDS`
/// says otherwise.
pub const DEFAULT_FOREIGN_KINDS: [&str; 5] =
    ["ping", "analyze", "maintenance", "backup", "verify_backup"];

/// The `[worker]` table of `landlord.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWorker {
    concurrency: Option<usize>,
    queues: Option<Vec<String>>,
    lease_seconds: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    job_timeout_seconds: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    busy_delay_ms: Option<u64>,
    poll_max_ms: Option<u64>,
    stale_after_seconds: Option<u64>,
    unknown_kind_delay_ms: Option<u64>,
    foreign_kinds: Option<Vec<String>>,
}

/// Seconds from `env_name`, else the file's value, else `default`.
fn secs(env_name: &str, file_v: Option<u64>, default: u64) -> Result<Duration> {
    Ok(Duration::from_secs(
        env_parse(env_name)?.or(file_v).unwrap_or(default),
    ))
}

/// Milliseconds from `env_name`, else the file's value, else `default`.
fn millis(env_name: &str, file_v: Option<u64>, default: u64) -> Result<Duration> {
    Ok(Duration::from_millis(
        env_parse(env_name)?.or(file_v).unwrap_or(default),
    ))
}

impl WorkerSettings {
    /// The `[worker]` table under the environment.
    pub(super) fn load(w: FileWorker) -> Result<Self> {
        let concurrency = env_parse("LANDLORD_WORKER_CONCURRENCY")?
            .or(w.concurrency)
            .unwrap_or(4);
        if concurrency == 0 || concurrency > 256 {
            bail!("worker concurrency must be between 1 and 256, got {concurrency}");
        }
        let queues = match env("LANDLORD_WORKER_QUEUES") {
            Some(v) => parse_queues(&v)?,
            None => match w.queues {
                Some(q) => parse_queues(&q.join(","))?,
                None => QUEUES.iter().map(|s| s.to_string()).collect(),
            },
        };
        let lease = secs("LANDLORD_LEASE_SECONDS", w.lease_seconds, 30)?;
        if lease < Duration::from_secs(2) {
            bail!("LANDLORD_LEASE_SECONDS must be at least 2");
        }
        Ok(Self {
            concurrency,
            queues,
            lease,
            shutdown_grace: secs(
                "LANDLORD_SHUTDOWN_GRACE_SECONDS",
                w.shutdown_grace_seconds,
                30,
            )?,
            job_timeout: secs("LANDLORD_JOB_TIMEOUT_SECONDS", w.job_timeout_seconds, 3600)?,
            relay_interval: Duration::from_millis(500),
            reap_interval: Duration::from_secs(1).min(lease / 2),
            stale_after: secs("LANDLORD_STALE_AFTER_SECONDS", w.stale_after_seconds, 300)?,
            retry_base: millis("LANDLORD_RETRY_BASE_MS", w.retry_base_ms, 2_000)?,
            retry_max: millis("LANDLORD_RETRY_MAX_MS", w.retry_max_ms, 600_000)?,
            busy_delay: millis("LANDLORD_BUSY_DELAY_MS", w.busy_delay_ms, 1_000)?,
            poll_max: millis("LANDLORD_POLL_MAX_MS", w.poll_max_ms, 200)?
                .max(Duration::from_millis(10)),
            unknown_kind_delay: millis(
                "LANDLORD_UNKNOWN_KIND_DELAY_MS",
                w.unknown_kind_delay_ms,
                30_000,
            )?,
            foreign_kinds: match env("LANDLORD_FOREIGN_KINDS") {
                Some(v) => parse_kinds(&v)?,
                None => match w.foreign_kinds {
                    Some(k) => parse_kinds(&k.join(","))?,
                    None => DEFAULT_FOREIGN_KINDS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
            },
        })
    }
}

/// Parses a comma-separated list of job kinds (`none` for no kind at all).
/// Whether each kind exists is for the registry to say; a kind no worker
/// knows is refused as unknown anyway.
pub fn parse_kinds(raw: &str) -> Result<Vec<String>> {
    if raw.trim() == "none" {
        return Ok(Vec::new());
    }
    parse_list(
        raw,
        |k| {
            if k.len() > 63
                || !k
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                bail!(
                    "LANDLORD_FOREIGN_KINDS: {:?} is not a job kind (lowercase letters, digits and _); use none for no kind",
                    crate::message::truncate(k)
                );
            }
            Ok(())
        },
        "LANDLORD_FOREIGN_KINDS: no kind given; use none to refuse every foreign message",
    )
}

/// Parses a comma-separated list of job families.
pub fn parse_queues(raw: &str) -> Result<Vec<String>> {
    parse_list(
        raw,
        |q| {
            if !QUEUES.contains(&q) {
                bail!(
                    "unknown queue {q:?}; the job families are {}",
                    QUEUES.join(", ")
                );
            }
            Ok(())
        },
        &format!("no queue given; the job families are {}", QUEUES.join(", ")),
    )
}

/// A comma-separated list: items trimmed, blank ones skipped, each one
/// `check`ed, duplicates dropped; an empty list is the error `empty`.
fn parse_list(raw: &str, check: impl Fn(&str) -> Result<()>, empty: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        check(item)?;
        if !out.iter().any(|x| x == item) {
            out.push(item.to_string());
        }
    }
    if out.is_empty() {
        bail!("{empty}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_queue() {
        assert!(parse_queues("backup,nope").is_err());
        assert_eq!(
            parse_queues("backup, mail,backup").expect("valid"),
            vec!["backup", "mail"]
        );
    }

    #[test]
    fn parses_foreign_kinds() {
        assert_eq!(
            parse_kinds("ping, analyze,ping").expect("valid"),
            vec!["ping", "analyze"]
        );
        assert!(parse_kinds("none").expect("valid").is_empty());
        assert!(parse_kinds("ping,Restore!").is_err());
        assert!(parse_kinds(" , ").is_err());
    }
}
