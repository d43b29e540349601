//! Typed settings, one struct per concern, read from an optional
//! `landlord.toml` and then from `LANDLORD_*` environment variables (env wins).
//!
//! Secrets (passwords inside URLs) are wrapped in [`SecretUrl`]; they never
//! appear in `Debug`, `Display` or `landlord config show` output.
//!
//! Loading goes by phase: `source` reads the file table and holds the
//! environment readers; each concern's module (`catalog`, `broker`, `worker`,
//! `observability`, `servers`, `provisioning`, `mail`, `maintenance`,
//! `schedules`, `backup` with its `retention` policy language, and
//! `crate::tenancy::config`) overlays its environment variables on its part
//! of the file, validates and builds its settings; `from_parts` assembles
//! them, concern by concern in a fixed order, so the first invalid value is
//! the one reported. `show` renders the result for `landlord config show`.
//!
//! This module must never validate a value itself (the concern's module owns
//! its defaults, ranges and messages) nor read settings anywhere but
//! [`Settings::load`]: roles are handed resolved settings. It sits below the
//! modules that consume settings and must never import from them (the
//! backup settings live here, not in `crate::backup`, for that reason).

pub mod backup;
mod broker;
mod catalog;
mod env;
mod mail;
mod maintenance;
pub mod notify;
mod observability;
mod provisioning;
pub mod retention;
mod schedules;
mod secret;
mod secrets;
mod servers;
mod show;
mod source;
mod worker;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Result;

pub use backup::BackupSettings;
pub use broker::{AmqpTls, BrokerSettings};
pub use catalog::{CatalogSettings, TcpLiveness};
pub use mail::{MailSettings, SmtpEndpoint, SmtpSecurity};
pub use maintenance::{CleanupRule, MaintenanceSettings, parse_cleanup_rules};
pub use notify::NotifySettings;
pub use observability::{LogFormat, ObservabilitySettings, OtlpProtocol, TraceExport};
pub use provisioning::{ProvisioningSettings, TemplateStrategy};
pub use schedules::{ScheduleSpec, default_schedules};
pub use secret::SecretUrl;
pub use secrets::SecretsSettings;
pub use worker::{QUEUES, WorkerSettings, parse_queues};

use source::FileSettings;

/// All settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub catalog: CatalogSettings,
    pub broker: BrokerSettings,
    pub worker: WorkerSettings,
    pub observability: ObservabilitySettings,
    pub provisioning: ProvisioningSettings,
    pub mail: MailSettings,
    /// The key that seals tenant passwords in the catalog.
    pub secrets: SecretsSettings,
    /// Operator notifications (mail, webhook) on failures.
    pub notify: NotifySettings,
    pub maintenance: MaintenanceSettings,
    /// Backups and restores.
    pub backup: BackupSettings,
    /// Row-level tenancy for shared databases (the seed's TENANCY_* model).
    pub tenancy: crate::tenancy::config::TenancyConfig,
    /// Schedules the scheduler fires (the seed's defaults unless configured).
    pub schedules: Vec<ScheduleSpec>,
    /// Tenant database servers by name. `default` is always present.
    pub servers: BTreeMap<String, SecretUrl>,
    /// Placement weight per server (default 1; 0 = never place new tenants there).
    pub server_weights: BTreeMap<String, u32>,
    /// Where the settings file came from, if one was read.
    pub file: Option<PathBuf>,
}

impl Settings {
    /// Reads `LANDLORD_CONFIG` (or `./landlord.toml` if it exists), then the environment.
    pub fn load() -> Result<Self> {
        let path = source::locate();
        let file = source::read(path.as_deref())?;
        Self::from_parts(file, path)
    }

    /// Each concern from its part of `file` under the environment, in the
    /// order their errors are reported, then the whole.
    fn from_parts(file: FileSettings, path: Option<PathBuf>) -> Result<Self> {
        let FileSettings {
            database_url,
            amqp_url,
            prefix,
            delivery_limit,
            worker,
            observability,
            servers,
            tenant_migrations,
            template_strategy,
            delete_grace_days,
            smtp_url,
            mail_from,
            secrets_key_file,
            heavy_per_server,
            cleanup_rules,
            schedules,
            backup,
            tenancy,
        } = file;
        let catalog_url = CatalogSettings::url(database_url);
        let broker = BrokerSettings::load(amqp_url, prefix, delivery_limit)?;
        let worker = WorkerSettings::load(worker)?;
        let observability = ObservabilitySettings::load(observability)?;
        let servers = servers::Servers::load(servers, &catalog_url)?;
        crate::pg_tls::check("LANDLORD_DATABASE_URL", &catalog_url)?;
        for (name, url) in &servers.urls {
            crate::pg_tls::check(&format!("database server {name:?}"), url)?;
        }
        let provisioning =
            ProvisioningSettings::load(tenant_migrations, template_strategy, delete_grace_days)?;
        let mail = MailSettings::load(smtp_url, mail_from);
        let secrets = SecretsSettings::load(secrets_key_file);
        let notify = NotifySettings::load()?;
        let maintenance = MaintenanceSettings::load(heavy_per_server, cleanup_rules)?;
        let schedules = schedules::load(schedules);
        let backup = BackupSettings::load(backup)?;
        let tenancy = crate::tenancy::config::TenancyConfig::load(&tenancy)?;

        Ok(Self {
            catalog: CatalogSettings::new(catalog_url, worker.concurrency)?,
            broker,
            worker,
            observability,
            provisioning,
            mail,
            secrets,
            notify,
            maintenance,
            backup,
            tenancy,
            schedules,
            servers: servers.urls,
            server_weights: servers.weights,
            file: path,
        })
    }
}
