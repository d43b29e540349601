//! The landlord catalog database: its URL (`LANDLORD_DATABASE_URL`,
//! `database_url`), the size of landlord's pool on it, and how fast a dead or
//! hung catalog connection is noticed.
//!
//! Liveness (environment only; defaults in brackets):
//! - `LANDLORD_CATALOG_KEEPALIVE_IDLE_SECONDS` [10],
//!   `LANDLORD_CATALOG_KEEPALIVE_INTERVAL_SECONDS` [5],
//!   `LANDLORD_CATALOG_KEEPALIVE_COUNT` [3], `LANDLORD_CATALOG_TCP_USER_TIMEOUT_MS`
//!   [30000]: the server's TCP keepalive and `tcp_user_timeout` on every catalog
//!   connection (PostgreSQL settings, applied when the connection opens).
//! - `LANDLORD_CATALOG_STATEMENT_TIMEOUT_MS` [0 = off]: `statement_timeout` of
//!   the catalog pool. Off by default because some catalog statements wait on
//!   purpose (a fan-out waiting for its schedule's lock, migrations).
//!
//! Tenant-lock connections get shorter, fixed values and every fencing query
//! a client-side deadline (`runtime::tenant_lock`): those are tied to each
//! other and to the lease, so they are not settings.
//!
//! The URL is a [`SecretUrl`] from the moment it is read; this module must
//! never hold or return it as a plain string.

use std::time::Duration;

use anyhow::{Result, bail};

use super::{
    SecretUrl,
    env::{env, env_parse},
};

/// Server-side TCP liveness of one kind of catalog connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLiveness {
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_count: u32,
    pub user_timeout: Duration,
}

impl TcpLiveness {
    /// `SET` statements applying these values (whole seconds / milliseconds).
    pub fn set_sql(&self) -> String {
        format!(
            "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
             SET tcp_keepalives_count = {}; SET tcp_user_timeout = {}",
            self.keepalive_idle.as_secs().max(1),
            self.keepalive_interval.as_secs().max(1),
            self.keepalive_count.max(1),
            self.user_timeout.as_millis()
        )
    }
}

/// The landlord catalog database.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub url: SecretUrl,
    pub max_connections: u32,
    /// TCP liveness of pooled catalog connections.
    pub liveness: TcpLiveness,
    /// `statement_timeout` of the pool; `None`: off.
    pub statement_timeout: Option<Duration>,
}

impl CatalogSettings {
    /// The catalog URL: environment over file over the local default. Also the
    /// `default` database server unless one is configured.
    pub(super) fn url(file: Option<String>) -> SecretUrl {
        SecretUrl::new(
            env("LANDLORD_DATABASE_URL")
                .or(file)
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/landlord".to_string()),
        )
    }

    /// The catalog pool of a worker running `concurrency` jobs at once.
    pub(super) fn new(url: SecretUrl, concurrency: usize) -> Result<Self> {
        let secs = |name: &str, default: u64| -> Result<Duration> {
            Ok(Duration::from_secs(env_parse(name)?.unwrap_or(default)))
        };
        let millis = |name: &str, default: u64| -> Result<Duration> {
            Ok(Duration::from_millis(env_parse(name)?.unwrap_or(default)))
        };
        let liveness = TcpLiveness {
            keepalive_idle: secs("LANDLORD_CATALOG_KEEPALIVE_IDLE_SECONDS", 10)?,
            keepalive_interval: secs("LANDLORD_CATALOG_KEEPALIVE_INTERVAL_SECONDS", 5)?,
            keepalive_count: env_parse("LANDLORD_CATALOG_KEEPALIVE_COUNT")?.unwrap_or(3),
            user_timeout: millis("LANDLORD_CATALOG_TCP_USER_TIMEOUT_MS", 30_000)?,
        };
        let statement_timeout =
            Some(millis("LANDLORD_CATALOG_STATEMENT_TIMEOUT_MS", 0)?).filter(|d| !d.is_zero());
        if liveness.user_timeout < Duration::from_secs(1) {
            bail!("LANDLORD_CATALOG_TCP_USER_TIMEOUT_MS must be at least 1000");
        }
        Ok(Self {
            url,
            max_connections: Self::pool_size(concurrency),
            liveness,
            statement_timeout,
        })
    }

    /// Catalog connections for `concurrency` jobs at once: two per job, plus six.
    pub fn pool_size(concurrency: usize) -> u32 {
        (concurrency as u32) * 2 + 6
    }

    /// The statements run on every new pooled catalog connection.
    pub fn session_sql(&self) -> String {
        let mut sql = self.liveness.set_sql();
        if let Some(t) = self.statement_timeout {
            sql.push_str(&format!("; SET statement_timeout = {}", t.as_millis()));
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_sql_uses_whole_units() {
        let l = TcpLiveness {
            keepalive_idle: Duration::from_secs(5),
            keepalive_interval: Duration::from_millis(200),
            keepalive_count: 3,
            user_timeout: Duration::from_millis(10_000),
        };
        assert_eq!(
            l.set_sql(),
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 1; \
             SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000"
        );
    }
}
