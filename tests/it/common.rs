//! Test harness: every test gets its own catalog database, its own RabbitMQ
//! prefix (so its own queues and exchanges) and its own tenant databases, all
//! on the real local services, and removes them when it ends.
//!
//! Workers and commands are the real `landlord` binary, started as processes.

use std::{
    collections::HashMap,
    future::Future,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use landlord::{
    broker::Topology,
    config::{BrokerSettings, QUEUES, SecretUrl},
};
use lapin::{
    Channel, Connection, ConnectionProperties,
    options::{
        BasicGetOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row, postgres::PgRow};
use uuid::Uuid;

pub const PG_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The bucket `ops/services` creates for development and tests.
pub fn backup_bucket() -> String {
    std::env::var("LANDLORD_TEST_BUCKET").unwrap_or_else(|_| "landlord-backups".into())
}

pub fn amqp_url() -> String {
    std::env::var("LANDLORD_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub struct TestEnv {
    pub id: String,
    pub catalog_db: String,
    pub prefix: String,
    pub catalog: PgPool,
    pub topology: Topology,
    tenant_dbs: Vec<String>,
    workers: Vec<Child>,
    pub log_dir: PathBuf,
    pub extra_env: HashMap<String, String>,
    /// The catalog's server (`PG_SERVER` unless `on_server`) and the URL
    /// parameters every connection to it carries (`""` or `?…`).
    pub server: String,
    pub params: String,
}

/// A running worker process.
pub struct WorkerProc {
    pub pid: u32,
    pub metrics: String,
    pub log: PathBuf,
    index: usize,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::on_server(PG_SERVER, "").await
    }

    /// An environment whose catalog (and so server `default`) is on `server`
    /// (`postgres://user@host:port`), every connection with URL `params`.
    pub async fn on_server(server: &str, params: &str) -> Self {
        // reqwest (maildev, metrics, API calls) takes rustls's process default.
        landlord::tls::install_default_crypto();
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let catalog_db = format!("llt_{id}");
        let mut admin = PgConnection::connect(&format!("{server}/postgres{params}"))
            .await
            .expect("postgres reachable");
        sqlx::raw_sql(&format!("CREATE DATABASE {catalog_db}"))
            .execute(&mut admin)
            .await
            .expect("create catalog db");
        admin.close().await.ok();
        let catalog = PgPool::connect(&format!("{server}/{catalog_db}{params}"))
            .await
            .expect("catalog");
        landlord::db::migrate(&catalog).await.expect("migrate");
        let prefix = format!("llt-{id}");
        let topology = Topology::new(&BrokerSettings {
            url: SecretUrl::new(amqp_url()),
            urls: vec![SecretUrl::new(amqp_url())],
            prefix: prefix.clone(),
            delivery_limit: 20,
        });
        let log_dir = std::env::temp_dir().join(format!("landlord-test-{id}"));
        std::fs::create_dir_all(&log_dir).expect("log dir");
        Self {
            id,
            catalog_db,
            prefix,
            catalog,
            topology,
            tenant_dbs: Vec::new(),
            workers: Vec::new(),
            log_dir,
            extra_env: HashMap::new(),
            server: server.to_string(),
            params: params.to_string(),
        }
    }

    /// The broker this test's processes use: its `LANDLORD_AMQP_URL` (see
    /// [`TestEnv::set_env`]), else the shared one; `amqps://` works too.
    /// For a cluster's comma-separated URLs, the first node's.
    pub fn amqp(&self) -> SecretUrl {
        let url = self
            .extra_env
            .get("LANDLORD_AMQP_URL")
            .cloned()
            .unwrap_or_else(amqp_url);
        SecretUrl::new(url.split(',').next().unwrap_or_default().trim())
    }

    /// The URL of database `db` on this environment's catalog server.
    pub fn db_url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.server, self.params)
    }

    /// This test's own folder in the dev bucket (see `ops/services env`).
    pub fn backup_url(&self) -> String {
        format!("s3://{}/{}", backup_bucket(), self.prefix)
    }

    /// The store as landlord sees it with this test's settings.
    pub async fn store(&self) -> landlord::backup::Store {
        let settings =
            landlord::backup::BackupSettings::load(Default::default()).expect("backup settings");
        let mut settings = settings;
        settings.location = landlord::config::backup::Location::parse(
            self.extra_env
                .get("LANDLORD_BACKUP_URL")
                .cloned()
                .unwrap_or_else(|| self.backup_url())
                .as_str(),
        )
        .expect("location");
        landlord::backup::Store::open(&settings)
            .await
            .expect("store")
    }

    /// Environment every landlord process of this test gets.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (
                "LANDLORD_DATABASE_URL".to_string(),
                self.db_url(&self.catalog_db),
            ),
            ("LANDLORD_AMQP_URL".to_string(), amqp_url()),
            ("LANDLORD_PREFIX".to_string(), self.prefix.clone()),
            ("LANDLORD_LISTEN".to_string(), "off".to_string()),
            ("LANDLORD_RETRY_BASE_MS".to_string(), "200".to_string()),
            ("LANDLORD_RETRY_MAX_MS".to_string(), "2000".to_string()),
            ("LANDLORD_BUSY_DELAY_MS".to_string(), "200".to_string()),
            ("LANDLORD_LEASE_SECONDS".to_string(), "4".to_string()),
            (
                "LANDLORD_SHUTDOWN_GRACE_SECONDS".to_string(),
                "10".to_string(),
            ),
            ("LANDLORD_CONFIG".to_string(), String::new()),
            ("LANDLORD_BACKUP_URL".to_string(), self.backup_url()),
            ("LANDLORD_BACKUP_PART_SIZE_MIB".to_string(), "5".to_string()),
            (
                "LANDLORD_SECRETS_KEY_FILE".to_string(),
                secrets_key_file().display().to_string(),
            ),
        ];
        for (k, val) in &self.extra_env {
            v.retain(|(kk, _)| kk != k);
            v.push((k.clone(), val.clone()));
        }
        v
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_landlord"));
        c.args(args)
            .envs(self.env())
            .env_remove("LANDLORD_CONFIG")
            .current_dir(&self.log_dir);
        c
    }

    /// Runs a landlord command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[])
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null()).output().expect("run landlord")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, &[])
    }

    /// Runs a command that must succeed with extra environment; returns stdout.
    pub fn ok_with(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run_with(args, env);
        assert!(
            out.status.success(),
            "landlord {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    /// Runs a command that must succeed and print one JSON document.
    pub fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Runs a command that must be refused as bad input (exit 2) with a
    /// message containing `expect`; returns that message (stderr).
    pub fn refused(&self, args: &[&str], expect: &str) -> String {
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in: {err}"
        );
        err
    }

    /// Adds environment variables to every later landlord process of this test.
    pub fn set_env(&mut self, vars: &[(&str, &str)]) {
        self.extra_env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }

    /// Starts a worker; `env` overrides the test defaults.
    pub fn spawn_worker(&mut self, args: &[&str], env: &[(&str, &str)]) -> WorkerProc {
        self.spawn(&[&["worker"], args].concat(), env)
    }

    /// Starts any long-running landlord role (worker, scheduler, api).
    pub fn spawn(&mut self, args: &[&str], env: &[(&str, &str)]) -> WorkerProc {
        let port = free_port();
        let index = self.workers.len();
        let log = self.log_dir.join(format!("worker-{index}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut c = self.command(args);
        c.env("LANDLORD_LISTEN", format!("127.0.0.1:{port}"));
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("spawn worker");
        let pid = child.id();
        self.workers.push(child);
        WorkerProc {
            pid,
            metrics: format!("http://127.0.0.1:{port}"),
            log,
            index,
        }
    }

    /// Sends a signal to a worker.
    pub fn signal(&self, w: &WorkerProc, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &w.pid.to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -{sig} {} failed", w.pid);
    }

    /// Waits for a worker process to exit; returns its exit code.
    pub fn wait_exit(&mut self, w: &WorkerProc, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.workers[w.index].try_wait().expect("try_wait") {
                return st.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "worker {} did not exit within {timeout:?}\n{}",
                    w.pid,
                    w.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a tenant database with the sample schema and registers it (as
    /// `tenants register --plan pro` would, through the library in-process:
    /// setting up needs no separate process).
    pub async fn tenant(&mut self, slug: &str) -> String {
        let db = format!("{}_{}", self.catalog_db, slug.replace('-', "_"));
        let mut admin = PgConnection::connect(&format!("{PG_SERVER}/postgres"))
            .await
            .expect("admin");
        sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
            .execute(&mut admin)
            .await
            .expect("create tenant db");
        admin.close().await.ok();
        self.tenant_dbs.push(db.clone());
        let mut conn = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
            .await
            .expect("tenant db");
        let schema = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/tenant/0001_sample_schema.sql"
        ))
        .expect("sample schema");
        sqlx::raw_sql(&schema)
            .execute(&mut conn)
            .await
            .expect("apply schema");
        conn.close().await.ok();
        let registration = landlord::tenants::Registration {
            slug: slug.into(),
            name: format!("Tenant {slug}"),
            plan: "pro".into(),
            server: "default".into(),
            database: db.clone(),
        };
        landlord::tenants::register(&self.catalog, &library_settings(), &registration, "test")
            .await
            .expect("register the tenant");
        db
    }

    /// Enqueues with `--json` and returns the job id.
    pub fn enqueue(&self, args: &[&str]) -> Uuid {
        let out = self.ok(&[args, &["--json"]].concat());
        let line = out.lines().next().expect("a line");
        let v: Value = serde_json::from_str(line).expect("json");
        Uuid::parse_str(v["job_id"].as_str().expect("job_id")).expect("uuid")
    }

    pub async fn job(&self, id: Uuid) -> Value {
        let row = landlord::runtime::store::get(&self.catalog, id)
            .await
            .expect("query")
            .expect("job exists");
        serde_json::to_value(row).expect("json")
    }

    pub async fn try_job(&self, id: Uuid) -> Value {
        match landlord::runtime::store::get(&self.catalog, id)
            .await
            .expect("query")
        {
            Some(row) => serde_json::to_value(row).expect("json"),
            None => Value::Null,
        }
    }

    /// Waits until a job exists and is terminal (or the deadline passes, with diagnostics).
    pub async fn wait_job(&self, id: Uuid, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.try_job(id).await;
            if ["succeeded", "failed", "dead", "cancelled"]
                .contains(&j["status"].as_str().unwrap_or(""))
            {
                return j;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} not finished after {timeout:?}: {j:#}\n{}",
                    self.worker_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a job has the given status.
    pub async fn wait_status(&self, id: Uuid, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.job(id).await;
            if j["status"] == status {
                return j;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} never reached {status} within {timeout:?}: {j:#}\n{}",
                    self.worker_logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn worker_logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.workers.len() {
            let p = self.log_dir.join(format!("worker-{i}.log"));
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s.push_str(&format!("--- worker-{i} log (tail) ---\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query(sql)
            .fetch_one(&self.catalog)
            .await
            .expect("count")
            .get::<i64, _>(0)
    }

    /// Asserts what a count of the catalog (`sql`) says.
    pub async fn assert_count(&self, sql: &str, expected: i64) {
        assert_eq!(self.count(sql).await, expected, "{sql}");
    }

    /// A queue bound to every event of this test's events exchange.
    pub async fn events(&self) -> EventTap {
        let conn = landlord::broker::connect_url(&self.amqp(), ConnectionProperties::default())
            .await
            .expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        self.topology.declare(&ch).await.expect("declare topology");
        let q = format!("{}.test-events", self.prefix);
        ch.queue_declare(
            q.clone().into(),
            QueueDeclareOptions {
                durable: false,
                auto_delete: false,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare tap");
        ch.queue_bind(
            q.clone().into(),
            self.topology.events_exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind tap");
        EventTap {
            _conn: conn,
            ch,
            queue: q,
            seen: Vec::new(),
        }
    }

    /// A channel for poking at the broker directly.
    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = landlord::broker::connect_url(&self.amqp(), ConnectionProperties::default())
            .await
            .expect("amqp");
        let ch = conn.create_channel().await.expect("channel");
        self.topology.declare(&ch).await.expect("declare topology");
        (conn, ch)
    }

    /// Fetches a metric value from a worker's /metrics.
    pub async fn metric(&self, w: &WorkerProc, series: &str) -> f64 {
        let body = reqwest::get(format!("{}/metrics", w.metrics))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        body.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn cleanup(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        // Databases and roles the test's tenants were given by provisioning.
        let mut provisioned: Vec<(String, Option<String>)> = Vec::new();
        if let Ok(mut c) = PgConnection::connect(&self.db_url(&self.catalog_db)).await {
            provisioned =
                sqlx::query_as("SELECT db_name, db_role FROM tenants WHERE db_name NOT LIKE $1")
                    .bind(format!("{}%", self.catalog_db))
                    .fetch_all(&mut c)
                    .await
                    .unwrap_or_default();
            c.close().await.ok();
        }
        // The pool belongs to the test's runtime; DROP … WITH (FORCE) ends its sessions.
        if let Ok(mut admin) = PgConnection::connect(&self.db_url("postgres")).await {
            for (db, role) in &provisioned {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
                let role = role.clone().unwrap_or_else(|| format!("{db}_app"));
                let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
                    .execute(&mut admin)
                    .await;
            }
            for db in self
                .tenant_dbs
                .iter()
                .chain(std::iter::once(&self.catalog_db))
            {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
            // Databases a test created under its own prefix by other means.
            let extra: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{}%", self.catalog_db))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
            for db in extra {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
            // Roles a test created under its own prefix (application roles).
            let roles: Vec<String> =
                sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1")
                    .bind(format!("{}%", self.catalog_db))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
            for role in roles {
                let _ = sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
                    .execute(&mut admin)
                    .await;
            }
        }
        if let Ok(conn) =
            landlord::broker::connect_url(&self.amqp(), ConnectionProperties::default()).await
        {
            if let Ok(ch) = conn.create_channel().await {
                let t = &self.topology;
                let mut queues: Vec<String> = QUEUES.iter().map(|f| t.queue(f)).collect();
                queues.push(t.dead_queue());
                queues.push(format!("{}.test-events", self.prefix));
                for q in queues {
                    let _ = ch
                        .queue_delete(q.into(), QueueDeleteOptions::default())
                        .await;
                }
                for e in [t.work_exchange(), t.events_exchange(), t.dead_exchange()] {
                    let _ = ch
                        .exchange_delete(e.into(), ExchangeDeleteOptions::default())
                        .await;
                }
            }
            let _ = conn.close(200, "bye".into()).await;
        }
        // Objects and unfinished uploads under this test's store prefix.
        if !self.extra_env.contains_key("LANDLORD_BACKUP_URL") {
            let store = self.store().await;
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
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.catalog_db.is_empty() {
            return;
        }
        let mut me = std::mem::replace(
            self,
            TestEnv {
                id: String::new(),
                catalog_db: String::new(),
                prefix: String::new(),
                catalog: self.catalog.clone(),
                topology: self.topology.clone(),
                tenant_dbs: Vec::new(),
                workers: Vec::new(),
                log_dir: PathBuf::new(),
                extra_env: HashMap::new(),
                server: String::new(),
                params: String::new(),
            },
        );
        if me.catalog_db.is_empty() {
            return;
        }
        let keep_logs = std::thread::panicking();
        if keep_logs {
            eprintln!("{}", me.worker_logs());
        }
        let _ = std::thread::Builder::new()
            .stack_size(16 * 1024 * 1024)
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("rt");
                rt.block_on(Box::pin(me.cleanup()));
                // Cleaned up: the drop of `me` at the end of this closure does nothing.
                me.catalog_db.clear();
            })
            .map(|h| h.join());
    }
}

impl WorkerProc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Events seen on a test's events exchange.
pub struct EventTap {
    _conn: Connection,
    ch: Channel,
    queue: String,
    pub seen: Vec<Value>,
}

impl EventTap {
    /// Drains what arrived so far.
    pub async fn drain(&mut self) -> &[Value] {
        while let Some(m) = self
            .ch
            .basic_get(self.queue.clone().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            self.seen
                .push(serde_json::from_slice(&m.delivery.data).expect("event json"));
        }
        &self.seen
    }

    /// Waits until `pred` holds for some event.
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain().await;
            if let Some(e) = self.seen.iter().find(|e| pred(e)) {
                return e.clone();
            }
            if Instant::now() > deadline {
                panic!("no {what} event within {timeout:?}; seen: {:#?}", self.seen);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `event` about job `job`.
    pub async fn wait_job_event(&mut self, event: &str, job: Uuid, timeout: Duration) -> Value {
        let job = job.to_string();
        self.wait_for(event, timeout, |e| {
            e["event"] == event && e["job_id"] == *job
        })
        .await
    }

    /// Waits for `event` about tenant `tenant`.
    pub async fn wait_tenant_event(
        &mut self,
        event: &str,
        tenant: &str,
        timeout: Duration,
    ) -> Value {
        self.wait_for(event, timeout, |e| {
            e["event"] == event && e["tenant"] == tenant
        })
        .await
    }

    /// Waits until `n` `event`s about job `job` were seen.
    pub async fn wait_count(&mut self, event: &str, job: Uuid, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(event, job) < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} {event} within {timeout:?}: {:#?}",
                self.seen
            );
            tokio::time::sleep(ms(100)).await;
            self.drain().await;
        }
    }

    /// Lets `quiet` pass, then drains: what arrived late (a duplicate) is seen.
    pub async fn settle(&mut self, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        self.drain().await;
    }

    pub fn count(&self, event: &str, job: Uuid) -> usize {
        self.seen
            .iter()
            .filter(|e| e["event"] == event && e["job_id"] == job.to_string())
            .count()
    }

    /// How many `event`s about tenant `tenant` were seen.
    pub fn count_tenant(&self, event: &str, tenant: &str) -> usize {
        self.seen
            .iter()
            .filter(|e| e["event"] == event && e["tenant"] == tenant)
            .count()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What a finished command wrote to stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a finished command wrote to stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The first line of stdout that is a JSON object: the job row
/// `--sync --json` prints, or what `--json` enqueued.
pub fn json_line(out: &Output) -> Value {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in {text}\nstderr: {}", stderr(out)));
    serde_json::from_str(line).expect("json line")
}

/// The last line of stdout, as JSON (the finished job of `--wait`/`--sync`).
pub fn last_json_line(out: &Output) -> Value {
    let text = stdout(out);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!("no output\nstderr: {}", stderr(out));
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Polls `probe` every `every` until it answers `Ok`; after `timeout` the
/// test fails with the last `Err` (what was still missing).
pub async fn poll<T, Fut>(timeout: Duration, every: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "after {timeout:?}: {why}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs `sql` (any statements) on database `db` of the local server as the superuser.
pub async fn exec_in(db: &str, sql: &str) {
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .expect("connect");
    sqlx::raw_sql(sql).execute(&mut c).await.expect("exec");
    c.close().await.ok();
}

/// The one value `sql` (with text parameters `binds`) answers on database
/// `db` of the local server, as the superuser.
pub async fn scalar_in<T>(db: &str, sql: &str, binds: &[&str]) -> T
where
    T: Send + Unpin,
    (T,): for<'r> sqlx::FromRow<'r, PgRow>,
{
    let first = scalars_in(db, sql, binds).await.into_iter().next();
    first.unwrap_or_else(|| panic!("no row: {sql}"))
}

/// Every value `sql` (with text parameters `binds`) answers on database
/// `db` of the local server, as the superuser.
pub async fn scalars_in<T>(db: &str, sql: &str, binds: &[&str]) -> Vec<T>
where
    T: Send + Unpin,
    (T,): for<'r> sqlx::FromRow<'r, PgRow>,
{
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .expect("connect");
    let mut q = sqlx::query_scalar::<Postgres, T>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    let v = q.fetch_all(&mut c).await.expect("query");
    c.close().await.ok();
    v
}

/// Every row `sql` answers on database `db` of the local server, as the superuser.
pub async fn rows_in<T>(db: &str, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    let mut c = PgConnection::connect(&format!("{PG_SERVER}/{db}"))
        .await
        .expect("connect");
    let rows = sqlx::query_as(sql).fetch_all(&mut c).await.expect("query");
    c.close().await.ok();
    rows
}

/// Whether database `db` exists on the local server.
pub async fn database_exists(db: &str) -> bool {
    scalar_in::<i64>(
        "postgres",
        "SELECT count(*) FROM pg_database WHERE datname = $1",
        &[db],
    )
    .await
        == 1
}

/// The catalog key every test's landlord seals tenant passwords with: one
/// file for all test processes, created by the first (link, not overwrite,
/// so a process never sees a half-written or replaced key).
pub fn secrets_key_file() -> PathBuf {
    use secrecy::ExposeSecret;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-secrets.key");
    if !path.exists() {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let key = age::x25519::Identity::generate();
        std::fs::write(&tmp, format!("{}\n", key.to_string().expose_secret())).expect("key file");
        let _ = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
    }
    path
}

/// Settings for calling the library in-process: the test process's
/// environment, with the local server as server `default`.
pub fn library_settings() -> landlord::config::Settings {
    let mut settings = landlord::config::Settings::load().expect("settings");
    settings.secrets.key_file = Some(secrets_key_file());
    settings.servers.insert(
        "default".into(),
        SecretUrl::new(format!("{PG_SERVER}/postgres")),
    );
    settings
}

/// Mail maildev received for one address.
pub async fn mails_to(address: &str) -> Vec<Value> {
    let url =
        std::env::var("LANDLORD_MAILDEV_URL").unwrap_or_else(|_| "http://127.0.0.1:1080".into());
    mails_at(&url, address).await
}

/// Mail the maildev whose web API is at `url` received for one address.
pub async fn mails_at(url: &str, address: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(format!("{url}/api/email"))
        .await
        .expect("maildev")
        .json()
        .await
        .unwrap_or_default();
    all.into_iter()
        .filter(|m| {
            m["to"]
                .as_array()
                .is_some_and(|to| to.iter().any(|t| t["address"] == address))
        })
        .collect()
}

/// Waits until maildev has mail for `address`; returns it.
pub async fn wait_mail(address: &str, timeout: Duration) -> Vec<Value> {
    poll(timeout, ms(200), || async {
        let m = mails_to(address).await;
        if m.is_empty() {
            Err(format!("no mail for {address}"))
        } else {
            Ok(m)
        }
    })
    .await
}
