//! Job handlers, one module per job kind, and the one list that registers them.

pub mod analyze;
pub mod ping;

use crate::runtime::Registry;

/// Every job kind this build can run.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register::<ping::Ping>().register::<analyze::Analyze>();
    r
}
