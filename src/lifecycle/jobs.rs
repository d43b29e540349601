//! The arguments of the jobs the lifecycle enqueues: `provision`,
//! `drop_tenant` and `migrate`. They live here, beneath `workers/`, so that
//! a lifecycle transaction writes its job through the typed struct
//! (`Provision {}.enqueue_in(&mut tx, …)`) without importing the handlers;
//! each handler (`impl Job`) is in `workers/<kind>.rs`.
//!
//! This module holds data only: it never runs a job and never talks SQL.

use serde::{Deserialize, Serialize};

/// `provision`: the saga that makes a new tenant's database usable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {}

/// `drop_tenant`: the end of a deletion, once the grace period is over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTenant {}

/// `migrate`: one tenant database up to the current tenant schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migrate {
    /// How many tenant migrations may run at once across the fleet.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
}

fn default_concurrency() -> u32 {
    4
}
