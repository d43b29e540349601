//! The catalog pool and the broker session a long-running role runs on:
//! its own (`landlord worker`, `scheduler`, `api`), or one pair shared by the
//! roles of `landlord serve`.
//!
//! Whoever opens a [`Connections`] closes it, once, after every role running
//! on it has stopped; a role's `run_on` must never close what it was handed.

use anyhow::Result;
use sqlx::PgPool;

use crate::{broker::Broker, config::Settings, db};

/// A catalog pool (migrated) and a broker session (connecting lazily).
#[derive(Clone)]
pub struct Connections {
    pub catalog: PgPool,
    pub broker: Broker,
}

impl Connections {
    /// For roles that take tenant locks or lead (worker, scheduler): a
    /// session-pooled catalog (`db::connect_session`), migrated.
    pub async fn for_sessions(settings: &Settings, owner: &str) -> Result<Self> {
        let catalog = db::connect_session(settings).await?;
        Self::migrated(settings, catalog, owner).await
    }

    /// For roles that only read and write rows (the API): any pool mode.
    pub async fn for_rows(settings: &Settings, owner: &str) -> Result<Self> {
        let catalog = db::connect(settings).await?;
        Self::migrated(settings, catalog, owner).await
    }

    async fn migrated(settings: &Settings, catalog: PgPool, owner: &str) -> Result<Self> {
        db::migrate(&catalog).await?;
        Ok(Self {
            catalog,
            broker: Broker::new(&settings.broker, owner),
        })
    }

    /// Closes the broker session, then the pool.
    pub async fn close(self) {
        self.broker.close().await;
        self.catalog.close().await;
    }
}
