//! Names and declarations of everything landlord owns on RabbitMQ.
//!
//! Declaring is idempotent: every role declares the full topology when it
//! connects, so a broker that lost its definitions gets them back.

use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

use crate::config::{BrokerSettings, QUEUES};

/// Logical exchange names stored in the outbox.
pub const WORK: &str = "work";
pub const EVENTS: &str = "events";
pub const DEAD: &str = "dead";

/// The physical names for one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    pub prefix: String,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(s: &BrokerSettings) -> Self {
        Self {
            prefix: s.prefix.clone(),
            delivery_limit: s.delivery_limit,
        }
    }

    /// Direct exchange jobs are published to, routed by family.
    pub fn work_exchange(&self) -> String {
        format!("{}.work", self.prefix)
    }

    /// Topic exchange every event goes out on.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// Fanout exchange for messages that cannot be run.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The queue dead letters land in.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The work queue of a job family.
    pub fn queue(&self, family: &str) -> String {
        format!("{}.{}", self.prefix, family)
    }

    /// Maps a logical outbox exchange to its physical name.
    pub fn exchange(&self, logical: &str) -> String {
        match logical {
            WORK => self.work_exchange(),
            EVENTS => self.events_exchange(),
            DEAD => self.dead_exchange(),
            other => other.to_string(),
        }
    }

    /// Declares exchanges, queues and bindings.
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.work_exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.events_exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dead_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;

        let qopts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut dead_args = FieldTable::default();
        dead_args.insert(ShortString::from("x-queue-type"), string("quorum"));
        ch.queue_declare(self.dead_queue().into(), qopts, dead_args)
            .await?;
        ch.queue_bind(
            self.dead_queue().into(),
            self.dead_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

        for family in QUEUES {
            ch.queue_declare(self.queue(family).into(), qopts, self.work_queue_args())
                .await?;
            ch.queue_bind(
                self.queue(family).into(),
                self.work_exchange().into(),
                family.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Arguments of a work queue: quorum, bounded redeliveries, and
    /// at-least-once dead-lettering (which needs `reject-publish` overflow).
    pub fn work_queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-queue-type"), string("quorum"));
        args.insert(
            ShortString::from("x-delivery-limit"),
            AMQPValue::LongInt(self.delivery_limit as i32),
        );
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            string(&self.dead_exchange()),
        );
        args.insert(
            ShortString::from("x-dead-letter-strategy"),
            string("at-least-once"),
        );
        args.insert(ShortString::from("x-overflow"), string("reject-publish"));
        args
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_string()))
}
