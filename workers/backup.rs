//! `backup`: one backup of a tenant database into the configured store,
//! then retention (the seed's tenants:backup for one tenant). Never runs at
//! the same time as a restore or maintenance of the same tenant.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    backup::{Codec, create, retention},
    config::Settings,
    runtime::{Job, JobContext, JobError, heavy},
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Keep this many newest backups afterwards (the seed's `--keep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// A retention policy for this run (`keep:N` or `gfs:…`), instead of `keep`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// `zstd` or `gzip`; default: configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Put the backup on legal hold with this reason (never pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
}

impl Backup {
    /// The per-run options, checked.
    pub fn options(&self) -> Result<create::Options, String> {
        if self.keep.is_some() && self.retention.is_some() {
            return Err("give keep or retention, not both".into());
        }
        let retention = match (&self.keep, &self.retention) {
            (Some(0), _) => return Err("keep must be at least 1".into()),
            (Some(n), _) => Some(retention::Policy::KeepLast(*n)),
            (None, Some(r)) => Some(retention::parse(r)?),
            (None, None) => None,
        };
        let codec = match &self.codec {
            Some(c) => Some(Codec::parse(c).map_err(|e| e.to_string())?),
            None => None,
        };
        if let Some(h) = &self.hold
            && (h.trim().is_empty() || h.len() > 500)
        {
            return Err("hold needs a reason of 1-500 characters".into());
        }
        Ok(create::Options {
            retention,
            codec,
            hold: self.hold.clone(),
        })
    }
}

impl Job for Backup {
    const KIND: &'static str = "backup";
    const QUEUE: &'static str = "backup";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

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
        Ok(())
    }
}
