//! A backup's and a restore's states as the catalog records them
//! (`backups.status`, `backups.format`, `restores.status`; the codec is
//! [`Codec`](crate::config::backup::Codec)).
//!
//! Each enum lists exactly the values of its column's CHECK constraint
//! (`migrations/catalog/0007_backups.sql`; `text_enum::check_lists` tests it
//! against the migrated catalog). Questions asked of these states
//! in more than one place are answered here, once. Never compare these states
//! as strings outside SQL.

use crate::text_enum::text_enum;

text_enum! {
    /// `backups.status`.
    pub enum BackupStatus("backup status") {
        /// Being written; not a backup yet.
        Running = "running",
        /// Its object and manifest are in the store: listed, restorable, counted.
        Complete = "complete",
        Failed = "failed",
        /// Pruned or deleted; its objects are gone.
        Deleted = "deleted",
    }
}

impl BackupStatus {
    /// Only a complete backup is listed, restored or counted.
    pub fn is_complete(self) -> bool {
        self == Self::Complete
    }
}

text_enum! {
    /// `backups.format`: what the dump object holds.
    pub enum BackupFormat("backup format") {
        /// `pg_dump -Fc -Z0` of a tenant's own database (loaded with pg_restore).
        Custom = "custom",
        /// SQL text (imported seed dumps; loaded with psql).
        Plain = "plain",
        /// One tenant's rows of the shared database.
        Shared = "shared",
    }
}

text_enum! {
    /// `restores.status`.
    pub enum RestoreStatus("restore status") {
        Running = "running",
        Complete = "complete",
        Failed = "failed",
    }
}
