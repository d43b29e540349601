//! Named crash points for tests: `LANDLORD_FAILPOINTS=provision.after_database`
//! makes the process abort at that point, as `kill -9` would, so tests can
//! prove a saga resumes from every step. `name=MILLIS` pauses there, `name!N`
//! injects an error, and a plain name may also be a switch ([`listed`], e.g.
//! `registry.without.KIND`). Unset in production; costs one environment
//! lookup per point. This module must never change behaviour when
//! `LANDLORD_FAILPOINTS` is unset.

/// Aborts the process if `name` is listed in `LANDLORD_FAILPOINTS` (comma-separated).
pub fn hit(name: &str) {
    if let Ok(list) = std::env::var("LANDLORD_FAILPOINTS")
        && list.split(',').any(|p| p.trim() == name)
    {
        tracing::error!(failpoint = name, "failpoint hit: aborting the process");
        std::process::abort();
    }
}

/// Whether `name` is listed in `LANDLORD_FAILPOINTS` (comma-separated) as a
/// plain switch, e.g. `registry.without.ping`.
pub fn listed(name: &str) -> bool {
    std::env::var("LANDLORD_FAILPOINTS").is_ok_and(|list| list.split(',').any(|p| p.trim() == name))
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

/// Whether an injected error is due at `name`: `name!N` in
/// `LANDLORD_FAILPOINTS` makes the first N hits in this process fail (`name!`
/// alone: every hit), so a test can make one catalog call fail exactly where a
/// real outage would. The caller turns `true` into its own error.
pub fn fail(name: &str) -> bool {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static HITS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let Ok(list) = std::env::var("LANDLORD_FAILPOINTS") else {
        return false;
    };
    let Some(times) = list.split(',').find_map(|p| {
        let (n, times) = p.trim().split_once('!')?;
        (n == name).then(|| times.parse::<u64>().unwrap_or(u64::MAX))
    }) else {
        return false;
    };
    let mut hits = HITS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let n = hits.entry(name.to_string()).or_insert(0);
    *n += 1;
    let due = *n <= times;
    if due {
        tracing::warn!(
            failpoint = name,
            hit = *n,
            "failpoint hit: injecting an error"
        );
    }
    due
}
