//! Tenant database servers by name and their placement weights: the file's
//! `[servers.NAME]` tables (`url`, `weight`) under `LANDLORD_SERVER__NAME`
//! and `LANDLORD_SERVER_WEIGHT__NAME`. `default` is always present (the
//! catalog's server unless configured).
//!
//! This module must never accept a weight for a server that is not
//! configured, nor a server name `crate::ident::validate_server_name`
//! rejects.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::SecretUrl;

/// One `[servers.NAME]` table of `landlord.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    url: String,
    weight: Option<u32>,
}

/// The servers and the weights that were set (absent = 1).
pub(super) struct Servers {
    pub urls: BTreeMap<String, SecretUrl>,
    pub weights: BTreeMap<String, u32>,
}

impl Servers {
    /// The file's servers under the environment's, with `default` added as
    /// `catalog` unless configured.
    pub(super) fn load(file: BTreeMap<String, FileServer>, catalog: &SecretUrl) -> Result<Self> {
        let mut servers = Self::from_file(file);
        servers.overlay_env()?;
        servers.check_weights()?;
        servers
            .urls
            .entry("default".to_string())
            .or_insert_with(|| catalog.clone());
        servers.check_names()?;
        Ok(servers)
    }

    fn from_file(file: BTreeMap<String, FileServer>) -> Self {
        let mut urls = BTreeMap::new();
        let mut weights = BTreeMap::new();
        for (name, s) in file {
            if let Some(w) = s.weight {
                weights.insert(name.clone(), w);
            }
            urls.insert(name, SecretUrl::new(s.url));
        }
        Self { urls, weights }
    }

    /// `LANDLORD_SERVER__NAME` and `LANDLORD_SERVER_WEIGHT__NAME` (names lowercased).
    fn overlay_env(&mut self) -> Result<()> {
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if let Some(name) = key.strip_prefix("LANDLORD_SERVER__") {
                self.urls
                    .insert(name.to_ascii_lowercase(), SecretUrl::new(value.to_string()));
            } else if let Some(name) = key.strip_prefix("LANDLORD_SERVER_WEIGHT__") {
                let w: u32 = value
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{key}={value:?} is not a weight: {e}"))?;
                self.weights.insert(name.to_ascii_lowercase(), w);
            }
        }
        Ok(())
    }

    /// A weight names a configured server (or `default`, which always is).
    fn check_weights(&self) -> Result<()> {
        for name in self.weights.keys() {
            if !self.urls.contains_key(name) && name != "default" {
                bail!("a weight is set for database server {name:?}, which is not configured");
            }
        }
        Ok(())
    }

    fn check_names(&self) -> Result<()> {
        for name in self.urls.keys() {
            crate::ident::validate_server_name(name)
                .map_err(|e| anyhow::anyhow!("database server name {name:?}: {e}"))?;
        }
        Ok(())
    }
}
