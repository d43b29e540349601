//! A schedule firing's state as the catalog records it
//! (`schedule_firings.status`, CHECK list in
//! `migrations/catalog/0006_scheduler.sql`, tested against the migrated
//! catalog by `text_enum::check_lists`). Never compared as a string
//! outside SQL.

use crate::text_enum::text_enum;

text_enum! {
    /// `schedule_firings.status`.
    pub enum FiringStatus("firing status") {
        /// Its jobs are being written (or a cut-short fan-out awaits resuming).
        FanningOut = "fanning_out",
        /// Every tenant in scope has its job.
        Done = "done",
        /// Fired too late (past its starting deadline); no jobs.
        Missed = "missed",
    }
}

impl FiringStatus {
    /// Done or missed: a fan-out of this firing has nothing left to do.
    pub fn is_finished(self) -> bool {
        match self {
            Self::Done | Self::Missed => true,
            Self::FanningOut => false,
        }
    }
}
