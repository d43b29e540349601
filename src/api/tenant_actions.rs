//! Tenant operations beyond create/read/delete: the status shortcuts
//! (`activate`, `deactivate`, `suspend`), credential rotation, schema
//! migration of one tenant or the fleet, registering an existing database,
//! and the plan check `can-provision`. The HTTP side of the `tenants …`
//! commands of the same names, over the lifecycle library.
//!
//! All of them are an admin token's (they change what a tenant may do, or
//! reach across tenants); a tenant token gets 403 before anything is read.

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
};
use serde::Deserialize;
use serde_json::json;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiJson, ApiPath, query_pairs},
    json as respond,
};
use crate::{
    lifecycle::{
        self, TargetStatus,
        migrate::{FleetMigration, MigrationTargets},
    },
    runtime::store::{self, Origin},
    tenants::{self, Registration},
};

/// Default fleet migration concurrency (as `tenants migrate`).
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// Most tenants one migration request names.
pub const MAX_MIGRATE_TENANTS: usize = 10_000;

/// Optional body of the status shortcuts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Sets the status (admin); the reason is checked here, the rest by the lifecycle.
pub(super) async fn set_status(
    caller: &Caller,
    state: &AppState,
    slug: &str,
    to: TargetStatus,
    reason: Option<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    // PostgreSQL text cannot hold NUL: refused here, not failed at the update.
    if reason.as_deref().is_some_and(|r| r.contains('\0')) {
        return Err(ApiError::invalid(
            "the reason must not contain a NUL character (\\u0000)",
        ));
    }
    let t = lifecycle::change_status(
        &state.pool,
        &state.settings,
        slug,
        to,
        reason.as_deref(),
        &caller.actor(),
    )
    .await?;
    Ok(respond(StatusCode::OK, &t))
}

/// `POST /v1/tenants/{slug}/activate` (admin).
pub async fn activate(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    body: Option<ApiJson<Reason>>,
) -> Result<Response, ApiError> {
    let reason = body.and_then(|ApiJson(b)| b.reason);
    set_status(&caller, &state, &slug, TargetStatus::Active, reason).await
}

/// `POST /v1/tenants/{slug}/deactivate` (admin).
pub async fn deactivate(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    body: Option<ApiJson<Reason>>,
) -> Result<Response, ApiError> {
    let reason = body.and_then(|ApiJson(b)| b.reason);
    set_status(&caller, &state, &slug, TargetStatus::Inactive, reason).await
}

/// `POST /v1/tenants/{slug}/suspend` (admin).
pub async fn suspend(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    body: Option<ApiJson<Reason>>,
) -> Result<Response, ApiError> {
    let reason = body.and_then(|ApiJson(b)| b.reason);
    set_status(&caller, &state, &slug, TargetStatus::Suspended, reason).await
}

/// `POST /v1/tenants/{slug}/rotate-credentials` (admin): a new password for
/// the tenant's role; the old one stops working. 200 without the secret
/// (`GET …/credentials` reads it).
pub async fn rotate_credentials(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let c = lifecycle::credentials::rotate(&state.pool, &state.settings, &slug, &caller.actor())
        .await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"tenant": c.tenant, "role": c.role, "rotated": true}),
    ))
}

/// Body of `POST /v1/migrations`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateBody {
    /// These tenants; absent: every provisioned tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// At most this many tenant migrations at once across the fleet (1-256).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

async fn migrate_targets(
    caller: &Caller,
    state: &AppState,
    targets: MigrationTargets,
    concurrency: u32,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let opts = FleetMigration {
        targets,
        concurrency,
    };
    let plan = lifecycle::migrate::plan(
        &state.pool,
        &state.settings,
        &opts,
        |t| tracing::info!(server = %t.server, template = %t.template, "template up to date"),
    )
    .await?;
    let mut job_ids = Vec::with_capacity(plan.jobs.len());
    for req in &plan.jobs {
        let enq = store::enqueue(&state.pool, &state.registry, req, Origin::Catalog).await?;
        state.publish_soon(enq.outbox_id);
        job_ids.push(enq.id);
    }
    tracing::info!(jobs = job_ids.len(), version = plan.version, actor = %caller.actor(), "migration enqueued");
    let templates: Vec<_> = plan
        .templates
        .iter()
        .map(|t| json!({"server": t.server, "template": t.template}))
        .collect();
    Ok(respond(
        StatusCode::ACCEPTED,
        &json!({"version": plan.version, "templates": templates, "job_ids": job_ids}),
    ))
}

/// `POST /v1/migrations` (admin): brings the templates up to date, then one
/// `migrate` job per tenant; 202 with the jobs.
pub async fn migrate_fleet(
    caller: Caller,
    State(state): State<AppState>,
    body: Option<ApiJson<MigrateBody>>,
) -> Result<Response, ApiError> {
    let body = body.map(|ApiJson(b)| b).unwrap_or_default();
    let targets = match body.tenants {
        None => MigrationTargets::All,
        Some(t) if t.is_empty() => return Err(ApiError::invalid("tenants must not be empty")),
        Some(t) if t.len() > MAX_MIGRATE_TENANTS => {
            return Err(ApiError::invalid(format!(
                "at most {MAX_MIGRATE_TENANTS} tenants per request"
            )));
        }
        Some(t) => MigrationTargets::Named(t),
    };
    let concurrency = body.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    migrate_targets(&caller, &state, targets, concurrency).await
}

/// `POST /v1/tenants/{slug}/migrate` (admin): migrates one tenant; 202.
pub async fn migrate_one(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    let targets = MigrationTargets::Named(vec![slug]);
    migrate_targets(&caller, &state, targets, DEFAULT_CONCURRENCY).await
}

/// Body of `POST /v1/tenants/{slug}/register`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub name: String,
    pub plan: String,
    /// The configured database server holding the database.
    pub server: String,
    /// The existing database to adopt.
    pub database: String,
}

/// `POST /v1/tenants/{slug}/register` (admin): adopts an existing database
/// as the active tenant `slug`; 201 with the tenant.
pub async fn register(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let r = Registration {
        slug,
        name: body.name,
        plan: body.plan,
        server: body.server,
        database: body.database,
    };
    let t = tenants::register(&state.pool, &state.settings, &r, &caller.actor()).await?;
    Ok(respond(StatusCode::CREATED, &t))
}

/// `GET /v1/can-provision?owner=&plan=` (admin): whether the owner may
/// create another tenant on the plan, with the count and the limit.
pub async fn can_provision(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let (mut owner, mut plan) = (None, None);
    for (k, v) in query_pairs(uri.query(), &["owner", "plan"])? {
        if k == "owner" {
            owner = Some(v);
        } else {
            plan = Some(v);
        }
    }
    let (Some(owner), Some(plan)) = (owner, plan) else {
        return Err(ApiError::bad_request(
            "give both owner (an email address) and plan",
        ));
    };
    let a = lifecycle::can_provision(&state.pool, &owner, &plan).await?;
    Ok(respond(StatusCode::OK, &a))
}
