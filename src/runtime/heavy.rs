//! Fleet-wide limit on heavy work per database server (backups, VACUUM,
//! REINDEX): at most `LANDLORD_HEAVY_PER_SERVER` at once, enforced with
//! session advisory locks on the catalog, one per slot. A job that finds
//! every slot taken is postponed without spending an attempt, for a while
//! that starts at `LANDLORD_BUSY_DELAY_MS`, grows by that much each time the
//! same job is postponed again (up to a minute) and is jittered, so waiting
//! jobs neither poll the catalog in lockstep nor hammer it while a long
//! backup runs.
//!
//! The slots a process holds are the `landlord_heavy_slots_in_use{server}`
//! gauge (summed over the fleet against `landlord_heavy_slots_per_server`,
//! that is saturation), each wait for one `landlord_heavy_slot_waits_total`.

use std::time::Duration;

use rand::Rng;
use sqlx::{Postgres, pool::PoolConnection};

use super::{JobContext, JobError};

/// Longest wait before a postponed job tries for a slot again.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Marks the postponement count in the reason (kept as the job's `last_error`,
/// which is how the next try knows how often the job has waited).
const POSTPONED: &str = "(postponed ";

/// One heavy slot held: its advisory lock lives on the connection, released
/// (and the in-use gauge lowered) when this is dropped.
pub struct Slot {
    _conn: PoolConnection<Postgres>,
    in_use: prometheus::IntGauge,
}

impl Slot {
    fn held(conn: PoolConnection<Postgres>, server: &str) -> Self {
        let in_use = crate::metrics::get()
            .heavy_in_use
            .with_label_values(&[server]);
        in_use.inc();
        Self {
            _conn: conn,
            in_use,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.in_use.dec();
    }
}

/// Takes one of the server's slots, held on a dedicated catalog connection
/// until dropped; `None` when all are taken.
pub async fn slot(ctx: &JobContext, server: &str) -> Result<Option<Slot>, JobError> {
    let mut conn = ctx.catalog.acquire().await?;
    // Closing (not pooling) the connection is what releases the lock.
    conn.close_on_drop();
    for slot in 0..ctx.settings.maintenance.heavy_per_server as i32 {
        let got: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext('landlord-heavy:' || $1), $2)",
        )
        .bind(server)
        .bind(slot)
        .fetch_one(&mut *conn)
        .await?;
        if got {
            return Ok(Some(Slot::held(conn, server)));
        }
    }
    Ok(None)
}

/// How often the job was postponed for a slot in a row, read back from the
/// reason its last postponement left in `last_error` (0 if none).
fn times_postponed(last_error: Option<&str>) -> u32 {
    last_error
        .and_then(|e| {
            let rest = &e[e.rfind(POSTPONED)? + POSTPONED.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// The wait before the next try: `base` once more per earlier postponement
/// (linear, so a freed slot is soon noticed by one of the waiting jobs), at
/// most [`MAX_WAIT`], then a random point in its upper half.
fn backoff(base: Duration, postponed: u32, rng: &mut impl Rng) -> Duration {
    let full = base
        .max(Duration::from_millis(1))
        .saturating_mul(postponed.saturating_add(1))
        .min(MAX_WAIT);
    let ms = full.as_millis() as u64;
    Duration::from_millis(rng.random_range(ms / 2..=ms))
}

/// A slot, or [`JobError::Postpone`] when the server is at its limit.
pub async fn slot_or_postpone(ctx: &JobContext, server: &str) -> Result<Slot, JobError> {
    if let Some(held) = slot(ctx, server).await? {
        return Ok(held);
    }
    crate::metrics::get()
        .heavy_waits
        .with_label_values(&[server])
        .inc();
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM jobs WHERE id = $1")
            .bind(ctx.job_id)
            .fetch_optional(&ctx.catalog)
            .await?
            .flatten();
    let postponed = times_postponed(last_error.as_deref());
    let delay = backoff(ctx.settings.worker.busy_delay, postponed, &mut rand::rng());
    Err(JobError::Postpone {
        delay,
        reason: format!(
            "all {} heavy slot(s) of server {server} are taken {POSTPONED}{} times)",
            ctx.settings.maintenance.heavy_per_server,
            postponed + 1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_is_read_back_from_the_last_reason() {
        assert_eq!(times_postponed(None), 0);
        assert_eq!(times_postponed(Some("database: connection reset")), 0);
        let reason =
            format!("all 2 heavy slot(s) of server x (postponed 1) are taken {POSTPONED}7 times)");
        assert_eq!(times_postponed(Some(&reason)), 7);
    }

    #[test]
    fn the_wait_grows_is_capped_and_jittered() {
        let mut rng = rand::rng();
        let base = Duration::from_millis(200);
        for n in 0..400 {
            let full = (base * (n + 1)).min(MAX_WAIT);
            let d = backoff(base, n, &mut rng);
            assert!(
                d >= full / 2 && d <= full,
                "{n}: {d:?} outside [{:?}, {full:?}]",
                full / 2
            );
        }
        // Spread, not in lockstep.
        let waits: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff(MAX_WAIT, 0, &mut rng)).collect();
        assert!(waits.len() > 10);
        // A base above the cap stays capped.
        assert!(backoff(Duration::from_secs(600), 0, &mut rng) <= MAX_WAIT);
    }
}
