//! Logs and metrics: the `/metrics`, `/healthz`, `/readyz` listener
//! (`LANDLORD_LISTEN`, `off` disables it), the log format and the log filter
//! (`LANDLORD_LOG_FORMAT`, `LANDLORD_LOG`, the file's `[observability]` table).
//!
//! This module only says where and how to report; it must never start a
//! listener or install a subscriber (`crate::telemetry` and `crate::http` do).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::env::env;

/// Logs and metrics.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Address of the `/metrics`, `/healthz`, `/readyz` listener; `None` disables it.
    pub listen: Option<String>,
    pub log_format: LogFormat,
    pub log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The `[observability]` table of `landlord.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileObservability {
    listen: Option<String>,
    log_format: Option<LogFormat>,
    log: Option<String>,
}

impl ObservabilitySettings {
    /// The `[observability]` table under the environment.
    pub(super) fn load(o: FileObservability) -> Result<Self> {
        let listen = match env("LANDLORD_LISTEN").or(o.listen) {
            Some(v) if v == "off" => None,
            Some(v) => Some(v),
            None => Some("127.0.0.1:9464".to_string()),
        };
        let log_format = match env("LANDLORD_LOG_FORMAT") {
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) => bail!("LANDLORD_LOG_FORMAT must be text or json, got {v:?}"),
            None => o.log_format.unwrap_or(LogFormat::Text),
        };
        let log_filter = env("LANDLORD_LOG")
            .or(o.log)
            .unwrap_or_else(|| "info".to_string());
        Ok(Self {
            listen,
            log_format,
            log_filter,
        })
    }
}
