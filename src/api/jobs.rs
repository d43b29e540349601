//! Jobs: `POST /v1/tenants/{slug}/jobs` enqueues any registered kind for a
//! tenant (validated by the runtime exactly like the CLI), and
//! `GET /v1/jobs/{id}` shows one job row.

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiJson, ApiPath},
    json as respond,
};
use crate::runtime::{
    Job,
    store::{self, EnqueueRequest, Origin},
};

/// Job families driven by the tenant lifecycle itself (provisioning, deletion,
/// welcome mail). Their kinds are enqueued by the lifecycle operations, never
/// by hand through this route: a hand-made `drop_tenant`, say, would skip the
/// deletion's grace period.
pub const LIFECYCLE_FAMILIES: [&str; 2] = ["provision", "mail"];

/// Kinds only an admin token may enqueue.
pub const ADMIN_KINDS: [&str; 2] = ["migrate", "restore"];

/// Kinds landlord schedules itself (the end of a restore's rollback window).
pub const INTERNAL_KINDS: [&str; 1] = [<crate::backup::jobs::DropPreRestore as Job>::KIND];

/// The kinds this route accepts, for error messages and the documentation.
pub fn enqueueable(registry: &crate::runtime::Registry) -> Vec<&'static str> {
    registry
        .kinds()
        .filter(|k| {
            registry
                .get(k)
                .is_some_and(|s| !LIFECYCLE_FAMILIES.contains(&s.queue))
                && !INTERNAL_KINDS.contains(k)
        })
        .collect()
}

/// Body of `POST /v1/tenants/{slug}/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueJob {
    pub kind: String,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default)]
    pub dedupe_key: Option<String>,
}

/// `POST /v1/tenants/{slug}/jobs` (admin or that tenant): 202 with the job id;
/// `existing` is true when a live job with the same dedupe key was returned.
pub async fn enqueue(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<EnqueueJob>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&slug)?;
    match state.registry.get(&body.kind) {
        None => {
            return Err(ApiError::invalid(format!(
                "unknown job kind {:?}; kinds: {}",
                crate::message::truncate(&body.kind),
                enqueueable(&state.registry).join(", ")
            )));
        }
        Some(spec) if LIFECYCLE_FAMILIES.contains(&spec.queue) => {
            return Err(ApiError::invalid(format!(
                "job kind {} belongs to the tenant lifecycle (family {}) and is enqueued by it, not by hand; kinds: {}",
                spec.kind,
                spec.queue,
                enqueueable(&state.registry).join(", ")
            )));
        }
        // migrate's argument sets the fleet-wide slot count, an operator's
        // decision; a restore replaces the live database.
        Some(spec) if ADMIN_KINDS.contains(&spec.kind) && !caller.is_admin() => {
            return Err(ApiError::forbidden(format!(
                "{} jobs are enqueued by an admin token",
                spec.kind
            )));
        }
        // A held backup is never pruned: holds are an operator's decision.
        Some(spec)
            if spec.kind == <crate::backup::jobs::Backup as Job>::KIND
                && body.args.as_ref().is_some_and(|a| a.get("hold").is_some())
                && !caller.is_admin() =>
        {
            return Err(ApiError::forbidden(
                "backups on legal hold are requested by an admin token",
            ));
        }
        Some(spec) if INTERNAL_KINDS.contains(&spec.kind) => {
            return Err(ApiError::invalid(format!(
                "job kind {} is scheduled by landlord itself; kinds: {}",
                spec.kind,
                enqueueable(&state.registry).join(", ")
            )));
        }
        Some(_) => {}
    }
    let args = body.args.unwrap_or_else(|| json!({}));
    if !args.is_object() {
        return Err(ApiError::invalid("args must be a JSON object"));
    }
    let req = EnqueueRequest {
        kind: body.kind,
        tenant: Some(slug),
        args,
        dedupe_key: body.dedupe_key,
        ..Default::default()
    };
    let enq = store::enqueue(&state.pool, &state.registry, &req, Origin::Catalog).await?;
    state.publish_soon(enq.outbox_id);
    tracing::info!(job_id = %enq.id, kind = %req.kind, tenant = ?req.tenant, existing = enq.existing, "job enqueued");
    Ok(respond(
        StatusCode::ACCEPTED,
        &json!({"job_id": enq.id, "existing": enq.existing}),
    ))
}

/// `GET /v1/jobs/{id}` (admin, or the token of the job's tenant).
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        ApiError::bad_request(format!(
            "job id {:?} is not a UUID",
            crate::message::truncate(&id)
        ))
    })?;
    let job = store::get(&state.pool, id).await?;
    if !caller.is_admin() {
        // A tenant token sees only its tenant's jobs; whether another job exists is not its business.
        match job.as_ref().and_then(|j| j.tenant.as_deref()) {
            Some(t) => caller.require_tenant(t)?,
            None if job.is_some() => {
                return Err(ApiError::forbidden(
                    "this job belongs to no tenant; only an admin token may read it",
                ));
            }
            None => {}
        }
    }
    match job {
        Some(j) => Ok(respond(StatusCode::OK, &j)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}
