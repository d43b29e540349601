//! Backups over HTTP: a tenant's list and figures, backup now, verify,
//! restore (admin, with the tenant's slug typed as the confirmation), hold,
//! release and delete one backup, prune with a dry run, and the freshness
//! monitor. The HTTP side of `backups …` and `restore`, over `backup::*`.
//!
//! Work that takes long (backup, verify, restore) is a job: 202 with its id,
//! through the generic job route's checks (`jobs::submit`). A tenant token
//! reads its own tenant's backups without where they are stored, and may take
//! and verify its backups; holds, deletion, pruning, restores and the monitor
//! are an operator's (admin). A backup of another tenant answers 404, as a
//! missing one does.

use axum::{
    extract::State,
    http::{StatusCode, Uri},
    response::Response,
};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    AppState,
    auth::Caller,
    error::ApiError,
    extract::{ApiJson, ApiPath, query_pairs},
    jobs::{self, EnqueueJob},
    json as respond,
};
use crate::{
    backup::{
        self, Store,
        catalog::{self, Backup},
        manage::{self, BackupChangeError},
        monitor, prune, retention,
    },
    runtime::Job,
    tenants,
    workers::{restore::Restore, verify_backup::VerifyBackup},
};

/// Most tenants one prune request names.
pub const MAX_PRUNE_TENANTS: usize = 1000;

impl From<BackupChangeError> for ApiError {
    fn from(e: BackupChangeError) -> Self {
        match e {
            BackupChangeError::NotFound(_) => Self::not_found(e.to_string()),
            BackupChangeError::NotComplete(_) | BackupChangeError::NotHoldable { .. } => {
                Self::new(StatusCode::CONFLICT, "wrong_status", e.to_string())
            }
            BackupChangeError::Held { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            BackupChangeError::Other(inner) => Self::internal(&inner),
        }
    }
}

/// A backup as the caller may see it: everything for an admin; for a tenant
/// token, without where and how it is stored or why it failed.
fn view(caller: &Caller, b: &Backup) -> Value {
    if caller.is_admin() {
        let mut v = serde_json::to_value(b).unwrap_or_default();
        v["name"] = b.name().into();
        return v;
    }
    json!({
        "id": b.id, "name": b.name(), "status": b.status, "job_id": b.job_id,
        "codec": b.codec, "encrypted": b.encrypted, "raw_bytes": b.raw_bytes,
        "stored_bytes": b.stored_bytes, "sha256": b.sha256, "held": b.held,
        "held_reason": b.held_reason, "started_at": b.started_at,
        "completed_at": b.completed_at, "duration_ms": b.duration_ms,
    })
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| {
        ApiError::bad_request(format!(
            "backup id {:?} is not a UUID",
            crate::message::truncate(id)
        ))
    })
}

/// `GET /v1/tenants/{slug}/backups`: complete backups, newest first.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&slug)?;
    let t = tenants::get(&state.pool, &slug).await?;
    let rows = catalog::complete_of(&state.pool, t.id).await?;
    let backups: Vec<Value> = rows.iter().map(|b| view(&caller, b)).collect();
    Ok(respond(
        StatusCode::OK,
        &json!({"tenant": t.slug, "backups": backups}),
    ))
}

/// `GET /v1/tenants/{slug}/backups/stats`: the catalog's figures.
pub async fn stats(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&slug)?;
    let t = tenants::get(&state.pool, &slug).await?;
    let s = catalog::stats(&state.pool, t.id).await?;
    let ratio = if s.stored_bytes > 0 {
        s.raw_bytes as f64 / s.stored_bytes as f64
    } else {
        0.0
    };
    let mut v = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
    v["tenant"] = t.slug.into();
    v["ratio"] = ratio.into();
    Ok(respond(StatusCode::OK, &v))
}

/// Body of `POST /v1/tenants/{slug}/backups`: the `backup` job's arguments
/// (retention and hold are an admin's).
pub type BackupNow = backup::jobs::Backup;

/// `POST /v1/tenants/{slug}/backups`: a backup now, 202 with the job.
pub async fn backup_now(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    body: Option<ApiJson<BackupNow>>,
) -> Result<Response, ApiError> {
    let job = body.map(|ApiJson(b)| b).unwrap_or_default();
    job.options().map_err(ApiError::invalid)?;
    jobs::submit(&state, &caller, slug, EnqueueJob::of(&job)?).await
}

/// `POST /v1/tenants/{slug}/backups/verify`: reads a backup back (the newest
/// unless `backup` names one); `restore_test` (admin) also restores it into a
/// scratch database. 202 with the job.
pub async fn verify(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    body: Option<ApiJson<VerifyBackup>>,
) -> Result<Response, ApiError> {
    let job = body.map(|ApiJson(b)| b).unwrap_or(VerifyBackup {
        backup: None,
        restore_test: false,
    });
    jobs::submit(&state, &caller, slug, EnqueueJob::of(&job)?).await
}

/// Body of `POST /v1/tenants/{slug}/restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreBody {
    /// A backup id or file name; absent: the newest complete backup.
    #[serde(default)]
    pub backup: Option<String>,
    /// The tenant's slug, typed again: a restore replaces the live database.
    pub confirm: String,
}

/// `POST /v1/tenants/{slug}/restore` (admin): restores a backup over the
/// live database (kept for the rollback window), 202 with the job. Refused
/// with 422 unless `confirm` is the slug.
pub async fn restore(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(slug): ApiPath<String>,
    ApiJson(body): ApiJson<RestoreBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    if body.confirm != slug {
        return Err(ApiError::invalid(
            "a restore replaces the live database: confirm must be the tenant's slug; nothing changed",
        ));
    }
    let t = tenants::get(&state.pool, &slug).await?;
    let chosen = match &body.backup {
        Some(name) => match Uuid::parse_str(name) {
            Ok(id) => catalog::get(&state.pool, id)
                .await?
                .filter(|b| b.tenant_id == t.id),
            Err(_) => catalog::find(&state.pool, t.id, name).await?,
        },
        None => catalog::complete_of(&state.pool, t.id)
            .await?
            .into_iter()
            .next(),
    }
    .ok_or_else(|| {
        ApiError::not_found(match &body.backup {
            Some(n) => format!(
                "tenant {slug} has no backup {:?} (GET /v1/tenants/{slug}/backups lists them)",
                crate::message::truncate(n)
            ),
            None => format!("tenant {slug} has no complete backup"),
        })
    })?;
    let job = Restore {
        backup: Some(chosen.id.to_string()),
    };
    job.validate().map_err(ApiError::invalid)?;
    jobs::submit(&state, &caller, slug, EnqueueJob::of(&job)?).await
}

/// Body of `POST /v1/backups/{id}/hold`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Why (recorded with the hold and in the audit log).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/backups/{id}/hold` (admin): legal hold (never pruned or deleted).
pub async fn hold(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Option<ApiJson<HoldBody>>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let reason = body.and_then(|ApiJson(b)| b.reason);
    if reason
        .as_deref()
        .is_some_and(|r| r.len() > 500 || r.contains('\0'))
    {
        return Err(ApiError::invalid(
            "reason must be at most 500 characters, without NUL",
        ));
    }
    let b = manage::set_hold(&state.pool, id, true, reason.as_deref(), &caller.actor()).await?;
    Ok(respond(StatusCode::OK, &view(&caller, &b)))
}

/// `POST /v1/backups/{id}/release` (admin): lifts the hold.
pub async fn release(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let b = manage::set_hold(&state.pool, id, false, None, &caller.actor()).await?;
    Ok(respond(StatusCode::OK, &view(&caller, &b)))
}

/// `DELETE /v1/backups/{id}` (admin): object, manifest, then the row; a held
/// backup is refused (409). 200 with the row as it was.
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let id = parse_id(&id)?;
    let b = manage::delete(&state.pool, &state.settings.backup, id, &caller.actor()).await?;
    Ok(respond(StatusCode::OK, &view(&caller, &b)))
}

/// Body of `POST /v1/backups/prune`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// These tenants; absent: every tenant with backups.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Keep this many newest (at least 1), instead of the configured retention.
    #[serde(default)]
    pub keep: Option<u32>,
    /// A retention policy (`keep:N` or `gfs:…`) instead of `keep`.
    #[serde(default)]
    pub retention: Option<String>,
    /// Show what would be deleted; delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/backups/prune` (admin): applies retention now (or shows what it
/// would do), 200 with one report per tenant.
pub async fn prune(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<PruneBody>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let policy = match (body.keep, &body.retention) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give keep or retention, not both")),
        (Some(0), _) => return Err(ApiError::invalid("keep must be at least 1")),
        (Some(n), _) => retention::Policy::KeepLast(n),
        (None, Some(r)) => retention::parse(r).map_err(ApiError::invalid)?,
        (None, None) => state.settings.backup.retention.clone(),
    };
    let slugs = match body.tenants {
        Some(s) if s.is_empty() => return Err(ApiError::invalid("tenants must not be empty")),
        Some(s) if s.len() > MAX_PRUNE_TENANTS => {
            return Err(ApiError::invalid(format!(
                "at most {MAX_PRUNE_TENANTS} tenants per request"
            )));
        }
        Some(s) => s,
        None => prune::tenants_with_backups(&state.pool).await?,
    };
    // Every tenant is looked up before anything is deleted.
    let mut targets = Vec::with_capacity(slugs.len());
    for slug in &slugs {
        targets.push(tenants::get(&state.pool, slug).await?);
    }
    let store = Store::open(&state.settings.backup).await?;
    let mut reports = Vec::with_capacity(targets.len());
    for t in &targets {
        reports.push(prune::apply(&state.pool, &store, t, &policy, body.dry_run).await?);
    }
    if !body.dry_run {
        tracing::info!(tenants = reports.len(), policy = %policy, actor = %caller.actor(), "backups pruned");
    }
    Ok(respond(StatusCode::OK, &json!({"reports": reports})))
}

/// `GET /v1/backups/monitor[?max_age_hours=&max_storage_mib=]` (admin):
/// tenants whose newest backup is too old or whose backups are too big.
pub async fn monitor(
    caller: Caller,
    State(state): State<AppState>,
    uri: Uri,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let mut max_age = monitor::DEFAULT_MAX_AGE_HOURS;
    let mut max_storage = None;
    for (k, v) in query_pairs(uri.query(), &["max_age_hours", "max_storage_mib"])? {
        let n: u64 = v
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!("{k} must be a whole number from 1 to 1000000"))
            })?;
        if k == "max_age_hours" {
            max_age = n;
        } else {
            max_storage = Some(n << 20);
        }
    }
    let report = monitor::run(&state.pool, max_age, max_storage).await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"healthy": report.is_healthy(), "report": report}),
    ))
}
