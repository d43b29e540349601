//! `landlord config show`: the effective settings as TOML-ish `key = value`
//! lines, in a fixed order (the file's own keys, then `backup.*`,
//! `tenancy.*`, `servers.*`).
//!
//! This module must never print a secret: every URL goes through
//! [`SecretUrl::masked`](super::SecretUrl::masked), the backup location
//! through its description, and of the age recipients only whether there are any.

use super::{MaintenanceSettings, ObservabilitySettings, Settings, WorkerSettings};

/// The output, one `key = value` line at a time.
struct Lines(String);

impl Lines {
    fn line(&mut self, k: &str, v: String) {
        self.0.push_str(&format!("{k} = {v}\n"));
    }
}

impl Settings {
    /// The effective configuration as TOML-ish text, secrets masked.
    pub fn show(&self) -> String {
        let mut out = Lines(String::new());
        self.show_connections(&mut out);
        show_worker(&mut out, &self.worker);
        show_observability(&mut out, &self.observability);
        self.show_jobs(&mut out);
        self.show_backup(&mut out);
        self.show_tenancy(&mut out);
        self.show_servers(&mut out);
        // `landlord api`'s limits (environment only).
        for (k, v) in crate::api::ApiLimits::show_lines() {
            out.line(k, v);
        }
        out.0
    }

    /// The settings file, the catalog and the broker.
    fn show_connections(&self, out: &mut Lines) {
        out.line(
            "settings_file",
            format!(
                "{:?}",
                self.file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into())
            ),
        );
        out.line("database_url", format!("{:?}", self.catalog.url.masked()));
        out.line("amqp_url", format!("{:?}", self.broker.masked()));
        out.line("prefix", format!("{:?}", self.broker.prefix));
        out.line("delivery_limit", self.broker.delivery_limit.to_string());
    }

    /// Provisioning, mail and maintenance: the file's remaining top-level keys.
    fn show_jobs(&self, out: &mut Lines) {
        out.line(
            "tenant_migrations",
            format!(
                "{:?}",
                self.provisioning
                    .tenant_migrations
                    .as_deref()
                    .unwrap_or("(built in)")
            ),
        );
        out.line(
            "template_strategy",
            format!("{:?}", self.provisioning.template.as_str()),
        );
        out.line(
            "smtp_url",
            format!(
                "{:?}",
                self.mail
                    .smtp_url
                    .as_ref()
                    .map(|u| u.masked())
                    .unwrap_or_else(|| "(none)".into())
            ),
        );
        out.line("mail_from", format!("{:?}", self.mail.from));
        out.line(
            "secrets_key_file",
            format!(
                "{:?}",
                self.secrets
                    .key_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into())
            ),
        );
        show_maintenance(out, &self.maintenance);
        out.line(
            "delete_grace_days",
            self.provisioning.delete_grace_days.to_string(),
        );
    }

    fn show_backup(&self, out: &mut Lines) {
        let b = &self.backup;
        out.line("backup.url", format!("{:?}", b.location.describe()));
        out.line("backup.codec", format!("{:?}", b.codec.as_str()));
        out.line("backup.level", b.level.to_string());
        out.line(
            "backup.encrypted",
            (!b.age_recipients.is_empty()).to_string(),
        );
        out.line("backup.part_size_mib", (b.part_size >> 20).to_string());
        out.line("backup.retention", format!("{:?}", b.retention.to_string()));
        out.line(
            "backup.keep_pre_restore_hours",
            (b.keep_pre_restore.as_secs() / 3600).to_string(),
        );
        out.line("backup.timeout_seconds", b.timeout.as_secs().to_string());
        out.line("backup.s3_path_style", b.s3.path_style.to_string());
    }

    fn show_tenancy(&self, out: &mut Lines) {
        let t = &self.tenancy;
        out.line(
            "tenancy.enabled",
            format!("{} # {}", t.enabled.value, t.enabled.source),
        );
        out.line(
            "tenancy.enforcement_mode",
            format!(
                "{:?} # effective {:?}",
                t.enforcement_mode.value.as_str(),
                t.effective_mode().as_str()
            ),
        );
        out.line(
            "tenancy.tenant_column",
            format!("{:?}", t.tenant_column.value),
        );
    }

    fn show_servers(&self, out: &mut Lines) {
        for (name, url) in &self.servers {
            out.line(
                &format!("servers.{name}.weight"),
                self.server_weights
                    .get(name)
                    .copied()
                    .unwrap_or(1)
                    .to_string(),
            );
            out.line(
                &format!("servers.{name}.url"),
                format!("{:?}", url.masked()),
            );
        }
    }
}

fn show_worker(out: &mut Lines, w: &WorkerSettings) {
    out.line("worker.concurrency", w.concurrency.to_string());
    out.line("worker.queues", format!("{:?}", w.queues));
    out.line("worker.lease_seconds", w.lease.as_secs().to_string());
    out.line(
        "worker.shutdown_grace_seconds",
        w.shutdown_grace.as_secs().to_string(),
    );
    out.line(
        "worker.job_timeout_seconds",
        w.job_timeout.as_secs().to_string(),
    );
    out.line("worker.retry_base_ms", w.retry_base.as_millis().to_string());
    out.line("worker.retry_max_ms", w.retry_max.as_millis().to_string());
    out.line("worker.busy_delay_ms", w.busy_delay.as_millis().to_string());
    out.line("worker.poll_max_ms", w.poll_max.as_millis().to_string());
    out.line(
        "worker.stale_after_seconds",
        w.stale_after.as_secs().to_string(),
    );
    out.line("worker.foreign_kinds", format!("{:?}", w.foreign_kinds));
}

fn show_observability(out: &mut Lines, o: &ObservabilitySettings) {
    out.line(
        "observability.listen",
        format!("{:?}", o.listen.as_deref().unwrap_or("off")),
    );
    out.line(
        "observability.log_format",
        format!("{:?}", o.log_format).to_lowercase(),
    );
    out.line("observability.log", format!("{:?}", o.log_filter));
    match &o.traces {
        None => out.line("observability.traces", "\"off\"".to_string()),
        Some(t) => {
            // Only scheme, host, port and path: a query or user info may hold a key.
            let shown = url::Url::parse(&t.endpoint)
                .map(|u| {
                    format!(
                        "{}://{}{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.port().map(|p| format!(":{p}")).unwrap_or_default(),
                        u.path()
                    )
                })
                .unwrap_or_default();
            out.line(
                "observability.traces",
                format!(
                    "{:?}",
                    format!("{shown} ({:?}, service {})", t.protocol, t.service_name)
                ),
            );
        }
    }
}

fn show_maintenance(out: &mut Lines, m: &MaintenanceSettings) {
    out.line("heavy_per_server", m.heavy_per_server.to_string());
    out.line(
        "cleanup_rules",
        format!(
            "{:?}",
            m.cleanup_rules
                .iter()
                .map(|r| match r.days {
                    Some(d) => format!("{}:{}:{d}", r.table, r.column),
                    None => format!("{}:{}", r.table, r.column),
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::super::source::FileSettings;
    use super::*;

    /// The keys, in the order `config show` has always printed them (the
    /// `servers.*` lines, which depend on the environment, left out).
    #[test]
    fn keys_keep_their_order() {
        let settings = Settings::from_parts(FileSettings::default(), None).expect("settings");
        let shown = settings.show();
        let keys: Vec<&str> = shown
            .lines()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
            .filter(|k| !k.starts_with("servers."))
            .collect();
        assert_eq!(
            keys,
            [
                "settings_file",
                "database_url",
                "amqp_url",
                "prefix",
                "delivery_limit",
                "worker.concurrency",
                "worker.queues",
                "worker.lease_seconds",
                "worker.shutdown_grace_seconds",
                "worker.job_timeout_seconds",
                "worker.retry_base_ms",
                "worker.retry_max_ms",
                "worker.busy_delay_ms",
                "worker.poll_max_ms",
                "worker.stale_after_seconds",
                "worker.foreign_kinds",
                "observability.listen",
                "observability.log_format",
                "observability.log",
                "observability.traces",
                "tenant_migrations",
                "template_strategy",
                "smtp_url",
                "mail_from",
                "secrets_key_file",
                "heavy_per_server",
                "cleanup_rules",
                "delete_grace_days",
                "backup.url",
                "backup.codec",
                "backup.level",
                "backup.encrypted",
                "backup.part_size_mib",
                "backup.retention",
                "backup.keep_pre_restore_hours",
                "backup.timeout_seconds",
                "backup.s3_path_style",
                "tenancy.enabled",
                "tenancy.enforcement_mode",
                "tenancy.tenant_column",
                "api.rate_per_minute",
                "api.max_live_jobs_per_tenant",
            ]
        );
        assert!(shown.contains("servers.default.url = "), "{shown}");
    }
}
