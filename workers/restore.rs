//! `restore`: replaces a tenant's live database with a backup, through a
//! scratch database that is verified before the swap (the seed's
//! tenants:restore). The old database is kept for rollback and dropped later
//! by `drop_pre_restore`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    backup::{catalog, restore},
    config::Settings,
    runtime::{Job, JobContext, JobError},
    tenants::Isolation,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The backup: id or file name. Absent = the newest complete backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

impl Job for Restore {
    const KIND: &'static str = "restore";
    const QUEUE: &'static str = "backup";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;
    const COMPENSATES: bool = true;

    fn validate(&self) -> Result<(), String> {
        match &self.backup {
            Some(b) if b.trim().is_empty() || b.len() > 300 => {
                Err("backup must be a backup id or file name".into())
            }
            Some(b) => check_backup_ref(b),
            None => Ok(()),
        }
    }

    fn timeout(&self, settings: &Settings) -> std::time::Duration {
        settings.backup.timeout
    }

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let t = ctx.tenant()?.clone();
        // Not idempotent: an earlier attempt whose success went unrecorded
        // is recognised by its restores row, never restored again.
        if let Some(done) = restore::completed_earlier(ctx, &t).await? {
            return Ok(done);
        }
        let b = resolve(ctx, t.id, &t.slug, self.backup.as_deref()).await?;
        restore::restore(ctx, &t, &b).await
    }

    async fn on_dead(&self, ctx: &JobContext, _error: &str) -> Result<(), JobError> {
        // A dead restore did not happen: whichever step its last attempt
        // died in (even after a swap it never recorded), the tenant's
        // database from before the restore is put back and the scratch
        // copy dropped, also one a failed attempt could not drop. Only a
        // recorded swap (the job succeeded) is kept.
        let t = ctx.tenant()?.clone();
        if t.isolation == Isolation::Database {
            restore::clean_leftovers(ctx, &t).await?;
            restore::drop_scratch(&ctx.settings, &t, ctx.job_id).await?;
        }
        Ok(())
    }
}

/// Checks a backup reference (`restore`'s and `verify_backup`'s `backup`):
/// a backup id, a file name as listed, or an object key, so only letters,
/// digits, `.`, `_`, `-` and `/`, with no empty, `.` or `..` segment and
/// no leading `/` or `.`. Anything else (a path traversal, an absolute
/// path, quotes, NUL) names no backup and is refused before a job exists.
pub fn check_backup_ref(b: &str) -> Result<(), String> {
    let ok = !b.is_empty()
        && !b.starts_with(['/', '.'])
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && b.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "backup {:?} is not a backup id, file name or object key (letters, digits, '.', '_', '-' and '/', no '..' segment, no leading '/' or '.')",
            crate::message::truncate(b)
        ))
    }
}

/// The backup a restore or verify names (or the newest).
pub async fn resolve(
    ctx: &JobContext,
    tenant_id: i64,
    slug: &str,
    name: Option<&str>,
) -> Result<catalog::Backup, JobError> {
    let found = match name {
        Some(n) => catalog::find(&ctx.catalog, tenant_id, n).await?,
        None => catalog::complete_of(&ctx.catalog, tenant_id)
            .await?
            .into_iter()
            .next(),
    };
    found.ok_or_else(|| {
        JobError::fatal(match name {
            Some(n) => format!("tenant {slug} has no complete backup named {n:?}"),
            None => format!("tenant {slug} has no complete backup"),
        })
    })
}
