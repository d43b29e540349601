//! Log output (`tracing` to stderr, as text or JSON lines) and, when an OTLP
//! endpoint is configured, trace export: landlord's spans (`enqueue`,
//! `delivery`, `job`, `publish`…) go to an OpenTelemetry collector over HTTP.
//!
//! The exporter runs on its own thread with a blocking HTTP client, so it must
//! be set up and shut down outside the async runtime ([`init`] before it
//! starts, [`Telemetry::shutdown`] after it ended). Trace export must never
//! change what a command does or prints: spans go out only under the
//! `landlord` target, whatever the log filter says.

use anyhow::{Context, Result};
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::{EnvFilter, Layer, filter::Targets, fmt, prelude::*};

use crate::config::{LogFormat, OtlpProtocol, TraceExport};

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[must_use = "shut it down after the runtime ended, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporter (blocks up to
    /// the exporter's timeout). Call it outside the async runtime.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("warning: not every trace span could be exported: {e}");
        }
    }
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax and
/// applies to the log output only. `role` is recorded as `landlord.role`.
pub fn init(
    format: LogFormat,
    filter: &str,
    traces: Option<&TraceExport>,
    role: &str,
) -> Result<Telemetry> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = traces.map(|t| provider(t, role)).transpose()?;
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("landlord"))
            .with_filter(
                Targets::new()
                    .with_target("landlord", LevelFilter::INFO)
                    .with_default(LevelFilter::OFF),
            )
    });
    let registry = tracing_subscriber::registry().with(otel);
    let res = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    };
    // Already installed (a test harness, a second call): keep the first.
    let _ = res;
    Ok(Telemetry { provider })
}

fn provider(t: &TraceExport, role: &str) -> Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(t.endpoint.clone())
        .with_protocol(match t.protocol {
            OtlpProtocol::Protobuf => Protocol::HttpBinary,
            OtlpProtocol::Json => Protocol::HttpJson,
        })
        .build()
        .with_context(|| format!("setting up the OTLP trace exporter for {}", t.endpoint))?;
    let resource = Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("landlord.role", role.to_string()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
