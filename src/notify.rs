//! Operator notifications: a mail and a Slack/Teams-style webhook call when a
//! backup fails for good, a tenant's backups go stale, a job ends dead, or a
//! restore drill fails (`config::notify` says which go where).
//!
//! Every worker (and `landlord serve`) runs [`run_loop`]. A dead job is
//! considered once fleet-wide (`notified_jobs`, claimed in the transaction
//! that sends), so a job retried five times and then dead gives one notice,
//! not one per attempt; a notice that could not be sent rolls its claim back
//! and is tried again next round. At most one notice per event and tenant
//! goes out per `LANDLORD_NOTIFY_EVERY_SECONDS` (`notifications`, row-locked);
//! the ones held back are counted in the next.
//!
//! This module only reads jobs and backups; it must never change them, and
//! never put a job's full error (children's stderr, server names) anywhere
//! but the operator's channels.

use std::time::Duration;

use anyhow::{Context, Result};
use lettre::{Message, message::header::ContentType};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::config::{
    Settings,
    notify::{Channels, NotifyEvent},
};

/// How often the loop looks for dead jobs.
const EVERY: Duration = Duration::from_secs(5);
/// How often it checks backup freshness (the monitor's 26 h rule).
const STALE_EVERY: Duration = Duration::from_secs(300);
/// Dead jobs older than this are never notified (a fleet that starts after a
/// long stop does not flood the operator with old news).
const LOOK_BACK_HOURS: i32 = 24;

/// One notice to send.
#[derive(Debug, Clone)]
pub struct Notice {
    pub event: NotifyEvent,
    /// The tenant's slug, or `""` for the fleet.
    pub subject: String,
    pub title: String,
    pub body: String,
}

/// Runs until `stop`; does nothing when no notification is configured.
pub async fn run_loop(pool: PgPool, settings: std::sync::Arc<Settings>, stop: CancellationToken) {
    if !settings.notify.enabled() {
        return;
    }
    let mut last_stale: Option<tokio::time::Instant> = None;
    loop {
        if let Err(e) = dead_jobs(&pool, &settings).await {
            tracing::warn!(error = %format!("{e:#}"), "notifying dead jobs failed; retrying");
        }
        if last_stale.is_none_or(|t| t.elapsed() >= STALE_EVERY) {
            last_stale = Some(tokio::time::Instant::now());
            if let Err(e) = stale_backups(&pool, &settings).await {
                tracing::warn!(error = %format!("{e:#}"), "notifying stale backups failed; retrying");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// What a dead job of `kind` is, for the operator.
fn event_of(kind: &str) -> NotifyEvent {
    match kind {
        "backup" => NotifyEvent::BackupFailed,
        "verify_backup" => NotifyEvent::RestoreDrillFailed,
        _ => NotifyEvent::JobDead,
    }
}

type DeadRow = (uuid::Uuid, String, Option<String>, Option<String>, i32);

async fn dead_jobs(pool: &PgPool, settings: &Settings) -> Result<()> {
    let rows: Vec<DeadRow> = sqlx::query_as(
        "SELECT j.id, j.kind, t.slug, j.last_error, j.attempts FROM jobs j \
         LEFT JOIN tenants t ON t.id = j.tenant_id \
         WHERE j.status = 'dead' AND j.finished_at > now() - make_interval(hours => $1) \
           AND NOT EXISTS (SELECT 1 FROM notified_jobs n WHERE n.job_id = j.id) \
         ORDER BY j.finished_at LIMIT 50",
    )
    .bind(LOOK_BACK_HOURS)
    .fetch_all(pool)
    .await
    .context("reading dead jobs")?;
    for (id, kind, tenant, error, attempts) in rows {
        let mut tx = pool.begin().await?;
        let claimed =
            sqlx::query("INSERT INTO notified_jobs (job_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if claimed == 0 {
            continue;
        }
        let event = event_of(&kind);
        let subject = tenant.clone().unwrap_or_default();
        let notice = Notice {
            event,
            subject: subject.clone(),
            title: match event {
                NotifyEvent::BackupFailed => format!("landlord: backup of {subject} failed"),
                NotifyEvent::RestoreDrillFailed => {
                    format!("landlord: restore drill of {subject} failed")
                }
                _ => format!(
                    "landlord: {kind} job dead{}",
                    tenant
                        .as_deref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default()
                ),
            },
            body: format!(
                "Job {id} ({kind}{}) is dead after {attempts} attempt(s).\n\nLast error:\n{}\n\n\
                 Retry it with: landlord jobs retry {id}",
                tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default(),
                error.as_deref().unwrap_or("(none recorded)")
            ),
        };
        deliver_in(&mut tx, settings, &notice).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn stale_backups(pool: &PgPool, settings: &Settings) -> Result<()> {
    if settings
        .notify
        .channels(NotifyEvent::BackupsStale)
        .is_none()
    {
        return Ok(());
    }
    let report =
        crate::backup::monitor::run(pool, crate::backup::monitor::DEFAULT_MAX_AGE_HOURS, None)
            .await?;
    for (slug, newest) in report.stale {
        let notice = Notice {
            event: NotifyEvent::BackupsStale,
            subject: slug.clone(),
            title: format!("landlord: no recent backup of {slug}"),
            body: format!(
                "Tenant {slug} has no complete backup in the last {} h (newest: {}).\n\n\
                 Take one with: landlord backup --tenant {slug}",
                report.max_age_hours,
                newest
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "none".into())
            ),
        };
        let mut tx = pool.begin().await?;
        deliver_in(&mut tx, settings, &notice).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Sends `notice` on its channels unless one of its event and subject went
/// out less than `every` ago (then it is counted as held back). Locks the
/// rate-limit row in `tx`, so one worker sends while the others wait and then
/// hold back; the caller commits after a successful send.
pub async fn deliver_in(
    tx: &mut Transaction<'_, Postgres>,
    settings: &Settings,
    notice: &Notice,
) -> Result<bool> {
    let Some(channels) = settings.notify.channels(notice.event) else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO notifications (event, subject, last_sent_at) VALUES ($1, $2, '-infinity') \
         ON CONFLICT DO NOTHING",
    )
    .bind(notice.event.as_str())
    .bind(&notice.subject)
    .execute(&mut **tx)
    .await?;
    let (recent, held_back): (bool, i64) = sqlx::query_as(
        "SELECT last_sent_at > now() - make_interval(secs => $3), held_back FROM notifications \
         WHERE event = $1 AND subject = $2 FOR UPDATE",
    )
    .bind(notice.event.as_str())
    .bind(&notice.subject)
    .bind(settings.notify.every.as_secs_f64())
    .fetch_one(&mut **tx)
    .await?;
    if recent {
        sqlx::query(
            "UPDATE notifications SET held_back = held_back + 1 WHERE event = $1 AND subject = $2",
        )
        .bind(notice.event.as_str())
        .bind(&notice.subject)
        .execute(&mut **tx)
        .await?;
        tracing::info!(event = notice.event.as_str(), subject = %notice.subject, "notification held back (rate limit)");
        return Ok(false);
    }
    let mut notice = notice.clone();
    if held_back > 0 {
        notice.body.push_str(&format!(
            "\n\n({held_back} more notice(s) of this kind for {} were held back since the last one.)",
            if notice.subject.is_empty() { "the fleet" } else { &notice.subject }
        ));
    }
    send(settings, channels, &notice).await?;
    sqlx::query(
        "UPDATE notifications SET last_sent_at = now(), held_back = 0 WHERE event = $1 AND subject = $2",
    )
    .bind(notice.event.as_str())
    .bind(&notice.subject)
    .execute(&mut **tx)
    .await?;
    tracing::info!(event = notice.event.as_str(), subject = %notice.subject, "notification sent");
    Ok(true)
}

/// Sends on every channel; fails if any fails (the whole notice is retried,
/// so a channel that worked may get it twice rather than one never).
async fn send(settings: &Settings, channels: Channels, notice: &Notice) -> Result<()> {
    if channels.mail {
        send_mail(settings, notice).await?;
    }
    if channels.webhook {
        send_webhook(settings, notice).await?;
    }
    Ok(())
}

async fn send_mail(settings: &Settings, notice: &Notice) -> Result<()> {
    let endpoint = settings.mail.endpoint()?;
    let mut builder = Message::builder()
        .from(settings.mail.from.parse().context("LANDLORD_MAIL_FROM")?)
        .subject(notice.title.clone())
        .header(ContentType::TEXT_PLAIN);
    for to in &settings.notify.mail_to {
        builder = builder.to(to.parse().context("LANDLORD_NOTIFY_MAIL_TO")?);
    }
    let message = builder
        .body(notice.body.clone())
        .context("building the notice")?;
    let mut session = crate::mail::Session::open(&endpoint).await?;
    let sent = session.send(&message).await;
    session.quit().await;
    sent
}

async fn send_webhook(settings: &Settings, notice: &Notice) -> Result<()> {
    let Some(url) = &settings.notify.webhook else {
        return Ok(());
    };
    let payload = serde_json::json!({
        "text": format!("*{}*\n{}", notice.title, notice.body),
        "event": notice.event.as_str(),
        "tenant": (!notice.subject.is_empty()).then_some(&notice.subject),
    });
    crate::tls::install_default_crypto();
    let res = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the webhook client")?
        .post(url.expose())
        .json(&payload)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("webhook {}: {}", url.masked(), e.without_url()))?;
    if !res.status().is_success() {
        anyhow::bail!("webhook {} answered {}", url.masked(), res.status());
    }
    Ok(())
}
