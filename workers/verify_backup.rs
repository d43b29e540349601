//! `verify_backup`: reads a backup back and checks it (SHA-256, size,
//! decryption, decompression, archive listing); with `restore_test`, also
//! restores it into a scratch database that is checked and dropped. The
//! tenant's live database is never touched, so it may run beside other jobs;
//! a restore test loads a full copy on the tenant's server, so it first takes
//! one of that server's heavy slots (`runtime::heavy`), like a backup.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    backup::verify,
    runtime::{Job, JobContext, JobError, heavy},
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBackup {
    /// Backup id or file name; absent = the newest complete backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// Also restore into a scratch database, check it and drop it.
    #[serde(default)]
    pub restore_test: bool,
}

impl Job for VerifyBackup {
    const KIND: &'static str = "verify_backup";
    const QUEUE: &'static str = "backup";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = false;
    const MAX_ATTEMPTS: u32 = 3;
    /// A restore test whose last attempt was lost (lease or lock gone, the
    /// process killed) leaves its scratch database: `on_dead` drops it.
    const COMPENSATES: bool = true;

    fn validate(&self) -> Result<(), String> {
        match &self.backup {
            Some(b) => super::restore::check_backup_ref(b),
            None => Ok(()),
        }
    }

    fn timeout(&self, settings: &crate::config::Settings) -> std::time::Duration {
        settings.backup.timeout
    }

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let t = ctx.tenant()?.clone();
        let b = super::restore::resolve(ctx, t.id, &t.slug, self.backup.as_deref()).await?;
        let _slot = if self.restore_test {
            Some(heavy::slot_or_postpone(ctx, &t.db_server).await?)
        } else {
            None
        };
        let result = verify::verify(&ctx.settings, &t, &b, self.restore_test, ctx.job_id).await;
        if self.restore_test {
            crate::metrics::restore_drill(result.is_ok());
        }
        let result = result?;
        ctx.emit("backup.verified", result.clone());
        Ok(result)
    }

    async fn on_dead(&self, ctx: &JobContext, _error: &str) -> Result<(), JobError> {
        if self.restore_test {
            verify::drop_scratch(&ctx.settings, ctx.tenant()?, ctx.job_id).await?;
        }
        Ok(())
    }
}
