//! Per-tenant maintenance: how many heavy jobs (VACUUM, REINDEX) run at once
//! per database server (`LANDLORD_HEAVY_PER_SERVER`) and the retention rules
//! `--cleanup` applies (`LANDLORD_CLEANUP_RULES`, `table:column[:days],…`).
//!
//! This module must never accept a cleanup rule whose table or column is not
//! a plain lowercase SQL name (as PostgreSQL stores an unquoted name).

use anyhow::{Result, bail};

use super::env::{env, env_parse};

/// Per-tenant maintenance.
#[derive(Debug, Clone)]
pub struct MaintenanceSettings {
    /// Heavy jobs (VACUUM, REINDEX) at once per database server, fleet-wide.
    pub heavy_per_server: u32,
    /// What `--cleanup` deletes.
    pub cleanup_rules: Vec<CleanupRule>,
}

/// A retention rule: rows of `table` whose `column` is older than `days`
/// (or the job's `--days`) are deleted by `--cleanup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupRule {
    pub table: String,
    pub column: String,
    pub days: Option<u32>,
}

impl MaintenanceSettings {
    /// The file's top-level `heavy_per_server` and `cleanup_rules`, under the environment.
    pub(super) fn load(
        heavy_per_server: Option<u32>,
        cleanup_rules: Option<String>,
    ) -> Result<Self> {
        let heavy_per_server = env_parse("LANDLORD_HEAVY_PER_SERVER")?
            .or(heavy_per_server)
            .unwrap_or(2);
        if !(1..=64).contains(&heavy_per_server) {
            bail!("LANDLORD_HEAVY_PER_SERVER must be between 1 and 64, got {heavy_per_server}");
        }
        Ok(Self {
            heavy_per_server,
            cleanup_rules: parse_cleanup_rules(
                &env("LANDLORD_CLEANUP_RULES")
                    .or(cleanup_rules)
                    .unwrap_or_else(|| "activity_log:created_at".to_string()),
            )?,
        })
    }
}

/// Parses `table:column[:days],…`.
pub fn parse_cleanup_rules(raw: &str) -> Result<Vec<CleanupRule>> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').collect();
        let (table, column, days) = match parts.as_slice() {
            [t, c] => (*t, *c, None),
            [t, c, d] => (
                *t,
                *c,
                Some(
                    d.parse::<u32>()
                        .map_err(|e| anyhow::anyhow!("cleanup rule {item:?}: days: {e}"))?,
                ),
            ),
            _ => bail!("cleanup rule {item:?} is not table:column[:days]"),
        };
        for name in [table, column] {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                bail!("cleanup rule {item:?}: {name:?} is not a plain lowercase SQL name");
            }
        }
        out.push(CleanupRule {
            table: table.to_string(),
            column: column.to_string(),
            days,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_rules() {
        assert_eq!(
            parse_cleanup_rules("activity_log:created_at, sessions:seen_at:30").expect("valid"),
            vec![
                CleanupRule {
                    table: "activity_log".into(),
                    column: "created_at".into(),
                    days: None
                },
                CleanupRule {
                    table: "sessions".into(),
                    column: "seen_at".into(),
                    days: Some(30)
                },
            ]
        );
        for bad in ["users", "a:b:c:d", "Users:id", "x\";drop:y", "t:c:-1"] {
            assert!(parse_cleanup_rules(bad).is_err(), "{bad:?}");
        }
    }
}
