//! The overview (`/ui`, admin): tenants by status, finished jobs per minute
//! by outcome over the last hour (an inline SVG chart), the backlog of each
//! job family (queued and running job rows in the catalog, and the messages
//! ready in its RabbitMQ queue beside them; the dead-letter queue's count), dead jobs of the last 24 h, the scheduler's leader and next
//! firings, backup freshness (active tenants without a backup in 26 h) and
//! heavy slots in use per server. `/ui/fragments/overview` is the same
//! content without the frame, which `app.js` polls every few seconds.
//!
//! Every catalog number is one bounded query (`queries`); they run
//! concurrently with the broker's passive declares (`dead_letters::counts`),
//! whose failure only marks the broker's numbers unknown.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use maud::{Markup, html};

use super::{
    UiResult,
    layout::{self, Nav, ago, badge, when},
    queries::{self, Count, DeadJob, Firing, Leader, MinuteCount, QueueDepth},
    session::Session,
};
use crate::{api::AppState, scheduler};

/// Hours after which an active tenant's last backup counts as stale.
pub const FRESH_HOURS: i64 = 26;
/// Counts of live jobs stop here ("10000+").
const COUNT_CAP: i64 = 10_000;
/// Outcomes drawn in the chart, with their CSS class.
const OUTCOMES: [&str; 4] = ["succeeded", "failed", "dead", "cancelled"];

struct Overview {
    now: DateTime<Utc>,
    by_status: Vec<Count>,
    per_minute: Vec<MinuteCount>,
    queues: Vec<QueueDepth>,
    dead: (i64, Vec<DeadJob>),
    leader: Option<Leader>,
    last: Vec<Firing>,
    next: Vec<(String, String, Option<String>)>,
    stale: (i64, Vec<String>),
    heavy: Vec<Count>,
    heavy_per_server: u32,
    /// Messages ready in each family's queue, then in the dead-letter queue
    /// (or why the broker could not say).
    broker: Result<Vec<u32>, String>,
}

async fn load(state: &AppState) -> UiResult<Overview> {
    let pool = &state.pool;
    let now = scheduler::catalog_now(pool).await?;
    let schedules =
        scheduler::parse_all(&state.settings.schedules, &state.registry).unwrap_or_default();
    let names: Vec<String> = schedules.iter().map(|s| s.name().to_string()).collect();
    let servers: Vec<String> = state.settings.servers.keys().cloned().collect();
    let families: Vec<String> = crate::config::QUEUES
        .iter()
        .map(|q| q.to_string())
        .collect();
    let mut names_in_broker: Vec<String> = families
        .iter()
        .map(|f| state.broker.topology().queue(f))
        .collect();
    names_in_broker.push(state.broker.topology().dead_queue());
    let (catalog, broker) = tokio::join!(
        catalog_counts(state, now, &names, &servers, &families),
        super::dead_letters::counts(&state.broker, &names_in_broker)
    );
    let (by_status, per_minute, queues, dead, leader, last, stale, heavy) = catalog?;
    let next = schedules
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                s.spec.timezone.clone(),
                s.next_local(now),
            )
        })
        .collect();
    Ok(Overview {
        now,
        by_status,
        per_minute,
        queues,
        dead,
        leader,
        last,
        next,
        stale,
        heavy,
        heavy_per_server: state.settings.maintenance.heavy_per_server,
        broker: broker.map_err(|e| format!("{e:#}")),
    })
}

type CatalogCounts = (
    Vec<Count>,
    Vec<MinuteCount>,
    Vec<QueueDepth>,
    (i64, Vec<DeadJob>),
    Option<Leader>,
    Vec<Firing>,
    (i64, Vec<String>),
    Vec<Count>,
);

async fn catalog_counts(
    state: &AppState,
    now: DateTime<Utc>,
    names: &[String],
    servers: &[String],
    families: &[String],
) -> anyhow::Result<CatalogCounts> {
    let pool = &state.pool;
    tokio::try_join!(
        queries::tenants_by_status(pool),
        queries::jobs_per_minute(pool, now),
        queries::queue_depths(pool, families, COUNT_CAP),
        queries::dead_last_day(pool, now, 8),
        queries::scheduler_leader(pool),
        queries::last_firings(pool, names),
        queries::stale_backups(pool, now - Duration::hours(FRESH_HOURS), 10),
        queries::heavy_in_use(pool, servers),
    )
}

/// `GET /ui`.
pub async fn page(session: Session, State(state): State<AppState>) -> UiResult {
    if let Some(own) = session.own_tenant() {
        return Ok(axum::response::Redirect::to(&format!("/ui/tenants/{own}")).into_response());
    }
    let o = load(&state).await?;
    let body = html! {
        div #overview data-poll="/ui/fragments/overview" data-every="5000" aria-live="polite" {
            (content(&o))
        }
    };
    Ok(layout::page(&session, Nav::Overview, "Overview", None, body).into_response())
}

/// `GET /ui/fragments/overview`.
pub async fn fragment(session: Session, State(state): State<AppState>) -> UiResult<Response> {
    session.require_admin()?;
    let o = load(&state).await?;
    Ok(content(&o).into_response())
}

fn capped(n: i64) -> String {
    if n >= COUNT_CAP {
        format!("{COUNT_CAP}+")
    } else {
        n.to_string()
    }
}

fn content(o: &Overview) -> Markup {
    let total: i64 = o.by_status.iter().map(|c| c.n).sum();
    html! {
        div.grid {
            section.card aria-labelledby="h-tenants" {
                h2 #h-tenants { "Tenants" }
                p.big { (total) }
                ul.counts {
                    @for c in &o.by_status {
                        li { a href={ "/ui/tenants?status=" (c.label) } { (badge(&c.label)) } " " (c.n) }
                    }
                }
            }
            section.card aria-labelledby="h-fresh" {
                h2 #h-fresh { "Backup freshness" }
                @if o.stale.0 == 0 {
                    p.ok { "Every active tenant has a backup from the last " (FRESH_HOURS) " h." }
                } @else {
                    p.warn { strong { (o.stale.0) } " active tenant(s) without a backup in " (FRESH_HOURS) " h" }
                    ul.inline {
                        @for slug in &o.stale.1 { li { a href={ "/ui/tenants/" (slug) } { (slug) } } }
                    }
                }
            }
            section.card aria-labelledby="h-heavy" {
                h2 #h-heavy { "Heavy slots in use" }
                table {
                    thead { tr { th scope="col" { "Server" } th scope="col" { "In use" } } }
                    tbody {
                        @for h in &o.heavy {
                            tr { td { (h.label) } td { (h.n) " / " (o.heavy_per_server) } }
                        }
                    }
                }
            }
        }
        section.card.wide aria-labelledby="h-chart" {
            h2 #h-chart { "Jobs finished per minute, last 60 min" }
            (chart(&o.per_minute, o.now))
        }
        div.grid {
            section.card aria-labelledby="h-queues" {
                h2 #h-queues { "Job families" }
                table #families {
                    thead { tr {
                        th scope="col" { "Family" }
                        th scope="col" { abbr title="Queued or retrying job rows in the catalog" { "Queued jobs" } }
                        th scope="col" { abbr title="Running job rows in the catalog" { "Running" } }
                        th scope="col" { abbr title="The run time of the oldest due job row that is not running" { "Oldest due" } }
                        th scope="col" { abbr title="Messages ready in the family's RabbitMQ queue (not those a worker holds unacked)" { "In broker" } }
                    } }
                    tbody {
                        @for (i, q) in o.queues.iter().enumerate() {
                            tr data-family=(q.queue) {
                                td { a href={ "/ui/jobs?status=queued" } { (q.queue) } }
                                td { (capped(q.waiting)) } td { (capped(q.running)) }
                                td { (q.oldest_due.map(|t| ago(t, o.now)).unwrap_or_else(|| "-".into())) }
                                td.broker { @match &o.broker { Ok(n) => (n.get(i).map(u32::to_string).unwrap_or_else(|| "-".into())), Err(_) => "?" } }
                            }
                        }
                    }
                }
                p.hint { "Queued jobs, running and oldest due: the catalog's job rows (the source of truth). "
                    "In broker: messages ready in RabbitMQ (copies; a worker's unacked ones are not counted)." }
                @match &o.broker {
                    Ok(n) => p #dead-letters { a href="/ui/dead-letters" { (n.last().copied().unwrap_or(0)) " message(s) in the dead-letter queue" } },
                    Err(e) => p.warn #broker-error { "RabbitMQ could not be read: " (e) },
                }
            }
            section.card aria-labelledby="h-dead" {
                h2 #h-dead { "Dead jobs, last 24 h" }
                p.big { a href="/ui/jobs?status=dead" { (o.dead.0) } }
                ul.plain {
                    @for d in &o.dead.1 {
                        li {
                            a href={ "/ui/jobs/" (d.id) } { (d.kind) }
                            @if let Some(t) = &d.tenant { " · " (t) }
                            " · " (when(d.finished_at, o.now))
                            @if let Some(e) = &d.last_error { br; span.muted.clip { (crate::message::truncate(e)) } }
                        }
                    }
                }
            }
            section.card aria-labelledby="h-sched" {
                h2 #h-sched { "Scheduler" }
                @match &o.leader {
                    Some(l) => p.ok { "Leader: catalog session " (l.pid)
                        @if let Some(c) = &l.client { " from " (c) }
                        @if let Some(a) = l.application.as_deref().filter(|a| !a.is_empty()) { " (" (a) ")" }
                        @if let Some(since) = l.since { ", connected " (ago(since, o.now)) } },
                    None => p.warn { "No scheduler holds the leader lock." },
                }
                table {
                    thead { tr { th scope="col" { "Schedule" } th scope="col" { "Next" } th scope="col" { "Last" } } }
                    tbody {
                        @for (name, tz, next) in &o.next {
                            @let last = o.last.iter().find(|f| &f.schedule == name);
                            tr {
                                td { a href={ "/ui/schedules/" (name) } { (name) } }
                                td { (next.as_deref().unwrap_or("-")) " " span.muted { (tz) } }
                                td { @match last { Some(f) => { (ago(f.fire_at, o.now)) " " (badge(&f.status)) }, None => span.muted { "never" } } }
                            }
                        }
                    }
                }
            }
        }
        p.muted.small { "As of " time datetime=(o.now.to_rfc3339()) { (o.now.format("%Y-%m-%d %H:%M:%S UTC")) } "; refreshes every 5 s." }
    }
}

/// Stacked bars, one per minute, one colour per outcome; the numbers are
/// also in the bars' titles and a summary line (the chart is not the only way
/// to read them).
fn chart(rows: &[MinuteCount], now: DateTime<Utc>) -> Markup {
    let start = now - Duration::minutes(59);
    let mut minutes: BTreeMap<i64, BTreeMap<&str, i64>> = BTreeMap::new();
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        let Some(outcome) = OUTCOMES.iter().find(|o| **o == r.status) else {
            continue;
        };
        let slot = (r.minute - start).num_minutes().clamp(-1, 59) + 1;
        *minutes
            .entry(slot.clamp(0, 59))
            .or_default()
            .entry(outcome)
            .or_default() += r.n;
        *totals.entry(outcome).or_default() += r.n;
    }
    let peak = minutes
        .values()
        .map(|m| m.values().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, bar) = (600.0_f64, 120.0_f64, 10.0_f64);
    let mut bars = Vec::new();
    for (slot, counts) in &minutes {
        let mut y = h;
        for o in OUTCOMES {
            if let Some(n) = counts.get(o) {
                let bh = (*n as f64 / peak as f64) * (h - 4.0);
                y -= bh;
                bars.push((*slot as f64 * bar, y, bh, o, *n, *slot));
            }
        }
    }
    let summary: Vec<String> = OUTCOMES
        .iter()
        .map(|o| format!("{o} {}", totals.get(o).copied().unwrap_or(0)))
        .collect();
    html! {
        svg.chart viewBox={ "0 0 " (w) " " (h + 16.0) } role="img" aria-labelledby="chart-desc" {
            title #chart-desc { "Jobs finished per minute over the last hour: " (summary.join(", ")) }
            line x1="0" y1=(h) x2=(w) y2=(h) class="axis" {}
            @for (x, y, bh, o, n, slot) in &bars {
                rect class={ "bar o-" (o) } x=(x + 1.0) y=(y) width=(bar - 2.0) height=(bh) {
                    title { (n) " " (o) ", " (59 - slot) " min ago" }
                }
            }
            text x="0" y=(h + 14.0) class="tick" { "-60 min" }
            text x=(w - 30.0) y=(h + 14.0) class="tick" { "now" }
            text x="2" y="10" class="tick" { "peak " (peak) "/min" }
        }
        ul.legend {
            @for o in OUTCOMES {
                li { span class={ "swatch o-" (o) } {} (o) " " (totals.get(o).copied().unwrap_or(0)) }
            }
        }
    }
}
