//! `Landlord`: the library entry point for Rust programs, the same operations
//! the CLI and the HTTP API offer (create tenants, change status and
//! settings, fetch credentials, delete, enqueue and follow jobs).
//!
//! It talks to the catalog and, to publish at once, to RabbitMQ; the work
//! itself is done by the fleet's workers. Every write is in the catalog
//! before anything is published: with RabbitMQ down a call still succeeds
//! and a worker's relay publishes what it wrote later. It never runs a job
//! itself and never writes SQL of its own: it calls the lifecycle library
//! and the job store, as the CLI and the HTTP API do.
//!
//! The examples run under `cargo test --doc` against the PostgreSQL server
//! of `LANDLORD_DATABASE_URL`, each in a scratch catalog database of its own
//! that it drops at the end (hidden setup lines, [`doc_support`]); they need
//! no broker and no worker.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    broker::Broker,
    config::Settings,
    lifecycle::{
        self, Created, DeleteOptions, FleetMigrated, FleetMigration, LifecycleError, NewTenant,
        TargetStatus, plans::Allowance,
    },
    runtime::{
        Registry,
        relay::relay_once,
        store::{self, EnqueueError, EnqueueRequest, Enqueued, JobRow, Origin},
    },
    tenants::{self, Tenant, TenantStatus},
};

/// A handle on one landlord installation.
#[derive(Clone)]
pub struct Landlord {
    pool: PgPool,
    settings: Arc<Settings>,
    registry: Arc<Registry>,
    broker: Broker,
    actor: String,
}

impl Landlord {
    /// Connects to the catalog (migrating it) with the given settings.
    /// `actor` is what the audit log records for this client's changes.
    ///
    /// RabbitMQ is not contacted here: the first write that publishes opens
    /// the connection, and a broker that does not answer only delays the
    /// publishing (the outbox keeps the messages).
    ///
    /// ```rust
    /// use landlord::{Landlord, config::Settings};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// // landlord.toml (or LANDLORD_CONFIG), then the LANDLORD_* variables.
    /// let settings = Settings::load()?;
    /// # let scratch = landlord::client::doc_support::Scratch::new(&settings).await?;
    /// # let settings = scratch.settings();
    /// let landlord = Landlord::connect(settings, "billing-service").await?;
    /// assert!(landlord.tenants(None).await?.is_empty());
    /// # scratch.finish().await
    /// # }
    /// ```
    pub async fn connect(settings: Settings, actor: &str) -> Result<Self> {
        let pool = crate::db::connect(&settings).await?;
        crate::db::migrate(&pool).await?;
        let broker = Broker::new(
            &settings.broker,
            &crate::runtime::worker::owner_id("client"),
        );
        Ok(Self {
            pool,
            settings: Arc::new(settings),
            registry: Arc::new(crate::workers::registry()),
            broker,
            actor: actor.to_string(),
        })
    }

    /// The catalog pool.
    pub fn catalog(&self) -> &PgPool {
        &self.pool
    }

    async fn publish(&self, outbox: Option<i64>) {
        if let Some(id) = outbox
            && let Err(e) = relay_once(&self.pool, &self.broker, Some(id)).await
        {
            tracing::warn!(error = %format!("{e:#}"), "not published now; a worker's relay will publish it");
        }
    }

    /// Whether `owner` may have another tenant on `plan`. Changes nothing;
    /// [`Landlord::create_tenant`] checks the limit again under a lock.
    ///
    /// ```rust
    /// # use landlord::{Landlord, config::Settings};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// # let scratch = landlord::client::doc_support::Scratch::new(&Settings::load()?).await?;
    /// # let landlord = Landlord::connect(scratch.settings(), "docs").await?;
    /// let allowance = landlord.can_provision("ana@example.com", "pro").await?;
    /// assert!(allowance.allowed);
    /// assert_eq!(allowance.used, 0);
    ///
    /// // An unknown plan is bad input, with the code the HTTP API answers.
    /// let refused = landlord.can_provision("ana@example.com", "platinum").await;
    /// assert_eq!(refused.map_err(|e| e.code()).err(), Some("invalid_input"));
    /// # scratch.finish().await
    /// # }
    /// ```
    pub async fn can_provision(
        &self,
        owner: &str,
        plan: &str,
    ) -> Result<Allowance, LifecycleError> {
        lifecycle::can_provision(&self.pool, owner, plan).await
    }

    /// Creates a tenant and enqueues its provisioning.
    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Created, LifecycleError> {
        let created = lifecycle::create(&self.pool, &self.settings, new, &self.actor).await?;
        self.publish(created.job.outbox_id).await;
        Ok(created)
    }

    /// One tenant.
    pub async fn tenant(&self, slug: &str) -> Result<Tenant, LifecycleError> {
        Ok(tenants::get(&self.pool, slug).await?)
    }

    /// All tenants, or those with one status, ordered by slug.
    ///
    /// ```rust
    /// # use landlord::{Landlord, config::Settings};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// # let scratch = landlord::client::doc_support::Scratch::new(&Settings::load()?).await?;
    /// # let landlord = Landlord::connect(scratch.settings(), "docs").await?;
    /// use landlord::lifecycle::NewTenant;
    ///
    /// // Writes the tenant (provisioning) and its `provision` job; a worker
    /// // creates the database and makes the tenant active.
    /// let created = landlord
    ///     .create_tenant(&NewTenant {
    ///         slug: "example-co".into(),
    ///         name: "Example Co".into(),
    ///         plan: "pro".into(),
    ///         owner_email: "ana@example.com".into(),
    ///         ..Default::default()
    ///     })
    ///     .await?;
    ///
    /// let slugs: Vec<String> = landlord.tenants(None).await?.into_iter().map(|t| t.slug).collect();
    /// assert_eq!(slugs, ["example-co"]);
    /// assert_eq!(landlord.tenant("example-co").await?.id, created.tenant.id);
    /// # scratch.finish().await
    /// # }
    /// ```
    pub async fn tenants(&self, status: Option<TenantStatus>) -> Result<Vec<Tenant>> {
        tenants::list(&self.pool, status).await
    }

    /// Activates, deactivates or suspends a tenant.
    pub async fn set_status(
        &self,
        slug: &str,
        to: TargetStatus,
        reason: Option<&str>,
    ) -> Result<Tenant, LifecycleError> {
        lifecycle::change_status(&self.pool, &self.settings, slug, to, reason, &self.actor).await
    }

    /// Sets and removes settings.
    pub async fn update_settings(
        &self,
        slug: &str,
        set: &Map<String, Value>,
        unset: &[String],
    ) -> Result<Tenant, LifecycleError> {
        lifecycle::update_settings(&self.pool, slug, set, unset, &self.actor).await
    }

    /// The tenant role's credentials.
    pub async fn credentials(
        &self,
        slug: &str,
    ) -> Result<lifecycle::credentials::Credentials, LifecycleError> {
        lifecycle::credentials::fetch(&self.pool, &self.settings, slug).await
    }

    /// Schedules a deletion.
    pub async fn delete_tenant(
        &self,
        slug: &str,
        opts: &DeleteOptions,
    ) -> Result<Enqueued, LifecycleError> {
        let job = lifecycle::delete(&self.pool, &self.settings, slug, opts, &self.actor).await?;
        self.publish(job.outbox_id).await;
        Ok(job)
    }

    /// Brings every server's template up to date, then enqueues one `migrate`
    /// job per tenant (as `landlord tenants migrate` does).
    pub async fn migrate_tenants(
        &self,
        opts: &FleetMigration,
    ) -> Result<FleetMigrated, LifecycleError> {
        let done =
            lifecycle::migrate_fleet(&self.pool, &self.settings, &self.registry, opts).await?;
        for (_, job) in &done.jobs {
            self.publish(job.outbox_id).await;
        }
        Ok(done)
    }

    /// Enqueues any job kind: validated like the CLI's `jobs enqueue`, then
    /// written (row and outbox message in one transaction) and published.
    /// With a dedupe key that a live job already has, that job is returned
    /// (`existing`) and nothing is written.
    ///
    /// ```rust
    /// # use landlord::{Landlord, config::Settings};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// # let scratch = landlord::client::doc_support::Scratch::new(&Settings::load()?).await?;
    /// # let landlord = Landlord::connect(scratch.settings(), "docs").await?;
    /// use anyhow::Context;
    /// use landlord::runtime::store::{DedupeKey, EnqueueRequest};
    ///
    /// let request = EnqueueRequest {
    ///     kind: "ping".into(),
    ///     args: serde_json::json!({}),
    ///     // A key in this client's own namespace ("docs").
    ///     dedupe_key: Some(DedupeKey::caller("docs", "docs-ping")),
    ///     ..Default::default()
    /// };
    /// let enqueued = landlord.enqueue(&request).await?;
    /// assert!(!enqueued.existing);
    ///
    /// // The job is a catalog row before it is a message, so it can be read
    /// // back at once; it stays queued until a worker claims it.
    /// let job = landlord.job(enqueued.id).await?.context("no such job")?;
    /// assert_eq!(job.kind, "ping");
    /// assert_eq!(job.attempts, 0);
    /// assert!(!job.is_terminal());
    ///
    /// // The same dedupe key while that job is live: the same job, nothing new.
    /// let again = landlord.enqueue(&request).await?;
    /// assert_eq!((again.id, again.existing), (enqueued.id, true));
    /// # scratch.finish().await
    /// # }
    /// ```
    pub async fn enqueue(&self, req: &EnqueueRequest) -> Result<Enqueued, EnqueueError> {
        let enq = store::enqueue(&self.pool, &self.registry, req, Origin::Catalog).await?;
        self.publish(enq.outbox_id).await;
        Ok(enq)
    }

    /// One job, `None` if there is no such job. See [`Landlord::enqueue`].
    pub async fn job(&self, id: Uuid) -> Result<Option<JobRow>> {
        store::get(&self.pool, id).await
    }

    /// Waits until a job ends (or `timeout` passes) and returns its row.
    pub async fn wait(&self, id: Uuid, timeout: Duration) -> Result<JobRow> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let row = store::get(&self.pool, id).await?.context("no such job")?;
            if row.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(row);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Support for the examples above, not part of the API: a scratch
/// installation whose catalog is a database of its own, created on the
/// catalog's server and dropped by [`Scratch::finish`](doc_support::Scratch::finish).
#[doc(hidden)]
pub mod doc_support {
    use std::str::FromStr;

    use anyhow::{Context, Result};
    use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};

    use crate::{
        config::{SecretUrl, Settings},
        ident::quote_ident,
    };

    /// Nothing listens here, so a scratch installation never touches a real
    /// broker: what it publishes stays in its outbox, as while RabbitMQ is down.
    const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

    /// A catalog database named `landlord_doc_<uuid>`, for one example.
    pub struct Scratch {
        settings: Settings,
        server: PgConnectOptions,
        name: String,
    }

    impl Scratch {
        /// Creates the database on the server of `settings`' catalog URL.
        pub async fn new(settings: &Settings) -> Result<Self> {
            let name = format!("landlord_doc_{}", uuid::Uuid::new_v4().simple());
            let mut url = url::Url::parse(settings.catalog.url.expose())
                .context("parsing the catalog URL")?;
            url.set_path(&name);
            let server = PgConnectOptions::from_str(settings.catalog.url.expose())
                .context("parsing the catalog URL")?
                .database("postgres");
            let mut conn = server
                .connect()
                .await
                .context("connecting to the catalog's server")?;
            sqlx::query(&format!("CREATE DATABASE {}", quote_ident(&name)))
                .execute(&mut conn)
                .await
                .context("creating the scratch catalog")?;
            conn.close().await?;
            let mut settings = settings.clone();
            settings.catalog.url = SecretUrl::new(url.to_string());
            settings.broker.set_url(SecretUrl::new(NO_BROKER));
            Ok(Self {
                settings,
                server,
                name,
            })
        }

        /// Settings pointing at the scratch catalog (and at no broker).
        pub fn settings(&self) -> Settings {
            self.settings.clone()
        }

        /// Drops the scratch catalog, ending any session still on it.
        pub async fn finish(self) -> Result<()> {
            let mut conn = self.server.connect().await?;
            sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ))
            .execute(&mut conn)
            .await
            .context("dropping the scratch catalog")?;
            conn.close().await?;
            Ok(())
        }
    }
}
