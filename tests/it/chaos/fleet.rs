//! The soak's world: the second PostgreSQL cluster (`chaos`, its own port:
//! the catalog and half of the tenants live there, so restarting it restarts
//! the catalog without touching the shared server), the landlord processes
//! (workers, schedulers, the one-shot CLI), the proxies every process's
//! catalog, broker and S3 traffic goes through, and the cleanup that leaves
//! nothing behind.
//!
//! It must never change the shared services' configuration: faults on them
//! are made in `faults.rs`, and only there, with a guard that brings them back.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::process::Child;

use crate::{
    common::{PG_SERVER, amqp_url, backup_bucket, free_port, ms},
    proxy::Proxy,
};

/// The PostgreSQL major version of the machine's clusters.
pub const PG_VERSION: &str = "15";
/// The second cluster's name.
pub const CLUSTER: &str = "chaos";

/// The chaos cluster's port: the existing cluster's, else `CHAOS_PG_PORT`
/// (default 5442) for a new one.
pub fn ensure_cluster() -> u16 {
    if let Some(port) = cluster_port() {
        start_cluster();
        return port;
    }
    let port: u16 = std::env::var("CHAOS_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5442);
    let out = Command::new("pg_createcluster")
        .args([PG_VERSION, CLUSTER, "--port", &port.to_string()])
        .args(["--", "--auth-host=trust", "--auth-local=trust"])
        .output()
        .expect("pg_createcluster runs");
    assert!(
        out.status.success(),
        "pg_createcluster {PG_VERSION} {CLUSTER} --port {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_cluster();
    port
}

fn cluster_port() -> Option<u16> {
    let out = Command::new("pg_lsclusters").arg("-h").output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[0] == PG_VERSION && f[1] == CLUSTER)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Starts the chaos cluster if it is down and waits until it answers.
pub fn start_cluster() {
    let _ = Command::new("pg_ctlcluster")
        .args([PG_VERSION, CLUSTER, "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// `pg_ctlcluster 15 chaos restart -m fast`: every session on it (the
/// catalog's included) ends.
pub fn restart_cluster() -> bool {
    Command::new("pg_ctlcluster")
        .args([PG_VERSION, CLUSTER, "restart", "-m", "fast"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The chaos cluster's log file (Debian's layout).
pub fn cluster_log() -> PathBuf {
    PathBuf::from(format!(
        "/var/log/postgresql/postgresql-{PG_VERSION}-{CLUSTER}.log"
    ))
}

/// A landlord process the soak started.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    pub role: Role,
    /// The kind this process's registry lacks (`registry.without.KIND`).
    pub without: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A worker; slot 0 reaches the catalog through the blackhole proxy.
    Worker(usize),
    Scheduler(usize),
}

/// Addresses and names of one soak run.
pub struct World {
    pub run: String,
    pub chaos_port: u16,
    pub catalog_db: String,
    pub catalog: PgPool,
    pub prefix: String,
    pub log_dir: PathBuf,
    /// Worker 0's catalog connections.
    pub catalog_proxy: Proxy,
    /// Every process's AMQP connections (an emulated broker outage cuts it).
    pub amqp_proxy: Proxy,
    /// Every process's S3 connections (an emulated Garage outage cuts it).
    pub s3_proxy: Proxy,
    spawned: std::sync::atomic::AtomicUsize,
}

impl World {
    pub async fn new(run: &str) -> Self {
        let chaos_port = ensure_cluster();
        let catalog_db = format!("chaos_{run}");
        let admin_url = format!("postgres://postgres@127.0.0.1:{chaos_port}/postgres");
        let mut admin = crate::common::poll(Duration::from_secs(60), ms(500), || async {
            PgConnection::connect(&admin_url)
                .await
                .map_err(|e| format!("chaos cluster on {chaos_port}: {e}"))
        })
        .await;
        sqlx::raw_sql(&format!("CREATE DATABASE {catalog_db}"))
            .execute(&mut admin)
            .await
            .expect("create the catalog");
        admin.close().await.ok();
        let catalog = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&format!(
                "postgres://postgres@127.0.0.1:{chaos_port}/{catalog_db}"
            ))
            .await
            .expect("catalog");
        landlord::db::migrate(&catalog).await.expect("migrate");
        let log_dir = std::env::temp_dir().join(format!("landlord-chaos-{run}"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        let pg: SocketAddr = format!("127.0.0.1:{chaos_port}").parse().expect("addr");
        let amqp: SocketAddr = amqp_addr();
        let s3: SocketAddr = s3_addr();
        Self {
            run: run.to_string(),
            chaos_port,
            catalog_db,
            catalog,
            prefix: format!("chaos-{run}"),
            log_dir,
            catalog_proxy: Proxy::start(pg).await,
            amqp_proxy: Proxy::start(amqp).await,
            s3_proxy: Proxy::start(s3).await,
            spawned: Default::default(),
        }
    }

    /// The chaos cluster's URL for database `db`.
    pub fn chaos_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.chaos_port)
    }

    /// The admin URL of a tenant server by its landlord name.
    pub fn server_url(&self, server: &str, db: &str) -> String {
        match server {
            "chaos" => self.chaos_url(db),
            _ => format!("{PG_SERVER}/{db}"),
        }
    }

    pub fn backup_url(&self) -> String {
        format!("s3://{}/{}", backup_bucket(), self.prefix)
    }

    /// The environment of every landlord process of the run.
    pub fn env(&self) -> Vec<(String, String)> {
        let amqp = amqp_url().replace(
            &amqp_addr().to_string(),
            &format!("127.0.0.1:{}", self.amqp_proxy.port()),
        );
        let s3 = format!("http://127.0.0.1:{}", self.s3_proxy.port());
        let v = [
            ("LANDLORD_DATABASE_URL", self.chaos_url(&self.catalog_db)),
            ("LANDLORD_AMQP_URL", amqp),
            ("LANDLORD_PREFIX", self.prefix.clone()),
            ("LANDLORD_LISTEN", "off".into()),
            ("LANDLORD_SERVER__DEFAULT", format!("{PG_SERVER}/postgres")),
            ("LANDLORD_SERVER__CHAOS", self.chaos_url("postgres")),
            ("LANDLORD_RETRY_BASE_MS", "200".into()),
            ("LANDLORD_RETRY_MAX_MS", "2000".into()),
            ("LANDLORD_BUSY_DELAY_MS", "200".into()),
            ("LANDLORD_LEASE_SECONDS", lease_seconds().to_string()),
            ("LANDLORD_SHUTDOWN_GRACE_SECONDS", "10".into()),
            (
                "LANDLORD_CONFIG",
                self.log_dir.join("landlord.toml").display().to_string(),
            ),
            ("LANDLORD_BACKUP_URL", self.backup_url()),
            ("LANDLORD_BACKUP_PART_SIZE_MIB", "5".into()),
            ("LANDLORD_BACKUP_RETENTION", "keep:1000".into()),
            ("AWS_ENDPOINT_URL", s3.clone()),
            ("LANDLORD_S3_ENDPOINT", s3),
            (
                "LANDLORD_SMTP_URL",
                std::env::var("LANDLORD_SMTP_URL")
                    .unwrap_or_else(|_| "smtp://127.0.0.1:1025".into()),
            ),
            ("RUST_LOG", "info".into()),
        ];
        v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Writes the run's landlord.toml: one ping schedule for the schedulers.
    pub fn write_config(&self, slugs: &[String]) {
        let tenants: Vec<String> = slugs.iter().map(|s| format!("{s:?}")).collect();
        let toml = format!(
            "[[schedules]]\nname = \"chaos-ping\"\ncron = \"*/15 * * * * *\"\nkind = \"ping\"\n\
             args = {{ hold_seconds = 1 }}\ntenants = [{}]\nspread_seconds = 0\n\
             starting_deadline_seconds = 120\n",
            tenants.join(", ")
        );
        std::fs::write(self.log_dir.join("landlord.toml"), toml).expect("write landlord.toml");
    }

    /// A landlord command of the run (not yet started).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_landlord"));
        c.args(args)
            .envs(self.env())
            .current_dir(&self.log_dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs a one-shot command: (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let fut = self.command(args).output();
        match tokio::time::timeout(Duration::from_secs(60), fut).await {
            Ok(Ok(o)) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Ok(Err(e)) => (false, String::new(), e.to_string()),
            Err(_) => (false, String::new(), "timed out after 60 s".into()),
        }
    }

    /// Starts a worker or scheduler.
    pub fn spawn(&self, role: Role, without: Option<&str>) -> Proc {
        let n = self
            .spawned
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (name, args): (String, Vec<&str>) = match role {
            Role::Worker(i) => (format!("worker{i}"), vec!["worker", "--concurrency", "4"]),
            Role::Scheduler(i) => (format!("scheduler{i}"), vec!["scheduler"]),
        };
        let log = self.log_dir.join(format!("{n:03}-{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut c = self.command(&args);
        c.env("LANDLORD_LISTEN", format!("127.0.0.1:{}", free_port()));
        if role == Role::Worker(0) {
            c.env(
                "LANDLORD_DATABASE_URL",
                self.catalog_proxy
                    .url_for(&self.chaos_url(&self.catalog_db)),
            );
        }
        if let Some(kind) = without {
            c.env("LANDLORD_FAILPOINTS", format!("registry.without.{kind}"));
        }
        let child = c
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn landlord");
        let pid = child.id().expect("pid");
        Proc {
            child,
            pid,
            role,
            without: without.map(str::to_string),
        }
    }

    /// Drops everything the run made: databases and roles on both servers
    /// (named after the run), queues and exchanges under the prefix, objects
    /// under the store prefix, the log folder (unless `keep_logs`).
    pub async fn cleanup(&self, keep_logs: bool) {
        let pattern = format!("%c{}%", self.run);
        for url in [format!("{PG_SERVER}/postgres"), self.chaos_url("postgres")] {
            let Ok(mut admin) = PgConnection::connect(&url).await else {
                continue;
            };
            let mut dbs: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(&pattern)
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
            if url.contains(&format!(":{}/", self.chaos_port)) {
                dbs.push(self.catalog_db.clone());
                // Templates and leftovers landlord made on the soak's own cluster.
                let more: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'landlord_tpl%'",
                )
                .fetch_all(&mut admin)
                .await
                .unwrap_or_default();
                dbs.extend(more);
            }
            for db in dbs {
                // Two statements: DROP DATABASE refuses to run in a transaction block.
                let _ = sqlx::raw_sql(&format!("ALTER DATABASE \"{db}\" IS_TEMPLATE false"))
                    .execute(&mut admin)
                    .await;
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
            let roles: Vec<String> =
                sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1")
                    .bind(&pattern)
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
            for role in roles {
                let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
                    .execute(&mut admin)
                    .await;
            }
            admin.close().await.ok();
        }
        self.delete_queues().await;
        self.delete_objects().await;
        if !keep_logs {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }

    async fn delete_queues(&self) {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let topology = landlord::broker::Topology::new(&landlord::config::BrokerSettings {
            url: landlord::config::SecretUrl::new(amqp_url()),
            urls: vec![landlord::config::SecretUrl::new(amqp_url())],
            prefix: self.prefix.clone(),
            delivery_limit: 20,
        });
        let Ok(conn) =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await
        else {
            return;
        };
        if let Ok(ch) = conn.create_channel().await {
            let mut queues: Vec<String> = landlord::config::QUEUES
                .iter()
                .map(|f| topology.queue(f))
                .collect();
            queues.push(topology.dead_queue());
            for q in queues {
                let _ = ch
                    .queue_delete(q.into(), QueueDeleteOptions::default())
                    .await;
            }
            for e in [
                topology.work_exchange(),
                topology.events_exchange(),
                topology.dead_exchange(),
            ] {
                let _ = ch
                    .exchange_delete(e.into(), ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = conn.close(200, "bye".into()).await;
    }

    async fn delete_objects(&self) {
        let Ok(store) = self.store().await else {
            return;
        };
        let prefix = format!("{}/", self.prefix);
        if let Ok(uploads) = store.pending_uploads(&prefix).await {
            for u in uploads {
                let _ = store.abort(&u.key, &u.upload_id).await;
            }
        }
        if let Ok(objects) = store.list(&prefix).await {
            for o in objects {
                let _ = store.delete(&o.key).await;
            }
        }
    }

    /// The backup store, reached directly (not through the S3 proxy).
    pub async fn store(&self) -> anyhow::Result<landlord::backup::Store> {
        let mut settings = landlord::backup::BackupSettings::load(Default::default())?;
        settings.location = landlord::config::backup::Location::parse(&self.backup_url())?;
        landlord::backup::Store::open(&settings).await
    }
}

/// The lease of the run's processes, seconds (`CHAOS_LEASE_SECONDS`, default 4).
pub fn lease_seconds() -> u64 {
    std::env::var("CHAOS_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

fn amqp_addr() -> SocketAddr {
    let url = amqp_url();
    let host = url
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("127.0.0.1:5672");
    host.parse()
        .unwrap_or_else(|_| "127.0.0.1:5672".parse().expect("addr"))
}

fn s3_addr() -> SocketAddr {
    let url = std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:3900".into());
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| "127.0.0.1:3900".parse().expect("addr"))
}
