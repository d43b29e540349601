//! A schedule checked and ready: its cron pattern parsed, its time zone and
//! job kind known, its arguments valid for that kind.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds},
};

use crate::{config::ScheduleSpec, runtime::Registry};

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub spec: ScheduleSpec,
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Checks one configured schedule; the error names it.
    pub fn parse(spec: &ScheduleSpec, registry: &Registry) -> Result<Self, String> {
        let name = &spec.name;
        let named = |what: String| format!("schedule {name:?}: {what}");
        if name.is_empty()
            || name.len() > 63
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(named(
                "the name must be 1-63 of a-z, 0-9, '-' and '_'".into(),
            ));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(&spec.cron).map_err(|e| {
            named(format!(
                "bad cron expression {:?}: {e}",
                crate::message::truncate(&spec.cron)
            ))
        })?;
        let tz: Tz = spec.timezone.parse().map_err(|_| {
            named(format!(
                "unknown time zone {:?}",
                crate::message::truncate(&spec.timezone)
            ))
        })?;
        let kind = registry.get(&spec.kind).ok_or_else(|| {
            named(format!(
                "unknown job kind {:?}",
                crate::message::truncate(&spec.kind)
            ))
        })?;
        if !kind.per_tenant {
            return Err(named(format!("job kind {} is not per tenant", kind.kind)));
        }
        kind.validate(&spec.args).map_err(named)?;
        if let Some(list) = &spec.tenants {
            for slug in list {
                crate::ident::validate_slug(slug).map_err(|e| {
                    named(format!("tenant {:?}: {e}", crate::message::truncate(slug)))
                })?;
            }
        }
        Ok(Self {
            spec: spec.clone(),
            cron,
            tz,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The first fire time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The next fire time in the schedule's own time zone, for display.
    pub fn next_local(&self, t: DateTime<Utc>) -> Option<String> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.to_rfc3339())
    }
}

/// Checks every schedule; all errors, one per line.
pub fn parse_all(specs: &[ScheduleSpec], registry: &Registry) -> Result<Vec<Schedule>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        if out.iter().any(|s: &Schedule| s.name() == spec.name) {
            errors.push(format!("schedule {:?} is defined twice", spec.name));
            continue;
        }
        match Schedule::parse(spec, registry) {
            Ok(s) => out.push(s),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}
