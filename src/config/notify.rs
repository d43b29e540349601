//! Operator notifications (`LANDLORD_NOTIFY_*`, environment only): who is
//! told, over which channel, about which events, and how often at most.
//!
//! - `LANDLORD_NOTIFY_MAIL_TO`: addresses, comma-separated (sent through
//!   `LANDLORD_SMTP_URL`);
//! - `LANDLORD_NOTIFY_WEBHOOK_URL`: a Slack/Teams-style incoming webhook
//!   (a JSON POST with `text`); a [`SecretUrl`], since such URLs carry a token;
//! - `LANDLORD_NOTIFY_EVENTS`: `event[:channel+channel]`, comma-separated, of
//!   `backup_failed`, `backups_stale`, `job_dead`, `restore_drill_failed`;
//!   channels `mail`, `webhook` (default: every event on every channel set);
//! - `LANDLORD_NOTIFY_EVERY_SECONDS` [3600]: at most one notice per event and
//!   tenant in this period; the ones held back are counted in the next.
//!
//! This module owns these values and their messages; it must never send
//! anything nor print the webhook URL unmasked.

use std::time::Duration;

use anyhow::{Result, bail};

use super::{
    SecretUrl,
    env::{env, env_parse},
};

crate::text_enum::text_enum! {
    /// What an operator can be told about (also `notifications.event`).
    pub enum NotifyEvent("notification event") {
        BackupFailed = "backup_failed",
        BackupsStale = "backups_stale",
        JobDead = "job_dead",
        RestoreDrillFailed = "restore_drill_failed",
    }
}

/// Where one event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub mail: bool,
    pub webhook: bool,
}

/// Operator notifications.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub mail_to: Vec<String>,
    pub webhook: Option<SecretUrl>,
    /// Each enabled event with its channels.
    pub events: Vec<(NotifyEvent, Channels)>,
    pub every: Duration,
}

impl NotifySettings {
    pub(super) fn load() -> Result<Self> {
        let mail_to: Vec<String> = env("LANDLORD_NOTIFY_MAIL_TO")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        for a in &mail_to {
            if a.parse::<lettre::Address>().is_err() {
                bail!("LANDLORD_NOTIFY_MAIL_TO: {a:?} is not a mail address");
            }
        }
        let webhook = env("LANDLORD_NOTIFY_WEBHOOK_URL")
            .filter(|v| !v.is_empty())
            .map(SecretUrl::new);
        if let Some(w) = &webhook {
            match url::Url::parse(w.expose()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => bail!(
                    "LANDLORD_NOTIFY_WEBHOOK_URL must be an http:// or https:// URL, got {}",
                    w.masked()
                ),
            }
        }
        let every =
            Duration::from_secs(env_parse("LANDLORD_NOTIFY_EVERY_SECONDS")?.unwrap_or(3600));
        let available = Channels {
            mail: !mail_to.is_empty(),
            webhook: webhook.is_some(),
        };
        let events = parse_events(env("LANDLORD_NOTIFY_EVENTS").as_deref(), available)?;
        Ok(Self {
            mail_to,
            webhook,
            events,
            every,
        })
    }

    /// The channels `event` goes to, if any.
    pub fn channels(&self, event: NotifyEvent) -> Option<Channels> {
        self.events
            .iter()
            .find(|(e, _)| *e == event)
            .map(|(_, c)| *c)
            .filter(|c| c.mail || c.webhook)
    }

    /// Whether anything is configured at all.
    pub fn enabled(&self) -> bool {
        self.events.iter().any(|(_, c)| c.mail || c.webhook)
    }
}

/// `event[:channel+channel],…` against the channels that are configured.
fn parse_events(raw: Option<&str>, available: Channels) -> Result<Vec<(NotifyEvent, Channels)>> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(NotifyEvent::ALL.iter().map(|e| (*e, available)).collect());
    };
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, chans) = item.split_once(':').unwrap_or((item, ""));
        let event = NotifyEvent::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| NotifyEvent::ALL[i])
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "LANDLORD_NOTIFY_EVENTS: unknown event {name:?}; known: {}",
                    NotifyEvent::NAMES.join(", ")
                )
            })?;
        let channels = if chans.is_empty() {
            available
        } else {
            let mut c = Channels {
                mail: false,
                webhook: false,
            };
            for ch in chans.split('+') {
                match ch {
                    "mail" if available.mail => c.mail = true,
                    "webhook" if available.webhook => c.webhook = true,
                    "mail" => bail!(
                        "LANDLORD_NOTIFY_EVENTS: {name} asks for mail but LANDLORD_NOTIFY_MAIL_TO is not set"
                    ),
                    "webhook" => bail!(
                        "LANDLORD_NOTIFY_EVENTS: {name} asks for webhook but LANDLORD_NOTIFY_WEBHOOK_URL is not set"
                    ),
                    other => bail!(
                        "LANDLORD_NOTIFY_EVENTS: unknown channel {other:?} for {name}; channels: mail, webhook"
                    ),
                }
            }
            c
        };
        out.push((event, channels));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Channels = Channels {
        mail: true,
        webhook: true,
    };

    #[test]
    fn events_default_to_every_configured_channel() {
        let all = parse_events(None, BOTH).unwrap();
        assert_eq!(all.len(), 4);
        let some = parse_events(Some("backup_failed:mail, job_dead"), BOTH).unwrap();
        assert_eq!(
            some,
            vec![
                (
                    NotifyEvent::BackupFailed,
                    Channels {
                        mail: true,
                        webhook: false
                    }
                ),
                (NotifyEvent::JobDead, BOTH),
            ]
        );
    }

    #[test]
    fn unknown_events_and_missing_channels_are_refused() {
        let e = parse_events(Some("backup_fail"), BOTH)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown event") && e.contains("backup_failed"),
            "{e}"
        );
        let only_mail = Channels {
            mail: true,
            webhook: false,
        };
        let e = parse_events(Some("job_dead:webhook"), only_mail)
            .unwrap_err()
            .to_string();
        assert!(e.contains("LANDLORD_NOTIFY_WEBHOOK_URL is not set"), "{e}");
        let e = parse_events(Some("job_dead:sms"), BOTH)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown channel"), "{e}");
    }
}
