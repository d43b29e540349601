//! Typed settings, one struct per concern, read from an optional
//! `landlord.toml` and then from `LANDLORD_*` environment variables (env wins).
//!
//! Secrets (passwords inside URLs) are wrapped in [`SecretUrl`]; they never
//! appear in `Debug`, `Display` or `landlord config show` output.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// A connection URL that may carry a password. Printing it masks the password.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(SecretString::from(raw.into()))
    }

    /// The real URL, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "<unparseable url>".to_string(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// The landlord catalog database.
#[derive(Debug, Clone)]
pub struct CatalogSettings {
    pub url: SecretUrl,
    pub max_connections: u32,
}

/// RabbitMQ and the names landlord declares on it.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub url: SecretUrl,
    /// Prefix of every exchange and queue name; isolates installations and test runs.
    pub prefix: String,
    /// `x-delivery-limit` of the work queues: deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
}

/// How workers run jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub queues: Vec<String>,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How long in-flight jobs may run after SIGTERM before they are handed back.
    pub shutdown_grace: Duration,
    /// Default per-job timeout (a job kind may choose its own).
    pub job_timeout: Duration,
    /// How often the relay looks for unpublished outbox rows.
    pub relay_interval: Duration,
    /// How often the reaper looks for expired leases and stale queued jobs.
    pub reap_interval: Duration,
    /// A queued job whose message has not been seen for this long is published again.
    pub stale_after: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// Upper bound of a retry delay.
    pub retry_max: Duration,
    /// Delay before trying again a job whose tenant is busy.
    pub busy_delay: Duration,
    /// Longest pause between polls of an idle queue (the pickup latency bound).
    pub poll_max: Duration,
}

/// Logs and metrics.
#[derive(Debug, Clone)]
pub struct ObservabilitySettings {
    /// Address of the `/metrics`, `/healthz`, `/readyz` listener; `None` disables it.
    pub listen: Option<String>,
    pub log_format: LogFormat,
    pub log_filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How new tenant databases are made.
#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    /// Directory of tenant migrations; `None` uses the built-in `migrations/tenant/`.
    pub tenant_migrations: Option<String>,
    /// `CREATE DATABASE … TEMPLATE … STRATEGY`, or no template at all.
    pub template: TemplateStrategy,
    /// Days between `tenants delete` and the database being dropped.
    pub delete_grace_days: u64,
}

/// How a tenant database is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStrategy {
    /// Clone the template, WAL-logged block by block (PostgreSQL 15 default; fast for small databases).
    WalLog,
    /// Clone the template with a checkpoint and file copy (fast for large templates).
    FileCopy,
    /// No template: create an empty database and run every migration.
    None,
}

impl TemplateStrategy {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::WalLog => "wal_log",
            Self::FileCopy => "file_copy",
            Self::None => "none",
        }
    }
}

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

/// Outgoing mail.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp://host:port`; `None` means mail jobs fail with a clear error.
    pub smtp_url: Option<SecretUrl>,
    pub from: String,
}

/// All settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub catalog: CatalogSettings,
    pub broker: BrokerSettings,
    pub worker: WorkerSettings,
    pub observability: ObservabilitySettings,
    pub provisioning: ProvisioningSettings,
    pub mail: MailSettings,
    pub maintenance: MaintenanceSettings,
    /// Backups and restores.
    pub backup: crate::backup::BackupSettings,
    /// Row-level tenancy for shared databases (the seed's TENANCY_* model).
    pub tenancy: crate::tenancy::config::TenancyConfig,
    /// Schedules the scheduler fires (the seed's defaults unless configured).
    pub schedules: Vec<ScheduleSpec>,
    /// Tenant database servers by name. `default` is always present.
    pub servers: BTreeMap<String, SecretUrl>,
    /// Placement weight per server (default 1; 0 = never place new tenants there).
    pub server_weights: BTreeMap<String, u32>,
    /// Where the settings file came from, if one was read.
    pub file: Option<PathBuf>,
}

/// The shape of `landlord.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    amqp_url: Option<String>,
    prefix: Option<String>,
    delivery_limit: Option<u32>,
    #[serde(default)]
    worker: FileWorker,
    #[serde(default)]
    observability: FileObservability,
    #[serde(default)]
    servers: BTreeMap<String, FileServer>,
    tenant_migrations: Option<String>,
    template_strategy: Option<String>,
    delete_grace_days: Option<u64>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    heavy_per_server: Option<u32>,
    cleanup_rules: Option<String>,
    schedules: Option<Vec<ScheduleSpec>>,
    #[serde(default)]
    backup: crate::backup::settings::FileBackup,
    #[serde(default)]
    tenancy: crate::tenancy::config::FileTenancy,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorker {
    concurrency: Option<usize>,
    queues: Option<Vec<String>>,
    lease_seconds: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    job_timeout_seconds: Option<u64>,
    retry_base_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    busy_delay_ms: Option<u64>,
    poll_max_ms: Option<u64>,
    stale_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileObservability {
    listen: Option<String>,
    log_format: Option<LogFormat>,
    log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    url: String,
    weight: Option<u32>,
}

/// The job families; each has one durable quorum queue.
pub const QUEUES: [&str; 4] = ["provision", "backup", "maintenance", "mail"];

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>>
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

impl Settings {
    /// Reads `LANDLORD_CONFIG` (or `./landlord.toml` if it exists), then the environment.
    pub fn load() -> Result<Self> {
        let explicit = env("LANDLORD_CONFIG").map(PathBuf::from);
        let path = explicit.clone().or_else(|| {
            let p = PathBuf::from("landlord.toml");
            p.exists().then_some(p)
        });
        let file = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading settings file {}", p.display()))?;
                toml::from_str::<FileSettings>(&text)
                    .with_context(|| format!("parsing settings file {}", p.display()))?
            }
            None => FileSettings::default(),
        };
        Self::from_parts(file, path)
    }

    fn from_parts(file: FileSettings, path: Option<PathBuf>) -> Result<Self> {
        let database_url = env("LANDLORD_DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/landlord".to_string());
        let amqp_url = env("LANDLORD_AMQP_URL")
            .or(file.amqp_url)
            .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string());
        let prefix = env("LANDLORD_PREFIX")
            .or(file.prefix)
            .unwrap_or_else(|| "landlord".to_string());
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            || prefix.is_empty()
            || prefix.len() > 64
        {
            bail!("LANDLORD_PREFIX must be 1-64 characters of [A-Za-z0-9_.-], got {prefix:?}");
        }
        let delivery_limit = env_parse("LANDLORD_DELIVERY_LIMIT")?
            .or(file.delivery_limit)
            .unwrap_or(20);
        if !(1..=1000).contains(&delivery_limit) {
            bail!("LANDLORD_DELIVERY_LIMIT must be between 1 and 1000, got {delivery_limit}");
        }

        let w = file.worker;
        let concurrency = env_parse("LANDLORD_WORKER_CONCURRENCY")?
            .or(w.concurrency)
            .unwrap_or(4);
        if concurrency == 0 || concurrency > 256 {
            bail!("worker concurrency must be between 1 and 256, got {concurrency}");
        }
        let queues = match env("LANDLORD_WORKER_QUEUES") {
            Some(v) => parse_queues(&v)?,
            None => match w.queues {
                Some(q) => parse_queues(&q.join(","))?,
                None => QUEUES.iter().map(|s| s.to_string()).collect(),
            },
        };
        let secs = |env_name: &str, file_v: Option<u64>, default: u64| -> Result<Duration> {
            Ok(Duration::from_secs(
                env_parse(env_name)?.or(file_v).unwrap_or(default),
            ))
        };
        let millis = |env_name: &str, file_v: Option<u64>, default: u64| -> Result<Duration> {
            Ok(Duration::from_millis(
                env_parse(env_name)?.or(file_v).unwrap_or(default),
            ))
        };
        let lease = secs("LANDLORD_LEASE_SECONDS", w.lease_seconds, 30)?;
        if lease < Duration::from_secs(2) {
            bail!("LANDLORD_LEASE_SECONDS must be at least 2");
        }
        let worker = WorkerSettings {
            concurrency,
            queues,
            lease,
            shutdown_grace: secs(
                "LANDLORD_SHUTDOWN_GRACE_SECONDS",
                w.shutdown_grace_seconds,
                30,
            )?,
            job_timeout: secs("LANDLORD_JOB_TIMEOUT_SECONDS", w.job_timeout_seconds, 3600)?,
            relay_interval: Duration::from_millis(500),
            reap_interval: Duration::from_secs(1).min(lease / 2),
            stale_after: secs("LANDLORD_STALE_AFTER_SECONDS", w.stale_after_seconds, 300)?,
            retry_base: millis("LANDLORD_RETRY_BASE_MS", w.retry_base_ms, 2_000)?,
            retry_max: millis("LANDLORD_RETRY_MAX_MS", w.retry_max_ms, 600_000)?,
            busy_delay: millis("LANDLORD_BUSY_DELAY_MS", w.busy_delay_ms, 1_000)?,
            poll_max: millis("LANDLORD_POLL_MAX_MS", w.poll_max_ms, 200)?
                .max(Duration::from_millis(10)),
        };

        let o = file.observability;
        let listen = match env("LANDLORD_LISTEN").or(o.listen) {
            Some(v) if v == "off" => None,
            Some(v) => Some(v),
            None => Some("127.0.0.1:9464".to_string()),
        };
        let log_format = match env("LANDLORD_LOG_FORMAT") {
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            Some(v) => bail!("LANDLORD_LOG_FORMAT must be text or json, got {v:?}"),
            None => o.log_format.unwrap_or(LogFormat::Text),
        };
        let log_filter = env("LANDLORD_LOG")
            .or(o.log)
            .unwrap_or_else(|| "info".to_string());

        let mut servers = BTreeMap::new();
        let mut server_weights = BTreeMap::new();
        for (name, s) in file.servers {
            if let Some(w) = s.weight {
                server_weights.insert(name.clone(), w);
            }
            servers.insert(name, SecretUrl::new(s.url));
        }
        for (key, value) in std::env::vars_os() {
            let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
                continue;
            };
            if let Some(name) = key.strip_prefix("LANDLORD_SERVER__") {
                servers.insert(name.to_ascii_lowercase(), SecretUrl::new(value.to_string()));
            } else if let Some(name) = key.strip_prefix("LANDLORD_SERVER_WEIGHT__") {
                let w: u32 = value
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{key}={value:?} is not a weight: {e}"))?;
                server_weights.insert(name.to_ascii_lowercase(), w);
            }
        }
        for name in server_weights.keys() {
            if !servers.contains_key(name) && name != "default" {
                bail!("a weight is set for database server {name:?}, which is not configured");
            }
        }
        let catalog = SecretUrl::new(database_url);
        servers
            .entry("default".to_string())
            .or_insert_with(|| catalog.clone());
        for name in servers.keys() {
            crate::ident::validate_server_name(name)
                .map_err(|e| anyhow::anyhow!("database server name {name:?}: {e}"))?;
        }

        let template = match env("LANDLORD_TEMPLATE_STRATEGY")
            .or(file.template_strategy)
            .as_deref()
        {
            None | Some("wal_log") => TemplateStrategy::WalLog,
            Some("file_copy") => TemplateStrategy::FileCopy,
            Some("none") => TemplateStrategy::None,
            Some(other) => bail!(
                "LANDLORD_TEMPLATE_STRATEGY must be wal_log, file_copy or none, got {other:?}"
            ),
        };
        let provisioning = ProvisioningSettings {
            tenant_migrations: env("LANDLORD_TENANT_MIGRATIONS").or(file.tenant_migrations),
            template,
            delete_grace_days: env_parse("LANDLORD_DELETE_GRACE_DAYS")?
                .or(file.delete_grace_days)
                .unwrap_or(7),
        };
        let mail = MailSettings {
            smtp_url: env("LANDLORD_SMTP_URL")
                .or(file.smtp_url)
                .map(SecretUrl::new),
            from: env("LANDLORD_MAIL_FROM")
                .or(file.mail_from)
                .unwrap_or_else(|| "landlord <landlord@localhost>".to_string()),
        };

        let heavy_per_server = env_parse("LANDLORD_HEAVY_PER_SERVER")?
            .or(file.heavy_per_server)
            .unwrap_or(2);
        if !(1..=64).contains(&heavy_per_server) {
            bail!("LANDLORD_HEAVY_PER_SERVER must be between 1 and 64, got {heavy_per_server}");
        }
        let maintenance = MaintenanceSettings {
            heavy_per_server,
            cleanup_rules: parse_cleanup_rules(
                &env("LANDLORD_CLEANUP_RULES")
                    .or(file.cleanup_rules)
                    .unwrap_or_else(|| "activity_log:created_at".to_string()),
            )?,
        };

        let schedules = file.schedules.unwrap_or_else(default_schedules);
        let backup = crate::backup::BackupSettings::load(file.backup)?;
        let tenancy = crate::tenancy::config::TenancyConfig::load(&file.tenancy)?;

        Ok(Self {
            provisioning,
            mail,
            maintenance,
            backup,
            tenancy,
            schedules,
            catalog: CatalogSettings {
                url: catalog,
                max_connections: (concurrency as u32) * 2 + 6,
            },
            broker: BrokerSettings {
                url: SecretUrl::new(amqp_url),
                prefix,
                delivery_limit,
            },
            worker,
            observability: ObservabilitySettings {
                listen,
                log_format,
                log_filter,
            },
            servers,
            server_weights,
            file: path,
        })
    }

    /// The effective configuration as TOML-ish text, secrets masked.
    pub fn show(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k} = {v}\n"));
        line(
            "settings_file",
            format!(
                "{:?}",
                self.file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(none)".into())
            ),
        );
        line("database_url", format!("{:?}", self.catalog.url.masked()));
        line("amqp_url", format!("{:?}", self.broker.url.masked()));
        line("prefix", format!("{:?}", self.broker.prefix));
        line("delivery_limit", self.broker.delivery_limit.to_string());
        let w = &self.worker;
        line("worker.concurrency", w.concurrency.to_string());
        line("worker.queues", format!("{:?}", w.queues));
        line("worker.lease_seconds", w.lease.as_secs().to_string());
        line(
            "worker.shutdown_grace_seconds",
            w.shutdown_grace.as_secs().to_string(),
        );
        line(
            "worker.job_timeout_seconds",
            w.job_timeout.as_secs().to_string(),
        );
        line("worker.retry_base_ms", w.retry_base.as_millis().to_string());
        line("worker.retry_max_ms", w.retry_max.as_millis().to_string());
        line("worker.busy_delay_ms", w.busy_delay.as_millis().to_string());
        line("worker.poll_max_ms", w.poll_max.as_millis().to_string());
        line(
            "worker.stale_after_seconds",
            w.stale_after.as_secs().to_string(),
        );
        line(
            "observability.listen",
            format!(
                "{:?}",
                self.observability.listen.as_deref().unwrap_or("off")
            ),
        );
        line(
            "observability.log_format",
            format!("{:?}", self.observability.log_format).to_lowercase(),
        );
        line(
            "observability.log",
            format!("{:?}", self.observability.log_filter),
        );
        line(
            "tenant_migrations",
            format!(
                "{:?}",
                self.provisioning
                    .tenant_migrations
                    .as_deref()
                    .unwrap_or("(built in)")
            ),
        );
        line(
            "template_strategy",
            format!("{:?}", self.provisioning.template.as_str()),
        );
        line(
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
        line("mail_from", format!("{:?}", self.mail.from));
        line(
            "heavy_per_server",
            self.maintenance.heavy_per_server.to_string(),
        );
        line(
            "cleanup_rules",
            format!(
                "{:?}",
                self.maintenance
                    .cleanup_rules
                    .iter()
                    .map(|r| match r.days {
                        Some(d) => format!("{}:{}:{d}", r.table, r.column),
                        None => format!("{}:{}", r.table, r.column),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
        line(
            "delete_grace_days",
            self.provisioning.delete_grace_days.to_string(),
        );
        let b = &self.backup;
        line("backup.url", format!("{:?}", b.location.describe()));
        line("backup.codec", format!("{:?}", b.codec.as_str()));
        line("backup.level", b.level.to_string());
        line(
            "backup.encrypted",
            (!b.age_recipients.is_empty()).to_string(),
        );
        line("backup.part_size_mib", (b.part_size >> 20).to_string());
        line("backup.retention", format!("{:?}", b.retention.to_string()));
        line(
            "backup.keep_pre_restore_hours",
            (b.keep_pre_restore.as_secs() / 3600).to_string(),
        );
        line("backup.timeout_seconds", b.timeout.as_secs().to_string());
        line("backup.s3_path_style", b.s3.path_style.to_string());
        let t = &self.tenancy;
        line(
            "tenancy.enabled",
            format!("{} # {}", t.enabled.value, t.enabled.source),
        );
        line(
            "tenancy.enforcement_mode",
            format!(
                "{:?} # effective {:?}",
                t.enforcement_mode.value.as_str(),
                t.effective_mode().as_str()
            ),
        );
        line(
            "tenancy.tenant_column",
            format!("{:?}", t.tenant_column.value),
        );
        for (name, url) in &self.servers {
            line(
                &format!("servers.{name}.weight"),
                self.server_weights
                    .get(name)
                    .copied()
                    .unwrap_or(1)
                    .to_string(),
            );
            line(
                &format!("servers.{name}.url"),
                format!("{:?}", url.masked()),
            );
        }
        out
    }
}

/// Parses a comma-separated list of job families.
pub fn parse_queues(raw: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for q in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !QUEUES.contains(&q) {
            bail!(
                "unknown queue {q:?}; the job families are {}",
                QUEUES.join(", ")
            );
        }
        if !out.iter().any(|x| x == q) {
            out.push(q.to_string());
        }
    }
    if out.is_empty() {
        bail!("no queue given; the job families are {}", QUEUES.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let u = SecretUrl::new("postgres://app:hunter2@db:5432/landlord");
        assert_eq!(u.masked(), "postgres://app:***@db:5432/landlord");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!format!("{u}").contains("hunter2"));
    }

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

    #[test]
    fn rejects_unknown_queue() {
        assert!(parse_queues("backup,nope").is_err());
        assert_eq!(
            parse_queues("backup, mail,backup").expect("valid"),
            vec!["backup", "mail"]
        );
    }
}
