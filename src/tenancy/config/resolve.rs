//! Resolving a [`TenancyConfig`] from an environment and the `[tenancy]`
//! table, by phase: the channels, the global switch (auto-detected from the
//! channels), the enforcement settings, the audit and performance switches,
//! the secrets; last, tenancy off or mode disabled turns every channel off.
//! The phases run in this order, so the first invalid value is the one
//! reported.
//!
//! Precedence for every value is `values::layer`: environment, then file, then the
//! fallback (app-context, auto-detect or default), recorded as its [`Source`].
//! This module must never read the process environment itself (it is handed
//! one, so tests can inject theirs).

use anyhow::Result;

use super::{
    DEFAULT_EXEMPT_TABLES, DEFAULT_TENANT_COLUMN, ENV_ALERT_VIOLATIONS, ENV_CACHE_CONTEXT,
    ENV_COLUMN, ENV_ENABLED, ENV_EXEMPT, ENV_LOG_BYPASSES, ENV_MODE, EnforcementMode, FileTenancy,
    Resolved, Source, TenancyConfig, channels,
    secrets::Secrets,
    values::{Env, layer, parse_exempt_tables, parse_mode, parse_tenant_column, with_name},
};

impl TenancyConfig {
    /// Same with an injectable environment (tests).
    pub fn resolve(env: &dyn Fn(&str) -> Option<String>, file: &FileTenancy) -> Result<Self> {
        let env = Env(env);

        let mut channels = channels::resolve(&env, file)?;
        let enabled = layer(
            with_name(ENV_ENABLED, env.tristate(ENV_ENABLED)?),
            file.enabled,
            Resolved::new(channels::any_multi(&channels), Source::AutoDetect),
        );
        let enforcement_mode = enforcement_mode(&env, file)?;
        let tenant_column = tenant_column(&env, file)?;
        let exempt_tables = exempt_tables(&env, file)?;
        let log_bypasses = switch(&env, ENV_LOG_BYPASSES, file.audit.log_bypasses)?;
        let alert_violations = switch(&env, ENV_ALERT_VIOLATIONS, file.audit.alert_violations)?;
        let cache_context = switch(&env, ENV_CACHE_CONTEXT, file.performance.cache_context)?;
        let Secrets {
            context_secret,
            jwt_secret,
            bypass_url,
        } = Secrets::read(&env)?;

        channels::switch_off(&mut channels, &enabled, &enforcement_mode);
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
}

fn enforcement_mode(env: &Env<'_>, file: &FileTenancy) -> Result<Resolved<EnforcementMode>> {
    Ok(layer(
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
    ))
}

fn tenant_column(env: &Env<'_>, file: &FileTenancy) -> Result<Resolved<String>> {
    Ok(layer(
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
    ))
}

fn exempt_tables(env: &Env<'_>, file: &FileTenancy) -> Result<Resolved<Vec<String>>> {
    Ok(layer(
        with_name(
            ENV_EXEMPT,
            env.get(ENV_EXEMPT)
                .map(|v| {
                    parse_exempt_tables(ENV_EXEMPT, v.split(',').filter(|s| !s.trim().is_empty()))
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
    ))
}

/// An audit or performance switch: on unless configured off.
fn switch(env: &Env<'_>, name: &str, file: Option<bool>) -> Result<Resolved<bool>> {
    Ok(layer(
        with_name(name, env.bool(name)?),
        file,
        Resolved::new(true, Source::Default),
    ))
}
