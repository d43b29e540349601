//! The channels (app contexts: admin, mobile, site, partner, and any other
//! the file names): which there are, each one's app-context `tenant_mode`,
//! and whether it is isolated (`TENANCY_{CH}_ENABLED`, `[tenancy.channels]`,
//! else what its `tenant_mode` implies, else on).
//!
//! This module must never let a channel stay isolated when tenancy is off or
//! the mode is `disabled` ([`switch_off`] turns every one off, naming the
//! switch), nor accept a channel key that is not a channel name.

use std::collections::BTreeSet;

use anyhow::{Result, bail};

use super::{
    ChannelConfig, EnforcementMode, FileTenancy, KNOWN_CHANNELS, Resolved, Source,
    TENANT_MODE_MULTI,
    values::{Env, layer, parse_tenant_mode, with_name},
};

/// The seed's four channels, then the file's others by name, each resolved.
pub(super) fn resolve(env: &Env<'_>, file: &FileTenancy) -> Result<Vec<ChannelConfig>> {
    check_keys(file)?;
    names(file).map(|name| channel(env, file, name)).collect()
}

/// Whether some channel's app-context says its rows belong to tenants (what
/// an unset `enabled` is auto-detected from).
pub(super) fn any_multi(channels: &[ChannelConfig]) -> bool {
    channels
        .iter()
        .any(|c| c.tenant_mode.as_deref() == Some(TENANT_MODE_MULTI))
}

/// Tenancy off (case 2) or mode disabled: no channel is isolated, and each
/// says which switch turned it off.
pub(super) fn switch_off(
    channels: &mut [ChannelConfig],
    enabled: &Resolved<bool>,
    mode: &Resolved<EnforcementMode>,
) {
    let off = if !enabled.value {
        Some(enabled.source.clone())
    } else if mode.value == EnforcementMode::Disabled {
        Some(mode.source.clone())
    } else {
        None
    };
    if let Some(source) = off {
        for c in channels {
            c.enabled = Resolved::new(false, source.clone());
        }
    }
}

/// Every key of `[tenancy.channels]` and `[tenancy.app_context]` is a channel name.
fn check_keys(file: &FileTenancy) -> Result<()> {
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
    Ok(())
}

/// The seed's channels in their order, then the file's other channels by name.
fn names(file: &FileTenancy) -> impl Iterator<Item = &str> {
    let extra: BTreeSet<&str> = file
        .channels
        .keys()
        .chain(file.app_context.keys())
        .map(String::as_str)
        .filter(|k| !KNOWN_CHANNELS.contains(k))
        .collect();
    KNOWN_CHANNELS.iter().copied().chain(extra)
}

/// One channel: its `tenant_mode`, then its switch over what the mode implies.
fn channel(env: &Env<'_>, file: &FileTenancy, name: &str) -> Result<ChannelConfig> {
    let tenant_mode = tenant_mode(env, file, name)?;
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
    Ok(ChannelConfig {
        name: name.to_string(),
        enabled,
        tenant_mode,
    })
}

/// `TENANCY_{CH}_TENANT_MODE`, else the file's `[tenancy.app_context.{ch}]`.
fn tenant_mode(env: &Env<'_>, file: &FileTenancy, name: &str) -> Result<Option<String>> {
    let mode_var = channel_var(name, "TENANT_MODE");
    Ok(match env.get(&mode_var) {
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
    })
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
