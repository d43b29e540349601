//! The HTTP API (`landlord api`) for programs that are not Rust: everything
//! the CLI does, with bearer tokens scoped to `admin` or one tenant, JSON
//! errors with stable codes, `Idempotency-Key` on every POST, and the
//! committed OpenAPI document (`openapi.json`).
//!
//! Files: `settings` (listen address, tokens, limits), `auth` (who may do
//! what), `limits` (the per-token rate limit), `error` (the error shape and
//! codes), `extract` (body and path parsing), `idempotency` (replayed POSTs);
//! the handlers: `tenants` and `tenant_actions`, `jobs` and `job_actions`,
//! `backups`, `schedules`, `operations` (maintenance, doctor), `audit`,
//! `events` (the feed and its Server-Sent Events stream). The handlers call
//! the lifecycle library, the job store, `backup` and `scheduler`, exactly
//! as the CLI does; they never write SQL.

pub mod audit;
pub mod auth;
pub mod backups;
pub mod error;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod job_actions;
pub mod jobs;
pub mod limits;
pub mod operations;
pub mod schedules;
pub mod settings;
pub mod tenant_actions;
pub mod tenants;

use std::{future::Future, sync::Arc, time::Duration, time::Instant};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, patch, post},
};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    broker::Broker,
    config::Settings,
    connections::Connections,
    runtime::{Registry, relay::relay_once},
};
pub use error::ApiError;
pub use settings::{ApiLimits, ApiSettings, Scope};

/// Largest request body accepted (bigger ones get 413 `payload_too_large`).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OpenAPI 3.1 document, as committed at the repository root.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Every route of [`router`], as `(method, path)` in OpenAPI path syntax.
/// Keep in step with `router` and `openapi.json`; `tests/api.rs` checks both.
pub const ROUTES: [(&str, &str); 40] = [
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/{slug}"),
    ("DELETE", "/v1/tenants/{slug}"),
    ("POST", "/v1/tenants/{slug}/status"),
    ("PATCH", "/v1/tenants/{slug}/settings"),
    ("GET", "/v1/tenants/{slug}/credentials"),
    ("POST", "/v1/tenants/{slug}/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/cancel"),
    ("POST", "/v1/jobs/{id}/retry"),
    ("POST", "/v1/tenants/{slug}/activate"),
    ("POST", "/v1/tenants/{slug}/deactivate"),
    ("POST", "/v1/tenants/{slug}/suspend"),
    ("POST", "/v1/tenants/{slug}/rotate-credentials"),
    ("POST", "/v1/tenants/{slug}/migrate"),
    ("POST", "/v1/tenants/{slug}/register"),
    ("POST", "/v1/migrations"),
    ("GET", "/v1/can-provision"),
    ("GET", "/v1/tenants/{slug}/backups"),
    ("POST", "/v1/tenants/{slug}/backups"),
    ("GET", "/v1/tenants/{slug}/backups/stats"),
    ("POST", "/v1/tenants/{slug}/backups/verify"),
    ("POST", "/v1/tenants/{slug}/restore"),
    ("POST", "/v1/backups/{id}/hold"),
    ("POST", "/v1/backups/{id}/release"),
    ("DELETE", "/v1/backups/{id}"),
    ("POST", "/v1/backups/prune"),
    ("GET", "/v1/backups/monitor"),
    ("POST", "/v1/maintenance"),
    ("GET", "/v1/doctor"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/stream"),
    ("GET", "/v1/schedules"),
    ("GET", "/v1/schedules/{name}/history"),
    ("POST", "/v1/schedules/{name}/run"),
];

/// Routes answered without a token.
pub const PUBLIC_ROUTES: [&str; 2] = ["/healthz", "/openapi.json"];

/// How long in-flight requests may run after the shutdown signal (deployments
/// give the process longer than this to stop: `tests/it/deploy.rs`).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a best-effort publish of a just-written job may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub registry: Arc<Registry>,
    pub api: Arc<ApiSettings>,
    pub broker: Broker,
    /// Per-token request buckets.
    pub limiter: Arc<limits::RateLimiter>,
    /// Cancelled at shutdown: long-lived answers (event streams) end.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Publishes a just-written outbox row in the background. Failures are
    /// only logged: the row is safe in the catalog and a worker's relay
    /// publishes it.
    pub fn publish_soon(&self, outbox_id: Option<i64>) {
        let Some(id) = outbox_id else { return };
        let (pool, broker) = (self.pool.clone(), self.broker.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(PUBLISH_TIMEOUT, relay_once(&pool, &broker, Some(id))).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(
                        outbox_id = id,
                        error = format!("{e:#}"),
                        "could not publish now; a worker's relay will"
                    )
                }
                Err(_) => {
                    tracing::warn!(
                        outbox_id = id,
                        "publishing timed out; a worker's relay will publish it"
                    )
                }
            }
        });
    }
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, content_type, bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                content_type,
                r#"{"error":{"code":"internal","message":"could not encode the response"}}"#,
            )
                .into_response()
        }
    }
}

/// The router with every route of [`ROUTES`], and `console` (the `/ui`
/// pages, handed in by the role that serves them: this module never imports
/// the console, which is built on it).
pub fn router(state: AppState, console: Router<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{slug}",
            get(tenants::show).delete(tenants::delete),
        )
        .route("/v1/tenants/{slug}/status", post(tenants::change_status))
        .route(
            "/v1/tenants/{slug}/settings",
            patch(tenants::update_settings),
        )
        .route("/v1/tenants/{slug}/credentials", get(tenants::credentials))
        .route("/v1/tenants/{slug}/jobs", post(jobs::enqueue))
        .route("/v1/jobs", get(job_actions::list))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(job_actions::cancel))
        .route("/v1/jobs/{id}/retry", post(job_actions::retry))
        .route(
            "/v1/tenants/{slug}/activate",
            post(tenant_actions::activate),
        )
        .route(
            "/v1/tenants/{slug}/deactivate",
            post(tenant_actions::deactivate),
        )
        .route("/v1/tenants/{slug}/suspend", post(tenant_actions::suspend))
        .route(
            "/v1/tenants/{slug}/rotate-credentials",
            post(tenant_actions::rotate_credentials),
        )
        .route(
            "/v1/tenants/{slug}/migrate",
            post(tenant_actions::migrate_one),
        )
        .route(
            "/v1/tenants/{slug}/register",
            post(tenant_actions::register),
        )
        .route("/v1/migrations", post(tenant_actions::migrate_fleet))
        .route("/v1/can-provision", get(tenant_actions::can_provision))
        .route(
            "/v1/tenants/{slug}/backups",
            get(backups::list).post(backups::backup_now),
        )
        .route("/v1/tenants/{slug}/backups/stats", get(backups::stats))
        .route("/v1/tenants/{slug}/backups/verify", post(backups::verify))
        .route("/v1/tenants/{slug}/restore", post(backups::restore))
        .route("/v1/backups/{id}/hold", post(backups::hold))
        .route("/v1/backups/{id}/release", post(backups::release))
        .route("/v1/backups/{id}", delete(backups::delete))
        .route("/v1/backups/prune", post(backups::prune))
        .route("/v1/backups/monitor", get(backups::monitor))
        .route("/v1/maintenance", post(operations::maintenance))
        .route("/v1/doctor", get(operations::doctor))
        .route("/v1/audit", get(audit::list))
        .route("/v1/events", get(events::list))
        .route("/v1/events/stream", get(events::stream))
        .route("/v1/schedules", get(schedules::list))
        .route("/v1/schedules/{name}/history", get(schedules::history))
        .route("/v1/schedules/{name}/run", post(schedules::run))
        // The operator console (`/ui`, HTML): not part of ROUTES or openapi.json.
        // The operator console (`/ui`, HTML): not part of ROUTES or openapi.json.
        .merge(console)
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /openapi.json",
    )
}

/// One log line per request (method, path, status, duration, token scope);
/// never headers or bodies.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = crate::message::truncate(req.uri().path());
    let quiet = path == "/healthz";
    let span = tracing::info_span!("request", %method, %path, scope = tracing::field::Empty);
    let started = Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    let status = res.status().as_u16();
    let ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if quiet {
            tracing::debug!(status, ms, "request");
        } else {
            tracing::info!(status, ms, "request");
        }
    });
    res
}

/// Runs `landlord api` until `shutdown` resolves: migrate the catalog, bind,
/// serve; then stop accepting, let in-flight requests finish (at most 30 s).
/// The caller resolves `api` (listen address, tokens) from flags and environment.
pub async fn run(
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    api: ApiSettings,
    console: Router<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let conns = Connections::for_rows(&settings, &crate::runtime::worker::owner_id("api")).await?;
    let ran = run_on(settings, registry, api, console, &conns, shutdown).await;
    conns.close().await;
    ran
}

/// [`run`] on connections it was handed (and leaves open).
pub async fn run_on(
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    api: ApiSettings,
    console: Router<AppState>,
    conns: &Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if api.has_tokens() {
        let scopes: Vec<String> = api.scopes().map(ToString::to_string).collect();
        tracing::info!(
            scopes = %scopes.join(","),
            rate_per_minute = api.limits.rate_per_minute,
            max_live_jobs_per_tenant = api.limits.max_live_jobs_per_tenant,
            "api tokens loaded"
        );
    } else {
        tracing::warn!(
            "LANDLORD_API_TOKENS is not set: every /v1 request will be refused with 401 until it is"
        );
    }
    let (pool, broker) = (conns.catalog.clone(), conns.broker.clone());
    let listener = tokio::net::TcpListener::bind(&api.listen)
        .await
        .with_context(|| format!("binding the API listener on {}", api.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let stop = CancellationToken::new();
    let state = AppState {
        pool: pool.clone(),
        settings,
        registry,
        limiter: Arc::new(limits::RateLimiter::new(api.limits.rate_per_minute)),
        api: Arc::new(api),
        broker: broker.clone(),
        shutdown: stop.clone(),
    };
    tracing::info!("api listening on {local}");

    let graceful = stop.clone();
    let server = axum::serve(listener, router(state, console))
        .with_graceful_shutdown(async move { graceful.cancelled().await })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        res = &mut server => res.context("serving the API")?,
        () = shutdown => {
            tracing::info!("api shutting down; finishing in-flight requests");
            stop.cancel();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(res) => res.context("serving the API")?,
                Err(_) => tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"),
            }
        }
    }
    tracing::info!("api stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("openapi.json parses")
    }

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path) in ROUTES {
            let op =
                &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from openapi.json");
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            assert_eq!(
                public,
                PUBLIC_ROUTES.contains(&path),
                "{method} {path} security"
            );
        }
        for (path, item) in paths {
            for method in item.as_object().expect("path item").keys() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    ROUTES.contains(&(method.to_uppercase().as_str(), path.as_str())),
                    "openapi.json documents {method} {path}, which the router lacks"
                );
            }
        }
    }

    #[test]
    fn error_codes_match_the_document() {
        let doc = doc();
        let documented: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .expect("code enum")
            .iter()
            .map(|v| v.as_str().expect("string"))
            .collect();
        let ours: Vec<&str> = error::CODES.iter().map(|(c, _)| *c).collect();
        assert_eq!(documented, ours);
        // Every status an operation documents carries only codes of that status.
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for status in responses.keys() {
                    let s: u16 = status.parse().expect("numeric status");
                    if s >= 400 {
                        assert!(
                            error::CODES.iter().any(|(_, cs)| *cs == s),
                            "{method} {path}: status {s} has no error code"
                        );
                    }
                }
            }
        }
    }
}
