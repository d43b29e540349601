//! The tenant lifecycle as a library: create (and enqueue the provisioning
//! saga), plan limits, status changes, settings, credentials, deletion, fleet
//! migration. The CLI and the HTTP API call these; they never talk SQL
//! themselves.
//!
//! Every change is one catalog transaction with its audit entry and its
//! events (through the outbox). Database-server work that must happen with it
//! (a role's LOGIN flag, say) happens inside that transaction, before commit.
//!
//! # Tenant states
//!
//! ```text
//!  create ──► provisioning ──saga done──► active ◄──► inactive ◄──► suspended
//!                  │                      (the three move freely among themselves)
//!                  └── saga dead ──► failed   (the slug may be created again)
//!
//!  active | inactive | suspended | failed ──delete──► deleting ──drop_tenant──► deleted
//!                                                   (role NOLOGIN)     (the slug stays taken)
//! ```
//!
//! The role may log in only while the tenant is `active`. A deletion takes a
//! held final backup first unless asked not to, and `drop_tenant` drops the
//! database only after that backup succeeded. Adopted tenants
//! (`tenants register`) start `active`; a restore changes no tenant state.

mod create;
pub mod credentials;
mod delete;
mod error;
pub mod jobs;
pub mod migrate;
pub mod plans;
pub mod sealing;
pub mod settings;
mod status;
pub mod teardown;

pub use create::{Created, NewTenant, SharedPlacement, can_provision, create, database_name};
pub use delete::{DeleteOptions, delete};
pub use error::LifecycleError;
pub use migrate::{FleetMigrated, FleetMigration, MigrationTargets, migrate_fleet};
pub use status::{TargetStatus, change_status, update_settings};
