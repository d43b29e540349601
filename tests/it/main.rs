//! The integration tests, one binary: each module drives the real `landlord`
//! binary (or the library, where no separate process is needed) against the
//! real local services. One binary links the crate once instead of once per
//! file.
//!
//! Modules under `disruptive` stop RabbitMQ or change its consumer timeout,
//! and `chaos` (the soak) kills, stops and restarts services at random;
//! `ops/test` runs them alone, one at a time, after the rest
//! (`-E 'test(/^(disruptive|chaos)::/)' -j 1`). Nothing else may disturb the
//! shared services: `faults` makes its faults on its own connections.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod api;
mod api_contract;
mod api_limits;
mod api_routes;
mod backup;
mod chaos;
mod cli_docs;
mod cluster;
mod deploy;
mod disruptive;
mod faults;
mod fleet;
mod hostile;
mod hostile_inputs;
mod interop;
mod least_privilege;
mod lifecycle;
mod notify;
mod observability;
mod proxy;
mod scheduler;
mod secrets;
mod serve;
mod tenancy;
mod tls_broker;
mod tls_mail;
mod tls_postgres;
mod tls_s3;
mod traces;
mod ui;
