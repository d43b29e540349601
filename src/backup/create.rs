//! Taking one backup of a tenant database: pg_dump streamed through the
//! encoders into the store, then the manifest, then the catalog row marked
//! complete and `backup.completed` queued, then retention. Any failure aborts
//! the upload, removes what was written, marks the row failed and records
//! `backup.failed`. An attempt killed half-way is cleaned up by the next
//! attempt of the same job (or by `backups reconcile`).

use std::time::Instant;

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
    settings::Codec,
    shared,
    store::Store,
    stream::{self, Encoding},
};
use crate::{
    runtime::{JobContext, JobError, store as jobs},
    tenants::Tenant,
};

/// What the caller may override for this one backup.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Retention for this run (the seed's `--keep N`); default: configured.
    pub retention: Option<Policy>,
    pub codec: Option<Codec>,
    /// Put the backup on legal hold with this reason (final backups).
    pub hold: Option<String>,
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

/// Records `backup.failed` right away (the job itself has not ended yet).
async fn record_failure(ctx: &JobContext, t: &Tenant, backup_id: Uuid, error: &str) {
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

/// Takes one backup of `t`. Retryable errors for what may heal (network,
/// store, a killed connection), fatal ones for what will not.
pub async fn backup(ctx: &JobContext, t: &Tenant, opts: &Options) -> Result<Value, JobError> {
    if t.status == "deleted" || t.provision_step != "done" {
        return Err(JobError::fatal(format!(
            "tenant {} has no database to back up (status {}, provisioning step {})",
            t.slug, t.status, t.provision_step
        )));
    }
    let shared = t.isolation == "shared";
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

    let format = if shared { "shared" } else { "custom" };
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
        .map_err(|e| JobError::fatal(format!("bad age recipient: {e}")))?;
    let encrypted = !recipients.is_empty();
    let id = Uuid::now_v7();
    let started = Utc::now();
    let key = store.key(&manifest::object_name(
        &t.slug, started, id, codec, encrypted,
    ));
    let manifest_key = manifest::manifest_key(&key);
    let store_name = store.describe();
    catalog::insert(
        &ctx.catalog,
        &NewBackup {
            id,
            tenant_id: t.id,
            job_id: Some(ctx.job_id),
            store: &store_name,
            object_key: &key,
            manifest_key: Some(&manifest_key),
            format,
            codec: codec.as_str(),
            level: Some(level),
            encrypted,
        },
    )
    .await?;
    tracing::info!(backup = %id, key = %key, "backup started");

    let clock = Instant::now();
    // A database tenant is pg_dump's; a shared tenant's rows come from an
    // export task reading one snapshot of the shared database.
    let (source, export) = if shared {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (settings, tenant, scope) = (
            ctx.settings.clone(),
            t.clone(),
            shared::scope(&ctx.settings),
        );
        let task =
            tokio::spawn(async move { shared::export(&settings, &tenant, &scope, tx).await });
        (stream::Source::Channel(rx), Some(task))
    } else {
        let mut cmd = pgtool::command(&ctx.settings, &t.db_server, &t.db_name, "pg_dump")
            .map_err(JobError::fatal)?;
        cmd.args(["--format=custom", "--compress=0", "--no-sync"]);
        (stream::Source::Child(cmd), None)
    };
    let mut upload = store.start(&key)?;
    let progress_ctx = ctx.clone();
    let catalog_pool = ctx.catalog.clone();
    let mut recorded_upload = false;
    let dumped = stream::dump_into(
        source,
        Encoding {
            codec,
            level,
            recipients: recipients.clone(),
            threads: if db_size >= ZSTD_THREADS_FROM { 2 } else { 0 },
        },
        cfg.part_size,
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
    let outcome: Result<(stream::Measured, Manifest)> = async {
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
        let finished = Utc::now();
        let manifest = Manifest {
            manifest_version: 1,
            backup_id: id,
            tenant: t.slug.clone(),
            tenant_id: t.id,
            database: t.db_name.clone(),
            server: t.db_server.clone(),
            server_version: server_version.clone(),
            pg_dump_version: pg_dump_version.clone(),
            schema_version,
            format: format.into(),
            tables: tables.clone(),
            codec: codec.as_str().into(),
            level,
            encryption: encrypted.then(|| "age-x25519".to_string()),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            object_key: key.clone(),
            raw_bytes: m.raw_bytes,
            stored_bytes: m.stored_bytes,
            sha256: m.sha256.clone(),
            parts: m.parts,
            started_at: started,
            finished_at: finished,
            duration_ms: clock.elapsed().as_millis() as i64,
            landlord_version: env!("CARGO_PKG_VERSION").into(),
        };
        store
            .put(
                &manifest_key,
                Bytes::from(serde_json::to_vec_pretty(&manifest)?),
            )
            .await
            .context("writing the manifest")?;
        Ok((m, manifest))
    }
    .await;
    let (measured, manifest) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::warn!(backup = %id, error = %msg, "backup failed; aborting the upload");
            if let Some(uid) = &upload_id
                && let Err(e) = store.abort(&key, uid).await
            {
                tracing::warn!(error = %e, "could not abort the upload; reconcile will find it");
            }
            let _ = store.delete(&key).await;
            let _ = store.delete(&manifest_key).await;
            let _ = catalog::fail(&ctx.catalog, id, &msg).await;
            record_failure(ctx, t, id, &msg).await;
            return Err(JobError::retryable(msg));
        }
    };
    let mut tx = ctx.catalog.begin().await?;
    catalog::complete(
        &mut tx,
        id,
        &Completion {
            raw_bytes: measured.raw_bytes,
            stored_bytes: measured.stored_bytes,
            sha256: &measured.sha256,
            schema_version,
            server_version: &server_version,
            pg_dump_version: &pg_dump_version,
            duration_ms: manifest.duration_ms,
        },
    )
    .await?;
    if let Some(reason) = &opts.hold {
        sqlx::query("UPDATE backups SET held = true, held_reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let summary = json!({
        "tenant": t.slug,
        "backup_id": id,
        "key": key,
        "name": key.rsplit('/').next(),
        "codec": codec.as_str(),
        "encrypted": encrypted,
        "raw_bytes": measured.raw_bytes,
        "stored_bytes": measured.stored_bytes,
        "sha256": measured.sha256,
        "parts": measured.parts,
        "duration_ms": manifest.duration_ms,
        "held": opts.hold.is_some(),
    });
    ctx.emit("backup.completed", summary.clone());
    crate::metrics::backup_done(measured.stored_bytes, manifest.duration_ms);

    let policy = opts
        .retention
        .clone()
        .unwrap_or_else(|| cfg.retention.clone());
    let pruned = prune::apply(&ctx.catalog, &store, t, &policy, false).await;
    let retention = match pruned {
        Ok(p) => json!({"policy": policy.to_string(), "deleted": p.deleted, "kept": p.kept}),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "retention failed; will retry after the next backup");
            json!({"policy": policy.to_string(), "error": format!("{e:#}")})
        }
    };
    let mut result = summary;
    result["retention"] = retention;
    result["cleaned_interrupted_attempts"] = json!(cleaned);
    Ok(result)
}
