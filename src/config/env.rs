//! Reading `LANDLORD_*` variables: [`env`] (unset, blank or not UTF-8 is
//! unset) and [`env_parse`] (trimmed, parsed, the variable named in the error).
//!
//! Every concern's module reads its variables through these two, so blank
//! values mean the same everywhere. This module must never default or
//! validate a value, and never import a concern's module.

use std::fmt;

use anyhow::Result;

/// An environment variable; unset, blank or not UTF-8 counts as unset.
pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An environment variable parsed as `T` (trimmed); unset or blank is `None`.
pub(super) fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: fmt::Display,
{
    match env(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
    }
}
