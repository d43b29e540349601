//! The events as a feed, for programs that follow their jobs without AMQP
//! (`GET /v1/events` and its Server-Sent Events stream): the event rows of
//! the outbox (those for the events exchange, the JSON of `schemas/event.v1.json`) in id
//! order, for all tenants or one, continuing after an id.
//!
//! Ids are taken when a transaction inserts its event, not when it commits,
//! so a transaction still running may hold a smaller id than one already
//! committed. A page therefore ends before any row written by a transaction
//! younger than the oldest one still running (the snapshot's `xmin`): a
//! client that continues after the last id it saw does not skip a row that
//! commits late. This module only reads the outbox; it must never change it.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::broker::topology;

/// Largest page.
pub const MAX_PAGE: i64 = 1000;

/// One event with its feed id (the cursor).
#[derive(Debug, Clone, Serialize)]
pub struct FeedEvent {
    pub id: i64,
    /// The event name (`job.succeeded`, `tenant.provisioned`, …).
    pub event: String,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    /// The event as published (`schemas/event.v1.json`).
    pub payload: serde_json::Value,
}

/// Which events.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<String>,
    /// Events with a larger id than this.
    pub after: Option<i64>,
    pub limit: i64,
}

/// One page, oldest first.
pub async fn page(pool: &PgPool, f: &Filter) -> Result<Vec<FeedEvent>> {
    sqlx::query_as!(
        FeedEvent,
        r#"SELECT o.id, o.routing_key AS event, o.created_at, o.published_at, o.payload
             FROM outbox o
            WHERE o.exchange = $1
              AND ($2::text IS NULL OR o.payload->>'tenant' = $2)
              AND o.id > coalesce($3::bigint, 0)
              AND age(o.xmin) > age(((pg_snapshot_xmin(pg_current_snapshot())::text::numeric
                                      % 4294967296)::text)::xid)
            ORDER BY o.id LIMIT $4"#,
        topology::EVENTS,
        f.tenant.as_deref(),
        f.after,
        f.limit.clamp(1, MAX_PAGE),
    )
    .fetch_all(pool)
    .await
    .context("reading the event feed")
}

/// The id of the newest event row (0 when there is none): where a stream
/// that asked for no cursor starts.
pub async fn newest_id(pool: &PgPool) -> Result<i64> {
    let id = sqlx::query_scalar!(
        r#"SELECT coalesce(max(id), 0) AS "id!" FROM outbox WHERE exchange = $1"#,
        topology::EVENTS
    )
    .fetch_one(pool)
    .await
    .context("reading the newest event id")?;
    Ok(id)
}

/// A tenant's newest events, newest first (a backward scan of index
/// `outbox_exchange_tenant_id`): what the console shows on a tenant's page.
/// Unlike [`page`] it is no cursor to continue from.
pub async fn latest(pool: &PgPool, tenant: &str, limit: i64) -> Result<Vec<FeedEvent>> {
    sqlx::query_as!(
        FeedEvent,
        r#"SELECT o.id, o.routing_key AS event, o.created_at, o.published_at, o.payload
             FROM outbox o
            WHERE o.exchange = $1 AND o.payload->>'tenant' = $2
            ORDER BY o.id DESC LIMIT $3"#,
        topology::EVENTS,
        tenant,
        limit.clamp(1, MAX_PAGE),
    )
    .fetch_all(pool)
    .await
    .context("reading a tenant's latest events")
}
