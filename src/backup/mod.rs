//! Backups and restores of tenant databases: streaming pg_dump output through
//! zstd|gzip and age into S3 or a local directory, manifest last; retention;
//! restores into a scratch database verified before it is swapped in.
//!
//! Files: `settings` (typed configuration), `store` (S3 / local directory),
//! `stream` (the byte pipelines), `pgtool` (running pg_dump & co.),
//! `manifest` (naming and the manifest), `catalog` (the rows), `create`
//! (one backup), `restore` (one restore and the swap), `verify`, `prune`
//! and `retention` (what to keep), `reconcile` (store vs catalog),
//! `monitor` (freshness and size checks), `doctor` (requirements).

pub mod catalog;
pub mod create;
pub mod doctor;
pub mod import;
pub mod manifest;
pub mod monitor;
pub mod pgtool;
pub mod prune;
pub mod reconcile;
pub mod restore;
pub mod retention;
pub mod settings;
pub mod shared;
pub mod store;
pub mod stream;
pub mod verify;

pub use settings::{BackupSettings, Codec};
pub use store::Store;
