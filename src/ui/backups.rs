//! A tenant's backups on its page, and what can be done with them: take one
//! now, verify one, put one on legal hold or release it (admin), restore one
//! (admin, confirmed by typing the tenant's slug).
//!
//! Jobs are written with `runtime::store::enqueue_in` and an audit entry
//! with the session's actor in the same transaction; holds go through
//! `backup::manage::set_hold`. A tenant session gets what a tenant token
//! gets from the API: backups and verifications without operator arguments.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde_json::json;
use uuid::Uuid;

use super::{
    UiError, UiResult,
    layout::{badge, csrf, size, when},
    session::{Action, Session},
};
use crate::{
    api::AppState,
    backup::{
        catalog::{self, Backup},
        manage,
    },
    runtime::{
        Job,
        store::{self, DedupeKey, EnqueueError, EnqueueRequest, Origin},
    },
    tenants::{self, Tenant},
    workers::{restore::Restore, verify_backup::VerifyBackup},
};

/// The backups table of a tenant's page.
pub fn table(session: &Session, t: &Tenant, list: &[Backup], now: DateTime<Utc>) -> Markup {
    let admin = session.is_admin();
    html! {
        @if list.is_empty() {
            p.muted { "No complete backup yet." }
        } @else {
            table.list #backups {
                thead { tr {
                    th scope="col" { "Taken" } th scope="col" { "Name" } th scope="col" { "Size" }
                    th scope="col" { "Hold" } th scope="col" { "Actions" }
                } }
                tbody {
                    @for b in list {
                        tr data-backup=(b.id) {
                            td { (when(b.completed_at, now)) }
                            td { code { (b.name()) } }
                            td { (size(b.raw_bytes)) " → " (size(b.stored_bytes)) " " span.muted { (b.codec.as_str()) } }
                            td { @if b.held { (badge("held")) " " (b.held_reason.as_deref().unwrap_or("")) } }
                            td.actions {
                                form.inline method="post" action={ "/ui/backups/" (b.id) "/verify" } {
                                    (csrf(session)) button type="submit" { "Verify" }
                                }
                                @if admin {
                                    @if b.held {
                                        form.inline method="post" action={ "/ui/backups/" (b.id) "/hold" } {
                                            (csrf(session)) input type="hidden" name="release" value="1";
                                            button type="submit" { "Release hold" }
                                        }
                                    } @else {
                                        form.inline method="post" action={ "/ui/backups/" (b.id) "/hold" } {
                                            (csrf(session))
                                            label.sr for={ "hold-" (b.id) } { "Hold reason" }
                                            input id={ "hold-" (b.id) } type="text" name="reason" placeholder="hold reason" required maxlength="500" size="12";
                                            button type="submit" { "Hold" }
                                        }
                                    }
                                    details.restore {
                                        summary { "Restore…" }
                                        form method="post" action={ "/ui/backups/" (b.id) "/restore" } {
                                            (csrf(session))
                                            p { "This replaces the live database of " strong { (t.slug) } " with this backup (the current one is kept for rollback)." }
                                            label for={ "confirm-" (b.id) } { "Type " strong { (t.slug) } " to confirm" }
                                            input id={ "confirm-" (b.id) } type="text" name="confirm" required autocomplete="off";
                                            button.danger type="submit" { "Restore this backup" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Writes one job of the session's, with its audit entry, and publishes it
/// soon; a live job with the same key (this console's, same kind and
/// tenant) is returned instead of a second one.
async fn enqueue(
    state: &AppState,
    session: &Session,
    t: &Tenant,
    mut req: EnqueueRequest,
) -> UiResult<(Uuid, bool)> {
    req.dedupe_key = Some(DedupeKey::caller(
        &session.actor,
        format!("{}:{}", req.kind, t.slug),
    ));
    let mut tx = state.pool.begin().await?;
    let enq = match store::enqueue_in(&mut tx, &state.registry, &req, Origin::Catalog).await {
        Ok(e) => e,
        Err(EnqueueError::DedupeRace(_)) => {
            return Err(UiError::Conflict(
                "another request enqueued the same job just now; reload the page".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if !enq.existing {
        let details = json!({"kind": req.kind, "args": req.args});
        store::audit(
            &mut tx,
            &session.actor,
            "job.enqueued",
            Some(t.id),
            Some(enq.id),
            details,
        )
        .await?;
    }
    tx.commit().await?;
    state.publish_soon(enq.outbox_id);
    tracing::info!(job_id = %enq.id, kind = %req.kind, tenant = %t.slug, actor = %session.actor, "console enqueued a job");
    Ok((enq.id, enq.existing))
}

fn to_job(id: Uuid, existing: bool, done: &str) -> Response {
    let done = if existing { "existing" } else { done };
    Redirect::to(&format!("/ui/jobs/{id}?done={done}")).into_response()
}

/// The backup and its tenant, if the session may see them.
async fn backup_of(state: &AppState, session: &Session, id: &str) -> UiResult<(Backup, Tenant)> {
    let id = Uuid::parse_str(id).map_err(|_| UiError::NotFound("no such backup".into()))?;
    let b = catalog::get(&state.pool, id)
        .await?
        .filter(|b| b.status.is_complete())
        .ok_or_else(|| UiError::NotFound(format!("no complete backup {id}")))?;
    let t = tenants::by_id(&state.pool, b.tenant_id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no complete backup {id}")))?;
    // Another tenant's backup is as unknown to a tenant session as a missing one.
    session
        .require_tenant(&t.slug)
        .map_err(|_| UiError::NotFound(format!("no complete backup {id}")))?;
    Ok((b, t))
}

/// `POST /ui/tenants/{slug}/backup`: a backup with the configured options.
pub async fn backup_now(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_tenant(&slug)?;
    let t = tenants::get(&state.pool, &slug).await?;
    let req = crate::backup::jobs::Backup::default().request(Some(&t.slug), None, None)?;
    let (id, existing) = enqueue(&state, &a.session, &t, req).await?;
    Ok(to_job(id, existing, "backup"))
}

/// `POST /ui/backups/{id}/verify`: reads the backup back and checks it.
pub async fn verify(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Action,
) -> UiResult<Response> {
    let (b, t) = backup_of(&state, &a.session, &id).await?;
    let job = VerifyBackup {
        backup: Some(b.id.to_string()),
        ..Default::default()
    };
    job.validate().map_err(UiError::Invalid)?;
    let (id, existing) = enqueue(
        &state,
        &a.session,
        &t,
        job.request(Some(&t.slug), None, None)?,
    )
    .await?;
    Ok(to_job(id, existing, "verify"))
}

/// `POST /ui/backups/{id}/restore` (admin): only when `confirm` is the
/// tenant's slug; otherwise nothing happens.
pub async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_admin()?;
    let (b, t) = backup_of(&state, &a.session, &id).await?;
    if a.form.get("confirm") != Some(t.slug.as_str()) {
        return Err(UiError::Invalid(format!(
            "not confirmed: type the tenant's slug ({}) to restore; nothing changed",
            t.slug
        )));
    }
    let job = Restore {
        backup: Some(b.id.to_string()),
    };
    job.validate().map_err(UiError::Invalid)?;
    let (id, existing) = enqueue(
        &state,
        &a.session,
        &t,
        job.request(Some(&t.slug), None, None)?,
    )
    .await?;
    Ok(to_job(id, existing, "restore"))
}

/// `POST /ui/backups/{id}/hold` (admin): hold with a reason, or `release`.
pub async fn hold(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_admin()?;
    let (b, t) = backup_of(&state, &a.session, &id).await?;
    let release = a.form.get("release").is_some();
    let reason = a.form.get("reason");
    if !release && reason.is_none_or(|r| r.len() > 500 || r.contains('\0')) {
        return Err(UiError::Invalid(
            "a hold needs a reason of 1-500 characters".into(),
        ));
    }
    manage::set_hold(&state.pool, b.id, !release, reason, &a.session.actor).await?;
    let done = if release { "released" } else { "held" };
    Ok(Redirect::to(&format!("/ui/tenants/{}?done={done}", t.slug)).into_response())
}
