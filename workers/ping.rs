//! `ping`: a no-op job that proves the fleet answers. `hold_seconds` keeps a
//! worker busy (and, with a tenant, holds that tenant's lock); `fail` makes
//! chosen attempts fail, for exercising retries, dead jobs and alerts.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::runtime::{Job, JobContext, JobError};

/// How a ping attempt should fail, when asked to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Retryable,
    Fatal,
    Panic,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Seconds to stay busy before answering (0 to 86400).
    #[serde(default)]
    pub hold_seconds: f64,
    /// Fail instead of answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailMode>,
    /// Fail only the first N attempts (all attempts when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_times: Option<u32>,
}

impl Job for Ping {
    const KIND: &'static str = "ping";
    const QUEUE: &'static str = "maintenance";
    const NEEDS_TENANT: bool = false;
    /// With a tenant, it holds that tenant's lock: schedules may run it per tenant.
    const PER_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

    fn validate(&self) -> Result<(), String> {
        if !self.hold_seconds.is_finite() || !(0.0..=86_400.0).contains(&self.hold_seconds) {
            return Err("hold_seconds must be between 0 and 86400".to_string());
        }
        Ok(())
    }

    fn timeout(&self, settings: &crate::config::Settings) -> Duration {
        settings
            .worker
            .job_timeout
            .max(Duration::from_secs_f64(self.hold_seconds) + Duration::from_secs(60))
    }

    async fn run(&self, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let started_at = Utc::now();
        let total_ms = (self.hold_seconds * 1000.0) as u64;
        let mut held = 0u64;
        while held < total_ms {
            let step = (total_ms - held).min(1000);
            tokio::time::sleep(Duration::from_millis(step)).await;
            held += step;
            ctx.progress(held, total_ms, "holding").await;
        }
        let fails_now = match (self.fail, self.fail_times) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(n)) => ctx.attempt <= n,
        };
        if fails_now {
            match self.fail {
                Some(FailMode::Retryable) => {
                    return Err(JobError::retryable(format!(
                        "ping asked to fail (attempt {})",
                        ctx.attempt
                    )));
                }
                Some(FailMode::Fatal) => {
                    return Err(JobError::fatal("ping asked to fail fatally"));
                }
                Some(FailMode::Panic) => panic!("ping asked to panic (attempt {})", ctx.attempt),
                None => {}
            }
        }
        Ok(serde_json::json!({
            "pong": true,
            "attempt": ctx.attempt,
            "held_ms": total_ms,
            "started_at": started_at,
            "finished_at": Utc::now(),
        }))
    }
}
