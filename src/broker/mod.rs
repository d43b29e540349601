//! The connection to RabbitMQ, supervised: any failure drops the session and
//! the next call builds a new connection, re-declares the topology and opens
//! fresh channels. Callers retry with backoff; nothing here holds job state.
//!
//! Publishing always uses publisher confirms; a message counts as sent only
//! once the broker acknowledged it (and, for work and dead letters, routed it).
//!
//! Why not lapin's auto-recovery: it must be enabled per connection, every
//! caller must catch a recoverable error and wait for each channel's
//! recovery, and a restarted broker may have lost definitions that must be
//! declared again anyway. Throwing the session away makes recovery the same
//! code path as start-up; since workers hold no long-lived consumers
//! (`basic.get`, see `runtime::worker`), there is nothing else to replay.

pub mod topology;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{FieldTable, LongString, ShortString},
};
use tokio::sync::Mutex;

pub use topology::Topology;

use crate::config::BrokerSettings;

const OP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Clone)]
struct Session {
    conn: Arc<Connection>,
    publisher: Channel,
}

impl Session {
    fn healthy(&self) -> bool {
        self.conn.status().connected() && self.publisher.status().connected()
    }
}

/// A supervised handle on RabbitMQ, cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BrokerSettings,
    topology: Topology,
    name: String,
    session: Mutex<Option<Session>>,
    connected: AtomicBool,
}

/// One message of a [`Broker::publish_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Logical exchange (`work`, `events`, `dead`).
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub payload: &'a [u8],
    pub message_id: &'a str,
}

/// A message taken from a work queue.
pub struct Delivery {
    pub family: String,
    pub delivery: lapin::message::Delivery,
}

impl Broker {
    /// A handle; nothing connects until first use.
    pub fn new(settings: &BrokerSettings, name: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                topology: Topology::new(settings),
                name: name.to_string(),
                session: Mutex::new(None),
                connected: AtomicBool::new(false),
            }),
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Whether the last operation found the broker reachable.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    async fn session(&self) -> Result<Session> {
        let mut guard = self.inner.session.lock().await;
        if let Some(s) = guard.as_ref() {
            if s.healthy() {
                return Ok(s.clone());
            }
            tracing::warn!("broker session lost; reconnecting");
        }
        *guard = None;
        self.inner.connected.store(false, Ordering::Relaxed);
        let s = tokio::time::timeout(OP_TIMEOUT, self.open())
            .await
            .map_err(|_| anyhow!("timed out connecting to RabbitMQ"))??;
        *guard = Some(s.clone());
        self.inner.connected.store(true, Ordering::Relaxed);
        Ok(s)
    }

    async fn open(&self) -> Result<Session> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.inner.name.clone()));
        let conn = Connection::connect(self.inner.settings.url.expose(), props)
            .await
            .with_context(|| {
                format!(
                    "connecting to RabbitMQ at {}",
                    self.inner.settings.url.masked()
                )
            })?;
        let publisher = conn.create_channel().await.context("opening a channel")?;
        self.inner
            .topology
            .declare(&publisher)
            .await
            .context("declaring exchanges and queues")?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        tracing::info!(prefix = %self.inner.topology.prefix, "connected to RabbitMQ, topology declared");
        Ok(Session {
            conn: Arc::new(conn),
            publisher,
        })
    }

    /// Forgets the current session so the next call reconnects.
    pub async fn reset(&self) {
        let old = self.inner.session.lock().await.take();
        self.inner.connected.store(false, Ordering::Relaxed);
        if let Some(s) = old {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                s.conn.close(200, ShortString::from("reset")),
            )
            .await;
        }
    }

    /// Connects now (declaring the topology), or says why it could not.
    pub async fn connect(&self) -> Result<()> {
        self.session().await.map(|_| ())
    }

    /// Publishes with confirms. `mandatory` makes an unroutable message an error.
    pub async fn publish(
        &self,
        logical_exchange: &str,
        routing_key: &str,
        payload: &[u8],
        message_id: &str,
        headers: Option<FieldTable>,
    ) -> Result<()> {
        let mandatory = logical_exchange != topology::EVENTS;
        let exchange = self.inner.topology.exchange(logical_exchange);
        let res = tokio::time::timeout(OP_TIMEOUT, async {
            let s = self.session().await?;
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(message_id.to_string()));
            if let Some(h) = headers {
                props = props.with_headers(h);
            }
            let confirm = s
                .publisher
                .basic_publish(
                    ShortString::from(exchange.clone()),
                    ShortString::from(routing_key.to_string()),
                    BasicPublishOptions {
                        mandatory,
                        ..Default::default()
                    },
                    payload,
                    props,
                )
                .await
                .context("publishing")?
                .await
                .context("waiting for the publisher confirm")?;
            if confirm.is_nack() {
                bail!("broker refused message {message_id} (nack)");
            }
            if let Some(returned) = confirm.take_message() {
                bail!(
                    "message {message_id} to {exchange}/{routing_key} was unroutable: {}",
                    returned.reply_text
                );
            }
            Ok(())
        })
        .await
        .map_err(|_| anyhow!("timed out publishing to RabbitMQ"))
        .and_then(|r| r);
        if res.is_err() {
            // Reconnecting re-declares the topology, which also heals a deleted queue.
            self.reset().await;
        }
        res
    }

    /// Publishes a batch with confirms, pipelined: every message is sent, then
    /// every confirm awaited. One result per message, in order.
    pub async fn publish_batch(&self, batch: &[Outgoing<'_>]) -> Vec<Result<()>> {
        let session = match self.session().await {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("{e:#}");
                return batch.iter().map(|_| Err(anyhow!("{msg}"))).collect();
            }
        };
        let mut pending = Vec::with_capacity(batch.len());
        for m in batch {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(m.message_id.to_string()));
            let sent = tokio::time::timeout(
                OP_TIMEOUT,
                session.publisher.basic_publish(
                    ShortString::from(self.inner.topology.exchange(m.exchange)),
                    ShortString::from(m.routing_key.to_string()),
                    BasicPublishOptions {
                        mandatory: m.exchange != topology::EVENTS,
                        ..Default::default()
                    },
                    m.payload,
                    props,
                ),
            )
            .await;
            pending.push(match sent {
                Ok(Ok(confirm)) => Ok(confirm),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("publishing")),
                Err(_) => Err(anyhow!("timed out publishing to RabbitMQ")),
            });
        }
        let mut out = Vec::with_capacity(batch.len());
        for (m, p) in batch.iter().zip(pending) {
            let res = match p {
                Err(e) => Err(e),
                Ok(confirm) => match tokio::time::timeout(OP_TIMEOUT, confirm).await {
                    Err(_) => Err(anyhow!("timed out waiting for the publisher confirm")),
                    Ok(Err(e)) => {
                        Err(anyhow::Error::new(e).context("waiting for the publisher confirm"))
                    }
                    Ok(Ok(c)) if c.is_nack() => {
                        Err(anyhow!("broker refused message {} (nack)", m.message_id))
                    }
                    Ok(Ok(c)) => match c.take_message() {
                        Some(r) => Err(anyhow!(
                            "message {} to {}/{} was unroutable: {}",
                            m.message_id,
                            m.exchange,
                            m.routing_key,
                            r.reply_text
                        )),
                        None => Ok(()),
                    },
                },
            };
            out.push(res);
        }
        if out.iter().any(Result::is_err) {
            self.reset().await;
        }
        out
    }

    /// A new channel on the current connection, for a consumer slot.
    pub async fn channel(&self) -> Result<Channel> {
        let s = self.session().await?;
        match tokio::time::timeout(OP_TIMEOUT, s.conn.create_channel()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => {
                self.reset().await;
                Err(anyhow::Error::new(e).context("opening a consumer channel"))
            }
            Err(_) => {
                self.reset().await;
                Err(anyhow!("timed out opening a channel"))
            }
        }
    }

    /// Takes one message from the family's queue, if any (`basic.get`).
    pub async fn get(&self, ch: &Channel, family: &str) -> Result<Option<Delivery>> {
        let queue = self.inner.topology.queue(family);
        let msg = tokio::time::timeout(
            OP_TIMEOUT,
            ch.basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false }),
        )
        .await
        .map_err(|_| anyhow!("timed out on basic.get"))?
        .context("basic.get")?;
        Ok(msg.map(|m| Delivery {
            family: family.to_string(),
            delivery: m.delivery,
        }))
    }

    /// Messages ready in a family's queue.
    pub async fn queue_depth(&self, family: &str) -> Result<u32> {
        let ch = self.channel().await?;
        let q = tokio::time::timeout(
            OP_TIMEOUT,
            ch.queue_declare(
                ShortString::from(self.inner.topology.queue(family)),
                QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await
        .map_err(|_| anyhow!("timed out inspecting queue"))?
        .context("inspecting queue")?;
        let _ = tokio::time::timeout(OP_TIMEOUT, ch.close(200, ShortString::from("done"))).await;
        Ok(q.message_count())
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.reset().await;
    }
}
