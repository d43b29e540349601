//! landlord: tenant lifecycle for multi-tenant SaaS on PostgreSQL, run as a
//! queue-driven worker fleet. See `ARCHITECTURE.md` for the map.

pub mod api;
pub mod audit;
pub mod backup;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod db;
pub mod error;
pub mod event_feed;
pub mod failpoint;
pub mod http;
pub mod ident;
pub mod keyfile;
pub mod lifecycle;
pub mod mail;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod pg_tls;
pub mod role_password;
pub mod runtime;
pub mod scheduler;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tenancy;
pub mod tenant_schema;
pub mod tenants;
mod text_enum;
pub mod tls;
pub mod trace_context;
pub mod ui;
#[path = "../workers/mod.rs"]
pub mod workers;

pub use client::Landlord;
