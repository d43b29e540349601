//! `backup`: one backup of a tenant database into the configured store,
//! then retention (the seed's tenants:backup for one tenant). Never runs at
//! the same time as a restore or maintenance of the same tenant. The job's
//! status is the backup's story: it succeeds once its backup is complete
//! (whatever stops the attempt afterwards), and a job that ends dead leaves
//! no complete backup (its compensation withdraws one it never recorded).

use serde_json::Value;

use crate::{
    backup::{create, withdraw},
    config::Settings,
    runtime::{Job, JobContext, JobError, heavy},
};

pub use crate::backup::jobs::Backup;

impl Job for Backup {
    const KIND: &'static str = "backup";
    const QUEUE: &'static str = "backup";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;
    const COMPENSATES: bool = true;

    fn validate(&self) -> Result<(), String> {
        self.options().map(|_| ())
    }

    fn timeout(&self, settings: &Settings) -> std::time::Duration {
        settings.backup.timeout
    }

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let opts = self.options().map_err(JobError::fatal)?;
        let t = ctx.tenant()?.clone();
        let _slot = heavy::slot_or_postpone(ctx, &t.db_server).await?;
        create::backup(ctx, &t, &opts).await
    }

    async fn on_dead(&self, ctx: &JobContext, _error: &str) -> Result<(), JobError> {
        // An attempt killed or timed out leaves an upload; remove it now.
        let store = crate::backup::Store::open(&ctx.settings.backup).await?;
        create::clean_leftovers(ctx, &store).await?;
        // A dead backup job took no backup: one its last attempt completed
        // but could not record (it died first) is withdrawn.
        withdraw::withdraw(ctx, &store).await?;
        Ok(())
    }
}
