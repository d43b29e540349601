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

use std::collections::{BTreeMap, BTreeSet};
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

/// Length of `TENANCY_CONTEXT_SECRET` in hexadecimal characters (32 bytes).
const CONTEXT_SECRET_HEX_LEN: usize = 64;
/// Shortest HS256 key allowed: the hash output size (RFC 7518 §3.2).
const JWT_SECRET_MIN_LEN: usize = 32;

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

/// The environment, with blank values counted as unset and values trimmed.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.get(name).map(|v| parse_bool(name, &v)).transpose()
    }

    /// A true/false/null switch: "null" (as in a Laravel `.env`) is unset.
    fn tristate(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            Some(v) if v.eq_ignore_ascii_case("null") => Ok(None),
            Some(v) => parse_bool(name, &v).map(Some),
            None => Ok(None),
        }
    }
}

fn parse_bool(what: &str, raw: &str) -> Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => bail!(
            "{what} must be true or false (or 1/0, yes/no, on/off), got {:?}.",
            raw.trim()
        ),
    }
}

fn parse_mode(what: &str, raw: &str) -> Result<EnforcementMode> {
    EnforcementMode::parse(&raw.trim().to_ascii_lowercase())
        .map_err(|e| anyhow::anyhow!("{what} is not valid: {e}."))
}

fn parse_tenant_mode(what: &str, raw: &str) -> Result<String> {
    let mode = raw.trim().to_ascii_lowercase();
    if mode == TENANT_MODE_MULTI || mode == TENANT_MODE_SINGLE {
        Ok(mode)
    } else {
        bail!(
            "{what} must be \"multi\" or \"single\", got {:?}.",
            raw.trim()
        )
    }
}

/// `[a-z_][a-z0-9_]{0,62}`: an unquoted PostgreSQL identifier as it is stored.
fn is_sql_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn parse_tenant_column(what: &str, raw: &str) -> Result<String> {
    if is_sql_identifier(raw) {
        Ok(raw.to_string())
    } else {
        bail!(
            "{what} must be a plain SQL identifier (lowercase letters, digits and \
             underscores, starting with a letter or underscore, at most 63 characters), \
             got {raw:?}."
        )
    }
}

fn parse_exempt_tables<'a>(
    what: &str,
    items: impl Iterator<Item = &'a str>,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for raw in items {
        let name = raw.trim();
        let ok = match name.split_once('.') {
            Some((schema, table)) => is_sql_identifier(schema) && is_sql_identifier(table),
            None => is_sql_identifier(name),
        };
        if !ok {
            bail!(
                "{what} has {name:?}, which is not a table name: use \"table\" or \
                 \"schema.table\", each part lowercase letters, digits and underscores."
            );
        }
        if !out.iter().any(|t| t == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Channel names: lowercase letters, digits, `_` and `-`, starting with a letter.
fn is_channel_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// `TENANCY_{CHANNEL}_{SUFFIX}`, with `-` as `_`.
fn channel_var(channel: &str, suffix: &str) -> String {
    format!(
        "TENANCY_{}_{suffix}",
        channel.to_ascii_uppercase().replace('-', "_")
    )
}

fn parse_context_secret(raw: &str) -> Result<SecretSlice<u8>> {
    // The value itself is never quoted: only its shape.
    if raw.len() != CONTEXT_SECRET_HEX_LEN {
        bail!(
            "{ENV_CONTEXT_SECRET} must be exactly {CONTEXT_SECRET_HEX_LEN} hexadecimal \
             characters (32 bytes); the value given has {} characters.",
            raw.len()
        );
    }
    let mut bytes = Vec::with_capacity(CONTEXT_SECRET_HEX_LEN / 2);
    for pair in raw.as_bytes().chunks(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => bytes.push(hi << 4 | lo),
            _ => {
                // Overwrite what was decoded so far before giving up.
                bytes.iter_mut().for_each(|b| *b = 0);
                bail!(
                    "{ENV_CONTEXT_SECRET} must be exactly {CONTEXT_SECRET_HEX_LEN} \
                     hexadecimal characters (32 bytes); the value given has characters \
                     other than 0-9 and a-f."
                );
            }
        }
    }
    Ok(SecretSlice::from(bytes))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn parse_jwt_secret(raw: String) -> Result<SecretString> {
    if raw.len() < JWT_SECRET_MIN_LEN {
        bail!(
            "{ENV_JWT_SECRET} must be at least {JWT_SECRET_MIN_LEN} bytes long for HS256 \
             (RFC 7518 section 3.2); the value given has {} bytes.",
            raw.len()
        );
    }
    Ok(SecretString::from(raw))
}

fn parse_bypass_url(raw: String) -> Result<SecretString> {
    let scheme = raw
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if scheme != "postgres" && scheme != "postgresql" {
        bail!(
            "{ENV_BYPASS_URL} must be a PostgreSQL URL (postgres://... or \
             postgresql://...); the value given is not one (it is not shown because it \
             may hold a password)."
        );
    }
    Ok(SecretString::from(raw))
}

/// The first of env, file, then `fallback`.
fn layer<T>(env: Option<(T, &str)>, file: Option<T>, fallback: Resolved<T>) -> Resolved<T> {
    match (env, file) {
        (Some((v, name)), _) => Resolved::new(v, Source::Env(name.to_string())),
        (None, Some(v)) => Resolved::new(v, Source::File),
        (None, None) => fallback,
    }
}

fn with_name<T>(name: &str, v: Option<T>) -> Option<(T, &str)> {
    v.map(|v| (v, name))
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

    /// Same with an injectable environment (tests).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>, file: &FileTenancy) -> Result<Self> {
        let env = Env(env);

        // The channels: the seed's four, then the file's others by name.
        for (table, key) in file
            .channels
            .keys()
            .map(|k| ("[tenancy.channels]", k))
            .chain(
                file.app_context
                    .keys()
                    .map(|k| ("[tenancy.app_context]", k)),
            )
        {
            if !is_channel_name(key) {
                bail!(
                    "landlord.toml {table} has the key {key:?}, which is not a channel name \
                     (lowercase letters, digits, '_' and '-', starting with a letter)."
                );
            }
        }
        let extra: BTreeSet<&str> = file
            .channels
            .keys()
            .chain(file.app_context.keys())
            .map(String::as_str)
            .filter(|k| !KNOWN_CHANNELS.contains(k))
            .collect();
        let names = KNOWN_CHANNELS.iter().copied().chain(extra);

        let mut channels = Vec::new();
        for name in names {
            let mode_var = channel_var(name, "TENANT_MODE");
            let tenant_mode = match env.get(&mode_var) {
                Some(v) => Some(parse_tenant_mode(&mode_var, &v)?),
                None => match file
                    .app_context
                    .get(name)
                    .and_then(|c| c.tenant_mode.as_ref())
                {
                    Some(v) => Some(parse_tenant_mode(
                        &format!("landlord.toml [tenancy.app_context.{name}] tenant_mode"),
                        v,
                    )?),
                    None => None,
                },
            };
            let enabled_var = channel_var(name, "ENABLED");
            let inherited = match &tenant_mode {
                Some(m) => Resolved::new(m == TENANT_MODE_MULTI, Source::AppContext),
                None => Resolved::new(true, Source::Default),
            };
            let enabled = layer(
                with_name(&enabled_var, env.tristate(&enabled_var)?),
                file.channels.get(name).copied(),
                inherited,
            );
            channels.push(ChannelConfig {
                name: name.to_string(),
                enabled,
                tenant_mode,
            });
        }

        let any_multi = channels
            .iter()
            .any(|c| c.tenant_mode.as_deref() == Some(TENANT_MODE_MULTI));
        let enabled = layer(
            with_name(ENV_ENABLED, env.tristate(ENV_ENABLED)?),
            file.enabled,
            Resolved::new(any_multi, Source::AutoDetect),
        );

        let enforcement_mode = layer(
            with_name(
                ENV_MODE,
                env.get(ENV_MODE)
                    .map(|v| parse_mode(ENV_MODE, &v))
                    .transpose()?,
            ),
            file.enforcement_mode
                .as_deref()
                .map(|v| parse_mode("landlord.toml [tenancy] enforcement_mode", v))
                .transpose()?,
            Resolved::new(EnforcementMode::Strict, Source::Default),
        );

        let tenant_column = layer(
            with_name(
                ENV_COLUMN,
                env.get(ENV_COLUMN)
                    .map(|v| parse_tenant_column(ENV_COLUMN, &v))
                    .transpose()?,
            ),
            file.tenant_column
                .as_deref()
                .map(|v| parse_tenant_column("landlord.toml [tenancy] tenant_column", v))
                .transpose()?,
            Resolved::new(DEFAULT_TENANT_COLUMN.to_string(), Source::Default),
        );

        let exempt_tables = layer(
            with_name(
                ENV_EXEMPT,
                env.get(ENV_EXEMPT)
                    .map(|v| {
                        parse_exempt_tables(
                            ENV_EXEMPT,
                            v.split(',').filter(|s| !s.trim().is_empty()),
                        )
                    })
                    .transpose()?,
            ),
            file.exempt_tables
                .as_ref()
                .map(|v| {
                    parse_exempt_tables(
                        "landlord.toml [tenancy] exempt_tables",
                        v.iter().map(String::as_str),
                    )
                })
                .transpose()?,
            Resolved::new(
                DEFAULT_EXEMPT_TABLES
                    .iter()
                    .map(|t| t.to_string())
                    .collect(),
                Source::Default,
            ),
        );

        let log_bypasses = layer(
            with_name(ENV_LOG_BYPASSES, env.bool(ENV_LOG_BYPASSES)?),
            file.audit.log_bypasses,
            Resolved::new(true, Source::Default),
        );
        let alert_violations = layer(
            with_name(ENV_ALERT_VIOLATIONS, env.bool(ENV_ALERT_VIOLATIONS)?),
            file.audit.alert_violations,
            Resolved::new(true, Source::Default),
        );
        let cache_context = layer(
            with_name(ENV_CACHE_CONTEXT, env.bool(ENV_CACHE_CONTEXT)?),
            file.performance.cache_context,
            Resolved::new(true, Source::Default),
        );

        let context_secret = env
            .get(ENV_CONTEXT_SECRET)
            .map(|v| parse_context_secret(&v))
            .transpose()?;
        let jwt_secret = env.get(ENV_JWT_SECRET).map(parse_jwt_secret).transpose()?;
        let bypass_url = env.get(ENV_BYPASS_URL).map(parse_bypass_url).transpose()?;

        // Tenancy off (case 2) or mode disabled: no channel is isolated, and
        // each says which switch turned it off.
        let off = if !enabled.value {
            Some(enabled.source.clone())
        } else if enforcement_mode.value == EnforcementMode::Disabled {
            Some(enforcement_mode.source.clone())
        } else {
            None
        };
        if let Some(source) = off {
            for c in &mut channels {
                c.enabled = Resolved::new(false, source.clone());
            }
        }

        Ok(Self {
            enabled,
            enforcement_mode,
            tenant_column,
            exempt_tables,
            channels,
            log_bypasses,
            alert_violations,
            cache_context,
            context_secret,
            jwt_secret,
            bypass_url,
        })
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use secrecy::ExposeSecret;

    use super::*;

    const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const JWT: &str = "jwt-secret-that-is-long-enough-0123456789";
    const BYPASS: &str = "postgres://bypass:hunter2-pw@db:5432/app";

    fn resolve(env: &[(&str, &str)], file: &FileTenancy) -> Result<TenancyConfig> {
        let map: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TenancyConfig::resolve(&|k| map.get(k).cloned(), file)
    }

    fn file(toml_text: &str) -> FileTenancy {
        toml::from_str(toml_text).unwrap()
    }

    fn err(env: &[(&str, &str)], f: &FileTenancy) -> String {
        format!("{:#}", resolve(env, f).unwrap_err())
    }

    fn ch<'a>(c: &'a TenancyConfig, name: &str) -> &'a ChannelConfig {
        c.channel(name).unwrap()
    }

    fn env_src(name: &str) -> Source {
        Source::Env(name.to_string())
    }

    #[test]
    fn case1_fully_multi_tenant() {
        let f = file(
            r#"
            [app_context.admin]
            tenant_mode = "multi"
            [app_context.mobile]
            tenant_mode = "multi"
            [app_context.site]
            tenant_mode = "multi"
            [app_context.partner]
            tenant_mode = "multi"
            "#,
        );
        let c = resolve(
            &[
                ("TENANCY_ENABLED", "true"),
                ("TENANCY_ENFORCEMENT_MODE", "strict"),
            ],
            &f,
        )
        .unwrap();
        assert!(c.enabled.value);
        assert_eq!(c.enabled.source, env_src("TENANCY_ENABLED"));
        assert_eq!(
            c.enforcement_mode.source,
            env_src("TENANCY_ENFORCEMENT_MODE")
        );
        assert_eq!(c.effective_mode(), EnforcementMode::Strict);
        for name in KNOWN_CHANNELS {
            assert!(c.channel_enabled(name), "{name}");
            assert_eq!(ch(&c, name).enabled.source, Source::AppContext);
            assert_eq!(ch(&c, name).tenant_mode.as_deref(), Some("multi"));
        }
    }

    #[test]
    fn case2_single_tenant_bypasses_everything() {
        let f = file(
            r#"
            enabled = true
            enforcement_mode = "strict"
            [channels]
            mobile = true
            [app_context.admin]
            tenant_mode = "multi"
            [app_context.reseller]
            tenant_mode = "multi"
            "#,
        );
        let c = resolve(
            &[
                ("TENANCY_ENABLED", "false"),
                ("TENANCY_ADMIN_ENABLED", "true"),
            ],
            &f,
        )
        .unwrap();
        assert!(!c.enabled.value);
        assert_eq!(c.enabled.source, env_src("TENANCY_ENABLED"));
        // The mode stays as configured; the mode in force is disabled.
        assert_eq!(c.enforcement_mode.value, EnforcementMode::Strict);
        assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
        assert_eq!(c.channels.len(), 5);
        for cc in &c.channels {
            assert!(!cc.enabled.value, "{}", cc.name);
            assert_eq!(cc.enabled.source, env_src("TENANCY_ENABLED"));
            assert!(!c.channel_enabled(&cc.name));
        }
        assert!(!c.channel_enabled("never-heard-of"));
    }

    #[test]
    fn case3_hybrid() {
        let f = file(
            r#"
            enabled = true
            enforcement_mode = "soft"
            [app_context.admin]
            tenant_mode = "multi"
            [app_context.site]
            tenant_mode = "single"
            "#,
        );
        let c = resolve(&[], &f).unwrap();
        assert_eq!(c.enabled.source, Source::File);
        assert_eq!(c.effective_mode(), EnforcementMode::Soft);
        assert_eq!(c.enforcement_mode.source, Source::File);
        assert!(c.channel_enabled("admin"));
        assert_eq!(ch(&c, "admin").enabled.source, Source::AppContext);
        assert!(!c.channel_enabled("site"));
        assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
        assert_eq!(ch(&c, "site").tenant_mode.as_deref(), Some("single"));
        // No app-context, no override: enabled by default.
        assert!(c.channel_enabled("mobile"));
        assert_eq!(ch(&c, "mobile").enabled.source, Source::Default);
        assert_eq!(ch(&c, "mobile").tenant_mode, None);
        // Unknown channels are isolated while tenancy is on.
        assert!(c.channel_enabled("kiosk"));
    }

    #[test]
    fn channel_overrides_env_then_file_then_app_context() {
        let f = file(
            r#"
            enabled = true
            [channels]
            site = true
            admin = false
            mobile = false
            [app_context.admin]
            tenant_mode = "multi"
            [app_context.site]
            tenant_mode = "single"
            "#,
        );
        let c = resolve(
            &[
                ("TENANCY_MOBILE_ENABLED", "yes"),
                ("TENANCY_PARTNER_ENABLED", "OFF"),
            ],
            &f,
        )
        .unwrap();
        // File override beats the app-context, both ways.
        assert!(c.channel_enabled("site"));
        assert_eq!(ch(&c, "site").enabled.source, Source::File);
        assert!(!c.channel_enabled("admin"));
        assert_eq!(ch(&c, "admin").enabled.source, Source::File);
        // Env beats the file.
        assert!(c.channel_enabled("mobile"));
        assert_eq!(
            ch(&c, "mobile").enabled.source,
            env_src("TENANCY_MOBILE_ENABLED")
        );
        assert!(!c.channel_enabled("partner"));
        assert_eq!(
            ch(&c, "partner").enabled.source,
            env_src("TENANCY_PARTNER_ENABLED")
        );
        // An empty or "null" override inherits.
        let c = resolve(
            &[
                ("TENANCY_ADMIN_ENABLED", ""),
                ("TENANCY_SITE_ENABLED", "null"),
            ],
            &file(
                r#"
                enabled = true
                [app_context.admin]
                tenant_mode = "multi"
                [app_context.site]
                tenant_mode = "single"
                "#,
            ),
        )
        .unwrap();
        assert_eq!(ch(&c, "admin").enabled.source, Source::AppContext);
        assert!(c.channel_enabled("admin"));
        assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
        assert!(!c.channel_enabled("site"));
    }

    #[test]
    fn tenant_mode_from_env_wins_over_file() {
        let f = file("enabled = true\n[app_context.site]\ntenant_mode = \"multi\"\n");
        let c = resolve(&[("TENANCY_SITE_TENANT_MODE", "Single")], &f).unwrap();
        assert_eq!(ch(&c, "site").tenant_mode.as_deref(), Some("single"));
        assert!(!c.channel_enabled("site"));
        assert_eq!(ch(&c, "site").enabled.source, Source::AppContext);
    }

    #[test]
    fn case4_auto_detect_on() {
        let f = file(
            "[app_context.admin]\ntenant_mode = \"multi\"\n[app_context.site]\ntenant_mode = \"single\"\n",
        );
        let c = resolve(&[("TENANCY_ENABLED", "")], &f).unwrap();
        assert!(c.enabled.value);
        assert_eq!(c.enabled.source, Source::AutoDetect);
        assert_eq!(c.effective_mode(), EnforcementMode::Strict);
        assert!(c.channel_enabled("admin"));
        assert!(!c.channel_enabled("site"));
        // Also from the environment's app-context.
        let c = resolve(
            &[("TENANCY_PARTNER_TENANT_MODE", "multi")],
            &FileTenancy::default(),
        )
        .unwrap();
        assert!(c.enabled.value);
        assert_eq!(c.enabled.source, Source::AutoDetect);
        assert!(c.channel_enabled("partner"));
    }

    #[test]
    fn case4_auto_detect_off() {
        let f = file(
            "[app_context.admin]\ntenant_mode = \"single\"\n[app_context.site]\ntenant_mode = \"single\"\n",
        );
        let c = resolve(&[], &f).unwrap();
        assert!(!c.enabled.value);
        assert_eq!(c.enabled.source, Source::AutoDetect);
        assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
        assert!(c.channels.iter().all(|cc| !cc.enabled.value));
        assert!(
            c.channels
                .iter()
                .all(|cc| cc.enabled.source == Source::AutoDetect)
        );
        // Nothing configured at all: off too.
        let c = resolve(&[], &FileTenancy::default()).unwrap();
        assert!(!c.enabled.value);
        assert_eq!(c.enabled.source, Source::AutoDetect);
        assert!(!c.channel_enabled("admin"));
    }

    #[test]
    fn defaults_and_their_sources() {
        let c = resolve(&[("TENANCY_ENABLED", "1")], &FileTenancy::default()).unwrap();
        assert_eq!(c.enforcement_mode.value, EnforcementMode::Strict);
        assert_eq!(c.enforcement_mode.source, Source::Default);
        assert_eq!(c.tenant_column.value, "tenant_id");
        assert_eq!(c.tenant_column.source, Source::Default);
        assert_eq!(
            c.exempt_tables.value,
            ["countries", "states", "tenants", "error_logs"]
        );
        assert_eq!(c.exempt_tables.source, Source::Default);
        assert!(c.is_exempt("public", "error_logs") && c.is_exempt("geo", "states"));
        // Configuring the list replaces the default, as the seed's array does.
        let custom = resolve(
            &[("TENANCY_EXEMPT_TABLES", "plans")],
            &FileTenancy::default(),
        )
        .unwrap();
        assert_eq!(custom.exempt_tables.value, ["plans"]);
        assert!(!custom.is_exempt("public", "countries"));
        for r in [&c.log_bypasses, &c.alert_violations, &c.cache_context] {
            assert!(r.value);
            assert_eq!(r.source, Source::Default);
        }
        assert!(c.context_secret.is_none() && c.jwt_secret.is_none() && c.bypass_url.is_none());
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, KNOWN_CHANNELS);
        assert!(
            c.channels
                .iter()
                .all(|cc| cc.enabled.value && cc.enabled.source == Source::Default)
        );
    }

    #[test]
    fn env_over_file_for_scalars() {
        let f = file(
            r#"
            enabled = false
            enforcement_mode = "strict"
            tenant_column = "company_id"
            exempt_tables = ["countries"]
            [audit]
            log_bypasses = false
            alert_violations = false
            [performance]
            cache_context = false
            "#,
        );
        let c = resolve(&[], &f).unwrap();
        assert_eq!(c.tenant_column.value, "company_id");
        assert_eq!(c.tenant_column.source, Source::File);
        for r in [&c.log_bypasses, &c.alert_violations, &c.cache_context] {
            assert!(!r.value);
            assert_eq!(r.source, Source::File);
        }
        let c = resolve(
            &[
                ("TENANCY_ENABLED", "on"),
                ("TENANCY_ENFORCEMENT_MODE", " Soft "),
                ("TENANCY_TENANT_COLUMN", "org_id"),
                ("TENANCY_EXEMPT_TABLES", "states, public.tenants,,"),
                ("TENANCY_LOG_BYPASSES", "TRUE"),
                ("TENANCY_ALERT_VIOLATIONS", "yes"),
                ("TENANCY_CACHE_CONTEXT", "1"),
            ],
            &f,
        )
        .unwrap();
        assert!(c.enabled.value);
        assert_eq!(c.enforcement_mode.value, EnforcementMode::Soft);
        assert_eq!(c.tenant_column.value, "org_id");
        assert_eq!(c.tenant_column.source, env_src("TENANCY_TENANT_COLUMN"));
        assert_eq!(c.exempt_tables.value, ["states", "public.tenants"]);
        assert_eq!(c.exempt_tables.source, env_src("TENANCY_EXEMPT_TABLES"));
        assert_eq!(c.log_bypasses.source, env_src("TENANCY_LOG_BYPASSES"));
        assert_eq!(
            c.alert_violations.source,
            env_src("TENANCY_ALERT_VIOLATIONS")
        );
        assert_eq!(c.cache_context.source, env_src("TENANCY_CACHE_CONTEXT"));
        assert!(c.log_bypasses.value && c.alert_violations.value && c.cache_context.value);
    }

    #[test]
    fn empty_env_values_are_unset() {
        let f = file("enabled = true\nenforcement_mode = \"soft\"\ntenant_column = \"org_id\"");
        let c = resolve(
            &[
                ("TENANCY_ENABLED", ""),
                ("TENANCY_ENFORCEMENT_MODE", "   "),
                ("TENANCY_TENANT_COLUMN", ""),
                ("TENANCY_EXEMPT_TABLES", ""),
                ("TENANCY_LOG_BYPASSES", ""),
                ("TENANCY_CONTEXT_SECRET", ""),
                ("TENANCY_JWT_SECRET", " "),
                ("TENANCY_BYPASS_URL", ""),
            ],
            &f,
        )
        .unwrap();
        assert_eq!(c.enabled.source, Source::File);
        assert_eq!(c.enforcement_mode.value, EnforcementMode::Soft);
        assert_eq!(c.enforcement_mode.source, Source::File);
        assert_eq!(c.tenant_column.value, "org_id");
        assert_eq!(c.exempt_tables.source, Source::Default);
        assert_eq!(c.log_bypasses.source, Source::Default);
        assert!(c.context_secret.is_none() && c.jwt_secret.is_none() && c.bypass_url.is_none());
    }

    #[test]
    fn mode_disabled_turns_channels_off() {
        let f = file(
            "enabled = true\nenforcement_mode = \"disabled\"\n[app_context.admin]\ntenant_mode = \"multi\"",
        );
        let c = resolve(&[], &f).unwrap();
        assert!(c.enabled.value);
        assert_eq!(c.effective_mode(), EnforcementMode::Disabled);
        assert!(!c.channel_enabled("admin"));
        assert_eq!(ch(&c, "admin").enabled.source, Source::File);
        assert!(!c.channel_enabled("kiosk"));
    }

    #[test]
    fn other_channels_follow_the_known_ones() {
        let f = file(
            r#"
            enabled = true
            [channels]
            zeta = true
            [app_context.reseller-api]
            tenant_mode = "single"
            [app_context.admin]
            tenant_mode = "multi"
            "#,
        );
        let c = resolve(&[("TENANCY_RESELLER_API_ENABLED", "true")], &f).unwrap();
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["admin", "mobile", "site", "partner", "reseller-api", "zeta"]
        );
        assert!(c.channel_enabled("reseller-api"));
        assert_eq!(
            ch(&c, "reseller-api").enabled.source,
            env_src("TENANCY_RESELLER_API_ENABLED")
        );
        assert_eq!(ch(&c, "zeta").enabled.source, Source::File);
        assert!(c.channel_enabled("ADMIN"));
    }

    #[test]
    fn bad_values_are_rejected_with_the_variable_named() {
        let none = FileTenancy::default();
        let e = err(&[("TENANCY_ENFORCEMENT_MODE", "paranoid")], &none);
        assert!(
            e.contains("TENANCY_ENFORCEMENT_MODE") && e.contains("paranoid"),
            "{e}"
        );
        let e = err(&[("TENANCY_ADMIN_ENABLED", "maybe")], &none);
        assert!(
            e.contains("TENANCY_ADMIN_ENABLED") && e.contains("maybe"),
            "{e}"
        );
        let e = err(&[("TENANCY_ENABLED", "perhaps")], &none);
        assert!(
            e.contains("TENANCY_ENABLED") && e.contains("perhaps"),
            "{e}"
        );
        let e = err(&[("TENANCY_CACHE_CONTEXT", "2")], &none);
        assert!(e.contains("TENANCY_CACHE_CONTEXT"), "{e}");
        let e = err(&[("TENANCY_SITE_TENANT_MODE", "shared")], &none);
        assert!(
            e.contains("TENANCY_SITE_TENANT_MODE") && e.contains("shared"),
            "{e}"
        );
        let e = err(&[("TENANCY_TENANT_COLUMN", "Tenant")], &none);
        assert!(e.contains("TENANCY_TENANT_COLUMN"), "{e}");
        let e = err(&[("TENANCY_EXEMPT_TABLES", "countries;drop")], &none);
        assert!(e.contains("TENANCY_EXEMPT_TABLES"), "{e}");

        let e = err(&[], &file("tenant_column = \"drop table\""));
        assert!(
            e.contains("tenant_column") && e.contains("drop table"),
            "{e}"
        );
        let e = err(
            &[],
            &file(&format!("tenant_column = \"{}\"", "a".repeat(64))),
        );
        assert!(e.contains("tenant_column"), "{e}");
        let e = err(&[], &file("enforcement_mode = \"lax\""));
        assert!(e.contains("enforcement_mode") && e.contains("lax"), "{e}");
        let e = err(&[], &file("[app_context.admin]\ntenant_mode = \"many\""));
        assert!(e.contains("[tenancy.app_context.admin] tenant_mode"), "{e}");
        let e = err(&[], &file("exempt_tables = [\"a.b.c\"]"));
        assert!(e.contains("exempt_tables") && e.contains("a.b.c"), "{e}");
        let e = err(&[], &file("[channels]\nAdmin = true"));
        assert!(
            e.contains("[tenancy.channels]") && e.contains("Admin"),
            "{e}"
        );

        assert!(toml::from_str::<FileTenancy>("enabeld = true").is_err());
        assert!(toml::from_str::<FileTenancy>("[audit]\nlog = true").is_err());
        assert!(toml::from_str::<FileTenancy>("[app_context.admin]\nmode = \"multi\"").is_err());
    }

    #[test]
    fn secrets_are_checked_and_never_quoted() {
        let none = FileTenancy::default();
        let e = err(&[("TENANCY_CONTEXT_SECRET", "xyz")], &none);
        assert!(
            e.contains("TENANCY_CONTEXT_SECRET") && e.contains("64"),
            "{e}"
        );
        assert!(!e.contains("xyz"), "{e}");
        let not_hex = "zz".repeat(32);
        let e = err(&[("TENANCY_CONTEXT_SECRET", &not_hex)], &none);
        assert!(
            e.contains("TENANCY_CONTEXT_SECRET") && !e.contains(&not_hex),
            "{e}"
        );
        let e = err(&[("TENANCY_JWT_SECRET", "short-secret")], &none);
        assert!(
            e.contains("TENANCY_JWT_SECRET") && !e.contains("short-secret"),
            "{e}"
        );
        let e = err(&[("TENANCY_BYPASS_URL", "mysql://u:hunter2@h/db")], &none);
        assert!(
            e.contains("TENANCY_BYPASS_URL") && !e.contains("hunter2"),
            "{e}"
        );

        let c = resolve(
            &[
                ("TENANCY_CONTEXT_SECRET", &SECRET_HEX.to_uppercase()),
                ("TENANCY_JWT_SECRET", JWT),
                ("TENANCY_BYPASS_URL", BYPASS),
            ],
            &none,
        )
        .unwrap();
        let key = c.context_secret.as_ref().unwrap().expose_secret();
        assert_eq!(key.len(), 32);
        assert_eq!(key[..4], [0x00, 0x11, 0x22, 0x33]);
        assert_eq!(key[31], 0xff);
        assert_eq!(c.jwt_secret.as_ref().unwrap().expose_secret(), JWT);
        assert_eq!(c.bypass_url.as_ref().unwrap().expose_secret(), BYPASS);
    }

    #[test]
    fn debug_and_serialize_never_show_secrets() {
        let c = resolve(
            &[
                ("TENANCY_CONTEXT_SECRET", SECRET_HEX),
                ("TENANCY_JWT_SECRET", JWT),
                ("TENANCY_BYPASS_URL", BYPASS),
            ],
            &file("enabled = true"),
        )
        .unwrap();
        let debug = format!("{c:?} {c:#?} {:?}", c.clone());
        let json = serde_json::to_string(&c).unwrap();
        for out in [&debug, &json] {
            for secret in [SECRET_HEX, "00112233", JWT, BYPASS, "hunter2"] {
                assert!(!out.contains(secret), "{secret} leaked");
            }
        }
        assert!(debug.contains("REDACTED"));
        // The secret bytes as Debug would print a Vec<u8>.
        assert!(!debug.contains("[0, 17, 34"));
    }

    #[test]
    fn exempt_tables_bare_and_qualified() {
        let c = resolve(
            &[],
            &file("exempt_tables = [\"countries\", \"billing.plans\", \"countries\"]"),
        )
        .unwrap();
        assert_eq!(c.exempt_tables.value, ["countries", "billing.plans"]);
        assert!(c.is_exempt("public", "countries"));
        assert!(c.is_exempt("other", "countries"));
        assert!(c.is_exempt("billing", "plans"));
        assert!(!c.is_exempt("public", "plans"));
        assert!(!c.is_exempt("public", "users"));
        assert!(!c.is_exempt("billing", "countries_x"));
        let c = resolve(
            &[("TENANCY_EXEMPT_TABLES", "public.countries")],
            &FileTenancy::default(),
        )
        .unwrap();
        assert!(c.is_exempt("public", "countries"));
        assert!(!c.is_exempt("archive", "countries"));
    }

    #[test]
    fn source_display_and_serialization() {
        assert_eq!(
            env_src("TENANCY_ENABLED").to_string(),
            "env TENANCY_ENABLED"
        );
        assert_eq!(Source::File.to_string(), "file");
        assert_eq!(Source::AppContext.to_string(), "app-context");
        assert_eq!(Source::AutoDetect.to_string(), "auto-detect");
        assert_eq!(Source::Default.to_string(), "default");
        let r = Resolved::new(true, env_src("TENANCY_ENABLED"));
        assert_eq!(r.to_string(), "true (env TENANCY_ENABLED)");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"value": true, "source": {"env": "TENANCY_ENABLED"}})
        );
        let json =
            serde_json::to_value(Resolved::new(EnforcementMode::Soft, Source::AutoDetect)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"value": "soft", "source": "auto-detect"})
        );
    }

    #[test]
    fn the_documented_example_parses() {
        #[derive(Deserialize)]
        struct Doc {
            tenancy: FileTenancy,
        }
        let doc: Doc = toml::from_str(
            r#"
            [tenancy]
            enabled = true
            enforcement_mode = "soft"
            tenant_column = "tenant_id"
            exempt_tables = ["countries", "states", "tenants", "error_logs"]
            [tenancy.channels]
            admin = true
            [tenancy.app_context.admin]
            tenant_mode = "multi"
            [tenancy.app_context.site]
            tenant_mode = "single"
            [tenancy.audit]
            log_bypasses = true
            alert_violations = true
            [tenancy.performance]
            cache_context = true
            "#,
        )
        .unwrap();
        let c = resolve(&[], &doc.tenancy).unwrap();
        assert_eq!(c.effective_mode(), EnforcementMode::Soft);
        assert!(c.channel_enabled("admin"));
        assert_eq!(ch(&c, "admin").enabled.source, Source::File);
        assert!(!c.channel_enabled("site"));
        assert!(c.is_exempt("public", "error_logs"));
        assert_eq!(c.log_bypasses.source, Source::File);
    }
}
