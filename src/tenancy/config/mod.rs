//! The tenancy configuration model (seed 004: the Laravel app's
//! `config/tenancy.php` and `config/app-context.php`), resolved from the
//! `[tenancy]` table of `landlord.toml` and the `TENANCY_*` environment
//! variables, with the origin of every value (env, file, app-context,
//! auto-detect or default) so `tenancy status` can say why a value is what it is.
//!
//! Precedence: environment over file, file over the channels' app-context
//! `tenant_mode`, auto-detection and defaults. An empty (or blank) environment
//! variable counts as unset.
//!
//! What this module must never do:
//! - print a secret: the context secret, the JWT secret and the bypass URL
//!   live in `secrecy` boxes, are skipped by `Serialize`, shown as
//!   `[REDACTED]` by `Debug`, and never quoted in an error message;
//! - decide enforcement itself: it only reports what is configured. Installing
//!   policies, failing queries and bypassing are for the rest of
//!   `crate::tenancy`, which asks [`TenancyConfig::effective_mode`],
//!   [`TenancyConfig::channel_enabled`] and [`TenancyConfig::is_exempt`].
//!
//! Files: `resolve` (the phases and the precedence), `channels` (which
//! channels there are and whether each is isolated), `values` (what a valid
//! value is, and the environment reader), `secrets` (the three secrets,
//! never quoted).

mod channels;
mod resolve;
mod secrets;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Result, bail};
use secrecy::{SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use super::EnforcementMode;

/// The seed's channels, always listed first, in this order.
pub const KNOWN_CHANNELS: [&str; 4] = ["admin", "mobile", "site", "partner"];

/// The tenant column when none is configured.
pub const DEFAULT_TENANT_COLUMN: &str = "tenant_id";

/// The tables of the seed's `exempt_models` default (`Countries`, `States`,
/// `Tenants`, `Error_logs`: lookup, system and global log tables), exempt in
/// every schema unless `exempt_tables` is configured.
pub const DEFAULT_EXEMPT_TABLES: [&str; 4] = ["countries", "states", "tenants", "error_logs"];

/// The app-context `tenant_mode` of a channel whose rows belong to tenants.
pub const TENANT_MODE_MULTI: &str = "multi";
/// The app-context `tenant_mode` of a channel that sees no tenant filter.
pub const TENANT_MODE_SINGLE: &str = "single";

const ENV_ENABLED: &str = "TENANCY_ENABLED";
const ENV_MODE: &str = "TENANCY_ENFORCEMENT_MODE";
const ENV_COLUMN: &str = "TENANCY_TENANT_COLUMN";
const ENV_EXEMPT: &str = "TENANCY_EXEMPT_TABLES";
const ENV_LOG_BYPASSES: &str = "TENANCY_LOG_BYPASSES";
const ENV_ALERT_VIOLATIONS: &str = "TENANCY_ALERT_VIOLATIONS";
const ENV_CACHE_CONTEXT: &str = "TENANCY_CACHE_CONTEXT";
const ENV_CONTEXT_SECRET: &str = "TENANCY_CONTEXT_SECRET";
const ENV_JWT_SECRET: &str = "TENANCY_JWT_SECRET";
const ENV_BYPASS_URL: &str = "TENANCY_BYPASS_URL";

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// An environment variable, by name.
    Env(String),
    /// The `[tenancy]` table of `landlord.toml`.
    File,
    /// A channel's app-context `tenant_mode` (from the file's
    /// `[tenancy.app_context.*]` or from `TENANCY_{CH}_TENANT_MODE`).
    AppContext,
    /// `enabled` unset: on iff some channel has `tenant_mode = "multi"`.
    AutoDetect,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env {name}"),
            Self::File => f.write_str("file"),
            Self::AppContext => f.write_str("app-context"),
            Self::AutoDetect => f.write_str("auto-detect"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Resolved<T> {
    pub fn new(value: T, source: Source) -> Self {
        Self { value, source }
    }
}

/// One channel (an app context: admin, mobile, site, partner, ...).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelConfig {
    pub name: String,
    /// Whether the channel is isolated. Already false, with the source of the
    /// switch, when tenancy is off or the enforcement mode is `disabled`.
    pub enabled: Resolved<bool>,
    /// The app-context `tenant_mode` ("multi" or "single"), if any was given.
    pub tenant_mode: Option<String>,
}

/// The `[tenancy]` table of `landlord.toml`. Every key is optional; an absent
/// key is the seed's `null`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTenancy {
    /// `true`/`false`; absent = auto-detect from the app-context.
    pub enabled: Option<bool>,
    /// "strict", "soft" or "disabled"; absent = strict.
    pub enforcement_mode: Option<String>,
    /// Absent = "tenant_id".
    pub tenant_column: Option<String>,
    /// Tables without isolation: "countries" (any schema) or "public.countries".
    pub exempt_tables: Option<Vec<String>>,
    /// `[tenancy.channels]`: per-channel overrides; a channel absent = inherit.
    pub channels: BTreeMap<String, bool>,
    /// `[tenancy.app_context.{channel}]`: the app-context.php channels.
    pub app_context: BTreeMap<String, FileAppContextChannel>,
    /// `[tenancy.audit]`.
    pub audit: FileAudit,
    /// `[tenancy.performance]`.
    pub performance: FilePerformance,
}

/// `[tenancy.app_context.{channel}]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAppContextChannel {
    /// "multi" (isolated) or "single" (no filter).
    pub tenant_mode: Option<String>,
}

/// `[tenancy.audit]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileAudit {
    pub log_bypasses: Option<bool>,
    pub alert_violations: Option<bool>,
}

/// `[tenancy.performance]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilePerformance {
    pub cache_context: Option<bool>,
}

/// The resolved tenancy configuration.
#[derive(Debug, Clone, Serialize)]
pub struct TenancyConfig {
    pub enabled: Resolved<bool>,
    /// The mode as configured; see [`TenancyConfig::effective_mode`].
    pub enforcement_mode: Resolved<EnforcementMode>,
    pub tenant_column: Resolved<String>,
    pub exempt_tables: Resolved<Vec<String>>,
    /// admin, mobile, site, partner first, then the file's other channels by name.
    pub channels: Vec<ChannelConfig>,
    pub log_bypasses: Resolved<bool>,
    pub alert_violations: Resolved<bool>,
    pub cache_context: Resolved<bool>,
    /// `TENANCY_CONTEXT_SECRET`, decoded: 32 bytes that sign tenant contexts.
    #[serde(skip)]
    pub context_secret: Option<SecretSlice<u8>>,
    /// `TENANCY_JWT_SECRET`: the HS256 key for tokens.
    #[serde(skip)]
    pub jwt_secret: Option<SecretString>,
    /// `TENANCY_BYPASS_URL`: a BYPASSRLS role, for audited superuser bypasses only.
    #[serde(skip)]
    pub bypass_url: Option<SecretString>,
}

impl TenancyConfig {
    /// Reads the process environment over `file`.
    pub fn load(file: &FileTenancy) -> Result<Self> {
        // A TENANCY_* variable that is not UTF-8 would otherwise read as unset.
        for (key, value) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("TENANCY_") && value.to_str().is_none() {
                bail!("The environment variable {key} is not valid UTF-8.");
            }
        }
        Self::resolve(&|name| std::env::var(name).ok(), file)
    }

    /// Mode in force: Disabled when tenancy is off.
    pub fn effective_mode(&self) -> EnforcementMode {
        if self.enabled.value {
            self.enforcement_mode.value
        } else {
            EnforcementMode::Disabled
        }
    }

    /// Whether `channel` gets isolation (false when tenancy is off or the mode
    /// is disabled; unknown channels: default enabled when tenancy is on).
    /// Channel names are compared case-insensitively.
    pub fn channel_enabled(&self, channel: &str) -> bool {
        if self.effective_mode() == EnforcementMode::Disabled {
            return false;
        }
        let channel = channel.trim();
        self.channels
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(channel))
            .is_none_or(|c| c.enabled.value)
    }

    /// The configuration of one channel, if it is known or in the file.
    pub fn channel(&self, channel: &str) -> Option<&ChannelConfig> {
        let channel = channel.trim();
        self.channels
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(channel))
    }

    /// Whether a table (bare "countries" or qualified "public.countries") is
    /// exempt. A bare entry exempts the table in every schema; a qualified one
    /// only in its schema. Names are compared exactly, as PostgreSQL stores them.
    pub fn is_exempt(&self, schema: &str, table: &str) -> bool {
        self.exempt_tables
            .value
            .iter()
            .any(|entry| match entry.split_once('.') {
                Some((s, t)) => s == schema && t == table,
                None => entry == table,
            })
    }
}

impl<T: fmt::Display> fmt::Display for Resolved<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.value, self.source)
    }
}
