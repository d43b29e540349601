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

/// Sleeps if `name=MILLIS` is listed in `LANDLORD_FAILPOINTS`, so a test can
/// act while the process sits at that point (e.g. kill a connection mid-dump).
pub async fn pause(name: &str) {
    let Ok(list) = std::env::var("LANDLORD_FAILPOINTS") else {
        return;
    };
    for p in list.split(',') {
        if let Some((n, ms)) = p.trim().split_once('=')
            && n == name
            && let Ok(ms) = ms.parse::<u64>()
        {
            tracing::warn!(failpoint = name, ms, "failpoint hit: pausing");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }
}
