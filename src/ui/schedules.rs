//! Schedules (admin): each configured schedule with its cron in words (when
//! it is a simple one), its next fire times in its own time zone, its last
//! firing and that firing's outcomes, and "run now"; a schedule's page lists
//! its past firings with their outcomes.
//!
//! "Run now" is `landlord schedule run`: `scheduler::fan_out` at the
//! catalog's now (waiting while another process fans the schedule out), an
//! audit entry with the session's actor, then the outbox is relayed.

use std::collections::BTreeMap;

use axum::{
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use chrono::DateTime;
use maud::{Markup, html};
use serde_json::json;

use super::{
    UiError, UiResult,
    layout::{self, Nav, badge, csrf, when},
    queries,
    session::{Action, Session},
};
use crate::{
    api::AppState,
    runtime::JobStatus,
    runtime::{relay, store},
    scheduler::{self, IfBusy, Schedule, report},
};

/// Firings shown on a schedule's page.
const HISTORY: i64 = 20;
/// Next fire times shown per schedule.
const NEXT: usize = 3;

fn schedules(state: &AppState) -> UiResult<Vec<Schedule>> {
    scheduler::parse_all(&state.settings.schedules, &state.registry)
        .map_err(|e| UiError::Internal(anyhow::anyhow!("invalid schedules: {e}")))
}

fn find(all: Vec<Schedule>, name: &str) -> UiResult<Schedule> {
    all.into_iter().find(|s| s.name() == name).ok_or_else(|| {
        UiError::NotFound(format!("no schedule {:?}", crate::message::truncate(name)))
    })
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// A cron expression in words, for the simple shapes (every N seconds or
/// minutes, hourly, daily, weekly, monthly); `None` for anything else.
pub fn in_words(cron: &str) -> Option<String> {
    let f: Vec<&str> = cron.split_whitespace().collect();
    let (sec, rest) = match f.len() {
        5 => ("0", &f[..]),
        6 => (f[0], &f[1..]),
        _ => return None,
    };
    let (min, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n <= max);
    let step = |s: &str| {
        s.strip_prefix("*/")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0)
    };
    let plural = |n: u32, unit: &str| {
        if n == 1 {
            format!("every {unit}")
        } else {
            format!("every {n} {unit}s")
        }
    };
    if month != "*" {
        return None;
    }
    if (min, hour, dom, dow) == ("*", "*", "*", "*") {
        return match (sec, step(sec)) {
            ("*", _) => Some("every second".into()),
            (_, Some(n)) => Some(plural(n, "second")),
            _ => None,
        };
    }
    if sec != "0" {
        return None;
    }
    if (hour, dom, dow) == ("*", "*", "*") {
        return match (min, step(min), num(min, 59)) {
            ("*", _, _) => Some("every minute".into()),
            (_, Some(n), _) => Some(plural(n, "minute")),
            (_, _, Some(m)) => Some(format!("every hour at minute {m}")),
            _ => None,
        };
    }
    let (m, h) = (num(min, 59)?, num(hour, 23)?);
    let at = format!("{h:02}:{m:02}");
    match (dom, dow) {
        ("*", "*") => Some(format!("every day at {at}")),
        ("*", d) => num(d, 7).map(|d| format!("every {} at {at}", DAYS[(d % 7) as usize])),
        (d, "*") => num(d, 31)
            .filter(|d| *d >= 1)
            .map(|d| format!("on day {d} of every month at {at}")),
        _ => None,
    }
}

/// The next `n` fire times after the catalog's now, in the schedule's zone.
fn next_times(s: &Schedule, now: DateTime<chrono::Utc>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = now;
    while out.len() < n {
        let Some(next) = s.next_after(t) else { break };
        if let Some(local) = s.next_local(t) {
            out.push(local);
        }
        t = next;
    }
    out
}

fn outcomes(counts: &BTreeMap<JobStatus, i64>) -> Markup {
    html! {
        @for (status, n) in counts { (badge(status.as_str())) " " (n) " " }
    }
}

/// `GET /ui/schedules`.
pub async fn list(
    session: Session,
    State(state): State<AppState>,
    Query(d): Query<super::tenants::Done>,
) -> UiResult {
    session.require_admin()?;
    let all = schedules(&state)?;
    let now = scheduler::catalog_now(&state.pool).await?;
    let names: Vec<String> = all.iter().map(|s| s.name().to_string()).collect();
    let last = queries::last_firings(&state.pool, &names).await?;
    let mut rows = Vec::new();
    for s in &all {
        let l = last.iter().find(|f| f.schedule == s.name());
        let counts = match l {
            Some(f) => report::outcomes(&state.pool, s.name(), f.fire_at).await?,
            None => BTreeMap::new(),
        };
        rows.push((s, l, counts));
    }
    let body = html! {
        table.list #schedules {
            thead { tr {
                th scope="col" { "Schedule" } th scope="col" { "When" } th scope="col" { "Kind" }
                th scope="col" { "Next (its time zone)" } th scope="col" { "Last firing" } th scope="col" { "" }
            } }
            tbody {
                @for (s, l, counts) in &rows {
                    tr data-schedule=(s.name()) {
                        td { a href={ "/ui/schedules/" (s.name()) } { (s.name()) } }
                        td { @if let Some(w) = in_words(&s.spec.cron) { (w) br; } code { (s.spec.cron) } " " span.muted { (s.spec.timezone) } }
                        td { (s.spec.kind) }
                        td { ul.plain { @for t in next_times(s, now, NEXT) { li { (t) } } } }
                        td { @match l {
                            Some(f) => { (when(Some(f.fire_at), now)) " " (badge(&f.status)) " jobs " (f.jobs) br; (outcomes(counts)) },
                            None => span.muted { "never" },
                        } }
                        td { (run_form(&session, s.name())) }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &session,
        Nav::Schedules,
        "Schedules",
        d.done.as_deref(),
        body,
    )
    .into_response())
}

fn run_form(session: &Session, name: &str) -> Markup {
    html! {
        form.inline method="post" action={ "/ui/schedules/" (name) "/run" } {
            (csrf(session))
            button type="submit" aria-label={ "Run " (name) " now" } { "Run now" }
        }
    }
}

/// `GET /ui/schedules/{name}`.
pub async fn show(
    session: Session,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(d): Query<super::tenants::Done>,
) -> UiResult {
    session.require_admin()?;
    let s = find(schedules(&state)?, &name)?;
    let now = scheduler::catalog_now(&state.pool).await?;
    let history = report::history(&state.pool, s.name(), HISTORY).await?;
    let mut rows = Vec::new();
    for f in &history {
        let counts = report::outcomes(&state.pool, s.name(), f.fire_at).await?;
        rows.push((f, counts));
    }
    let body = html! {
        dl.facts {
            dt { "Cron" } dd { code { (s.spec.cron) } @if let Some(w) = in_words(&s.spec.cron) { " (" (w) ")" } }
            dt { "Time zone" } dd { (s.spec.timezone) }
            dt { "Kind" } dd { (s.spec.kind) }
            dt { "Arguments" } dd { code { (s.spec.args) } }
            dt { "Tenants" } dd { @match &s.spec.tenants { Some(t) => (t.join(", ")), None => "all active" } }
            dt { "Next" } dd { ul.plain { @for t in next_times(&s, now, 5) { li { (t) } } } }
        }
        (run_form(&session, s.name()))
        h2 { "History" }
        table.list #firings {
            thead { tr { th scope="col" { "Fired" } th scope="col" { "Status" } th scope="col" { "Jobs" } th scope="col" { "Skipped" } th scope="col" { "Outcomes" } th scope="col" { "Finished" } th scope="col" { "By" } } }
            tbody {
                @for (f, counts) in &rows {
                    tr {
                        td { (when(Some(f.fire_at), now)) } td { (badge(f.status.as_str())) } td { (f.jobs) } td { (f.skipped) }
                        td { (outcomes(counts)) } td { (when(f.finished_at, now)) } td { (f.leader.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    let title = format!("Schedule {}", s.name());
    Ok(layout::page(&session, Nav::Schedules, &title, d.done.as_deref(), body).into_response())
}

/// `POST /ui/schedules/{name}/run` (admin).
pub async fn run_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
    a: Action,
) -> UiResult<Response> {
    a.session.require_admin()?;
    let s = find(schedules(&state)?, &name)?;
    let now = scheduler::catalog_now(&state.pool).await?;
    // Fire times in dedupe keys are whole seconds.
    let fire_at = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let f = scheduler::fan_out(
        &state.pool,
        &state.registry,
        &s,
        fire_at,
        &a.session.actor,
        IfBusy::Wait,
    )
    .await?
    .unwrap_or_default();
    let mut tx = state.pool.begin().await?;
    let details =
        json!({"schedule": s.name(), "fire_at": fire_at, "jobs": f.jobs, "skipped": f.skipped});
    store::audit(
        &mut tx,
        &a.session.actor,
        "schedule.run",
        None,
        None,
        details,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(schedule = s.name(), %fire_at, jobs = f.jobs, actor = %a.session.actor, "console fired a schedule");
    let (pool, broker) = (state.pool.clone(), state.broker.clone());
    tokio::spawn(async move { relay::drain(&pool, &broker).await });
    Ok(Redirect::to(&format!("/ui/schedules/{}?done=fired", s.name())).into_response())
}

#[cfg(test)]
mod tests {
    use super::in_words;

    #[test]
    fn simple_crons_in_words() {
        for (cron, words) in [
            ("0 2 * * *", Some("every day at 02:00")),
            ("0 4 * * 0", Some("every Sunday at 04:00")),
            ("0 3 1 * *", Some("on day 1 of every month at 03:00")),
            ("*/5 * * * *", Some("every 5 minutes")),
            ("*/2 * * * * *", Some("every 2 seconds")),
            ("15 * * * *", Some("every hour at minute 15")),
            ("0 0 2 * * *", Some("every day at 02:00")),
            ("0 2 * 1 *", None),
            ("0 2,14 * * *", None),
        ] {
            assert_eq!(in_words(cron).as_deref(), words, "{cron}");
        }
    }
}
