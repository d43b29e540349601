//! One firing of one schedule: recorded once (schedule + fire time), then one
//! job per tenant with the dedupe key `sched:{schedule}:{tenant}:{fire time}`.
//! A fan-out cut short (crash, lost leadership) is resumed by the next
//! leader; tenants that already have their job are not given another.

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;

use crate::{
    failpoint,
    runtime::{
        Registry,
        store::{self, EnqueueError, EnqueueRequest, Origin},
    },
    scheduler::Schedule,
};

/// Tenants written per transaction.
const CHUNK: usize = 500;

/// What a firing produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    pub jobs: i64,
    pub skipped: i64,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The dedupe key of one tenant's job of one firing.
pub fn job_key(schedule: &str, slug: &str, fire_at: DateTime<Utc>) -> String {
    format!(
        "sched:{schedule}:{slug}:{}",
        fire_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Records a firing as missed (once).
pub async fn record_missed(
    pool: &PgPool,
    schedule: &str,
    fire_at: DateTime<Utc>,
    leader: &str,
) -> Result<bool> {
    let n = sqlx::query(
        "INSERT INTO schedule_firings (schedule, fire_at, status, leader, finished_at) VALUES ($1, $2, 'missed', $3, now()) \
         ON CONFLICT DO NOTHING",
    )
    .bind(schedule)
    .bind(fire_at)
    .bind(leader)
    .execute(pool)
    .await
    .context("recording a missed firing")?
    .rows_affected();
    Ok(n == 1)
}

/// Fans one firing out (or finishes a fan-out an earlier leader started).
pub async fn fan_out(
    pool: &PgPool,
    registry: &Registry,
    s: &Schedule,
    fire_at: DateTime<Utc>,
    leader: &str,
) -> Result<FanOut> {
    let name = s.name();
    sqlx::query(
        "INSERT INTO schedule_firings (schedule, fire_at, status, leader) VALUES ($1, $2, 'fanning_out', $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(fire_at)
    .bind(leader)
    .execute(pool)
    .await
    .context("recording the firing")?;
    let (status, jobs, skipped): (String, i32, i32) = sqlx::query_as(
        "SELECT status, jobs, skipped FROM schedule_firings WHERE schedule = $1 AND fire_at = $2",
    )
    .bind(name)
    .bind(fire_at)
    .fetch_one(pool)
    .await
    .context("reading the firing")?;
    if status != "fanning_out" {
        return Ok(FanOut {
            jobs: i64::from(jobs),
            skipped: i64::from(skipped),
        });
    }
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT slug FROM tenants WHERE status = 'active' AND ($1::text[] IS NULL OR slug = ANY($1)) ORDER BY id",
    )
    .bind(s.spec.tenants.as_deref())
    .fetch_all(pool)
    .await
    .context("listing the schedule's tenants")?;
    let spread = i64::from(s.spec.spread_seconds);
    let mut skipped_now = 0i64;
    for (i, chunk) in tenants.chunks(CHUNK).enumerate() {
        let mut tx = pool.begin().await.context("starting transaction")?;
        for slug in chunk {
            let key = job_key(name, slug, fire_at);
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key = $1)")
                    .bind(&key)
                    .fetch_one(&mut *tx)
                    .await?;
            if exists {
                continue;
            }
            if s.spec.skip_overlap {
                let prefix = format!("{}%", like_escape(&format!("sched:{name}:{slug}:")));
                let live: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM jobs WHERE dedupe_key LIKE $1 \
                     AND status IN ('queued', 'running', 'retrying'))",
                )
                .bind(&prefix)
                .fetch_one(&mut *tx)
                .await?;
                if live {
                    skipped_now += 1;
                    continue;
                }
            }
            // Spread start times over the window, stably per tenant.
            let offset = if spread > 0 {
                i64::from(crc(slug)) % spread
            } else {
                0
            };
            let req = EnqueueRequest {
                kind: s.spec.kind.clone(),
                tenant: Some(slug.clone()),
                args: s.spec.args.clone(),
                dedupe_key: Some(key),
                run_at: Some(fire_at + chrono::Duration::seconds(offset)),
                ..Default::default()
            };
            match store::enqueue_in(&mut tx, registry, &req, Origin::Catalog).await {
                Ok(_) => {}
                Err(EnqueueError::Other(e)) => return Err(e),
                Err(e) => return Err(anyhow::anyhow!("schedule {name}: tenant {slug}: {e}")),
            }
        }
        tx.commit().await.context("committing a fan-out chunk")?;
        if i == 0 && tenants.len() > CHUNK {
            failpoint::hit("scheduler.mid_fanout");
        }
    }
    let pattern = format!(
        "{}%{}",
        like_escape(&format!("sched:{name}:")),
        like_escape(&format!(
            ":{}",
            fire_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ))
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE dedupe_key LIKE $1")
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .context("counting the firing's jobs")?;
    sqlx::query(
        "UPDATE schedule_firings SET status = 'done', jobs = $3, skipped = skipped + $4, finished_at = now() \
         WHERE schedule = $1 AND fire_at = $2",
    )
    .bind(name)
    .bind(fire_at)
    .bind(jobs as i32)
    .bind(skipped_now as i32)
    .execute(pool)
    .await
    .context("closing the firing")?;
    Ok(FanOut {
        jobs,
        skipped: skipped_now,
    })
}

/// A small stable hash (FNV-1a) for spreading.
fn crc(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
