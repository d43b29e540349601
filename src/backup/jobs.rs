//! The arguments of the backup jobs that library code enqueues: `backup`
//! (the final backup of a deletion) and `drop_pre_restore` (scheduled by a
//! restore). They live here, beneath `workers/`, so that the lifecycle and a
//! restore write these jobs through the typed struct
//! (`DropPreRestore { restore_id }.enqueue_in(&mut tx, …)`) without
//! importing the handlers; each handler (`impl Job`) is in `workers/<kind>.rs`.
//!
//! This module holds data and its checks only: it never runs a job.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Codec, create, retention};

/// `backup`: one backup of a tenant database, then retention.
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
            whole_job: true,
        })
    }
}

/// `drop_pre_restore`: drops the database a restore swapped out, once the
/// rollback window is over.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropPreRestore {
    pub restore_id: Uuid,
}
