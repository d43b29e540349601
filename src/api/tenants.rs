//! `/v1/tenants…`: create (enqueues the provisioning saga), list, show,
//! delete (schedules the drop after a final backup), change status, update
//! settings, fetch credentials. Each handler checks
//! the caller's scope, then calls the lifecycle library; it never writes SQL.

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, Uri, header},
    response::Response,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiJson, ApiPath, parse_limit, parse_status, query_pairs},
    json as respond,
};
use crate::{
    lifecycle::{self, NewTenant, TargetStatus},
    tenants::{self, TenantStatus},
};

/// Body of `POST /v1/tenants`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub slug: String,
    pub name: String,
    pub plan: String,
    /// The owner's email address (plan limits count per owner).
    pub owner: String,
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
    /// Database server name; placement chooses when absent.
    #[serde(default)]
    pub server: Option<String>,
    /// Share this existing database (row-level isolation) instead of getting one.
    #[serde(default)]
    pub shared_database: Option<String>,
    /// With `shared_database`: the tenant's value in the tenant column (default: its id).
    #[serde(default)]
    pub tenant_key: Option<String>,
}

/// `POST /v1/tenants` (admin): validate, write the tenant (`provisioning`)
/// and its provision job, publish the job at once (best effort), 202.
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let new = NewTenant {
        slug: body.slug,
        name: body.name,
        plan: body.plan,
        owner_email: body.owner,
        settings: body.settings.unwrap_or_default(),
        server: body.server,
        shared: body
            .shared_database
            .map(|database| crate::lifecycle::SharedPlacement {
                database,
                key: body.tenant_key,
            }),
    };
    let created = lifecycle::create(&state.pool, &state.settings, &new, &caller.actor()).await?;
    state.publish_soon(created.job.outbox_id);
    tracing::info!(tenant = %created.tenant.slug, job_id = %created.job.id, "tenant created");
    Ok(respond(
        StatusCode::ACCEPTED,
        &json!({"tenant": created.tenant, "job_id": created.job.id}),
    ))
}

/// Default and largest page of `GET /v1/tenants`.
pub const PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

/// `GET /v1/tenants[?status=&plan=&server=&q=&limit=&cursor=]` (admin): by
/// slug; `next_cursor` (a slug) continues after the page's last tenant.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let mut f = tenants::TenantFilter {
        limit: PAGE,
        ..Default::default()
    };
    let allowed = ["status", "plan", "server", "q", "limit", "cursor"];
    for (k, v) in query_pairs(uri.query(), &allowed)? {
        match k.as_str() {
            "status" => f.status = Some(parse_status::<TenantStatus>(&v)?),
            "plan" => f.plan = Some(v),
            "server" => f.server = Some(v),
            "q" => f.search = Some(v),
            "limit" => f.limit = parse_limit(&v, MAX_PAGE)?,
            _ => f.after = Some(v),
        }
    }
    let page = tenants::page(&state.pool, &f).await?;
    let next = (page.len() as i64 == f.limit)
        .then(|| page.last().map(|t| t.slug.clone()))
        .flatten();
    Ok(respond(
        StatusCode::OK,
        &json!({"tenants": page, "next_cursor": next}),
    ))
}

/// `GET /v1/tenants/{slug}` (admin or that tenant).
pub async fn show(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&slug)?;
    let t = tenants::get(&state.pool, &slug).await?;
    Ok(respond(StatusCode::OK, &t))
}

/// Longest grace a deletion may be given over the API, in days (as the library's bound).
const MAX_GRACE_DAYS: u64 = 36_500;

/// `DELETE /v1/tenants/{slug}[?grace_days=N&final_backup=false]` (admin):
/// as `tenants delete`. The tenant stops at once; a final backup (held) is
/// taken unless `final_backup=false`; the database is dropped after the
/// grace (`LANDLORD_DELETE_GRACE_DAYS` by default, `0` for as soon as the
/// final backup succeeded). 202 with the tenant and the `drop_tenant` job.
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let mut grace_days = state.settings.provisioning.delete_grace_days;
    let mut no_final_backup = false;
    for (k, v) in query_pairs(uri.query(), &["grace_days", "final_backup"])? {
        if k == "grace_days" {
            grace_days = match v.parse::<u64>() {
                Ok(d) if d <= MAX_GRACE_DAYS => d,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "grace_days must be a whole number of days from 0 to {MAX_GRACE_DAYS}, got {:?}",
                        crate::message::truncate(&v)
                    )));
                }
            };
        } else {
            no_final_backup = match v.as_str() {
                "true" => false,
                "false" => true,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "final_backup must be true or false, got {:?}",
                        crate::message::truncate(&v)
                    )));
                }
            };
        }
    }
    let opts = lifecycle::DeleteOptions {
        no_final_backup,
        grace: std::time::Duration::from_secs(grace_days * 86_400),
    };
    let job =
        lifecycle::delete(&state.pool, &state.settings, &slug, &opts, &caller.actor()).await?;
    state.publish_soon(job.outbox_id);
    let t = tenants::get(&state.pool, &slug).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &json!({"tenant": t, "job_id": job.id}),
    ))
}

/// Body of `POST /v1/tenants/{slug}/status`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeStatus {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/tenants/{slug}/status` (admin): activate, deactivate, suspend.
pub async fn change_status(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<ChangeStatus>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let to = body.status.parse::<TargetStatus>().map_err(|e| {
        ApiError::invalid(format!(
            "status {:?} cannot be set; use active, inactive or suspended",
            crate::message::truncate(&e.value)
        ))
    })?;
    super::tenant_actions::set_status(&caller, &state, &slug, to, body.reason).await
}

/// Body of `PATCH /v1/tenants/{slug}/settings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    #[serde(default)]
    pub set: Option<Map<String, Value>>,
    #[serde(default)]
    pub unset: Option<Vec<String>>,
}

/// `PATCH /v1/tenants/{slug}/settings` (admin or that tenant).
pub async fn update_settings(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateSettings>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&slug)?;
    let set = body.set.unwrap_or_default();
    let unset = body.unset.unwrap_or_default();
    if let Some(k) = unset.iter().find(|k| set.contains_key(k.as_str())) {
        return Err(ApiError::invalid(format!(
            "setting {:?} is both set and unset",
            crate::message::truncate(k)
        )));
    }
    let t = lifecycle::update_settings(&state.pool, &slug, &set, &unset, &caller.actor()).await?;
    Ok(respond(StatusCode::OK, &t))
}

/// `GET /v1/tenants/{slug}/credentials` (admin or that tenant). Never cached.
pub async fn credentials(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_secrets_of(&slug)?;
    let c = lifecycle::credentials::fetch(&state.pool, &state.settings, &slug).await?;
    tracing::info!(tenant = %slug, "credentials fetched");
    let mut res = respond(StatusCode::OK, &c);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
