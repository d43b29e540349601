//! Fault tests: each reproduces one way the fleet's guarantees broke under a
//! real fault (a hung socket, a lost lock connection, a rolling deploy, a
//! crash between two writes) and proves the fix. They run in parallel with
//! the rest: every fault is made on this test's own connections or processes
//! (a blackhole proxy in front of the catalog, `pg_terminate_backend` of its
//! own sessions), never on the shared services.

mod compensation;
mod effect_committed;
mod fencing;
mod jobs;
mod recognise;
mod schedule;
mod sessions;
