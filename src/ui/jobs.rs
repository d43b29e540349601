//! Jobs: the filtered, paginated list (`/ui/jobs`: status, kind, tenant,
//! creation time; newest first, keyset on the id, or on the creation time
//! and id inside a time window), a job's page with its arguments,
//! attempts, progress, result and errors, followed live through
//! `/ui/fragments/jobs/{id}` until it ends, and the actions: retry (admin,
//! one or the selected dead jobs in bulk) and cancel.
//!
//! Everything goes through `runtime::store` (`page`, `get`, `retry`,
//! `cancel`) with the session's actor, as `/v1/jobs…` does; a tenant
//! session sees only its tenant's jobs, redacted as the API redacts them
//! for tenant tokens (`api::jobs::tenant_view`).

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    UiError, UiResult,
    layout::{self, Nav, badge, csrf, when},
    session::{Action, Session},
    tenants::short,
};
use crate::{
    api::{AppState, jobs::tenant_view},
    runtime::{
        JobStatus,
        store::{self, CreatedWindow, JobRow, ListFilter},
    },
    scheduler,
};

/// Jobs per page.
pub const PAGE: i64 = 50;
/// Most jobs one bulk retry takes.
pub const MAX_BULK: usize = 200;

/// A table of jobs; `select` adds a checkbox to dead jobs (bulk retry).
pub fn table(jobs: &[JobRow], now: DateTime<Utc>, select: bool) -> Markup {
    html! {
        @if jobs.is_empty() {
            p.muted { "No job." }
        } @else {
            table.list.jobs {
                thead { tr {
                    @if select { th scope="col" { input type="checkbox" data-select-all="ids" aria-label="Select every dead job on this page"; } }
                    th scope="col" { "Job" } th scope="col" { "Kind" } th scope="col" { "Tenant" } th scope="col" { "Status" }
                    th scope="col" { "Attempts" } th scope="col" { "Created" } th scope="col" { "Error" }
                } }
                tbody {
                    @for j in jobs {
                        tr data-job=(j.id) {
                            @if select {
                                td { @if j.status == JobStatus::Dead {
                                    input type="checkbox" name="ids" value=(j.id) aria-label={ "Select job " (short(&j.id.to_string())) };
                                } }
                            }
                            td { a href={ "/ui/jobs/" (j.id) } { code { (short(&j.id.to_string())) } } }
                            td { (j.kind) }
                            td { @if let Some(t) = &j.tenant { (t) } }
                            td { (badge(j.status.as_str())) }
                            td { (j.attempts) "/" (j.max_attempts) }
                            td { (when(Some(j.created_at), now)) }
                            td.clip { @if let Some(e) = &j.last_error { (crate::message::truncate(e)) } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    status: Option<String>,
    kind: Option<String>,
    tenant: Option<String>,
    /// `1h`, `24h` or `7d`: created in the last hour, day or week.
    within: Option<String>,
    /// Created at or after (RFC 3339, or `YYYY-MM-DDTHH:MM` in UTC).
    since: Option<String>,
    /// Created before.
    until: Option<String>,
    before: Option<String>,
    /// With `before`, in a time window: that job's creation time (the keyset).
    before_at: Option<String>,
    done: Option<String>,
}

/// The choices of the "Created" filter.
pub const WITHIN: [(&str, &str, i64); 3] = [
    ("1h", "last 1 h", 3600),
    ("24h", "last 24 h", 86_400),
    ("7d", "last 7 d", 7 * 86_400),
];

fn opt(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A time of the filter: RFC 3339, or what `<input type=datetime-local>` sends (read as UTC).
fn parse_time(name: &str, v: &Option<String>) -> UiResult<Option<DateTime<Utc>>> {
    let Some(s) = opt(v) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&s, f) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(UiError::Invalid(format!(
        "{name} must be a time like 2025-01-31T14:00 (UTC) or RFC 3339, not {:?}",
        crate::message::truncate(&s)
    )))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `GET /ui/jobs`.
pub async fn list(
    session: Session,
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> UiResult {
    let status = match opt(&p.status) {
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            UiError::Invalid(format!(
                "unknown job status {:?}",
                crate::message::truncate(&s)
            ))
        })?),
        None => None,
    };
    let before = match opt(&p.before) {
        Some(b) => Some(
            Uuid::parse_str(&b).map_err(|_| UiError::Invalid("before must be a job id".into()))?,
        ),
        None => None,
    };
    let mut filter = ListFilter {
        status,
        kind: opt(&p.kind),
        tenant: opt(&p.tenant),
        limit: PAGE,
    };
    if let Some(own) = session.own_tenant() {
        if filter.tenant.as_deref().is_some_and(|t| t != own) {
            return Err(UiError::Forbidden(format!(
                "you see only the jobs of tenant {own}"
            )));
        }
        filter.tenant = Some(own.to_string());
    }
    let now = scheduler::catalog_now(&state.pool).await?;
    let within = opt(&p.within);
    let mut window = CreatedWindow {
        since: parse_time("since", &p.since)?,
        until: parse_time("until", &p.until)?,
        after_row: None,
    };
    if let Some(w) = &within {
        let (_, _, secs) = WITHIN
            .iter()
            .find(|(k, _, _)| k == w)
            .ok_or_else(|| UiError::Invalid("created within 1h, 24h or 7d".into()))?;
        window.since = Some(now - chrono::Duration::seconds(*secs));
    }
    let timed = window.since.is_some() || window.until.is_some();
    let jobs = if timed {
        if let Some(id) = before {
            let at = parse_time("before_at", &p.before_at)?.ok_or_else(|| {
                UiError::Invalid("a page of a time window continues after a time".into())
            })?;
            window.after_row = Some((at, id));
        }
        store::page_created(&state.pool, &filter, &window).await?
    } else {
        store::page(&state.pool, &filter, before).await?
    };
    let next = (jobs.len() as i64 == PAGE).then(|| jobs.last()).flatten();
    let next_link = next.map(|last| {
        let mut u = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = filter.status {
            u.append_pair("status", s.as_str());
        }
        if let Some(k) = &filter.kind {
            u.append_pair("kind", k);
        }
        if let Some(t) = &filter.tenant {
            u.append_pair("tenant", t);
        }
        // A window "in the last hour" stays the window of the first page.
        if let Some(t) = window.since {
            u.append_pair("since", &rfc3339(t));
        }
        if let Some(t) = window.until {
            u.append_pair("until", &rfc3339(t));
        }
        u.append_pair("before", &last.id.to_string());
        if timed {
            u.append_pair("before_at", &rfc3339(last.created_at));
        }
        format!("/ui/jobs?{}", u.finish())
    });
    let admin = session.is_admin();
    let kinds: Vec<&str> = state.registry.kinds().collect();
    let local = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
            .unwrap_or_default()
    };
    let since_shown = local(window.since.filter(|_| within.is_none()));
    let until_shown = local(window.until);
    let body = html! {
        form.filters method="get" action="/ui/jobs" role="search" {
            div { label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "any" }
                    @for s in JobStatus::ALL { option value=(s.as_str()) selected[filter.status == Some(*s)] { (s.as_str()) } }
                }
            }
            div { label for="f-kind" { "Kind" }
                select #f-kind name="kind" {
                    option value="" { "any" }
                    @for k in &kinds { option value=(k) selected[filter.kind.as_deref() == Some(*k)] { (k) } }
                }
            }
            @if admin {
                div { label for="f-tenant" { "Tenant" } input #f-tenant type="text" name="tenant" value=(filter.tenant.as_deref().unwrap_or("")) size="16"; }
            }
            div { label for="f-within" { "Created" }
                select #f-within name="within" {
                    option value="" { "any time" }
                    @for (k, label, _) in WITHIN { option value=(k) selected[within.as_deref() == Some(k)] { (label) } }
                }
            }
            div { label for="f-since" { "From (UTC)" } input #f-since type="datetime-local" name="since" step="1" value=(since_shown); }
            div { label for="f-until" { "Until (UTC)" } input #f-until type="datetime-local" name="until" step="1" value=(until_shown); }
            button type="submit" { "Apply" }
        }
        @if timed {
            p.muted #window { "Created "
                @if let Some(t) = window.since { "from " (when(Some(t), now)) " " }
                @if let Some(t) = window.until { "until " (when(Some(t), now)) " " }
                "· newest first" }
        }
        @if admin {
            form #bulk method="post" action="/ui/jobs/retry" {
                (csrf(&session))
                (table(&jobs, now, true))
                @if jobs.iter().any(|j| j.status == JobStatus::Dead) {
                    button type="submit" #bulk-retry { "Retry selected dead jobs" }
                }
            }
        } @else {
            (table(&jobs, now, false))
        }
        nav.pager aria-label="Pages" {
            @if before.is_some() { a href="/ui/jobs" { "← Newest" } }
            @if let Some(l) = next_link { a href=(l) rel="next" { "Older →" } }
        }
    };
    Ok(layout::page(&session, Nav::Jobs, "Jobs", p.done.as_deref(), body).into_response())
}

/// The job if the session may see it (another tenant's job is "not found").
async fn visible(state: &AppState, session: &Session, id: &str) -> UiResult<JobRow> {
    let id = Uuid::parse_str(id).map_err(|_| UiError::NotFound("no such job".into()))?;
    let job = store::get(&state.pool, id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no job {id}")))?;
    match session.own_tenant() {
        None => Ok(job),
        Some(own) if job.tenant.as_deref() == Some(own) => Ok(job),
        Some(_) => Err(UiError::NotFound(format!("no job {id}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /ui/jobs/{id}`.
pub async fn show(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(d): Query<Done>,
) -> UiResult {
    let job = visible(&state, &session, &id).await?;
    let now = scheduler::catalog_now(&state.pool).await?;
    let body = html! {
        div #job data-poll={ "/ui/fragments/jobs/" (job.id) } data-every="2000" aria-live="polite" {
            (detail(&session, &job, now)?)
        }
    };
    let title = format!("Job {} ({})", short(&job.id.to_string()), job.kind);
    Ok(layout::page(&session, Nav::Jobs, &title, d.done.as_deref(), body).into_response())
}

/// `GET /ui/fragments/jobs/{id}`: the job's details, polled by its page.
pub async fn fragment(
    session: Session,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> UiResult<Response> {
    let job = visible(&state, &session, &id).await?;
    let now = scheduler::catalog_now(&state.pool).await?;
    Ok(detail(&session, &job, now)?.into_response())
}

fn detail(session: &Session, job: &JobRow, now: DateTime<Utc>) -> UiResult<Markup> {
    // What the API shows this caller, field for field.
    let v: Value = if session.is_admin() {
        serde_json::to_value(job).map_err(anyhow::Error::from)?
    } else {
        tenant_view(job)
            .map_err(|_| UiError::Internal(anyhow::anyhow!("could not redact job {}", job.id)))?
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let terminal = job.is_terminal();
    let cancellable = matches!(
        job.status,
        JobStatus::Queued | JobStatus::Retrying | JobStatus::Running
    );
    let retryable = session.is_admin()
        && matches!(
            job.status,
            JobStatus::Dead | JobStatus::Failed | JobStatus::Cancelled
        );
    Ok(html! {
        div.jobdetail data-final[terminal] data-status=(job.status.as_str()) {
            p.big { span #job-status { (badge(job.status.as_str())) } }
            dl.facts {
                dt { "Id" } dd { code { (job.id) } }
                dt { "Kind" } dd { (job.kind) " (" (job.queue) ")" }
                dt { "Tenant" } dd { @match &job.tenant { Some(t) => a href={ "/ui/tenants/" (t) } { (t) }, None => span.muted { "none" } } }
                dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
                dt { "Created" } dd { (when(Some(job.created_at), now)) }
                dt { "Runs at" } dd { (when(Some(job.run_at), now)) }
                dt { "Started" } dd { (when(job.started_at, now)) }
                dt { "Finished" } dd { (when(job.finished_at, now)) }
                @if let Some(owner) = text("lease_owner") { dt { "Lease" } dd { (owner) } }
                @if let Some(c) = &job.compensation { dt { "Compensation" } dd { (c.as_str()) } }
            }
            @if let Some(e) = text("last_error") {
                h2 { "Last error" }
                pre.error #job-error { (e) }
            }
            @if let Some(e) = text("compensation_error") {
                h2 { "Compensation error" }
                pre.error { (e) }
            }
            h2 { "Arguments" }
            (layout::json(&job.args))
            @if let Some(p) = v.get("progress").filter(|p| !p.is_null()) { h2 { "Progress" } (layout::json(p)) }
            @if let Some(r) = v.get("result").filter(|r| !r.is_null()) { h2 { "Result" } (layout::json(r)) }
            div.actions {
                @if retryable {
                    form.inline method="post" action={ "/ui/jobs/" (job.id) "/retry" } {
                        (super::layout::csrf(session)) button type="submit" #retry { "Retry" }
                    }
                }
                @if cancellable {
                    form.inline method="post" action={ "/ui/jobs/" (job.id) "/cancel" } {
                        (csrf(session)) button.danger type="submit" #cancel { "Cancel" }
                    }
                }
            }
            @if !terminal { p.muted.small { "Following this job live (every 2 s)." } }
        }
    })
}

/// `POST /ui/jobs/{id}/retry` (admin).
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_admin()?;
    let job = visible(&state, &a.session, &id).await?;
    let outbox = store::retry(&state.pool, job.id, &a.session.actor).await?;
    state.publish_soon(outbox);
    Ok(Redirect::to(&format!("/ui/jobs/{}?done=retried", job.id)).into_response())
}

/// `POST /ui/jobs/{id}/cancel` (admin, or the job's tenant).
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    a: Action,
) -> UiResult<Response> {
    let job = visible(&state, &a.session, &id).await?;
    store::cancel(&state.pool, job.id, &a.session.actor).await?;
    Ok(Redirect::to(&format!("/ui/jobs/{}?done=cancelled", job.id)).into_response())
}

/// `POST /ui/jobs/retry` (admin): every selected job (`ids`), each on its own
/// (one refused, say a job that is no longer dead, does not stop the others).
pub async fn bulk_retry(State(state): State<AppState>, a: Action) -> UiResult<Response> {
    a.session.require_admin()?;
    let ids = a.form.all("ids");
    if ids.is_empty() {
        return Err(UiError::Invalid("select at least one dead job".into()));
    }
    if ids.len() > MAX_BULK {
        return Err(UiError::Invalid(format!("at most {MAX_BULK} jobs at once")));
    }
    let mut refused = Vec::new();
    for raw in ids {
        let Ok(id) = Uuid::parse_str(raw) else {
            refused.push(format!("{:?}: not a job id", crate::message::truncate(raw)));
            continue;
        };
        match store::retry(&state.pool, id, &a.session.actor).await {
            Ok(outbox) => state.publish_soon(outbox),
            Err(e) => refused.push(e.to_string()),
        }
    }
    if refused.is_empty() {
        Ok(Redirect::to("/ui/jobs?status=dead&done=bulk").into_response())
    } else {
        Err(UiError::Conflict(format!(
            "some jobs were not retried: {}",
            refused.join("; ")
        )))
    }
}
