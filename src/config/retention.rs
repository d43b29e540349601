//! The retention policy language of `LANDLORD_BACKUP_RETENTION`, the
//! `[backup] retention` setting and the `--retention` flags of `landlord
//! backup` and `landlord backups prune`: the [`Policy`] type, its parser and
//! its canonical text form.
//!
//! It lives in the configuration layer because backup settings hold a
//! policy; it must never decide which backups to delete (that is
//! `crate::backup::retention`, a pure function of policy, time and backups)
//! and must never touch storage, the database or the clock.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    /// Keep the newest N (the seed's --keep).
    KeepLast(u32),
    /// Grandfather-father-son: every backup for `all_days` days, then the newest backup of
    /// each of the `daily` most recent days, `weekly` most recent ISO weeks, `monthly` months, `yearly` years.
    Gfs {
        all_days: u32,
        daily: u32,
        weekly: u32,
        monthly: u32,
        yearly: u32,
    },
}

const GFS_KEYS: [&str; 5] = ["days", "daily", "weekly", "monthly", "yearly"];

/// Parses "5", "keep:5", "keep-last:5", or "gfs:days=7,daily=14,weekly=8,monthly=12,yearly=3"
/// (any non-empty subset of the gfs keys; missing = 0). Errors are clear sentences naming the bad part.
pub fn parse(raw: &str) -> Result<Policy, String> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("gfs:") {
        return parse_gfs(rest);
    }
    let count = raw
        .strip_prefix("keep-last:")
        .or_else(|| raw.strip_prefix("keep:"))
        .unwrap_or(raw)
        .trim();
    // Digits only, so "+5" is rejected; parse() also rejects "" and overflow.
    if count.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = count.parse()
    {
        return Ok(Policy::KeepLast(n));
    }
    Err(format!(
        "invalid retention policy {raw:?}: expected a backup count like \"5\" or \"keep-last:5\", \
         or \"gfs:days=7,daily=14,weekly=8,monthly=12,yearly=3\" (bad part: {count:?})"
    ))
}

fn parse_gfs(rest: &str) -> Result<Policy, String> {
    if rest.trim().is_empty() {
        return Err("gfs policy has no keys; expected e.g. \"gfs:days=7,daily=14\".".into());
    }
    let mut values = [None::<u32>; 5];
    for part in rest.split(',').map(str::trim) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("gfs policy part {part:?} is not of the form key=number."))?;
        let (key, value) = (key.trim(), value.trim());
        let slot = GFS_KEYS.iter().position(|k| *k == key).ok_or_else(|| {
            format!(
                "unknown gfs key {key:?}; expected one of {}.",
                GFS_KEYS.join(", ")
            )
        })?;
        if values[slot].is_some() {
            return Err(format!("gfs key {key:?} is given more than once."));
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "gfs key {key:?} has value {value:?}, which is not a non-negative integer."
            ));
        }
        let n = value
            .parse()
            .map_err(|_| format!("gfs key {key:?} has value {value:?}, which is too large."))?;
        values[slot] = Some(n);
    }
    let [all_days, daily, weekly, monthly, yearly] = values.map(Option::unwrap_or_default);
    Ok(Policy::Gfs {
        all_days,
        daily,
        weekly,
        monthly,
        yearly,
    })
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::KeepLast(n) => write!(f, "keep-last:{n}"),
            Policy::Gfs {
                all_days,
                daily,
                weekly,
                monthly,
                yearly,
            } => write!(
                f,
                "gfs:days={all_days},daily={daily},weekly={weekly},monthly={monthly},yearly={yearly}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        assert_eq!(parse("5"), Ok(Policy::KeepLast(5)));
        assert_eq!(parse("keep:5"), Ok(Policy::KeepLast(5)));
        assert_eq!(parse(" keep-last:0 "), Ok(Policy::KeepLast(0)));
        assert_eq!(
            parse("gfs:weekly=8, days=7"),
            Ok(Policy::Gfs {
                all_days: 7,
                daily: 0,
                weekly: 8,
                monthly: 0,
                yearly: 0
            })
        );
        for p in [
            Policy::KeepLast(0),
            Policy::KeepLast(42),
            Policy::Gfs {
                all_days: 7,
                daily: 14,
                weekly: 8,
                monthly: 12,
                yearly: 3,
            },
            Policy::Gfs {
                all_days: 0,
                daily: 0,
                weekly: 0,
                monthly: 0,
                yearly: 0,
            },
        ] {
            assert_eq!(parse(&p.to_string()), Ok(p));
        }
        assert_eq!(
            Policy::Gfs {
                all_days: 7,
                daily: 14,
                weekly: 8,
                monthly: 12,
                yearly: 3
            }
            .to_string(),
            "gfs:days=7,daily=14,weekly=8,monthly=12,yearly=3"
        );
    }

    #[test]
    fn parse_errors_name_the_bad_part() {
        for (raw, needle) in [
            ("gfs:daily=x", "\"x\""),
            ("keep:-1", "\"-1\""),
            ("bogus", "\"bogus\""),
            ("gfs:hourly=3", "unknown gfs key \"hourly\""),
            ("gfs:daily", "\"daily\""),
            ("gfs:daily=1,daily=2", "more than once"),
            ("gfs:", "no keys"),
            ("keep:99999999999", "\"99999999999\""),
            ("", "invalid retention policy"),
        ] {
            let err = parse(raw).unwrap_err();
            assert!(err.contains(needle), "{raw:?} gave {err:?}");
        }
    }
}
