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
                if !dry_run {
                    delete_objects(store, b).await?;
                    catalog::mark_deleted(pool, b.id).await?;
                }
                report.deleted.push(b.name().to_string());
            }
        }
    }
    Ok(report)
}

/// Removes a backup's object and manifest from the store.
pub async fn delete_objects(store: &Store, b: &catalog::Backup) -> Result<()> {
    // Manifest first: an object without a manifest is debris, never a backup.
    if let Some(m) = &b.manifest_key {
        store.delete(m).await?;
    }
    store.delete(&b.object_key).await
}
