//! Fleet operations over HTTP (admin): `POST /v1/maintenance` (one
//! `maintenance` job per tenant, as `landlord maintenance`) and
//! `GET /v1/doctor` (the requirement checks of `landlord doctor`).

use axum::{extract::State, http::StatusCode, response::Response};
use serde_json::{Value, json};

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::ApiJson,
    jobs::{self, EnqueueJob},
    json as respond,
};
use crate::{
    backup::doctor,
    runtime::Job,
    tenants::{self, TenantStatus},
    workers::maintenance::Maintenance,
};

/// Most tenants one maintenance request names.
pub const MAX_TENANTS: usize = 10_000;

/// `POST /v1/maintenance` (admin): the body is the `maintenance` job's
/// steps (`analyze`, `vacuum`, `full`, `optimize`, `cleanup`, `days`,
/// `dry_run`, `backup`) and `tenants` (absent: every active tenant). Every
/// tenant is checked before anything is enqueued; 202 with the jobs.
pub async fn maintenance(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let named: Option<Vec<String>> = match body.remove("tenants") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value(v)
                .map_err(|_| ApiError::bad_request("tenants must be an array of tenant slugs"))?,
        ),
    };
    let job: Maintenance = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    job.validate().map_err(ApiError::invalid)?;
    let slugs = match named {
        Some(s) if s.is_empty() => return Err(ApiError::invalid("tenants must not be empty")),
        Some(s) if s.len() > MAX_TENANTS => {
            return Err(ApiError::invalid(format!(
                "at most {MAX_TENANTS} tenants per request"
            )));
        }
        Some(s) => {
            for slug in &s {
                tenants::get(&state.pool, slug).await?;
            }
            s
        }
        None => tenants::list(&state.pool, Some(TenantStatus::Active))
            .await?
            .into_iter()
            .map(|t| t.slug)
            .collect(),
    };
    let mut job_ids = Vec::with_capacity(slugs.len());
    for slug in slugs {
        let enq = jobs::submit_job(&state, &caller, slug, EnqueueJob::of(&job)?).await?;
        job_ids.push(enq.id);
    }
    Ok(respond(StatusCode::ACCEPTED, &json!({"job_ids": job_ids})))
}

/// `GET /v1/doctor` (admin): 200 with every check; `ok` is false when one failed.
pub async fn doctor(caller: Caller, State(state): State<AppState>) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let checks = doctor::run(&state.settings).await;
    let ok = checks.iter().all(|c| c.ok);
    Ok(respond(
        StatusCode::OK,
        &json!({"ok": ok, "checks": checks}),
    ))
}
