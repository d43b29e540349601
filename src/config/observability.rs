//! Logs and metrics: the `/metrics`, `/healthz`, `/readyz` listener
//! (`LANDLORD_LISTEN`, `off` disables it), the log format and the log filter
//! (`LANDLORD_LOG_FORMAT`, `LANDLORD_LOG`, the file's `[observability]` table),
//! and where traces go: OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, read with OpenTelemetry's own names.
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
    /// OTLP trace export; `None` exports nothing.
    pub traces: Option<TraceExport>,
}

/// Where and how spans are exported (OpenTelemetry's environment variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The full traces URL (`…/v1/traces`).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// `service.name` of the exported spans (`OTEL_SERVICE_NAME`, default `landlord`).
    pub service_name: String,
}

/// The OTLP encodings landlord can send (both over HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`, the default.
    Protobuf,
    /// `http/json`.
    Json,
}

impl TraceExport {
    /// Reads `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `…_PROTOCOL`, `OTEL_SERVICE_NAME`
    /// and `OTEL_TRACES_EXPORTER` (`none` turns export off).
    fn load() -> Result<Option<Self>> {
        if let Some(e) = env("OTEL_TRACES_EXPORTER") {
            match e.as_str() {
                "none" => return Ok(None),
                "otlp" => {}
                other => bail!("OTEL_TRACES_EXPORTER must be otlp or none, got {other:?}"),
            }
        }
        let (given, is_base) = match (
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => (traces, false),
            (None, Some(base)) => (base, true),
            (None, None) => return Ok(None),
        };
        let mut url = match url::Url::parse(&given) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
            _ => bail!(
                "the OTLP traces endpoint must be an http:// or https:// URL, got {:?} \
                 (OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL, e.g. http://127.0.0.1:4318)",
                super::SecretUrl::new(given.clone()).masked()
            ),
        };
        if is_base {
            // The signal's path goes under the base URL's (OTLP/HTTP spec).
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        let endpoint = url.to_string();
        let protocol = match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => OtlpProtocol::Protobuf,
            Some("http/json") => OtlpProtocol::Json,
            Some("grpc") => bail!(
                "OTLP over gRPC is not built in; use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
                 (the collector's port 4318)"
            ),
            Some(other) => {
                bail!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json, got {other:?}"
                )
            }
        };
        let service_name = env("OTEL_SERVICE_NAME").unwrap_or_else(|| "landlord".to_string());
        Ok(Some(Self {
            endpoint,
            protocol,
            service_name,
        }))
    }
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
            traces: TraceExport::load()?,
        })
    }
}
