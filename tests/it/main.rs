//! The integration tests, one binary: each module drives the real `landlord`
//! binary (or the library, where no separate process is needed) against the
//! real local services. One binary links the crate once instead of once per
//! file.
//!
//! Modules under `disruptive` stop RabbitMQ or change its consumer timeout;
//! `ops/test` runs them alone, one at a time, after the rest
//! (`-E 'test(/^disruptive::/)' -j 1`). Nothing else may disturb the shared
//! services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod api;
mod backup;
mod disruptive;
mod fleet;
mod interop;
mod lifecycle;
mod scheduler;
mod tenancy;
