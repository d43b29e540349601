//! Backups and restores of tenant databases: streaming pg_dump output through
//! zstd|gzip and age into S3 or a local directory, manifest last; retention;
//! restores into a scratch database verified before it is swapped in.
//!
//! Settings (where, how compressed and encrypted, what retention policy) are
//! [`crate::config::backup`]; they sit in the configuration layer so that
//! `config` never imports this module.
//!
//! Files: `store` (S3 / local directory), `stream` (the byte pipelines),
//! `pgtool` (running pg_dump & co.),
//! `manifest` (naming and the manifest), `catalog` (the rows), `create`
//! (one backup), `manage` (an operator's delete and hold of one backup),
//! `restore` (one restore and the swap), `verify`, `prune`
//! and `retention` (what to keep), `reconcile` (store vs catalog),
//! `monitor` (freshness and size checks), `doctor` (requirements),
//! `import` (the seed's dumps), `shared` (shared tenants' rows), `state`
//! (the rows' states as enums), `jobs` (the typed arguments of the backup
//! jobs library code enqueues), `withdraw` (the backup a dead backup job
//! completed but never announced). Step by step: `create` and `restore`.
//!
//! This module never imports `workers` (the handlers call in, not out), and
//! only `complete` rows are ever listed, restored or counted as backups.

pub mod catalog;
pub mod create;
pub mod doctor;
pub mod import;
pub mod jobs;
pub mod manage;
pub mod manifest;
pub mod monitor;
pub mod pgtool;
pub mod prune;
pub mod reconcile;
pub mod restore;
pub mod retention;
pub mod shared;
pub mod state;
pub mod store;
pub mod stream;
pub mod verify;
pub mod withdraw;

pub use crate::config::backup::{BackupSettings, Codec};
pub use state::{BackupFormat, BackupStatus, RestoreStatus};
pub use store::Store;
