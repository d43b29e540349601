//! What one configured value must look like, and the error when it does not:
//! switches, the enforcement mode, a channel's `tenant_mode`, the tenant
//! column and the exempt tables. Each parser is told where the value came
//! from (`what`: a variable or a file key) and names it in its message.
//!
//! The environment is read through [`Env`]: blank values count as unset, and
//! values are trimmed. Nothing here decides precedence (see `resolve`).

use anyhow::{Result, bail};

use super::{EnforcementMode, Resolved, Source, TENANT_MODE_MULTI, TENANT_MODE_SINGLE};

/// The environment, with blank values counted as unset and values trimmed.
pub(super) struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        self.get(name).map(|v| parse_bool(name, &v)).transpose()
    }

    /// A true/false/null switch: "null" (as in a Laravel `.env`) is unset.
    pub fn tristate(&self, name: &str) -> Result<Option<bool>> {
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

pub(super) fn parse_mode(what: &str, raw: &str) -> Result<EnforcementMode> {
    EnforcementMode::parse(&raw.trim().to_ascii_lowercase())
        .map_err(|e| anyhow::anyhow!("{what} is not valid: {e}."))
}

pub(super) fn parse_tenant_mode(what: &str, raw: &str) -> Result<String> {
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

pub(super) fn parse_tenant_column(what: &str, raw: &str) -> Result<String> {
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

pub(super) fn parse_exempt_tables<'a>(
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

/// The first of env, file, then `fallback`.
pub(super) fn layer<T>(
    env: Option<(T, &str)>,
    file: Option<T>,
    fallback: Resolved<T>,
) -> Resolved<T> {
    match (env, file) {
        (Some((v, name)), _) => Resolved::new(v, Source::Env(name.to_string())),
        (None, Some(v)) => Resolved::new(v, Source::File),
        (None, None) => fallback,
    }
}

pub(super) fn with_name<T>(name: &str, v: Option<T>) -> Option<(T, &str)> {
    v.map(|v| (v, name))
}
