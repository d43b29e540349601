//! The landlord catalog database: its URL (`LANDLORD_DATABASE_URL`,
//! `database_url`) and the size of landlord's pool on it.
//!
//! The URL is a [`SecretUrl`] from the moment it is read; this module must
//! never hold or return it as a plain string.

use super::{SecretUrl, env::env};

/// The landlord catalog database.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub url: SecretUrl,
    pub max_connections: u32,
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
    pub(super) fn new(url: SecretUrl, concurrency: usize) -> Self {
        Self {
            url,
            max_connections: Self::pool_size(concurrency),
        }
    }

    /// Catalog connections for `concurrency` jobs at once: two per job, plus six.
    pub fn pool_size(concurrency: usize) -> u32 {
        (concurrency as u32) * 2 + 6
    }
}
