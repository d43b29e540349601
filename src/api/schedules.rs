//! `/v1/schedules…` (admin): the configured schedules with their next fire
//! times and last firings, a schedule's history, and firing one now: the
//! HTTP side of `schedule list|history|run`, over `scheduler::report`.
//!
//! A schedule fans out over many tenants, so every route here is an admin
//! token's; a tenant token gets 403 before anything is read.

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
};
use serde_json::json;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiPath, parse_limit, query_pairs},
    json as respond,
};
use crate::{
    runtime::relay,
    scheduler::{self, Schedule, report},
};

/// Default page of a schedule's history.
pub const HISTORY: i64 = 20;

/// The configured schedules, parsed as the scheduler parses them.
fn schedules(state: &AppState) -> Result<Vec<Schedule>, ApiError> {
    scheduler::parse_all(&state.settings.schedules, &state.registry).map_err(|e| {
        ApiError::internal(&anyhow::anyhow!(
            "the configured schedules are invalid: {e}"
        ))
    })
}

/// The schedule named `name`, or 404 naming the configured ones.
fn find<'a>(all: &'a [Schedule], name: &str) -> Result<&'a Schedule, ApiError> {
    report::find(all, name).map_err(ApiError::not_found)
}

/// `GET /v1/schedules`.
pub async fn list(caller: Caller, State(state): State<AppState>) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let all = schedules(&state)?;
    let rows = report::list(&state.pool, &all).await?;
    Ok(respond(StatusCode::OK, &json!({"schedules": rows})))
}

/// `GET /v1/schedules/{name}/history[?limit=]`: newest first.
pub async fn history(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let mut limit = HISTORY;
    for (_, v) in query_pairs(uri.query(), &["limit"])? {
        limit = parse_limit(&v, report::MAX_HISTORY)?;
    }
    let all = schedules(&state)?;
    let s = find(&all, &name)?;
    let firings = report::history(&state.pool, s.name(), limit).await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"schedule": s.name(), "firings": firings}),
    ))
}

/// `POST /v1/schedules/{name}/run`: fires it now (the scheduler's dedupe
/// rules hold: a tenant whose previous run is live is skipped), relays the
/// jobs at once, 202 with the firing.
pub async fn run(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let all = schedules(&state)?;
    let s = find(&all, &name)?;
    let me = crate::runtime::worker::owner_id("api");
    let fired = report::run_now(&state.pool, &state.registry, s, &me).await?;
    tracing::info!(schedule = %fired.schedule, jobs = fired.jobs, skipped = fired.skipped, actor = %caller.actor(), "schedule fired by hand");
    let (pool, broker) = (state.pool.clone(), state.broker.clone());
    tokio::spawn(async move { relay::drain(&pool, &broker).await });
    Ok(respond(StatusCode::ACCEPTED, &fired))
}
