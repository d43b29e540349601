//! Tenants: the searchable, sortable, paginated table (`/ui/tenants`,
//! admin) and one tenant's page (`/ui/tenants/{slug}`, admin or that
//! tenant's session): status and its history, the status actions, settings,
//! backups with their actions (`backups`), recent jobs, its newest events
//! (`event_feed::latest`) and audit entries.
//!
//! Status changes and settings go through `lifecycle` with the session's
//! actor, exactly as `POST /v1/tenants/{slug}/status` and `PATCH …/settings` do.

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    UiError, UiResult,
    layout::{self, Nav, badge, csrf, size, when},
    queries::{self, TenantQuery},
    session::{Action, Session},
};
use crate::{
    api::AppState,
    backup::catalog as backups,
    event_feed::{self, FeedEvent},
    lifecycle::{self, TargetStatus},
    runtime::store::{self, ListFilter},
    scheduler,
    tenants::{self, TenantStatus},
};

/// Events on a tenant's page.
pub const EVENTS: i64 = 20;
/// Tenants per page of the table.
pub const PAGE: i64 = 50;
const SORTS: [(&str, &str); 6] = [
    ("slug", "Slug"),
    ("plan", "Plan"),
    ("status", "Status"),
    ("server", "Server"),
    ("backup", "Oldest backup first"),
    ("size", "Largest first"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    q: Option<String>,
    status: Option<String>,
    plan: Option<String>,
    server: Option<String>,
    sort: Option<String>,
    page: Option<i64>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(crate::message::truncate)
}

/// `GET /ui/tenants`.
pub async fn list(
    session: Session,
    State(state): State<AppState>,
    Query(p): Query<ListParams>,
) -> UiResult {
    session.require_admin()?;
    let status = nonempty(&p.status);
    if let Some(s) = &status {
        s.parse::<TenantStatus>()
            .map_err(|_| UiError::Invalid(format!("unknown status {s:?}")))?;
    }
    let sort = nonempty(&p.sort)
        .filter(|s| SORTS.iter().any(|(k, _)| k == s))
        .unwrap_or_else(|| "slug".into());
    let page = p.page.unwrap_or(1).clamp(1, 100_000);
    let q = TenantQuery {
        search: nonempty(&p.q),
        status,
        plan: nonempty(&p.plan),
        server: nonempty(&p.server),
        sort: sort.clone(),
        limit: PAGE,
        offset: (page - 1) * PAGE,
    };
    let now = scheduler::catalog_now(&state.pool).await?;
    let (total, rows) = queries::tenant_lines(&state.pool, &q).await?;
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    let link = |page: i64| {
        let mut u = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &q.search),
            ("status", &q.status),
            ("plan", &q.plan),
            ("server", &q.server),
        ] {
            if let Some(v) = v {
                u.append_pair(k, v);
            }
        }
        u.append_pair("sort", &sort);
        u.append_pair("page", &page.to_string());
        format!("/ui/tenants?{}", u.finish())
    };
    let servers: Vec<&String> = state.settings.servers.keys().collect();
    let body = html! {
        form.filters method="get" action="/ui/tenants" role="search" {
            div { label for="q" { "Search" } input #q type="search" name="q" value=(q.search.as_deref().unwrap_or("")) placeholder="slug or name"; }
            div { label for="status" { "Status" }
                select #status name="status" {
                    option value="" { "any" }
                    @for s in TenantStatus::ALL { option value=(s.as_str()) selected[q.status.as_deref() == Some(s.as_str())] { (s.as_str()) } }
                }
            }
            div { label for="plan" { "Plan" } input #plan type="text" name="plan" value=(q.plan.as_deref().unwrap_or("")) size="10"; }
            div { label for="server" { "Server" }
                select #server name="server" {
                    option value="" { "any" }
                    @for s in &servers { option value=(s) selected[q.server.as_deref() == Some(s.as_str())] { (s) } }
                }
            }
            div { label for="sort" { "Sort" }
                select #sort name="sort" {
                    @for (k, label) in SORTS { option value=(k) selected[sort == k] { (label) } }
                }
            }
            button type="submit" { "Apply" }
        }
        p.muted { (total) " tenant(s)" }
        table.list #tenants {
            thead { tr {
                th scope="col" { "Slug" } th scope="col" { "Name" } th scope="col" { "Plan" }
                th scope="col" { "Status" } th scope="col" { "Server" } th scope="col" { "Size" } th scope="col" { "Last backup" }
            } }
            tbody {
                @for t in &rows {
                    tr {
                        td { a href={ "/ui/tenants/" (t.slug) } { (t.slug) } }
                        td { (t.name) } td { (t.plan) } td { (badge(&t.status)) } td { (t.db_server) }
                        td { (size(t.size)) } td { (when(t.last_backup, now)) }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "← Previous" } }
            span { "Page " (page) " of " (pages) }
            @if page < pages { a href=(link(page + 1)) rel="next" { "Next →" } }
        }
    };
    Ok(layout::page(&session, Nav::Tenants, "Tenants", None, body).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

/// `GET /ui/tenants/{slug}`.
pub async fn show(
    session: Session,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> UiResult {
    session.require_tenant(&slug)?;
    let t = tenants::get(&state.pool, &slug).await?;
    let now = scheduler::catalog_now(&state.pool).await?;
    let mut list = backups::complete_of(&state.pool, t.id).await?;
    list.truncate(50);
    let jobs = store::page(
        &state.pool,
        &ListFilter {
            tenant: Some(slug.clone()),
            limit: 15,
            ..Default::default()
        },
        None,
    )
    .await?;
    let history = queries::tenant_audit(&state.pool, t.id, "tenant.", 20).await?;
    let events = event_feed::latest(&state.pool, &t.slug, EVENTS).await?;
    let audit = if session.is_admin() {
        queries::tenant_audit(&state.pool, t.id, "", 30).await?
    } else {
        Vec::new()
    };
    let admin = session.is_admin();
    let body = html! {
        section.card aria-labelledby="h-status" {
            h2 #h-status { "Status" }
            p { (badge(t.status.as_str())) @if let Some(r) = &t.status_reason { " " span { "(" (r) ")" } } }
            dl.facts {
                dt { "Name" } dd { (t.name) }
                dt { "Plan" } dd { (t.plan) }
                dt { "Server" } dd { (t.db_server) }
                dt { "Database" } dd { (t.db_name) " (" (t.isolation.as_str()) ")" }
                dt { "Schema version" } dd { (t.schema_version) }
                dt { "Created" } dd { (when(Some(t.created_at), now)) }
            }
            @if admin && t.status.is_in_service() {
                (status_actions(&session, &t.slug, t.status))
            }
            @if !history.is_empty() {
                h3 { "Status history" }
                table.list #history {
                    thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Who" } th scope="col" { "Details" } } }
                    tbody { @for e in &history { tr {
                        td { (when(Some(e.at), now)) } td { (e.action) } td { (e.actor) }
                        td { (change_summary(&e.details)) }
                    } } }
                }
            }
        }
        section.card aria-labelledby="h-backups" {
            h2 #h-backups { "Backups" }
            form.inline method="post" action={ "/ui/tenants/" (t.slug) "/backup" } {
                (csrf(&session))
                button type="submit" #backup-now { "Take a backup now" }
            }
            (super::backups::table(&session, &t, &list, now))
        }
        section.card aria-labelledby="h-jobs" {
            h2 #h-jobs { "Recent jobs" }
            (super::jobs::table(&jobs, now, false))
            p { a href={ "/ui/jobs?tenant=" (t.slug) } { "All jobs of " (t.slug) } }
        }
        section.card aria-labelledby="h-events" {
            h2 #h-events { "Events" }
            (events_table(&events, now))
            p.hint { "The newest " (EVENTS) " events announced for " (t.slug) "; the API's feed has them all: " code { "GET /v1/events?tenant=" (t.slug) } }
        }
        section.card aria-labelledby="h-settings" {
            h2 #h-settings { "Settings" }
            (layout::json(&t.settings))
            form.row method="post" action={ "/ui/tenants/" (t.slug) "/settings" } {
                (csrf(&session))
                div { label for="set-key" { "Setting" }
                    select #set-key name="key" { @for k in lifecycle::settings::KEYS { option value=(k) { (k) } } } }
                div { label for="set-value" { "Value (JSON; empty removes it)" } input #set-value type="text" name="value"; }
                button type="submit" { "Save setting" }
            }
        }
        @if admin {
            section.card aria-labelledby="h-audit" {
                h2 #h-audit { "Audit log" }
                table.list #audit {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Actor" } th scope="col" { "Job" } } }
                    tbody { @for e in &audit { tr {
                        td { (when(Some(e.at), now)) } td { (e.action) } td { (e.actor) }
                        td { @if let Some(j) = e.job_id { a href={ "/ui/jobs/" (j) } { (short(&j.to_string())) } } }
                    } } }
                }
            }
        }
    };
    let title = format!("Tenant {}", t.slug);
    Ok(layout::page(&session, Nav::Tenants, &title, done.done.as_deref(), body).into_response())
}

/// A tenant's events, newest first: name, time, its job.
fn events_table(events: &[FeedEvent], now: chrono::DateTime<chrono::Utc>) -> Markup {
    html! {
        @if events.is_empty() {
            p.muted { "No event yet." }
        } @else {
            table.list #events {
                thead { tr { th scope="col" { "Event" } th scope="col" { "When" } th scope="col" { "Job" } th scope="col" { "Published" } } }
                tbody { @for e in events {
                    @let job = e.payload.get("job_id").and_then(Value::as_str).filter(|j| uuid::Uuid::parse_str(j).is_ok());
                    tr data-event=(e.id) {
                        td { code { (e.event) } }
                        td { (when(Some(e.created_at), now)) }
                        td { @if let Some(j) = job { a href={ "/ui/jobs/" (j) } { code { (short(j)) } } } }
                        td { @if e.published_at.is_some() { "yes" } @else { span.muted { "not yet" } } }
                    }
                } }
            }
        }
    }
}

/// The last 8 characters of a job id: its random part (the first ones are
/// the time of a UUIDv7, the same for jobs of one moment).
pub fn short(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

fn change_summary(d: &Value) -> String {
    match (
        d.get("from").and_then(Value::as_str),
        d.get("to").and_then(Value::as_str),
    ) {
        (Some(from), Some(to)) => match d.get("reason").and_then(Value::as_str) {
            Some(r) => format!("{from} → {to}: {r}"),
            None => format!("{from} → {to}"),
        },
        _ => String::new(),
    }
}

fn status_actions(session: &Session, slug: &str, status: TenantStatus) -> Markup {
    let action = format!("/ui/tenants/{slug}/status");
    html! {
        div.actions {
            @if status != TenantStatus::Suspended {
                form.row method="post" action=(action) {
                    (csrf(session))
                    input type="hidden" name="status" value="suspended";
                    div { label for="reason" { "Reason for suspending" } input #reason type="text" name="reason" required maxlength="1000"; }
                    button.danger type="submit" #suspend { "Suspend" }
                }
            }
            @if status != TenantStatus::Active {
                form.inline method="post" action=(action) {
                    (csrf(session))
                    input type="hidden" name="status" value="active";
                    button type="submit" #reactivate { "Reactivate" }
                }
            }
            @if status != TenantStatus::Inactive {
                form.inline method="post" action=(action) {
                    (csrf(session))
                    input type="hidden" name="status" value="inactive";
                    button type="submit" #deactivate { "Deactivate" }
                }
            }
        }
    }
}

/// `POST /ui/tenants/{slug}/status` (admin): as `POST /v1/tenants/{slug}/status`.
pub async fn change_status(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_admin()?;
    let to = a
        .form
        .get("status")
        .unwrap_or("")
        .parse::<TargetStatus>()
        .map_err(|_| UiError::Invalid("choose active, inactive or suspended".into()))?;
    let reason = a.form.get("reason");
    if reason.is_some_and(|r| r.contains('\0')) {
        return Err(UiError::Invalid(
            "the reason must not contain a NUL character".into(),
        ));
    }
    lifecycle::change_status(
        &state.pool,
        &state.settings,
        &slug,
        to,
        reason,
        &a.session.actor,
    )
    .await?;
    Ok(Redirect::to(&format!("/ui/tenants/{slug}?done=status")).into_response())
}

/// `POST /ui/tenants/{slug}/settings` (admin or that tenant): one key set
/// (the value as JSON, else as a string) or removed (empty value).
pub async fn settings(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_tenant(&slug)?;
    let key = a
        .form
        .get("key")
        .ok_or_else(|| UiError::Invalid("choose a setting".into()))?;
    let (mut set, mut unset) = (Map::new(), Vec::new());
    match a.form.get("value") {
        None => unset.push(key.to_string()),
        Some(v) => {
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            set.insert(key.to_string(), value);
        }
    }
    lifecycle::update_settings(&state.pool, &slug, &set, &unset, &a.session.actor).await?;
    Ok(Redirect::to(&format!("/ui/tenants/{slug}?done=settings")).into_response())
}
