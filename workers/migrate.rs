//! `migrate`: brings one tenant database up to the current tenant schema
//! (`landlord tenants migrate`). At most `concurrency` of these run at once
//! across the fleet: each takes one of that many slots (advisory locks); with
//! none free the job is postponed without spending an attempt.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    runtime::{Job, JobContext, JobError, ResultExt},
    tenant_schema,
};

/// First key of the fleet-wide migration slots ("LM").
const SLOT_CLASS: i32 = 0x4c4d;

pub use crate::lifecycle::jobs::Migrate;

impl Job for Migrate {
    const KIND: &'static str = "migrate";
    const QUEUE: &'static str = "maintenance";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

    fn validate(&self) -> Result<(), String> {
        if !(1..=256).contains(&self.concurrency) {
            return Err("concurrency must be between 1 and 256".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let t = ctx.tenant()?.clone();
        if !t.is_migratable() {
            return Err(JobError::fatal(format!(
                "tenant {} is {}; only provisioned tenants are migrated",
                t.slug, t.status
            )));
        }
        // Take a fleet-wide slot, held on this connection until the job ends.
        let mut slot_conn = ctx.catalog.acquire().await?;
        slot_conn.close_on_drop();
        let mut slot = None;
        for i in 0..self.concurrency as i32 {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(SLOT_CLASS)
                .bind(i)
                .fetch_one(&mut *slot_conn)
                .await?;
            if got {
                slot = Some(i);
                break;
            }
        }
        let Some(slot) = slot else {
            return Err(JobError::Postpone {
                delay: Duration::from_millis(500),
                reason: format!("all {} migration slots are busy", self.concurrency),
            });
        };
        let m = tenant_schema::migrator(&ctx.settings).await.fatal()?;
        let target = tenant_schema::version(&m);
        let pool = tenant_schema::pool_on(&ctx.settings, &t.db_server, &t.db_name)
            .await
            .retryable()?;
        let res = m.run(&pool).await;
        pool.close().await;
        drop(slot_conn);
        res.map_err(super::provision::classify)?;
        sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1")
            .bind(t.id)
            .bind(target)
            .execute(&ctx.catalog)
            .await?;
        ctx.emit(
            "tenant.migrated",
            json!({"from": t.schema_version, "to": target}),
        );
        Ok(json!({"tenant": t.slug, "from": t.schema_version, "to": target, "slot": slot}))
    }
}
