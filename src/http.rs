//! The operational HTTP listener of long-running roles: `/metrics`,
//! `/healthz` (the process is alive) and `/readyz` (catalog and broker reachable).

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::{Router, extract::State, http::StatusCode, routing::get};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

#[derive(Clone)]
struct Ops {
    catalog: PgPool,
    broker: Option<Broker>,
}

/// Binds `addr` and serves until `shutdown` is cancelled. Returns the bound address.
pub async fn serve(
    addr: &str,
    catalog: PgPool,
    broker: Option<Broker>,
    shutdown: CancellationToken,
) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| {
            format!(
                "binding the metrics listener on {addr} (set LANDLORD_LISTEN or --listen to a free address, or `off`)"
            )
        })?;
    let local = listener.local_addr().context("reading bound address")?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Ops { catalog, broker }));
    tokio::spawn(async move {
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    tracing::info!(%local, "serving /metrics, /healthz, /readyz");
    Ok(local)
}

async fn metrics() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(),
    )
}

async fn readyz(State(ops): State<Arc<Ops>>) -> (StatusCode, String) {
    let db = sqlx::query("SELECT 1").execute(&ops.catalog).await.is_ok();
    let broker = ops.broker.as_ref().is_none_or(|b| b.is_connected());
    let code = if db && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        format!("catalog: {}\nbroker: {}\n", up(db), up(broker)),
    )
}

fn up(b: bool) -> &'static str {
    if b { "up" } else { "down" }
}
