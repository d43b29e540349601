//! A job row's states as the catalog records them: its status and where the
//! row came from (`jobs.status`, `jobs.origin`).
//!
//! Each enum lists exactly the values of its column's CHECK constraint
//! (`migrations/catalog/0001_catalog.sql`; `text_enum::check_lists` tests it
//! against the migrated catalog). Only `runtime::store` moves a job
//! between statuses; everything else only asks questions of them, answered
//! here once. Never compare these states as strings outside SQL.

use crate::text_enum::text_enum;

text_enum! {
    /// `jobs.status`.
    pub enum JobStatus("status") {
        /// Waiting for its time and a worker.
        Queued = "queued",
        /// Claimed by an attempt holding a lease.
        Running = "running",
        /// A failed attempt is waiting for its retry.
        Retrying = "retrying",
        Succeeded = "succeeded",
        /// A `--sync` run failed (it does not retry).
        Failed = "failed",
        /// A fatal error, or its attempts are spent.
        Dead = "dead",
        Cancelled = "cancelled",
    }
}

impl JobStatus {
    /// Queued, running or retrying: not finished, and holding its dedupe key.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// Succeeded, failed, dead or cancelled: nothing more happens unless an
    /// operator retries it.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Succeeded | Self::Failed | Self::Dead | Self::Cancelled => true,
            Self::Queued | Self::Running | Self::Retrying => false,
        }
    }

    /// Queued or retrying: an attempt may claim it once it is due.
    pub fn is_claimable(self) -> bool {
        matches!(self, Self::Queued | Self::Retrying)
    }
}

text_enum! {
    /// `jobs.origin`: where a job row comes from.
    pub enum Origin("origin") {
        /// Enqueued through landlord; published through the outbox.
        Catalog = "catalog",
        /// Published by another program; the row was written when a worker
        /// first received its message.
        Adopted = "adopted",
        /// Run in-process by `--sync`; never published.
        Sync = "sync",
    }
}

impl Origin {
    /// Whether writing the row also writes the outbox row that publishes it.
    pub fn publishes_through_outbox(self) -> bool {
        match self {
            Self::Catalog => true,
            Self::Adopted | Self::Sync => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_is_queued_running_or_retrying() {
        let live: Vec<_> = JobStatus::ALL
            .iter()
            .filter(|s| s.is_live())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(live, ["queued", "running", "retrying"]);
    }
}
