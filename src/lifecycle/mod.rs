//! The tenant lifecycle as a library: create (and enqueue the provisioning
//! saga), plan limits, status changes, settings, credentials. The CLI and the
//! HTTP API call these; they never talk SQL themselves.
//!
//! Every change is one catalog transaction with its audit entry and its
//! events (through the outbox). Database-server work that must happen with it
//! (a role's LOGIN flag, say) happens inside that transaction, before commit.

mod create;
pub mod credentials;
mod delete;
mod error;
pub mod plans;
pub mod settings;
mod status;
pub mod teardown;

pub use create::{Created, NewTenant, SharedPlacement, can_provision, create, database_name};
pub use delete::{DeleteOptions, delete};
pub use error::LifecycleError;
pub use status::{TargetStatus, change_status, update_settings};
