//! The outbox relay: publishes what the catalog recorded but RabbitMQ has not
//! confirmed yet. Runs in every worker; `FOR UPDATE SKIP LOCKED` lets several
//! relays share the work without publishing a row twice at the same moment.
//!
//! A crash between commit and publish, or between publish and stamping
//! `published_at`, only means a row is published again; consumers are
//! idempotent (the catalog claim decides who runs a job).

use anyhow::{Context, Result};
use sqlx::PgPool;

use crate::{
    broker::{Broker, Outgoing, topology},
    metrics,
};

/// Rows published per pass.
pub const BATCH: usize = 200;

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    exchange: String,
    routing_key: String,
    payload: serde_json::Value,
    message_id: String,
    job_id: Option<uuid::Uuid>,
    /// The trace context of the row's job (its message, or an event it emitted).
    trace_parent: Option<String>,
}

/// Publishes due outbox rows: all of them, or only `only` when given.
/// Returns how many were confirmed.
pub async fn relay_once(pool: &PgPool, broker: &Broker, only: Option<i64>) -> Result<usize> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT o.id, o.exchange, o.routing_key, o.payload, o.message_id, o.job_id, j.trace_parent \
         FROM outbox o LEFT JOIN jobs j ON j.id = o.job_id \
         WHERE o.published_at IS NULL AND o.available_at <= now() AND ($1::bigint IS NULL OR o.id = $1) \
         ORDER BY o.available_at, o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED",
    )
    .bind(only)
    .bind(BATCH as i64)
    .fetch_all(&mut *tx)
    .await
    .context("reading outbox")?;
    let mut sent = 0;
    // Job rows are stamped after the commit, so a relay never holds a job's
    // row lock while it waits for the broker (a worker may be claiming it).
    let mut published_jobs = Vec::new();
    let bodies: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| serde_json::to_vec(&r.payload))
        .collect::<Result<_, _>>()
        .context("encoding outbox payload")?;
    // A `publish` span per row of a traced job, open until its confirm came
    // back; its context travels as the message's `traceparent`.
    let spans: Vec<Option<tracing::Span>> = rows.iter().map(publish_span).collect();
    let traceparents: Vec<Option<String>> = spans
        .iter()
        .map(|s| s.as_ref().and_then(crate::trace_context::of))
        .collect();
    let batch: Vec<Outgoing<'_>> = rows
        .iter()
        .zip(&bodies)
        .zip(&traceparents)
        .map(|((r, b), tp)| Outgoing {
            exchange: &r.exchange,
            routing_key: &r.routing_key,
            payload: b,
            message_id: &r.message_id,
            traceparent: tp.as_deref(),
        })
        .collect();
    // Pipelined: all sent, then all confirms awaited.
    let results = broker.publish_batch(&batch).await;
    let mut first_error = None;
    let mut confirmed = Vec::new();
    for (row, res) in rows.iter().zip(results) {
        match res {
            Ok(()) => {
                confirmed.push(row.id);
                if row.exchange == topology::WORK
                    && let Some(job) = row.job_id
                {
                    published_jobs.push(job);
                }
                metrics::get()
                    .outbox_published
                    .with_label_values(&[row.exchange.as_str()])
                    .inc();
                sent += 1;
            }
            Err(e) => {
                metrics::get()
                    .outbox_failures
                    .with_label_values(&[row.exchange.as_str()])
                    .inc();
                // Back this row off (1 s doubling to 5 min) so one bad row never
                // holds up the rows behind it.
                sqlx::query(
                    "UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2, \
                     available_at = now() + make_interval(secs => least(300, power(2, least(publish_attempts, 9)))) \
                     WHERE id = $1",
                )
                .bind(row.id)
                .bind(format!("{e:#}"))
                .execute(&mut *tx)
                .await
                .context("recording publish error")?;
                if first_error.is_none() {
                    first_error = Some(e.context(format!("publishing outbox row {}", row.id)));
                }
            }
        }
    }
    if !confirmed.is_empty() {
        sqlx::query(
            "UPDATE outbox SET published_at = now(), publish_attempts = publish_attempts + 1 WHERE id = ANY($1)",
        )
        .bind(&confirmed)
        .execute(&mut *tx)
        .await
        .context("stamping outbox rows")?;
    }
    tx.commit().await.context("committing outbox")?;
    drop(spans);
    stamp_jobs(pool, &published_jobs).await;
    match first_error {
        Some(e) if sent == 0 => Err(e),
        Some(e) => {
            tracing::warn!(error = %format!("{e:#}"), "some outbox rows were not published; backed off");
            Ok(sent)
        }
        None => Ok(sent),
    }
}

/// The span of publishing `row`, in its job's trace; `None` for rows of
/// untraced jobs (trace export off when they were enqueued).
fn publish_span(row: &Row) -> Option<tracing::Span> {
    let tp = row.trace_parent.as_deref()?;
    let span = tracing::info_span!(
        "publish",
        job_id = %row.job_id.map(|j| j.to_string()).unwrap_or_default(),
        exchange = %row.exchange,
        routing_key = %row.routing_key,
        message_id = %row.message_id,
    );
    crate::trace_context::continue_in(&span, Some(tp));
    Some(span)
}

/// Publishes every due row now, batch after batch, until a batch comes back
/// short (or publishing fails; the relay of any worker carries on).
pub async fn drain(pool: &PgPool, broker: &Broker) {
    while let Ok(n) = relay_once(pool, broker, None).await {
        if n < BATCH {
            break;
        }
    }
}

/// Records when each job's message was last published (used to spot missing messages).
async fn stamp_jobs(pool: &PgPool, jobs: &[uuid::Uuid]) {
    if jobs.is_empty() {
        return;
    }
    if let Err(e) = sqlx::query("UPDATE jobs SET last_published_at = now() WHERE id = ANY($1)")
        .bind(jobs)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "could not stamp published jobs");
    }
}

/// Unpublished outbox rows that are due.
pub async fn backlog(pool: &PgPool) -> Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL AND available_at <= now()",
    )
    .fetch_one(pool)
    .await
    .context("counting outbox backlog")
}
