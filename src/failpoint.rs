//! Named crash points for tests: `LANDLORD_FAILPOINTS=provision.after_database`
//! makes the process abort at that point, as `kill -9` would, so tests can
//! prove a saga resumes from every step. Unset in production; costs one
//! environment lookup per point.

/// Aborts the process if `name` is listed in `LANDLORD_FAILPOINTS` (comma-separated).
pub fn hit(name: &str) {
    if let Ok(list) = std::env::var("LANDLORD_FAILPOINTS")
        && list.split(',').any(|p| p.trim() == name)
    {
        tracing::error!(failpoint = name, "failpoint hit: aborting the process");
        std::process::abort();
    }
}
