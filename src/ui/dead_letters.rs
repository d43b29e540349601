//! The broker seen from the console: the dead-letter queue's messages
//! (`/ui/dead-letters`, admin) and the message counts of the work queues
//! (for the overview).
//!
//! The services run RabbitMQ without its management plugin, so the page
//! reads `{prefix}.dead` over AMQP: `basic.get` without auto-ack of up to
//! [`PEEK`] messages on a channel of its own, then one `basic.nack`
//! (multiple, requeue) of all of them, and the channel is closed (which
//! requeues anything still unacked, whatever failed before). Peeking never
//! loses a message, but it does requeue them: a requeued message counts as
//! redelivered, and the page says so. It must never ack, publish or purge.
//!
//! Counts are passive `queue.declare`s (`message_count`: messages ready,
//! not those a consumer holds unacked), on one channel, with a short
//! timeout so an unreachable broker does not hold the overview.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use axum::{extract::State, response::IntoResponse};
use lapin::{
    Channel,
    message::BasicGetMessage,
    options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use maud::html;
use serde_json::Value;

use super::{
    UiResult,
    layout::{self, Nav},
    session::Session,
};
use crate::{api::AppState, broker::Broker};

/// Most messages one page peeks at.
pub const PEEK: usize = 50;
/// Bytes of a body shown.
pub const PREVIEW: usize = 400;
/// How long one broker operation of the console may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One dead letter as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct Letter {
    pub message_id: Option<String>,
    pub redelivered: bool,
    pub bytes: usize,
    /// The first [`PREVIEW`] bytes, as text (invalid UTF-8 replaced).
    pub preview: String,
    pub job_id: Option<String>,
    pub kind: Option<String>,
    pub tenant: Option<String>,
    /// `x-landlord-reason`: why a worker dead-lettered it.
    pub reason: Option<String>,
    /// `x-landlord-queue`: the family it came from.
    pub from_queue: Option<String>,
    /// `x-death`: (reason, count, queue) per time the broker dead-lettered it.
    pub deaths: Vec<(String, i64, String)>,
}

async fn within<T>(what: &str, f: impl Future<Output = lapin::Result<T>>) -> Result<T> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| anyhow!("timed out on {what}"))?
        .with_context(|| what.to_string())
}

async fn ready(ch: &Channel, queue: &str) -> Result<u32> {
    let q = within(
        "inspecting a queue",
        ch.queue_declare(
            ShortString::from(queue.to_string()),
            QueueDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await?;
    Ok(q.message_count())
}

async fn close(ch: Channel) {
    let _ = tokio::time::timeout(TIMEOUT, ch.close(200, ShortString::from("done"))).await;
}

/// Messages ready in each queue named, in order, on one channel.
pub async fn counts(broker: &Broker, queues: &[String]) -> Result<Vec<u32>> {
    let ch = tokio::time::timeout(TIMEOUT, broker.channel())
        .await
        .map_err(|_| anyhow!("timed out reaching RabbitMQ"))??;
    let mut out = Vec::with_capacity(queues.len());
    let mut res = Ok(());
    for q in queues {
        match ready(&ch, q).await {
            Ok(n) => out.push(n),
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    close(ch).await;
    res.map(|()| out)
}

/// The dead-letter queue's ready count and its first `limit` messages, all
/// requeued.
pub async fn peek(broker: &Broker, limit: usize) -> Result<(u32, Vec<Letter>)> {
    let queue = broker.topology().dead_queue();
    let ch = tokio::time::timeout(TIMEOUT, broker.channel())
        .await
        .map_err(|_| anyhow!("timed out reaching RabbitMQ"))??;
    let res = peek_on(&ch, &queue, limit).await;
    close(ch).await;
    res
}

async fn peek_on(ch: &Channel, queue: &str, limit: usize) -> Result<(u32, Vec<Letter>)> {
    let total = ready(ch, queue).await?;
    let mut letters = Vec::new();
    let mut last_tag = None;
    let mut res = Ok(());
    while letters.len() < limit {
        let got = within(
            "basic.get on the dead-letter queue",
            ch.basic_get(
                ShortString::from(queue.to_string()),
                BasicGetOptions { no_ack: false },
            ),
        )
        .await;
        match got {
            Ok(Some(m)) => {
                last_tag = Some(m.delivery.delivery_tag);
                letters.push(letter(&m));
            }
            Ok(None) => break,
            Err(e) => {
                res = Err(e);
                break;
            }
        }
    }
    if let Some(tag) = last_tag {
        within(
            "requeueing the dead letters",
            ch.basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            ),
        )
        .await?;
    }
    res.map(|()| (total, letters))
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn number(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

fn letter(m: &BasicGetMessage) -> Letter {
    let d = &m.delivery;
    let headers = d.properties.headers().as_ref().map(FieldTable::inner);
    let header = |name: &str| headers.and_then(|h| h.get(name)).and_then(text);
    let deaths = match headers.and_then(|h| h.get("x-death")) {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(|v| match v {
                AMQPValue::FieldTable(t) => {
                    let t = t.inner();
                    let get = |k: &str| t.get(k).and_then(text).unwrap_or_default();
                    let count = t.get("count").and_then(number).unwrap_or(0);
                    Some((get("reason"), count, get("queue")))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let json: Option<Value> = serde_json::from_slice(&d.data).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k))
            .and_then(Value::as_str)
            .map(crate::message::truncate)
    };
    let cut = d.data.len().min(PREVIEW);
    Letter {
        message_id: d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string()),
        redelivered: d.redelivered,
        bytes: d.data.len(),
        preview: String::from_utf8_lossy(&d.data[..cut]).into_owned(),
        job_id: field("job_id"),
        kind: field("kind"),
        tenant: field("tenant"),
        reason: header("x-landlord-reason"),
        from_queue: header("x-landlord-queue"),
        deaths,
    }
}

/// `GET /ui/dead-letters` (admin).
pub async fn page(session: Session, State(state): State<AppState>) -> UiResult {
    session.require_admin()?;
    let queue = state.broker.topology().dead_queue();
    let peeked = peek(&state.broker, PEEK).await;
    let body = html! {
        p.hint #peek-note {
            "The messages of queue " code { (queue) } " (up to " (PEEK) "), read with "
            code { "basic.get" } " and put back with " code { "basic.nack" } " (requeue): "
            "looking loses none, but each look requeues them, so they show as redelivered."
        }
        @match &peeked {
            Err(e) => p.error role="alert" #broker-error { "RabbitMQ could not be read: " (format!("{e:#}")) },
            Ok((total, letters)) => {
                p.big #dead-count { (total) " message(s) in the dead-letter queue" }
                @if letters.is_empty() {
                    p.muted { "No dead letter." }
                } @else {
                    table.list #letters {
                        thead { tr {
                            th scope="col" { "Message" } th scope="col" { "Job" } th scope="col" { "Kind" }
                            th scope="col" { "Tenant" } th scope="col" { "Why" } th scope="col" { "Body" }
                        } }
                        tbody { @for l in letters { tr {
                            td { code { (l.message_id.as_deref().unwrap_or("-")) }
                                 @if l.redelivered { br; span.muted { "redelivered" } } }
                            td { @match &l.job_id {
                                Some(j) if uuid::Uuid::parse_str(j).is_ok() => a href={ "/ui/jobs/" (j) } { code { (j) } },
                                Some(j) => code { (j) },
                                None => span.muted { "-" },
                            } }
                            td { (l.kind.as_deref().unwrap_or("-")) }
                            td { (l.tenant.as_deref().unwrap_or("-")) }
                            td.reason {
                                @if let Some(r) = &l.reason { (r) }
                                @if let Some(q) = &l.from_queue { br; span.muted { "from " (q) } }
                                @for (reason, count, q) in &l.deaths {
                                    span.death { "x-death: " (reason) " ×" (count) @if !q.is_empty() { " (" (q) ")" } }
                                }
                            }
                            td { pre.body { (l.preview) @if l.bytes > PREVIEW { "…" } } span.muted { (l.bytes) " bytes" } }
                        } } }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, Nav::DeadLetters, "Dead letters", None, body).into_response())
}
