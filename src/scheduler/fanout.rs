//! One firing of one schedule: recorded once (schedule + fire time), then one
//! job per tenant with the dedupe key `sched:{schedule}:{tenant}:{fire time}`.
//!
//! Only one process fans a schedule out at a time: the fan-out holds a
//! session advisory lock (per schedule, so per firing too) on its own catalog
//! connection and does all its writes on that connection, so losing the
//! connection also ends the writes. Another process either waits for the lock
//! (`schedule run`) or leaves the firing alone (the scheduler). A fan-out cut
//! short (crash, lost connection) is resumed by the next leader; tenants that
//! already have their job are not given another, and the insert itself skips
//! any key that already exists.

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Connection, PgConnection, PgPool, Postgres, pool::PoolConnection};

use crate::{
    broker::topology,
    failpoint,
    message::JobMessage,
    runtime::{KindSpec, Registry},
    scheduler::{FiringStatus, Schedule},
};

/// Tenants written per transaction.
const CHUNK: usize = 500;

/// What a firing produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Jobs of the firing (all of them, also those made before a resume).
    pub jobs: i64,
    /// Tenants left out because their previous run of the schedule was still live.
    pub skipped: i64,
}

/// What to do when another process is fanning the same schedule out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    /// Wait for it to finish, then report (or finish) the firing.
    Wait,
    /// Leave the firing alone; [`fan_out`] returns `None`.
    Skip,
}

/// Escapes `\`, `%` and `_` for a LIKE pattern (default escape character).
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn fire_text(fire_at: DateTime<Utc>) -> String {
    fire_at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The dedupe key of one tenant's job of one firing.
pub fn job_key(schedule: &str, slug: &str, fire_at: DateTime<Utc>) -> String {
    format!("sched:{schedule}:{slug}:{}", fire_text(fire_at))
}

/// A LIKE pattern matching the dedupe keys of every job of one firing.
pub fn firing_pattern(schedule: &str, fire_at: DateTime<Utc>) -> String {
    format!(
        "{}%{}",
        like_escape(&format!("sched:{schedule}:")),
        like_escape(&format!(":{}", fire_text(fire_at)))
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

/// Takes the schedule's fan-out lock on a connection of its own (closed, not
/// pooled, when dropped: that is what releases the lock on every path).
async fn lock(
    pool: &PgPool,
    schedule: &str,
    if_busy: IfBusy,
) -> Result<Option<PoolConnection<Postgres>>> {
    let mut conn = pool.acquire().await.context("fan-out connection")?;
    conn.close_on_drop();
    let key = format!("landlord-fanout:{schedule}");
    match if_busy {
        IfBusy::Wait => {
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(&key)
                .execute(&mut *conn)
                .await
                .context("waiting for the fan-out lock")?;
            Ok(Some(conn))
        }
        IfBusy::Skip => {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut *conn)
                .await
                .context("taking the fan-out lock")?;
            Ok(got.then_some(conn))
        }
    }
}

/// One tenant in the firing's scope.
#[derive(sqlx::FromRow)]
struct Candidate {
    id: i64,
    slug: String,
    /// This firing already gave it its job (a resumed fan-out).
    has_job: bool,
    /// Skipped: a previous run of the schedule is still live (overlap policy).
    busy: bool,
}

/// Fans one firing out (or finishes a fan-out an earlier process started).
/// `None`: another process holds the schedule and `if_busy` is [`IfBusy::Skip`].
pub async fn fan_out(
    pool: &PgPool,
    registry: &Registry,
    s: &Schedule,
    fire_at: DateTime<Utc>,
    leader: &str,
    if_busy: IfBusy,
) -> Result<Option<FanOut>> {
    let name = s.name();
    let kind = registry
        .get(&s.spec.kind)
        .with_context(|| format!("schedule {name}: unknown job kind {}", s.spec.kind))?;
    let Some(mut conn) = lock(pool, name, if_busy).await? else {
        return Ok(None);
    };
    if let Some(finished) = open_firing(&mut conn, name, fire_at, leader).await? {
        return Ok(Some(finished));
    }
    let tenants = candidates(&mut conn, s, fire_at).await?;
    let skipped = tenants.iter().filter(|t| t.busy).count() as i64;
    let todo: Vec<&Candidate> = tenants.iter().filter(|t| !t.has_job && !t.busy).collect();
    let chunks: Vec<&[&Candidate]> = todo.chunks(CHUNK).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        write_chunk(&mut conn, kind, s, fire_at, chunk).await?;
        if i + 1 < chunks.len() {
            failpoint::hit("scheduler.mid_fanout");
            failpoint::pause("scheduler.fanout_pause").await;
        }
    }
    let jobs = close_firing(&mut conn, name, fire_at, skipped).await?;
    // Dropping `conn` closes it, which releases the lock.
    Ok(Some(FanOut { jobs, skipped }))
}

/// Records the firing (once) and reads it back: its counts if it is already
/// finished, `None` if it is fanning out (new, or cut short earlier).
async fn open_firing(
    conn: &mut PgConnection,
    name: &str,
    fire_at: DateTime<Utc>,
    leader: &str,
) -> Result<Option<FanOut>> {
    sqlx::query(
        "INSERT INTO schedule_firings (schedule, fire_at, status, leader) VALUES ($1, $2, 'fanning_out', $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(fire_at)
    .bind(leader)
    .execute(&mut *conn)
    .await
    .context("recording the firing")?;
    let (status, jobs, skipped): (FiringStatus, i32, i32) = sqlx::query_as(
        "SELECT status, jobs, skipped FROM schedule_firings WHERE schedule = $1 AND fire_at = $2",
    )
    .bind(name)
    .bind(fire_at)
    .fetch_one(&mut *conn)
    .await
    .context("reading the firing")?;
    Ok(status.is_finished().then_some(FanOut {
        jobs: i64::from(jobs),
        skipped: i64::from(skipped),
    }))
}

/// Every tenant in the firing's scope (at most the sample), with whether this
/// firing already gave it its job and whether an earlier run of the schedule
/// is still live (overlap).
async fn candidates(
    conn: &mut PgConnection,
    s: &Schedule,
    fire_at: DateTime<Utc>,
) -> Result<Vec<Candidate>> {
    let key_prefix = format!("sched:{}:", s.name());
    let key_suffix = format!(":{}", fire_text(fire_at));
    // Tenants that have their job come first and busy ones last, so a sample
    // (restore drills) is taken from the free tenants, and a resumed sampled
    // fan-out keeps what it already picked. The rest of a sample is a
    // pseudo-random pick that is the same for the same firing.
    // A key counts only on a job of this tenant (and, for this firing's
    // job, of this kind): a job of another tenant or kind that holds a
    // key of the schedule's shape is not the tenant's run (callers' keys
    // live in their own namespace, so none should exist).
    sqlx::query_as(
        "WITH live AS ( \
           SELECT DISTINCT tenant_id, split_part(substr(dedupe_key, length($4) + 1), ':', 1) AS slug FROM jobs \
           WHERE $6 AND status IN ('queued', 'running', 'retrying') AND dedupe_key LIKE $7 \
         ), scope AS ( \
           SELECT t.id, t.slug, \
                  EXISTS (SELECT 1 FROM jobs j WHERE j.dedupe_key = $4 || t.slug || $5 \
                          AND j.tenant_id = t.id AND j.kind = $8) AS has_job, \
                  EXISTS (SELECT 1 FROM live l WHERE l.slug = t.slug AND l.tenant_id = t.id) AS live \
           FROM tenants t \
           WHERE t.status = 'active' AND ($1::text[] IS NULL OR t.slug = ANY($1)) \
         ) \
         SELECT id, slug, has_job, (live AND NOT has_job) AS busy FROM scope \
         ORDER BY has_job DESC, (live AND NOT has_job), \
                  CASE WHEN $2::bigint IS NULL THEN '' ELSE md5(slug || $3) END, id \
         LIMIT $2",
    )
    .bind(s.spec.tenants.as_deref())
    .bind(s.spec.sample.map(i64::from))
    .bind(fire_at.to_rfc3339())
    .bind(&key_prefix)
    .bind(&key_suffix)
    .bind(s.spec.skip_overlap)
    .bind(format!("{}%", like_escape(&key_prefix)))
    .bind(&s.spec.kind)
    .fetch_all(&mut *conn)
    .await
    .context("listing the schedule's tenants")
}

/// Writes one chunk's jobs and their outbox rows in one transaction.
async fn write_chunk(
    conn: &mut PgConnection,
    kind: &KindSpec,
    s: &Schedule,
    fire_at: DateTime<Utc>,
    chunk: &[&Candidate],
) -> Result<()> {
    let name = s.name();
    let spread_ms = i64::from(s.spec.spread_seconds) * 1000;
    let (mut ids, mut tenant_ids, mut dedupe, mut run_ats, mut payloads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in chunk.iter() {
        // Spread start times over the window, stably per tenant, to the millisecond.
        let offset_ms = if spread_ms > 0 {
            i64::from(crc(&t.slug)) % spread_ms
        } else {
            0
        };
        let id = uuid::Uuid::now_v7();
        let msg = JobMessage::new(id, kind.kind, Some(&t.slug), s.spec.args.clone());
        payloads.push(serde_json::to_value(&msg).context("encoding message")?);
        ids.push(id);
        tenant_ids.push(t.id);
        dedupe.push(job_key(name, &t.slug, fire_at));
        run_ats.push(fire_at + chrono::Duration::milliseconds(offset_ms));
    }
    let message_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut tx = conn.begin().await.context("starting transaction")?;
    // Idempotent: a key that exists in any state is not inserted again
    // (the lock makes that check exact), and the live-key unique index
    // backs it up. Outbox rows only for the jobs actually written.
    sqlx::query(
        "WITH new AS ( \
           INSERT INTO jobs (id, kind, queue, tenant_id, args, status, max_attempts, dedupe_key, run_at, origin) \
           SELECT u.id, $6, $7, u.tenant_id, $8, 'queued', $9, u.key, u.run_at, 'catalog' \
           FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::timestamptz[]) AS u(id, tenant_id, key, run_at) \
           WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dedupe_key = u.key \
                             AND j.tenant_id = u.tenant_id AND j.kind = $6) \
           ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running', 'retrying') \
           DO NOTHING \
           RETURNING id \
         ) \
         INSERT INTO outbox (exchange, routing_key, payload, message_id, job_id, available_at) \
         SELECT $10, $7, u.payload, u.message_id, u.job_id, u.run_at \
         FROM UNNEST($5::jsonb[], $11::text[], $1::uuid[], $4::timestamptz[]) AS u(payload, message_id, job_id, run_at) \
         WHERE u.job_id IN (SELECT id FROM new)",
    )
    .bind(&ids)
    .bind(&tenant_ids)
    .bind(&dedupe)
    .bind(&run_ats)
    .bind(&payloads)
    .bind(kind.kind)
    .bind(kind.queue)
    .bind(&s.spec.args)
    .bind(kind.max_attempts as i32)
    .bind(topology::WORK)
    .bind(&message_ids)
    .execute(&mut *tx)
    .await
    .context("writing the firing's jobs")?;
    tx.commit().await.context("committing a fan-out chunk")
}

/// Counts the firing's jobs and marks it done; returns the count.
async fn close_firing(
    conn: &mut PgConnection,
    name: &str,
    fire_at: DateTime<Utc>,
    skipped: i64,
) -> Result<i64> {
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE dedupe_key LIKE $1")
        .bind(firing_pattern(name, fire_at))
        .fetch_one(&mut *conn)
        .await
        .context("counting the firing's jobs")?;
    // Set, not added: a resumed fan-out looked at every tenant still without
    // its job, so its count of skipped tenants is the firing's.
    sqlx::query(
        "UPDATE schedule_firings SET status = 'done', jobs = $3, skipped = $4, finished_at = now() \
         WHERE schedule = $1 AND fire_at = $2 AND status = 'fanning_out'",
    )
    .bind(name)
    .bind(fire_at)
    .bind(jobs as i32)
    .bind(skipped as i32)
    .execute(&mut *conn)
    .await
    .context("closing the firing")?;
    Ok(jobs)
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
