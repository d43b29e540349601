//! Applying a retention policy to one tenant's backups: the policy (a pure
//! function in `retention`) picks, this deletes the objects and then marks
//! the rows deleted. Held backups and the newest are never picked.

use anyhow::Result;
use chrono::Utc;
use serde::Serialize;
use sqlx::PgPool;

use super::{
    catalog,
    retention::{self, Candidate, Policy, Verdict},
    store::Store,
};
use crate::tenants::Tenant;

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tenant: String,
    pub policy: String,
    pub dry_run: bool,
    pub kept: usize,
    /// File names deleted (or that would be).
    pub deleted: Vec<String>,
    /// Every backup with its verdict, newest first.
    pub plan: Vec<(String, String)>,
}

pub async fn apply(
    pool: &PgPool,
    store: &Store,
    t: &Tenant,
    policy: &Policy,
    dry_run: bool,
) -> Result<Report> {
    let rows = catalog::complete_of(pool, t.id).await?;
    let candidates: Vec<Candidate> = rows
        .iter()
        .map(|b| Candidate {
            id: b.id,
            created_at: b.completed_at.unwrap_or(b.started_at),
            held: b.held,
        })
        .collect();
    let verdicts = retention::explain(policy, Utc::now(), &candidates);
    let mut report = Report {
        tenant: t.slug.clone(),
        policy: policy.to_string(),
        dry_run,
        kept: 0,
        deleted: Vec::new(),
        plan: Vec::new(),
    };
    for (id, verdict) in verdicts {
        let Some(b) = rows.iter().find(|b| b.id == id) else {
            continue;
        };
        match verdict {
            Verdict::Keep(why) => {
                report.kept += 1;
                report
                    .plan
                    .push((b.name().to_string(), format!("keep ({why})")));
            }
            Verdict::Prune => {
                report.plan.push((b.name().to_string(), "delete".into()));
                if !dry_run && delete(pool, store, b.id).await? != Deleted::Yes {
                    // Held or deleted since the plan was made: kept.
                    report.kept += 1;
                    if let Some(last) = report.plan.last_mut() {
                        last.1 = "keep (changed meanwhile)".into();
                    }
                    continue;
                }
                report.deleted.push(b.name().to_string());
            }
        }
    }
    Ok(report)
}

/// Slugs of the tenants with at least one complete backup (`prune --all`), in order.
pub use super::catalog::tenants_with_backups;

/// What [`delete`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    /// No complete backup with that id (never was, or already gone).
    NotComplete,
    /// On legal hold, with its reason.
    Held(Option<String>),
}

/// Deletes one complete, unheld backup: manifest, object, then the row. The
/// row stays locked throughout, so a hold placed meanwhile waits and then
/// finds the backup gone, and a backup held first is never deleted.
pub async fn delete(pool: &PgPool, store: &Store, id: uuid::Uuid) -> Result<Deleted> {
    let mut tx = pool.begin().await?;
    let Some(b) = catalog::lock_complete(&mut tx, id).await? else {
        return Ok(Deleted::NotComplete);
    };
    if b.held {
        return Ok(Deleted::Held(b.held_reason));
    }
    delete_objects(store, &b).await?;
    catalog::mark_deleted(&mut *tx, b.id).await?;
    tx.commit().await?;
    Ok(Deleted::Yes)
}

/// Removes a backup's object and manifest from the store.
async fn delete_objects(store: &Store, b: &catalog::Backup) -> Result<()> {
    // Manifest first: an object without a manifest is debris, never a backup.
    if let Some(m) = &b.manifest_key {
        store.delete(m).await?;
    }
    store.delete(&b.object_key).await
}
