//! `--wait`: follow jobs in the catalog until each ends, with a progress bar
//! on a terminal and one line per change elsewhere.

use std::{collections::HashMap, io::IsTerminal, time::Duration};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;
use uuid::Uuid;

use crate::runtime::store::{self, JobRow};

/// Polls until every job is terminal; returns their final rows in order.
pub async fn follow(pool: &PgPool, ids: &[Uuid], json: bool) -> Result<Vec<JobRow>> {
    let tty = std::io::stderr().is_terminal() && !json;
    let bar = if tty {
        let b = ProgressBar::new(ids.len() as u64);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} jobs done  {msg}",
        ) {
            b.set_style(style);
        }
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let mut last: HashMap<Uuid, String> = HashMap::new();
    let mut done: HashMap<Uuid, JobRow> = HashMap::new();
    while done.len() < ids.len() {
        for id in ids {
            if done.contains_key(id) {
                continue;
            }
            let Some(row) = store::get(pool, *id).await? else {
                anyhow::bail!("job {id} disappeared from the catalog");
            };
            let progress = row
                .progress
                .as_ref()
                .and_then(|p| Some((p.get("done")?.as_u64()?, p.get("total")?.as_u64()?)))
                .map(|(d, t)| format!(" {d}/{t}"))
                .unwrap_or_default();
            let state = format!("{} (attempt {}){progress}", row.status, row.attempts);
            if last.get(id) != Some(&state) {
                let line = format!(
                    "{id} {} {}: {state}",
                    row.kind,
                    row.tenant.as_deref().unwrap_or("-")
                );
                match &bar {
                    Some(b) => b.set_message(line),
                    None if !json => eprintln!("{line}"),
                    None => {}
                }
                last.insert(*id, state);
            }
            if row.is_terminal() {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                done.insert(*id, row);
            }
        }
        if done.len() < ids.len() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(ids.iter().filter_map(|id| done.remove(id)).collect())
}
