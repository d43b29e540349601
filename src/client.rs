//! `Landlord`: the library entry point for Rust programs, the same operations
//! the CLI and the HTTP API offer (create tenants, change status and
//! settings, fetch credentials, delete, enqueue and follow jobs).
//!
//! It talks to the catalog and, to publish at once, to RabbitMQ; the work
//! itself is done by the fleet's workers.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    broker::Broker,
    config::Settings,
    lifecycle::{
        self, Created, DeleteOptions, LifecycleError, NewTenant, TargetStatus, plans::Allowance,
    },
    runtime::{
        Registry,
        relay::relay_once,
        store::{self, EnqueueError, EnqueueRequest, Enqueued, JobRow, Origin},
    },
    tenants::{self, Tenant},
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

    /// Whether `owner` may have another tenant on `plan`.
    pub async fn can_provision(
        &self,
        owner: &str,
        plan: &str,
    ) -> Result<Allowance, LifecycleError> {
        lifecycle::can_provision(&self.pool, owner, plan).await
    }

    /// Creates a tenant and enqueues its provisioning.
    pub async fn create_tenant(&self, new: &NewTenant) -> Result<Created, LifecycleError> {
        let created =
            lifecycle::create(&self.pool, &self.settings, &self.registry, new, &self.actor).await?;
        self.publish(created.job.outbox_id).await;
        Ok(created)
    }

    /// One tenant.
    pub async fn tenant(&self, slug: &str) -> Result<Tenant, LifecycleError> {
        Ok(tenants::get(&self.pool, slug).await?)
    }

    /// All tenants, or those with one status.
    pub async fn tenants(&self, status: Option<&str>) -> Result<Vec<Tenant>> {
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
        lifecycle::credentials::fetch(&self.pool, slug).await
    }

    /// Schedules a deletion.
    pub async fn delete_tenant(
        &self,
        slug: &str,
        opts: &DeleteOptions,
    ) -> Result<Enqueued, LifecycleError> {
        let job = lifecycle::delete(
            &self.pool,
            &self.settings,
            &self.registry,
            slug,
            opts,
            &self.actor,
        )
        .await?;
        self.publish(job.outbox_id).await;
        Ok(job)
    }

    /// Enqueues any job kind.
    pub async fn enqueue(&self, req: &EnqueueRequest) -> Result<Enqueued, EnqueueError> {
        let enq = store::enqueue(&self.pool, &self.registry, req, Origin::Catalog).await?;
        self.publish(enq.outbox_id).await;
        Ok(enq)
    }

    /// One job.
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
