//! How new tenant databases are made: the tenant migrations directory
//! (`LANDLORD_TENANT_MIGRATIONS`), the `CREATE DATABASE` template strategy
//! (`LANDLORD_TEMPLATE_STRATEGY`) and the grace period between `tenants
//! delete` and the drop (`LANDLORD_DELETE_GRACE_DAYS`).
//!
//! This module only describes; it must never create or drop a database
//! (`crate::lifecycle` does).

use anyhow::{Result, bail};

use super::env::{env, env_parse};

/// How new tenant databases are made.
#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    /// Directory of tenant migrations; `None` uses the built-in `migrations/tenant/`.
    pub tenant_migrations: Option<String>,
    /// `CREATE DATABASE … TEMPLATE … STRATEGY`, or no template at all.
    pub template: TemplateStrategy,
    /// Days between `tenants delete` and the database being dropped.
    pub delete_grace_days: u64,
}

/// How a tenant database is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStrategy {
    /// Clone the template, WAL-logged block by block (PostgreSQL 15 default; fast for small databases).
    WalLog,
    /// Clone the template with a checkpoint and file copy (fast for large templates).
    FileCopy,
    /// No template: create an empty database and run every migration.
    None,
}

impl TemplateStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::WalLog => "wal_log",
            Self::FileCopy => "file_copy",
            Self::None => "none",
        }
    }

    /// `wal_log` (also when unset), `file_copy` or `none`.
    fn parse(raw: Option<&str>) -> Result<Self> {
        Ok(match raw {
            None | Some("wal_log") => Self::WalLog,
            Some("file_copy") => Self::FileCopy,
            Some("none") => Self::None,
            Some(other) => bail!(
                "LANDLORD_TEMPLATE_STRATEGY must be wal_log, file_copy or none, got {other:?}"
            ),
        })
    }
}

impl ProvisioningSettings {
    /// The file's top-level `tenant_migrations`, `template_strategy` and
    /// `delete_grace_days`, under the environment.
    pub(super) fn load(
        tenant_migrations: Option<String>,
        template_strategy: Option<String>,
        delete_grace_days: Option<u64>,
    ) -> Result<Self> {
        let template = TemplateStrategy::parse(
            env("LANDLORD_TEMPLATE_STRATEGY")
                .or(template_strategy)
                .as_deref(),
        )?;
        Ok(Self {
            tenant_migrations: env("LANDLORD_TENANT_MIGRATIONS").or(tenant_migrations),
            template,
            delete_grace_days: env_parse("LANDLORD_DELETE_GRACE_DAYS")?
                .or(delete_grace_days)
                .unwrap_or(7),
        })
    }
}
