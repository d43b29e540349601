//! RabbitMQ: its URL (`LANDLORD_AMQP_URL`; several, comma-separated, for the
//! nodes of a cluster: connections go to the first that answers, starting
//! from the node that answered last), the name prefix every exchange and
//! queue carries (`LANDLORD_PREFIX`) and the work queues' delivery limit.
//! An `amqps://` URL carries its TLS files as query parameters, named as in
//! RabbitMQ's URI spec: `cacertfile` (the CA to trust, beside the system's),
//! `certfile` and `keyfile` (a client certificate, PEM), see [`AmqpTls`].
//!
//! This module must never accept a prefix that is not safe in an AMQP name
//! (the prefix isolates installations and test runs from one another), nor a
//! URL that asks for TLS without verification.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::{
    SecretUrl,
    env::{env, env_parse},
};

/// RabbitMQ and the names landlord declares on it.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The first node's URL (what one-node tools connect to).
    pub url: SecretUrl,
    /// Every node's URL, `url` first; at least one.
    pub urls: Vec<SecretUrl>,
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
        let urls = parse_urls(&url)?;
        Ok(Self {
            url: urls[0].clone(),
            urls,
            prefix,
            delivery_limit,
        })
    }

    /// The TLS options of the URL; `None` for plain `amqp://`.
    pub fn tls(&self) -> Result<Option<AmqpTls>> {
        AmqpTls::from_url(&self.url)
    }

    /// Points every connection at one URL (a test's, or a no-broker stand-in).
    pub fn set_url(&mut self, url: SecretUrl) {
        self.url = url.clone();
        self.urls = vec![url];
    }

    /// Every URL, masked, comma-separated.
    pub fn masked(&self) -> String {
        let all: Vec<String> = self.urls.iter().map(SecretUrl::masked).collect();
        all.join(",")
    }
}

/// The comma-separated URLs of `LANDLORD_AMQP_URL`, each checked; all plain or
/// all TLS, so a failover never silently drops encryption.
fn parse_urls(raw: &str) -> Result<Vec<SecretUrl>> {
    let urls: Vec<SecretUrl> = raw
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(SecretUrl::new)
        .collect();
    if urls.is_empty() {
        bail!("LANDLORD_AMQP_URL is empty: give one amqp:// URL, or several separated by commas");
    }
    let mut encrypted = Vec::new();
    for u in &urls {
        encrypted.push(AmqpTls::from_url(u)?.is_some());
    }
    if encrypted.iter().any(|e| *e) && !encrypted.iter().all(|e| *e) {
        bail!(
            "LANDLORD_AMQP_URL mixes amqp:// and amqps:// nodes ({}): a failover would drop \
             encryption; make them all amqps://",
            urls.iter()
                .map(SecretUrl::masked)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(urls)
}

/// The TLS files of an `amqps://` URL:
/// `amqps://user:pass@host:5671/vhost?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/c.key`.
/// The server's certificate is always verified (chain and host name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpTls {
    /// PEM CA certificate(s) trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to the broker.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl AmqpTls {
    /// Parses the TLS query parameters of `url`; `None` for `amqp://`, an
    /// error for TLS options on a plain URL, half a client identity or
    /// `verify=verify_none`.
    pub fn from_url(url: &SecretUrl) -> Result<Option<Self>> {
        let masked = url.masked();
        let parsed = url::Url::parse(url.expose())
            .map_err(|e| anyhow::anyhow!("LANDLORD_AMQP_URL {masked} is not a URL: {e}"))?;
        let mut tls = Self::default();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "cacertfile" => tls.ca_file = Some(PathBuf::from(&*v)),
                "certfile" => tls.cert_file = Some(PathBuf::from(&*v)),
                "keyfile" => tls.key_file = Some(PathBuf::from(&*v)),
                "verify" if v != "verify_peer" => bail!(
                    "LANDLORD_AMQP_URL {masked}: verify={v} is not supported; landlord always \
                     verifies the broker's certificate (give its CA with cacertfile=)"
                ),
                _ => {}
            }
        }
        match parsed.scheme() {
            "amqps" => {}
            "amqp" if tls == Self::default() => return Ok(None),
            "amqp" => bail!(
                "LANDLORD_AMQP_URL {masked}: cacertfile, certfile and keyfile need amqps:// \
                 (the URL says amqp://, which is not encrypted)"
            ),
            other => {
                bail!("LANDLORD_AMQP_URL {masked}: scheme {other}:// is not amqp:// or amqps://")
            }
        }
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            bail!(
                "LANDLORD_AMQP_URL {masked}: a client certificate needs both certfile= and keyfile="
            );
        }
        Ok(Some(tls))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<Option<AmqpTls>> {
        AmqpTls::from_url(&SecretUrl::new(url))
    }

    #[test]
    fn reads_the_tls_files_of_an_amqps_url() {
        assert_eq!(tls("amqp://guest:guest@h:5672/%2f").unwrap(), None);
        assert_eq!(tls("amqps://h/%2f").unwrap(), Some(AmqpTls::default()));
        let t = tls("amqps://u:p@h:5671/%2f?cacertfile=/t/ca.pem&certfile=/t/c.pem&keyfile=/t/c.key&heartbeat=10")
            .unwrap()
            .unwrap();
        assert_eq!(t.ca_file, Some(PathBuf::from("/t/ca.pem")));
        assert_eq!(t.key_file, Some(PathBuf::from("/t/c.key")));
    }

    #[test]
    fn several_urls_are_the_nodes_of_a_cluster() {
        let u = parse_urls("amqp://u:p@a:5681/%2f, amqp://u:p@b:5682/%2f,").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].expose(), "amqp://u:p@b:5682/%2f");
        let e = parse_urls("amqps://a/%2f,amqp://u:secret@b/%2f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mixes") && !e.contains("secret"), "{e}");
        assert!(parse_urls(" , ").is_err());
    }

    #[test]
    fn refuses_what_would_not_be_protected() {
        let e = tls("amqp://u:secret@h/%2f?cacertfile=/ca.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("need amqps://") && !e.contains("secret"), "{e}");
        let e = tls("amqps://h/%2f?certfile=/c.pem")
            .unwrap_err()
            .to_string();
        assert!(e.contains("both certfile= and keyfile="), "{e}");
        let e = tls("amqps://h/%2f?verify=verify_none")
            .unwrap_err()
            .to_string();
        assert!(e.contains("always verifies"), "{e}");
    }
}
