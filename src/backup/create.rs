//! Taking one backup of a tenant database: pg_dump streamed through the
//! encoders into the store, then the manifest, then the catalog row marked
//! complete and `backup.completed` queued, then retention. Any failure aborts
//! the upload, removes what was written, marks the row failed and records
//! `backup.failed`. An attempt killed half-way is cleaned up by the next
//! attempt of the same job (or by `backups reconcile`).
//!
//! # A backup, step by step
//!
//! 1. **Before** (in `workers/backup.rs`, or inside `maintenance --backup`):
//!    the tenant lock (the kind is tenant-exclusive), then a heavy slot on
//!    the tenant's server (`runtime::heavy`; postponed, no attempt spent,
//!    while every slot is taken).
//! 2. **Refuse what cannot work** (fatal): a deleted tenant, one whose
//!    provisioning is not done, a `pg_dump` older than the server.
//! 3. **Clean up earlier attempts** (`clean_leftovers`): every `running`
//!    row of this job has its upload aborted, its object and manifest
//!    deleted, and is marked `failed`.
//! 4. **Row**: the `backups` row is inserted `running` (keys, format, codec,
//!    encryption) before any byte is written.
//! 5. **Stream** (`stream::dump_into`): `pg_dump` (a shared tenant: its rows,
//!    exported by `backup::shared` from one snapshot) → zstd|gzip → age →
//!    parts → the store, SHA-256 and sizes measured on the way; the multipart upload
//!    id goes onto the row at the first part; progress after every part.
//!    Failpoints `backup.after_upload_started`, `backup.pause_after_part`.
//! 6. **Complete the object**, only once `pg_dump` exited 0 and the job still
//!    owns its claim. Failpoint `backup.after_object`.
//! 7. **Manifest last**: `{object key}.manifest.json`.
//! 8. **Row `complete`** (only from `running`, fenced on the attempt's
//!    claim; a hold in the same transaction). From here the backup is listed
//!    and restorable; `backup.completed` goes out with the job's success.
//!    For a `backup` job ([`Options::whole_job`]) the attempt has succeeded
//!    from here (`JobContext::effect_committed`): losing the tenant lock, a
//!    timeout or an error afterwards does not fail it. Failpoint
//!    `backup.after_complete` (pause).
//! 9. **Retention** (`prune::apply`): a failure is logged, reported in the
//!    result and retried after the next backup.
//!
//! A failure in steps 5–7 aborts the upload, deletes object and manifest,
//! marks the row `failed`, commits `backup.failed` at once and returns a
//! retryable error. A worker killed in steps 5–8 leaves a `running` row that
//! nothing lists, removed by the next attempt, by `Backup::on_dead` or by
//! `backups reconcile --fix`. A job that ends `dead` after step 8 (its last
//! attempt died before recording its success) has that backup withdrawn by
//! `Backup::on_dead` ([`super::withdraw`]): a dead backup job leaves no
//! backup, as it announced none.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    catalog::{self, Completion, NewBackup},
    manifest::{self, Manifest},
    pgtool, prune,
    retention::Policy,
    shared,
    state::BackupFormat,
    store::{Store, Upload},
    stream::{self, Encoding},
};
use crate::{
    config::backup::Codec,
    runtime::{JobContext, JobError, ResultExt, store as jobs},
    tenants::{Isolation, Tenant},
};

/// What the caller may override for this one backup.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Retention for this run (the seed's `--keep N`); default: configured.
    pub retention: Option<Policy>,
    pub codec: Option<Codec>,
    /// Put the backup on legal hold with this reason (final backups).
    pub hold: Option<String>,
    /// The backup is its job's whole effect (a `backup` job; not
    /// `maintenance --backup`, which has steps after it): once its row is
    /// complete the attempt has succeeded (`JobContext::effect_committed`),
    /// even if it is stopped during retention or loses its tenant lock.
    pub whole_job: bool,
}

/// Databases from this size (bytes) are compressed on two zstd worker
/// threads; smaller ones on the reading thread.
const ZSTD_THREADS_FROM: i64 = 64 << 20;

/// Removes what earlier, interrupted attempts of this job left behind and
/// emits the `backup.failed` they could not.
pub async fn clean_leftovers(ctx: &JobContext, store: &Store) -> Result<usize> {
    let rows = catalog::leftovers(&ctx.catalog, ctx.job_id).await?;
    for b in &rows {
        if let Some(id) = &b.upload_id {
            store.abort(&b.object_key, id).await?;
        }
        store.delete(&b.object_key).await?;
        if let Some(m) = &b.manifest_key {
            store.delete(m).await?;
        }
        let why = "attempt interrupted (killed, timed out or cancelled); cleaned up later";
        catalog::fail(&ctx.catalog, b.id, why).await?;
        // The interrupted attempt could not announce its own failure.
        if let Ok(t) = ctx.tenant() {
            record_failure(ctx, t, b.id, why).await;
        }
        tracing::info!(backup = %b.id, "cleaned up an interrupted backup attempt");
    }
    Ok(rows.len())
}

async fn server_facts(ctx: &JobContext) -> Result<(String, i32, Option<i64>, i64)> {
    let db = ctx.tenant_db().await?;
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db)
        .await?;
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&db)
        .await?;
    let has_migrations: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&db)
            .await?;
    let schema: Option<i64> = if has_migrations {
        sqlx::query_scalar("SELECT max(version) FROM public._sqlx_migrations WHERE success")
            .fetch_one(&db)
            .await?
    } else {
        None
    };
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&db)
        .await?;
    db.close().await;
    let major = num.trim().parse::<i32>().unwrap_or(0) / 10000;
    Ok((version, major, schema, size))
}

/// Records `backup.failed` right away (the job itself has not ended yet,
/// or ended without announcing it).
pub(super) async fn record_failure(ctx: &JobContext, t: &Tenant, backup_id: Uuid, error: &str) {
    let res: Result<()> = async {
        let mut tx = ctx.catalog.begin().await?;
        jobs::insert_event(
            &mut tx,
            "backup.failed",
            Some(&t.slug),
            Some(ctx.job_id),
            json!({"tenant": t.slug, "backup_id": backup_id, "attempt": ctx.attempt, "error": error}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not record backup.failed");
    }
}

/// What preflight settled: the store, the server's facts and the encoding.
struct Preflight {
    store: Store,
    /// Rows of interrupted earlier attempts cleaned up.
    cleaned: usize,
    shared: bool,
    server_version: String,
    schema_version: Option<i64>,
    db_size: i64,
    pg_dump_version: String,
    format: BackupFormat,
    codec: Codec,
    level: i32,
    /// age recipients; empty = not encrypted.
    recipients: Vec<age::x25519::Recipient>,
}

impl Preflight {
    fn encrypted(&self) -> bool {
        !self.recipients.is_empty()
    }
}

/// The backup's row, written `running` before any byte.
struct Row {
    id: Uuid,
    started: chrono::DateTime<Utc>,
    key: String,
    manifest_key: String,
}

/// What the stream reads from and writes to.
struct Started {
    clock: Instant,
    source: stream::Source,
    /// A shared tenant's export task, which reports its own errors.
    export: Option<tokio::task::JoinHandle<Result<BTreeMap<String, u64>>>>,
    upload: Upload,
}

/// A stream that did not end in a complete object and manifest.
struct Failed {
    error: anyhow::Error,
    upload_id: Option<String>,
}

/// Takes one backup of `t`. Retryable errors for what may heal (network,
/// store, a killed connection), fatal ones for what will not.
pub async fn backup(ctx: &JobContext, t: &Tenant, opts: &Options) -> Result<Value, JobError> {
    // One backup per job: an earlier attempt may have completed it and then
    // lost its lease, its lock or the chance to record its success.
    if let Some(done) = catalog::completed_by_job(&ctx.catalog, ctx.job_id).await? {
        tracing::warn!(backup_id = %done.id, "an earlier attempt of this job completed the backup; not taking another");
        let summary = json!({
            "tenant": t.slug,
            "backup_id": done.id,
            "key": done.object_key,
            "name": done.name(),
            "codec": done.codec.as_str(),
            "encrypted": done.encrypted,
            "raw_bytes": done.raw_bytes,
            "stored_bytes": done.stored_bytes,
            "sha256": done.sha256,
            "duration_ms": done.duration_ms,
            "held": done.held,
            "completed_by_earlier_attempt": true,
        });
        ctx.emit("backup.completed", summary.clone());
        return Ok(summary);
    }
    let pre = preflight(ctx, t, opts).await?;
    let (row, started) = start(ctx, t, &pre).await?;
    match stream_dump(ctx, t, &pre, &row, started).await {
        Ok((measured, manifest)) => finish(ctx, t, opts, &pre, &row, &measured, &manifest).await,
        Err(failed) => Err(cleanup(ctx, t, &pre, &row, failed).await),
    }
}

/// Refuses what cannot work (fatal), cleans up earlier attempts, reads the
/// server's facts and picks codec, level and recipients.
async fn preflight(ctx: &JobContext, t: &Tenant, opts: &Options) -> Result<Preflight, JobError> {
    if !t.has_data() {
        return Err(JobError::fatal(format!(
            "tenant {} has no database to back up (status {}, provisioning step {})",
            t.slug, t.status, t.provision_step
        )));
    }
    let shared = t.isolation == Isolation::Shared;
    let cfg = &ctx.settings.backup;
    let store = Store::open(cfg).await?;
    let cleaned = clean_leftovers(ctx, &store).await?;

    let pg_dump_major = pgtool::major_version(&ctx.settings, "pg_dump").map_err(JobError::fatal)?;
    let (server_version, server_major, schema_version, db_size) = server_facts(ctx).await?;
    if (pg_dump_major as i32) < server_major {
        return Err(JobError::fatal(format!(
            "pg_dump {pg_dump_major} is older than server {} ({server_version}); install a newer client",
            t.db_server
        )));
    }
    let pg_dump_version = pgtool::version_line(&ctx.settings, "pg_dump");

    let format = if shared {
        BackupFormat::Shared
    } else {
        BackupFormat::Custom
    };
    let codec = opts.codec.unwrap_or(cfg.codec);
    let level = if opts.codec.is_some_and(|c| c != cfg.codec) {
        codec.default_level()
    } else {
        cfg.level
    };
    let recipients = cfg
        .age_recipients
        .iter()
        .map(|r| r.parse::<age::x25519::Recipient>())
        .collect::<Result<Vec<_>, _>>()
        .fatal_ctx("bad age recipient")?;
    Ok(Preflight {
        store,
        cleaned,
        shared,
        server_version,
        schema_version,
        db_size,
        pg_dump_version,
        format,
        codec,
        level,
        recipients,
    })
}

/// Writes the row (`running`), then prepares the source (pg_dump, or a
/// shared tenant's export task) and the upload.
async fn start(ctx: &JobContext, t: &Tenant, pre: &Preflight) -> Result<(Row, Started), JobError> {
    let id = Uuid::now_v7();
    let started = Utc::now();
    let key = pre.store.key(&manifest::object_name(
        &t.slug,
        started,
        id,
        pre.codec,
        pre.encrypted(),
    ));
    let manifest_key = manifest::manifest_key(&key);
    let store_name = pre.store.describe();
    catalog::insert(
        &ctx.catalog,
        &NewBackup {
            id,
            tenant_id: t.id,
            job_id: Some(ctx.job_id),
            store: &store_name,
            object_key: &key,
            manifest_key: Some(&manifest_key),
            format: pre.format,
            codec: pre.codec,
            level: Some(pre.level),
            encrypted: pre.encrypted(),
        },
    )
    .await?;
    tracing::info!(backup = %id, key = %key, "backup started");

    let clock = Instant::now();
    // A database tenant is pg_dump's; a shared tenant's rows come from an
    // export task reading one snapshot of the shared database.
    let (source, export) = if pre.shared {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (settings, tenant, scope) = (
            ctx.settings.clone(),
            t.clone(),
            shared::scope(&ctx.settings),
        );
        // The export's sessions carry the attempt's name, so ending the
        // attempt ends them too.
        let task = tokio::spawn(crate::runtime::sessions::inherit(async move {
            shared::export(&settings, &tenant, &scope, tx).await
        }));
        (stream::Source::Channel(rx), Some(task))
    } else {
        let mut cmd = pgtool::command(&ctx.settings, &t.db_server, &t.db_name, "pg_dump")
            .map_err(JobError::fatal)?;
        cmd.args(["--format=custom", "--compress=0", "--no-sync"]);
        (stream::Source::Child(cmd), None)
    };
    let upload = pre.store.start(&key)?;
    let row = Row {
        id,
        started,
        key,
        manifest_key,
    };
    let started = Started {
        clock,
        source,
        export,
        upload,
    };
    Ok((row, started))
}

/// Streams the dump into the store (the upload id onto the row at the first
/// part, progress after every part), then completes the object and writes
/// the manifest, last.
async fn stream_dump(
    ctx: &JobContext,
    t: &Tenant,
    pre: &Preflight,
    row: &Row,
    s: Started,
) -> Result<(stream::Measured, Manifest), Failed> {
    let Started {
        clock,
        source,
        export,
        mut upload,
    } = s;
    let (id, db_size) = (row.id, pre.db_size);
    let progress_ctx = ctx.clone();
    let catalog_pool = ctx.catalog.clone();
    let mut recorded_upload = false;
    let dumped = stream::dump_into(
        source,
        Encoding {
            codec: pre.codec,
            level: pre.level,
            recipients: pre.recipients.clone(),
            threads: if db_size >= ZSTD_THREADS_FROM { 2 } else { 0 },
        },
        ctx.settings.backup.part_size,
        &mut upload,
        &ctx.cancel,
        move |uid, raw| {
            let new_uid = match uid {
                Some(u) if !recorded_upload => {
                    recorded_upload = true;
                    Some(u.to_string())
                }
                _ => None,
            };
            let (pool, c) = (catalog_pool.clone(), progress_ctx.clone());
            let total = db_size.max(raw as i64) as u64;
            Box::pin(async move {
                if let Some(uid) = new_uid
                    && let Err(e) = catalog::set_upload_id(&pool, id, &uid).await
                {
                    tracing::warn!(error = %e, "could not record the upload id");
                }
                c.progress(raw, total, &format!("dumped {} MiB", raw >> 20))
                    .await;
            })
        },
    )
    .await;
    let upload_id = upload.id().map(str::to_string);
    let sealed: Result<(stream::Measured, Manifest)> = async {
        let m = dumped?;
        let tables = match export {
            Some(task) => Some(task.await.context("export task panicked")??),
            None => None,
        };
        if ctx.cancel.is_cancelled() {
            anyhow::bail!("the job was cancelled");
        }
        upload.complete().await.context("completing the upload")?;
        crate::failpoint::hit("backup.after_object");
        let manifest = manifest_of(t, pre, row, &m, tables, clock);
        pre.store
            .put(
                &row.manifest_key,
                Bytes::from(serde_json::to_vec_pretty(&manifest)?),
            )
            .await
            .context("writing the manifest")?;
        Ok((m, manifest))
    }
    .await;
    sealed.map_err(|error| Failed { error, upload_id })
}

/// The manifest of a streamed backup.
fn manifest_of(
    t: &Tenant,
    pre: &Preflight,
    row: &Row,
    m: &stream::Measured,
    tables: Option<BTreeMap<String, u64>>,
    clock: Instant,
) -> Manifest {
    Manifest {
        manifest_version: 1,
        backup_id: row.id,
        tenant: t.slug.clone(),
        tenant_id: t.id,
        database: t.db_name.clone(),
        server: t.db_server.clone(),
        server_version: pre.server_version.clone(),
        pg_dump_version: pre.pg_dump_version.clone(),
        schema_version: pre.schema_version,
        format: pre.format.as_str().into(),
        tables,
        codec: pre.codec.as_str().into(),
        level: pre.level,
        encryption: pre.encrypted().then(|| "age-x25519".to_string()),
        recipients: pre.recipients.iter().map(|r| r.to_string()).collect(),
        object_key: row.key.clone(),
        raw_bytes: m.raw_bytes,
        stored_bytes: m.stored_bytes,
        sha256: m.sha256.clone(),
        parts: m.parts,
        started_at: row.started,
        finished_at: Utc::now(),
        duration_ms: clock.elapsed().as_millis() as i64,
        landlord_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// After a failed stream: aborts the upload, deletes object and manifest,
/// marks the row failed and commits `backup.failed` at once. Returns the
/// (retryable) error to end the attempt with.
async fn cleanup(ctx: &JobContext, t: &Tenant, pre: &Preflight, row: &Row, f: Failed) -> JobError {
    let (store, id, key) = (&pre.store, row.id, &row.key);
    let msg = format!("{:#}", f.error);
    tracing::warn!(backup = %id, error = %msg, "backup failed; aborting the upload");
    if let Some(uid) = &f.upload_id
        && let Err(e) = store.abort(key, uid).await
    {
        tracing::warn!(error = %e, "could not abort the upload; reconcile will find it");
    }
    let _ = store.delete(key).await;
    let _ = store.delete(&row.manifest_key).await;
    let _ = catalog::fail(&ctx.catalog, id, &msg).await;
    record_failure(ctx, t, id, &msg).await;
    JobError::retryable(msg)
}

/// Marks the row complete (and held, if asked), announces the backup, then
/// applies retention; a retention failure is reported, not fatal.
async fn finish(
    ctx: &JobContext,
    t: &Tenant,
    opts: &Options,
    pre: &Preflight,
    row: &Row,
    measured: &stream::Measured,
    manifest: &Manifest,
) -> Result<Value, JobError> {
    let (id, key) = (row.id, &row.key);
    let mut tx = ctx.catalog.begin().await?;
    // A backup is complete only while its attempt still owns the job: an
    // attempt woken after its lease ran out (the reaper may have ended the
    // job) leaves its row running, for the next attempt's cleanup.
    if !ctx.fence_in(&mut tx).await? {
        return Err(JobError::retryable(
            "the attempt lost its job before the backup was recorded complete",
        ));
    }
    catalog::complete(
        &mut tx,
        id,
        &Completion {
            raw_bytes: measured.raw_bytes,
            stored_bytes: measured.stored_bytes,
            sha256: &measured.sha256,
            schema_version: pre.schema_version,
            server_version: &pre.server_version,
            pg_dump_version: &pre.pg_dump_version,
            duration_ms: manifest.duration_ms,
        },
    )
    .await?;
    if let Some(reason) = &opts.hold {
        catalog::hold_in(&mut tx, id, reason).await?;
    }
    tx.commit().await?;
    let mut summary = json!({
        "tenant": t.slug,
        "backup_id": id,
        "key": key,
        "name": key.rsplit('/').next(),
        "codec": pre.codec.as_str(),
        "encrypted": pre.encrypted(),
        "raw_bytes": measured.raw_bytes,
        "stored_bytes": measured.stored_bytes,
        "sha256": measured.sha256,
        "parts": measured.parts,
        "duration_ms": manifest.duration_ms,
        "held": opts.hold.is_some(),
    });
    ctx.emit("backup.completed", summary.clone());
    summary["cleaned_interrupted_attempts"] = json!(pre.cleaned);
    if opts.whole_job {
        ctx.effect_committed(summary.clone());
    }
    crate::metrics::backup_done(measured.stored_bytes, manifest.duration_ms);
    crate::failpoint::pause("backup.after_complete").await;

    let policy = opts
        .retention
        .clone()
        .unwrap_or_else(|| ctx.settings.backup.retention.clone());
    let pruned = prune::apply(&ctx.catalog, &pre.store, t, &policy, false).await;
    let retention = match pruned {
        Ok(p) => json!({"policy": policy.to_string(), "deleted": p.deleted, "kept": p.kept}),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "retention failed; will retry after the next backup");
            json!({"policy": policy.to_string(), "error": format!("{e:#}")})
        }
    };
    let mut result = summary;
    result["retention"] = retention;
    Ok(result)
}
