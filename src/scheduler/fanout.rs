//! One firing of one schedule: recorded once (schedule + fire time), then one
//! job per tenant with the dedupe key `sched:{schedule}:{tenant}:{fire time}`.
//! A fan-out cut short (crash, lost leadership) is resumed by the next
//! leader; tenants that already have their job are not given another.

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;

use crate::{
    broker::topology, failpoint, message::JobMessage, runtime::Registry, scheduler::Schedule,
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
    // A sample (restore drills) is a pseudo-random pick that is the same for
    // the same firing, so a resumed fan-out chooses the same tenants.
    let tenants: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, slug FROM ( \
           SELECT id, slug FROM tenants \
           WHERE status = 'active' AND ($1::text[] IS NULL OR slug = ANY($1)) \
           ORDER BY CASE WHEN $2::bigint IS NULL THEN '' ELSE md5(slug || $3) END, id \
           LIMIT $2 \
         ) picked ORDER BY id",
    )
    .bind(s.spec.tenants.as_deref())
    .bind(s.spec.sample.map(i64::from))
    .bind(fire_at.to_rfc3339())
    .fetch_all(pool)
    .await
    .context("listing the schedule's tenants")?;
    let kind = registry
        .get(&s.spec.kind)
        .with_context(|| format!("schedule {name}: unknown job kind {}", s.spec.kind))?;
    let spread = i64::from(s.spec.spread_seconds);
    let key_prefix = format!("sched:{name}:");
    let mut skipped_now = 0i64;
    for (i, chunk) in tenants.chunks(CHUNK).enumerate() {
        let mut tx = pool.begin().await.context("starting transaction")?;
        // Set-based per chunk: which tenants already have this firing's job,
        // which still have a live run of this schedule (overlap), then one
        // INSERT for the jobs and one for their outbox rows.
        let keys: Vec<String> = chunk
            .iter()
            .map(|(_, slug)| job_key(name, slug, fire_at))
            .collect();
        let existing: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT dedupe_key FROM jobs WHERE dedupe_key = ANY($1)")
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
        let busy: std::collections::HashSet<String> = if s.spec.skip_overlap {
            let prefixes: Vec<String> = chunk
                .iter()
                .map(|(_, slug)| format!("{}%", like_escape(&format!("{key_prefix}{slug}:"))))
                .collect();
            let live: Vec<String> = sqlx::query_scalar(
                "SELECT dedupe_key FROM jobs WHERE dedupe_key LIKE ANY($1) \
                 AND status IN ('queued', 'running', 'retrying')",
            )
            .bind(&prefixes)
            .fetch_all(&mut *tx)
            .await?;
            live.iter()
                .filter_map(|k| {
                    k.strip_prefix(&key_prefix)?
                        .split(':')
                        .next()
                        .map(str::to_string)
                })
                .collect()
        } else {
            Default::default()
        };
        let (mut ids, mut tenant_ids, mut dedupe, mut run_ats, mut payloads) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((tenant_id, slug), key) in chunk.iter().zip(keys) {
            if existing.contains(&key) {
                continue;
            }
            if busy.contains(slug) {
                skipped_now += 1;
                continue;
            }
            // Spread start times over the window, stably per tenant.
            let offset = if spread > 0 {
                i64::from(crc(slug)) % spread
            } else {
                0
            };
            let id = uuid::Uuid::now_v7();
            let msg = JobMessage::new(id, kind.kind, Some(slug), s.spec.args.clone());
            payloads.push(serde_json::to_value(&msg).context("encoding message")?);
            ids.push(id);
            tenant_ids.push(*tenant_id);
            dedupe.push(key);
            run_ats.push(fire_at + chrono::Duration::seconds(offset));
        }
        if !ids.is_empty() {
            sqlx::query(
                "INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, run_at, origin) \
                 SELECT u.id, $5, $6, u.tenant_id, $7, 'queued', $8, u.key, u.run_at, 'catalog' \
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[]) AS u(id, tenant_id, key, run_at)",
            )
            .bind(&ids)
            .bind(&tenant_ids)
            .bind(&dedupe)
            .bind(&run_ats)
            .bind(kind.kind)
            .bind(kind.queue)
            .bind(&s.spec.args)
            .bind(kind.max_attempts as i32)
            .execute(&mut *tx)
            .await
            .context("writing the firing's jobs")?;
            let message_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            sqlx::query(
                "INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id, available_at) \
                 SELECT $5, $6, u.payload, u.message_id, u.job_id, u.run_at \
                 FROM UNNEST($1::jsonb[], $2::text[], $3::uuid[], $4::timestamptz[]) AS u(payload, message_id, job_id, run_at)",
            )
            .bind(&payloads)
            .bind(&message_ids)
            .bind(&ids)
            .bind(&run_ats)
            .bind(topology::WORK)
            .bind(kind.queue)
            .execute(&mut *tx)
            .await
            .context("writing the firing's outbox rows")?;
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
