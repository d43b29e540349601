//! Jobs beyond one: `GET /v1/jobs` (filters and cursor pagination),
//! `POST /v1/jobs/{id}/cancel` and `POST /v1/jobs/{id}/retry`, the HTTP side
//! of `jobs list`, `jobs cancel` and `jobs retry`.
//!
//! A tenant token lists and cancels only its own tenant's jobs and sees them
//! through [`super::jobs::tenant_view`]; retrying a dead job is an operator's
//! decision (admin only). Whether a job of another tenant exists is never
//! revealed: such a job answers 404, as a missing one does.

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiPath, parse_limit, parse_status, query_pairs},
    jobs::tenant_view,
    json as respond,
    settings::Scope,
};
use crate::runtime::{
    JobStatus,
    store::{self, CreatedWindow, JobActionError, JobRow, ListFilter},
};

/// Default and largest page of `GET /v1/jobs`.
pub const PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

/// `GET /v1/jobs[?status=&kind=&tenant=&since=&until=&limit=&cursor=]`:
/// newest first; `next_cursor` (a job id) continues after the last job of
/// the page. With `since` or `until` (RFC 3339) the jobs created in that
/// window, newest first by creation time (index `jobs_created`).
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut filter = ListFilter {
        limit: PAGE,
        ..Default::default()
    };
    let mut cursor = None;
    let (mut since, mut until) = (None, None);
    let allowed = [
        "status", "kind", "tenant", "since", "until", "limit", "cursor",
    ];
    for (k, v) in query_pairs(uri.query(), &allowed)? {
        match k.as_str() {
            "status" => filter.status = Some(parse_status::<JobStatus>(&v)?),
            "kind" => filter.kind = Some(v),
            "tenant" => filter.tenant = Some(v),
            "since" => since = Some(parse_time(&v, "since")?),
            "until" => until = Some(parse_time(&v, "until")?),
            "limit" => filter.limit = parse_limit(&v, MAX_PAGE)?,
            _ => cursor = Some(parse_id(&v, "cursor")?),
        }
    }
    // A tenant token's list is its tenant's, whatever it asked for.
    if let Scope::Tenant(own) = &caller.scope {
        if filter.tenant.as_deref().is_some_and(|t| t != own) {
            return Err(ApiError::forbidden(format!(
                "a tenant token lists only its own tenant's jobs ({own})"
            )));
        }
        filter.tenant = Some(own.clone());
    }
    let rows = if since.is_some() || until.is_some() {
        // The cursor job's creation time continues the window's keyset.
        let after_row = match cursor {
            None => None,
            Some(id) => Some(
                store::get(&state.pool, id)
                    .await?
                    .map(|j| (j.created_at, j.id))
                    .ok_or_else(|| ApiError::bad_request(format!("cursor {id} is no job")))?,
            ),
        };
        let window = CreatedWindow {
            since,
            until,
            after_row,
        };
        store::page_created(&state.pool, &filter, &window).await?
    } else {
        store::page(&state.pool, &filter, cursor).await?
    };
    let next = (rows.len() as i64 == filter.limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let jobs = rows
        .iter()
        .map(|j| view(&caller, j))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(respond(
        StatusCode::OK,
        &json!({"jobs": jobs, "next_cursor": next}),
    ))
}

/// `POST /v1/jobs/{id}/cancel` (admin, or the token of the job's tenant).
pub async fn cancel(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id, "job id")?;
    visible(&state, &caller, id).await?;
    store::cancel(&state.pool, id, &caller.actor())
        .await
        .map_err(action_error)?;
    answer(&state, &caller, id).await
}

/// `POST /v1/jobs/{id}/retry` (admin): a dead, failed or cancelled job runs
/// again from its first attempt.
pub async fn retry(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id, "job id")?;
    let outbox = store::retry(&state.pool, id, &caller.actor())
        .await
        .map_err(action_error)?;
    state.publish_soon(outbox);
    answer(&state, &caller, id).await
}

/// The job as it is now, as this caller sees it.
async fn answer(state: &AppState, caller: &Caller, id: Uuid) -> Result<Response, ApiError> {
    let job = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    Ok(respond(StatusCode::OK, &view(caller, &job)?))
}

/// 404 unless the job exists and the caller may see it.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    let job = store::get(&state.pool, id).await?;
    match (&caller.scope, job) {
        (_, None) => Err(ApiError::not_found(format!("no job {id}"))),
        (Scope::Admin | Scope::Viewer, Some(_)) => Ok(()),
        (Scope::Tenant(own), Some(j)) if j.tenant.as_deref() == Some(own.as_str()) => Ok(()),
        (Scope::Tenant(_), Some(_)) => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

fn view(caller: &Caller, job: &JobRow) -> Result<serde_json::Value, ApiError> {
    if caller.is_admin() {
        serde_json::to_value(job).map_err(|e| anyhow::Error::from(e).into())
    } else {
        tenant_view(job)
    }
}

fn action_error(e: JobActionError) -> ApiError {
    match e {
        JobActionError::NotFound(_) => ApiError::not_found(e.to_string()),
        JobActionError::WrongStatus { .. } | JobActionError::CompensationPending(_) => {
            ApiError::new(StatusCode::CONFLICT, "wrong_status", e.to_string())
        }
        JobActionError::Duplicate(_) | JobActionError::DedupeTaken => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        JobActionError::Other(inner) => ApiError::internal(&inner),
    }
}

fn parse_time(v: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{what} {:?} is not an RFC 3339 time (2026-12-04T18:00:00Z)",
                crate::message::truncate(v)
            ))
        })
}

fn parse_id(v: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(v).map_err(|_| {
        ApiError::bad_request(format!(
            "{what} {:?} is not a UUID",
            crate::message::truncate(v)
        ))
    })
}
