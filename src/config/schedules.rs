//! The schedules the scheduler fires: `[[schedules]]` in `landlord.toml`, or
//! the seed's defaults ([`default_schedules`]) when none are configured.
//!
//! This module only holds the specs as written; it must never interpret a
//! cron expression or a time zone (`scheduler::Schedule::parse` checks them
//! when a scheduler starts).

use serde::{Deserialize, Serialize};

/// One schedule as configured (`[[schedules]]` in landlord.toml). Checked by
/// `scheduler::Schedule::parse` when a scheduler starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    /// 5-field cron (a 6th, leading seconds field is accepted for tests).
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// Job kind fanned out per tenant.
    pub kind: String,
    #[serde(default = "empty_args")]
    pub args: serde_json::Value,
    /// Tenant slugs; absent means every active tenant.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Jobs start spread over this many seconds after the fire time.
    #[serde(default)]
    pub spread_seconds: u32,
    /// A firing missed by more than this is recorded as missed, not run.
    #[serde(default = "one_hour")]
    pub starting_deadline_seconds: u32,
    /// Skip a tenant whose previous run of this schedule is still live.
    #[serde(default = "yes")]
    pub skip_overlap: bool,
    /// Only this many of the tenants, picked anew for each firing (restore drills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<u32>,
}

fn utc() -> String {
    "UTC".into()
}
fn empty_args() -> serde_json::Value {
    serde_json::json!({})
}
fn one_hour() -> u32 {
    3600
}
fn yes() -> bool {
    true
}

/// The file's `[[schedules]]`, else the seed's.
pub(super) fn load(file: Option<Vec<ScheduleSpec>>) -> Vec<ScheduleSpec> {
    file.unwrap_or_else(default_schedules)
}

/// The seed's schedule table (Kernel.php): backup daily at 02:00 keeping 7;
/// maintenance (optimize + cleanup) Sundays at 04:00; VACUUM on the 1st at
/// 03:00; cleanup of data older than 365 days daily at 05:00. Like the
/// seed's weekly `tenants:maintenance --cleanup` (no `--days`), the weekly
/// cleanup keeps each retention rule's own days, else 90.
pub fn default_schedules() -> Vec<ScheduleSpec> {
    let spec = |name: &str, cron: &str, args: serde_json::Value| ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        timezone: utc(),
        kind: "maintenance".into(),
        args,
        tenants: None,
        spread_seconds: 1800,
        starting_deadline_seconds: one_hour(),
        skip_overlap: true,
        sample: None,
    };
    vec![
        ScheduleSpec {
            kind: "backup".into(),
            ..spec("daily-backup", "0 2 * * *", serde_json::json!({"keep": 7}))
        },
        spec(
            "weekly-maintenance",
            "0 4 * * 0",
            serde_json::json!({"optimize": true, "cleanup": true}),
        ),
        spec(
            "monthly-vacuum",
            "0 3 1 * *",
            serde_json::json!({"vacuum": true}),
        ),
        spec(
            "daily-cleanup",
            "0 5 * * *",
            serde_json::json!({"cleanup": true, "days": 365}),
        ),
    ]
}
