//! Verifying a backup without touching the tenant: read it back, checking
//! SHA-256, size, decryption and decompression, and list the archive with
//! `pg_restore --list`; with `restore_test`, restore it into a scratch
//! database, check that, and drop it.

use serde_json::{Value, json};
use uuid::Uuid;

use super::{catalog::Backup, restore, state::BackupFormat, store::Store, stream::Sink};
use crate::{
    config::Settings,
    runtime::{JobError, ResultExt},
    tenants::Tenant,
};

/// The scratch database of `job`'s restore tests (see
/// [`restore::job_db_name`]): an attempt drops what an earlier, interrupted
/// attempt of the same job left, and the job's compensation drops it if the
/// last attempt was lost.
pub fn scratch_name(db: &str, job: Uuid) -> String {
    restore::job_db_name(db, "vfy", job)
}

/// Drops `job`'s restore-test scratch database if an attempt left it.
pub async fn drop_scratch(settings: &Settings, t: &Tenant, job: Uuid) -> Result<(), JobError> {
    restore::drop_scratch_db(settings, &t.db_server, &scratch_name(&t.db_name, job))
        .await
        .retryable_ctx("dropping the scratch database an earlier attempt left")
}

pub async fn verify(
    settings: &Settings,
    t: &Tenant,
    b: &Backup,
    restore_test: bool,
    job: Uuid,
) -> Result<Value, JobError> {
    let store = Store::open(&settings.backup).await?;
    let clock = std::time::Instant::now();
    let manifest = restore::manifest_of(&store, b).await?;
    if b.format == BackupFormat::Shared {
        // A restore test of shared rows is an import rolled back at the end.
        let (m, imported) = if restore_test {
            let (m, i) = restore::shared_rows(settings, &store, t, b, false).await?;
            (m, Some(i))
        } else {
            (
                restore::stream_into(settings, &store, b, Sink::Discard).await?,
                None,
            )
        };
        return Ok(json!({
            "tenant": t.slug,
            "backup_id": b.id,
            "backup": b.name(),
            "checksum": "ok",
            "sha256": m.sha256,
            "stored_bytes": m.stored_bytes,
            "raw_bytes": m.raw_bytes,
            "manifest": manifest.is_some(),
            "restore_test": restore_test,
            "rows": imported.map(|i| i.rows),
            "duration_ms": clock.elapsed().as_millis() as i64,
        }));
    }
    if !restore_test {
        let sink = if b.format == BackupFormat::Custom {
            let mut cmd = super::pgtool::offline(settings, "pg_restore");
            // The listing proves the archive's table of contents is readable;
            // the rest of the stream is still decoded and checksummed.
            cmd.arg("--list").stdout(std::process::Stdio::null());
            Sink::Peek(cmd)
        } else {
            Sink::Discard
        };
        let m = restore::stream_into(settings, &store, b, sink).await?;
        return Ok(json!({
            "tenant": t.slug,
            "backup_id": b.id,
            "backup": b.name(),
            "checksum": "ok",
            "sha256": m.sha256,
            "stored_bytes": m.stored_bytes,
            "raw_bytes": m.raw_bytes,
            "manifest": manifest.is_some(),
            "restore_test": false,
            "duration_ms": clock.elapsed().as_millis() as i64,
        }));
    }
    let scratch = scratch_name(&t.db_name, job);
    drop_scratch(settings, t, job).await?;
    let res = restore::restore_into_scratch(settings, &store, t, b, &scratch).await;
    // A test looks at the loaded scratch database here (`verify.scratch_loaded=MILLIS`).
    crate::failpoint::pause("verify.scratch_loaded").await;
    crate::failpoint::hit("verify.scratch_loaded");
    let dropped = restore::drop_scratch_db(settings, &t.db_server, &scratch).await;
    let (m, checked) = res?;
    dropped.retryable_ctx("dropping the scratch database")?;
    Ok(json!({
        "tenant": t.slug,
        "backup_id": b.id,
        "backup": b.name(),
        "checksum": "ok",
        "sha256": m.sha256,
        "stored_bytes": m.stored_bytes,
        "raw_bytes": m.raw_bytes,
        "manifest": manifest.is_some(),
        "restore_test": true,
        "tables": checked.tables,
        "rows": checked.rows,
        "schema_version": checked.schema_version,
        "duration_ms": clock.elapsed().as_millis() as i64,
    }))
}
