//! The W3C trace context a job carries from its enqueue to its events, so one
//! trace shows a job whole: the `enqueue` span's context is stored on the job
//! row (`jobs.trace_parent`), sent as the `traceparent` header of the job's
//! message and of the events it emits, and the worker's `delivery` span
//! continues it.
//!
//! Everything here is best effort and must never fail or change a job: with
//! trace export off every function returns `None` or does nothing, and a
//! malformed `traceparent` from a foreign publisher only starts a new trace.

use std::collections::HashMap;

use opentelemetry::{Context, propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The AMQP header (and W3C HTTP header) that carries the context.
pub const HEADER: &str = "traceparent";

/// The `traceparent` of `span`, when trace export is on and it is recorded.
pub fn of(span: &tracing::Span) -> Option<String> {
    inject(&span.context())
}

/// Makes `span` continue the trace of `traceparent` (no-op when `None`,
/// malformed, or trace export is off). Call it before the span is entered.
pub fn continue_in(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(extract) {
        // Fails only when export is off or the span already started.
        let _ = span.set_parent(cx);
    }
}

/// `traceparent` re-encoded by the propagator: what a foreign publisher sent,
/// kept only if it is a valid W3C context (bounded, lower-case hex).
pub fn normalise(traceparent: &str) -> Option<String> {
    if traceparent.len() > 128 {
        return None;
    }
    inject(&extract(traceparent)?)
}

fn extract(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([(HEADER.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

fn inject(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_context_survives_and_garbage_does_not() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(normalise(tp).as_deref(), Some(tp));
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01x",
        ] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
        assert_eq!(normalise(&"0".repeat(200)), None);
    }

    #[test]
    fn without_export_spans_carry_no_context() {
        let span = tracing::info_span!("enqueue");
        assert_eq!(of(&span), None);
    }
}
