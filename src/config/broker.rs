//! RabbitMQ: its URL (`LANDLORD_AMQP_URL`), the name prefix every exchange
//! and queue carries (`LANDLORD_PREFIX`) and the work queues' delivery limit.
//!
//! This module must never accept a prefix that is not safe in an AMQP name
//! (the prefix isolates installations and test runs from one another).

use anyhow::{Result, bail};

use super::{
    SecretUrl,
    env::{env, env_parse},
};

/// RabbitMQ and the names landlord declares on it.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: SecretUrl,
    /// Prefix of every exchange and queue name; isolates installations and test runs.
    pub prefix: String,
    /// `x-delivery-limit` of the work queues: deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
}

impl BrokerSettings {
    /// The file's top-level `amqp_url`, `prefix` and `delivery_limit`, under the environment.
    pub(super) fn load(
        amqp_url: Option<String>,
        prefix: Option<String>,
        delivery_limit: Option<u32>,
    ) -> Result<Self> {
        let url = env("LANDLORD_AMQP_URL")
            .or(amqp_url)
            .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
        let prefix = env("LANDLORD_PREFIX")
            .or(prefix)
            .unwrap_or_else(|| "landlord".to_string());
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            || prefix.is_empty()
            || prefix.len() > 64
        {
            bail!("LANDLORD_PREFIX must be 1-64 characters of [A-Za-z0-9_.-], got {prefix:?}");
        }
        let delivery_limit = env_parse("LANDLORD_DELIVERY_LIMIT")?
            .or(delivery_limit)
            .unwrap_or(20);
        if !(1..=1000).contains(&delivery_limit) {
            bail!("LANDLORD_DELIVERY_LIMIT must be between 1 and 1000, got {delivery_limit}");
        }
        Ok(Self {
            url: SecretUrl::new(url),
            prefix,
            delivery_limit,
        })
    }
}
