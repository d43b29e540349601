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
//!
//! Every AMQP connection landlord makes (and its tests' harness) is opened by
//! [`connect_url`]: plain for `amqp://`, TLS for `amqps://` with the URL's
//! `cacertfile`, `certfile` and `keyfile` (see [`crate::config::AmqpTls`]);
//! a failed handshake is reported as what failed, with the masked URL.

pub mod topology;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::Mutex;

pub use topology::Topology;

use crate::config::{AmqpTls, BrokerSettings, SecretUrl};

const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one node of several may take to accept a connection before the
/// next is tried (a single node gets the whole [`OP_TIMEOUT`]).
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Opens a connection to the broker at `url`, with TLS for `amqps://` (the
/// server's certificate verified against the system's CAs and the URL's
/// `cacertfile`; the client certificate of `certfile`/`keyfile` presented).
pub async fn connect_url(url: &SecretUrl, props: ConnectionProperties) -> Result<Connection> {
    let masked = url.masked();
    let tls = AmqpTls::from_url(url)?;
    let res = match &tls {
        None => Connection::connect(url.expose(), props).await,
        Some(t) => {
            let config = tls_config(t)?;
            let runtime = lapin::runtime::default_runtime()
                .context("the tokio runtime for the RabbitMQ connection")?;
            Connection::connect_with_config(url.expose(), props, config, runtime).await
        }
    };
    res.map_err(|e| connect_failure(&masked, tls.as_ref(), &e))
}

fn tls_config(t: &AmqpTls) -> Result<lapin::tcp::OwnedTLSConfig> {
    let cert_chain = match &t.ca_file {
        Some(ca) => Some(
            String::from_utf8(crate::tls::read_certificates(ca, "cacertfile")?)
                .with_context(|| format!("cacertfile: {} is not UTF-8 PEM", ca.display()))?,
        ),
        None => None,
    };
    let identity = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => Some(lapin::tcp::OwnedIdentity::PKCS8 {
            pem: crate::tls::read_certificates(cert, "certfile")?,
            key: crate::tls::read_private_key(key, "keyfile")?,
        }),
        _ => None,
    };
    Ok(lapin::tcp::OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

/// What a failed connection means, naming the masked URL.
fn connect_failure(masked: &str, tls: Option<&AmqpTls>, e: &lapin::Error) -> anyhow::Error {
    if let Some(why) = crate::tls::explain(e) {
        let hint = match tls.and_then(|t| t.ca_file.as_ref()) {
            Some(ca) if why.contains("not signed by a CA") => {
                format!(" (cacertfile is {})", ca.display())
            }
            None if why.contains("not signed by a CA") => {
                " (add ?cacertfile=/path/to/ca.pem to the URL)".to_string()
            }
            _ => String::new(),
        };
        return anyhow!("TLS handshake with RabbitMQ at {masked} failed: {why}{hint}");
    }
    let text = format!("{e}");
    match tls {
        None if handshake_cut_short(e) => {
            return anyhow!(
                "RabbitMQ at {masked} did not answer the AMQP handshake ({text}); if that port \
                 is a TLS listener, use amqps:// (and ?cacertfile=)"
            );
        }
        Some(AmqpTls {
            cert_file: Some(cert),
            ..
        }) if handshake_cut_short(e) => {
            return anyhow!(
                "RabbitMQ at {masked} closed the TLS connection before the AMQP handshake \
                 ({text}); it refuses a client certificate it does not trust: check that \
                 its CA signed certfile {}",
                cert.display()
            );
        }
        _ => {}
    }
    anyhow!("connecting to RabbitMQ at {masked}: {text}")
}

/// The server hung up (or answered garbage) before speaking AMQP, as a TLS
/// listener does to a plain client.
fn handshake_cut_short(e: &lapin::Error) -> bool {
    use std::io::ErrorKind as K;
    match e.kind() {
        lapin::ErrorKind::IOError(io) => matches!(
            io.kind(),
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe
        ),
        lapin::ErrorKind::ParsingError(_) | lapin::ErrorKind::InvalidProtocolVersion(_) => true,
        lapin::ErrorKind::InvalidConnectionState(_) => true,
        _ => false,
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
    /// Index in `settings.urls` of the node to try first: the one that
    /// answered last.
    node: AtomicUsize,
}

/// One message of a [`Broker::publish_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Logical exchange (`work`, `events`, `dead`).
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub payload: &'a [u8],
    pub message_id: &'a str,
    /// Sent as the `traceparent` header (see `crate::trace_context`).
    pub traceparent: Option<&'a str>,
}

/// A message taken from a work queue.
pub struct Delivery {
    pub family: String,
    pub delivery: lapin::message::Delivery,
}

impl Delivery {
    /// The text of header `name`, if the message has it as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        let headers = self.delivery.properties.headers().as_ref()?;
        match headers.inner().get(name)? {
            AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            AMQPValue::ShortString(v) => Some(v.as_str().to_string()),
            _ => None,
        }
    }
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
                node: AtomicUsize::new(0),
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
        let s = self.open().await?;
        *guard = Some(s.clone());
        self.inner.connected.store(true, Ordering::Relaxed);
        Ok(s)
    }

    /// The masked URL of the node this handle reaches (or tries first).
    pub fn describe(&self) -> String {
        let urls = &self.inner.settings.urls;
        urls[self.inner.node.load(Ordering::Relaxed) % urls.len()].masked()
    }

    /// A session on the first node that answers, starting with the one that
    /// answered last, so a cluster's live nodes take over from a dead one.
    async fn open(&self) -> Result<Session> {
        let urls = &self.inner.settings.urls;
        if urls.len() == 1 {
            return tokio::time::timeout(OP_TIMEOUT, self.open_on(&urls[0]))
                .await
                .map_err(|_| anyhow!("timed out connecting to RabbitMQ"))?;
        }
        let start = self.inner.node.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..urls.len() {
            let i = (start + k) % urls.len();
            match tokio::time::timeout(NODE_TIMEOUT, self.open_on(&urls[i])).await {
                Ok(Ok(s)) => {
                    if i != start {
                        tracing::warn!(node = %urls[i].masked(), "RabbitMQ node switched");
                    }
                    self.inner.node.store(i, Ordering::Relaxed);
                    return Ok(s);
                }
                Ok(Err(e)) => failures.push(format!("{}: {e:#}", urls[i].masked())),
                Err(_) => failures.push(format!(
                    "{}: no answer within {}s",
                    urls[i].masked(),
                    NODE_TIMEOUT.as_secs()
                )),
            }
        }
        Err(anyhow!(
            "no RabbitMQ node answered: {}",
            failures.join("; ")
        ))
    }

    async fn open_on(&self, url: &SecretUrl) -> Result<Session> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.inner.name.clone()));
        let conn = connect_url(url, props).await?;
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
        tracing::info!(prefix = %self.inner.topology.prefix, node = %url.masked(), "connected to RabbitMQ, topology declared");
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
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(m.message_id.to_string()));
            if let Some(tp) = m.traceparent {
                let mut headers = FieldTable::default();
                headers.insert(
                    ShortString::from(crate::trace_context::HEADER),
                    AMQPValue::LongString(LongString::from(tp.to_string())),
                );
                props = props.with_headers(headers);
            }
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
