//! Jobs: `POST /v1/tenants/{slug}/jobs` enqueues any registered kind for a
//! tenant (validated by the runtime exactly like the CLI), and
//! `GET /v1/jobs/{id}` shows one job row.
//!
//! Tenant tokens get less than admin tokens here: no retention arguments on
//! `backup` and no `restore_test` on `verify_backup` (403; both are an
//! operator's decisions on shared resources), at most
//! `LANDLORD_API_MAX_LIVE_JOBS_PER_TENANT` live jobs of their tenant (409
//! `live_job_limit_reached`), and job rows without what reveals the
//! installation's internals ([`tenant_view`]).

use axum::{extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiJson, ApiPath},
    json as respond,
};
use crate::{
    message::OperatorArg,
    runtime::{
        Job, JobStatus,
        store::{self, EnqueueRequest, JobRow, Origin},
    },
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

impl EnqueueJob {
    /// The body of a typed job (`J::KIND` with its arguments serialised).
    pub fn of<J: Job>(job: &J) -> Result<Self, ApiError> {
        let args = serde_json::to_value(job)
            .map_err(|e| ApiError::invalid(format!("invalid arguments for {}: {e}", J::KIND)))?;
        Ok(Self {
            kind: J::KIND.to_string(),
            args: Some(args),
            dedupe_key: None,
        })
    }
}

/// `POST /v1/tenants/{slug}/jobs` (admin or that tenant): 202 with the job id;
/// `existing` is true when a live job with the same dedupe key was returned.
pub async fn enqueue(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<EnqueueJob>,
) -> Result<Response, ApiError> {
    submit(&state, &caller, slug, body).await
}

/// Enqueues one job for `slug` with every check of the generic route (the
/// caller's scope, kinds and arguments a tenant token may not give, the live
/// job cap): the typed routes (backup now, verify, restore, migrate,
/// maintenance) build their body and come through here. 202 with the job id.
pub(super) async fn submit(
    state: &AppState,
    caller: &Caller,
    slug: String,
    body: EnqueueJob,
) -> Result<Response, ApiError> {
    let enq = submit_job(state, caller, slug, body).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &json!({"job_id": enq.id, "existing": enq.existing}),
    ))
}

/// [`submit`], answering with what was enqueued instead of a response.
pub(super) async fn submit_job(
    state: &AppState,
    caller: &Caller,
    slug: String,
    body: EnqueueJob,
) -> Result<store::Enqueued, ApiError> {
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
    if !caller.is_admin() {
        refuse_operator_args(&body.kind, &args)?;
    }
    // PostgreSQL text cannot hold NUL: refused here, not failed at the insert.
    if body.dedupe_key.as_deref().is_some_and(|k| k.contains('\0')) {
        return Err(ApiError::invalid(
            "dedupe_key must not contain a NUL character (\\u0000)",
        ));
    }
    // Held until the job is written, so concurrent requests cannot pass the cap together.
    let _live_cap = live_job_cap(state, caller, &slug).await?;
    let req = EnqueueRequest {
        kind: body.kind,
        tenant: Some(slug),
        args,
        // The caller's own namespace: no token can take a key landlord uses.
        dedupe_key: body
            .dedupe_key
            .map(|k| store::DedupeKey::caller(&caller.actor(), k)),
        ..Default::default()
    };
    let enq = store::enqueue(&state.pool, &state.registry, &req, Origin::Catalog).await?;
    state.publish_soon(enq.outbox_id);
    tracing::info!(job_id = %enq.id, kind = %req.kind, tenant = ?req.tenant, existing = enq.existing, "job enqueued");
    Ok(enq)
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
        Some(j) if caller.is_admin() => Ok(respond(StatusCode::OK, &j)),
        Some(j) => Ok(respond(StatusCode::OK, &tenant_view(&j)?)),
        None => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

/// Arguments a tenant token may not give: they are an operator's decisions.
/// A held backup is never pruned (`hold`); retention (`keep`, `retention`)
/// can prune the tenant's whole backup history (its last line of defence,
/// and the operator's); a restore test (`restore_test`) loads a full copy
/// on the shared server.
fn refuse_operator_args(kind: &str, args: &Value) -> Result<(), ApiError> {
    match OperatorArg::find(kind, args) {
        None => Ok(()),
        Some(OperatorArg::Hold) => Err(ApiError::forbidden(
            "backups on legal hold are requested by an admin token",
        )),
        Some(OperatorArg::Retention) => Err(ApiError::forbidden(
            "backup retention (keep, retention) is chosen by an admin token; a tenant token's backups follow the configured retention",
        )),
        Some(OperatorArg::RestoreTest) => Err(ApiError::forbidden(
            "restore tests (restore_test) are requested by an admin token; a tenant token may verify a backup without one",
        )),
    }
}

/// For a tenant token with a cap configured: refuses when its tenant already
/// has the most live (queued, running, retrying) jobs allowed; otherwise the
/// transaction holding the tenant's cap lock, to keep until the job is
/// written. Admin tokens are not capped.
async fn live_job_cap(
    state: &AppState,
    caller: &Caller,
    slug: &str,
) -> Result<Option<Transaction<'static, Postgres>>, ApiError> {
    let cap = state.api.limits.max_live_jobs_per_tenant;
    if caller.is_admin() || cap == 0 {
        return Ok(None);
    }
    let live: Vec<&str> = JobStatus::ALL
        .iter()
        .filter(|s| s.is_live())
        .map(|s| s.as_str())
        .collect();
    let mut tx = state.pool.begin().await.map_err(anyhow::Error::from)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('landlord-api-live-jobs'), hashtext($1))")
        .bind(slug)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
         WHERE t.slug = $1 AND j.status = ANY($2)",
    )
    .bind(slug)
    .bind(&live)
    .fetch_one(&mut *tx)
    .await
    .map_err(anyhow::Error::from)?;
    if n >= i64::from(cap) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "live_job_limit_reached",
            format!(
                "tenant {slug} already has {n} live (queued, running or retrying) job(s); a tenant token may have at most {cap}; enqueue again when some have finished"
            ),
        ));
    }
    Ok(Some(tx))
}

/// Fields of a job row that only admin tokens see: which worker (host and
/// process) holds the lease, and the undo's error.
pub const ADMIN_ONLY_FIELDS: [&str; 2] = ["lease_owner", "compensation_error"];

/// A job row as a tenant token sees it: without [`ADMIN_ONLY_FIELDS`];
/// `last_error` (which carries children's stderr, server, database and role
/// names) replaced by a summary; every `error` inside `result` and
/// `progress` replaced the same way. Everything else is the tenant's own.
pub fn tenant_view(job: &JobRow) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(job).map_err(anyhow::Error::from)?;
    let Some(o) = v.as_object_mut() else {
        return Ok(v);
    };
    for f in ADMIN_ONLY_FIELDS {
        o.remove(f);
    }
    if job.last_error.is_some() {
        let summary = if job.status == JobStatus::Queued {
            // Handed back: a shared resource was busy, or its worker stopped.
            "the job was handed back (a shared resource was busy, or its worker stopped); it runs again soon"
        } else {
            "the last attempt failed; the details are in the operator's view of this job"
        };
        o.insert("last_error".into(), Value::String(summary.into()));
    }
    for f in ["result", "progress"] {
        if let Some(inner) = o.get_mut(f) {
            redact_errors(inner);
        }
    }
    Ok(v)
}

/// Replaces every `error` member at any depth.
fn redact_errors(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, inner) in o.iter_mut() {
                if k == "error" && !inner.is_null() {
                    *inner = Value::String("failed; the details are in the operator's view".into());
                } else {
                    redact_errors(inner);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_errors),
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn operator_arguments_are_refused_for_tenant_tokens() {
        for (kind, args) in [
            ("backup", json!({"hold": "legal"})),
            ("backup", json!({"keep": 1})),
            ("backup", json!({"retention": "keep:1", "codec": "zstd"})),
            ("verify_backup", json!({"restore_test": true})),
            ("verify_backup", json!({"restore_test": "yes"})),
        ] {
            let e = refuse_operator_args(kind, &args).unwrap_err();
            assert_eq!(e.status().as_u16(), 403, "{kind} {args}");
        }
        for (kind, args) in [
            ("backup", json!({})),
            ("backup", json!({"codec": "gzip", "keep": null})),
            ("verify_backup", json!({"restore_test": false})),
            ("verify_backup", json!({"backup": "x"})),
            ("maintenance", json!({"keep": 1})),
        ] {
            assert!(refuse_operator_args(kind, &args).is_ok(), "{kind} {args}");
        }
    }

    #[test]
    fn the_documented_kinds_are_the_ones_this_route_accepts() {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        let kind = &doc["components"]["schemas"]["EnqueueJobRequest"]["properties"]["kind"];
        let mut documented: Vec<&str> = kind["enum"]
            .as_array()
            .expect("kind is an enum")
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let mut accepted = enqueueable(&crate::workers::registry());
        documented.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(documented, accepted);
    }

    #[test]
    fn errors_are_redacted_at_any_depth() {
        let mut v = json!({"retention": {"policy": "keep:7", "error": "s3: 10.0.0.5 denied"},
                           "steps": [{"error": "pg_dump: role x"}], "error": null});
        redact_errors(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("10.0.0.5") && !text.contains("pg_dump"),
            "{text}"
        );
        assert_eq!(v["retention"]["policy"], "keep:7");
        assert!(v["error"].is_null());
    }
}
