//! Store versus catalog: objects no complete backup claims, complete backups
//! whose object or manifest is gone, and multipart uploads left incomplete.
//! Uploads and rows of backups still running are left alone. With `fix`,
//! aborts the stale uploads, deletes orphaned landlord objects (never files
//! in the seed's naming, which `restore --backup NAME` can import) and marks
//! rows without objects failed (deleting what is left of them).

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use serde::Serialize;
use sqlx::PgPool;

use super::{
    manifest,
    state::{BackupFormat, BackupStatus},
    store::Store,
};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub store: String,
    pub objects: usize,
    /// Landlord objects with no complete or running row.
    pub orphan_objects: Vec<String>,
    /// Dumps in the seed's naming, not in the catalog (restorable by name).
    pub importable: Vec<String>,
    /// Complete backups missing their object or manifest: (backup id, missing key).
    pub missing_objects: Vec<(String, String)>,
    /// Incomplete uploads not belonging to a running backup: (key, upload id).
    pub incomplete_uploads: Vec<(String, String)>,
    pub fixed: bool,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.orphan_objects.is_empty()
            && self.missing_objects.is_empty()
            && self.incomplete_uploads.is_empty()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: uuid::Uuid,
    status: BackupStatus,
    object_key: String,
    manifest_key: Option<String>,
    job_running: bool,
}

pub async fn run(pool: &PgPool, store: &Store, fix: bool) -> Result<Report> {
    let name = store.describe();
    let prefix = store.key("tenants/");
    // Uploads first: an upload that completes between the two listings then
    // shows up as an object too, never as missing.
    let uploads = store.pending_uploads(&prefix).await?;
    let objects = store.list(&prefix).await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT b.id, b.status, b.object_key, b.manifest_key, \
                coalesce(j.status IN ('queued', 'running'), false) AS job_running \
         FROM backups b LEFT JOIN jobs j ON j.id = b.job_id \
         WHERE b.store = $1 AND b.status IN ('complete', 'running')",
    )
    .bind(&name)
    .fetch_all(pool)
    .await?;
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut in_progress: HashSet<&str> = HashSet::new();
    for r in &rows {
        if r.status.is_complete() || r.job_running {
            claimed.insert(&r.object_key);
            if let Some(m) = &r.manifest_key {
                claimed.insert(m);
            }
        }
        if r.status == BackupStatus::Running && r.job_running {
            in_progress.insert(&r.object_key);
        }
    }
    let present: HashMap<&str, u64> = objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
    let mut report = Report {
        store: name,
        objects: objects.len(),
        fixed: fix,
        ..Default::default()
    };
    for o in &objects {
        if claimed.contains(o.key.as_str()) {
            continue;
        }
        let file = o.key.rsplit('/').next().unwrap_or(&o.key);
        match manifest::classify(file) {
            Some((BackupFormat::Plain, _, _)) => report.importable.push(o.key.clone()),
            _ => report.orphan_objects.push(o.key.clone()),
        }
    }
    for r in rows.iter().filter(|r| r.status.is_complete()) {
        for key in std::iter::once(&r.object_key).chain(r.manifest_key.iter()) {
            if !present.contains_key(key.as_str()) {
                report.missing_objects.push((r.id.to_string(), key.clone()));
            }
        }
    }
    for u in uploads {
        if !in_progress.contains(u.key.as_str()) {
            report.incomplete_uploads.push((u.key, u.upload_id));
        }
    }
    if fix {
        for (key, id) in &report.incomplete_uploads {
            store.abort(key, id).await?;
        }
        for key in &report.orphan_objects {
            store.delete(key).await?;
        }
        for (id, key) in &report.missing_objects {
            // What is left of the backup (its manifest, or its object) goes
            // too: a failed backup claims nothing in the store.
            for r in rows.iter().filter(|r| r.id.to_string() == *id) {
                for k in std::iter::once(&r.object_key).chain(r.manifest_key.iter()) {
                    if present.contains_key(k.as_str()) {
                        store.delete(k).await?;
                    }
                }
            }
            sqlx::query(
                "UPDATE backups SET status = 'failed', error = $2 WHERE id = $1::uuid AND status = 'complete'",
            )
            .bind(id)
            .bind(format!("reconcile: {key} is missing from the store"))
            .execute(pool)
            .await?;
        }
    }
    Ok(report)
}
