//! `maintenance`: the seed's tenants:maintenance on one tenant database,
//! step by step, each recorded in the result with its timings and figures:
//! cleanup (old rows, in small batches), VACUUM (ANALYZE) (`full` only when
//! asked), REINDEX … CONCURRENTLY (the tenant keeps working; invalid
//! `_ccnew`/`_ccold` leftovers of an interrupted one are dropped first),
//! ANALYZE.
//! `dry_run` reports what each step would do and changes nothing.
//!
//! VACUUM and REINDEX are heavy: at most `LANDLORD_HEAVY_PER_SERVER` of them
//! run at once per database server, across the fleet; a job over the limit
//! is postponed without spending an attempt.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use crate::{
    backup,
    config::CleanupRule,
    ident::quote_ident,
    runtime::{Job, JobContext, JobError, heavy},
    tenants::Isolation,
};

/// Seed default for `--days`.
pub const DEFAULT_DAYS: u32 = 90;
/// Rows deleted per statement by cleanup (each its own short transaction).
const CLEANUP_BATCH: i64 = 1000;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    #[serde(default)]
    pub analyze: bool,
    #[serde(default)]
    pub vacuum: bool,
    /// VACUUM FULL (locks tables; only with `vacuum`).
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub optimize: bool,
    #[serde(default)]
    pub cleanup: bool,
    /// Age in days beyond which cleanup deletes rows (default: each rule's, else 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(default)]
    pub dry_run: bool,
    /// Back up first; the other steps run only if the backup succeeded.
    #[serde(default)]
    pub backup: bool,
}

fn db_err(e: sqlx::Error) -> JobError {
    JobError::retryable(format!("tenant database: {e}"))
}

/// User tables of the tenant database, as (schema, table).
async fn tables(db: &PgPool) -> Result<Vec<(String, String)>, JobError> {
    sqlx::query_as("SELECT schemaname::text, relname::text FROM pg_stat_user_tables ORDER BY 1, 2")
        .fetch_all(db)
        .await
        .map_err(db_err)
}

async fn size(db: &PgPool) -> Result<i64, JobError> {
    sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(db)
        .await
        .map_err(db_err)
}

fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// For a shared tenant: only rows whose tenant column holds this key.
struct OnlyTenant<'a> {
    column: &'a str,
    key: &'a str,
}

async fn cleanup(
    db: &PgPool,
    rules: &[CleanupRule],
    days: Option<u32>,
    dry_run: bool,
    only: Option<&OnlyTenant<'_>>,
) -> Result<Value, JobError> {
    let mut per_table = Map::new();
    let mut total = 0i64;
    for rule in rules {
        // Rules name tables the tenant schema may not have; those are skipped.
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 AND column_name = $2)",
        )
        .bind(&rule.table)
        .bind(&rule.column)
        .fetch_one(db)
        .await
        .map_err(db_err)?;
        if !exists {
            per_table.insert(
                rule.table.clone(),
                json!({"skipped": "no such table or column"}),
            );
            continue;
        }
        let keep_days = days.or(rule.days).unwrap_or(DEFAULT_DAYS);
        let table = qualified("public", &rule.table);
        let column = quote_ident(&rule.column);
        // A shared tenant's cleanup touches its own rows only ($3 is its key,
        // cast to the column's type as the catalog names it, so the column's
        // index serves the filter).
        let tenant = match only {
            Some(o) => {
                let column_type: Option<String> = sqlx::query_scalar(
                    "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                     WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
                )
                .bind(&table)
                .bind(o.column)
                .fetch_optional(db)
                .await
                .map_err(db_err)?;
                let Some(column_type) = column_type else {
                    per_table.insert(
                        rule.table.clone(),
                        json!({"skipped": format!("no tenant column {}", o.column)}),
                    );
                    continue;
                };
                format!(" AND {} = $3::{column_type}", quote_ident(o.column))
            }
            None => String::new(),
        };
        let key = only.map(|o| o.key.to_string()).unwrap_or_default();
        let rows = if dry_run {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT count(*) FROM {table} WHERE {column} < now() - make_interval(days => $1){tenant}"
            ))
            .bind(keep_days as i32)
            .bind(0i64)
            .bind(&key)
            .fetch_one(db)
            .await
            .map_err(db_err)?
        } else {
            let mut deleted = 0i64;
            loop {
                // (tableoid, ctid): a ctid alone is not unique across the
                // partitions of a partitioned table.
                let n = sqlx::query(&format!(
                    "DELETE FROM {table} WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM {table} \
                     WHERE {column} < now() - make_interval(days => $1){tenant} LIMIT $2)"
                ))
                .bind(keep_days as i32)
                .bind(CLEANUP_BATCH)
                .bind(&key)
                .execute(db)
                .await
                .map_err(db_err)?
                .rows_affected() as i64;
                deleted += n;
                if n < CLEANUP_BATCH {
                    break;
                }
            }
            deleted
        };
        total += rows;
        per_table.insert(
            rule.table.clone(),
            json!({"rows": rows, "older_than_days": keep_days}),
        );
    }
    Ok(json!({"tables": per_table, "rows": total}))
}

async fn vacuum(db: &PgPool, full: bool, dry_run: bool) -> Result<Value, JobError> {
    let dead: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT schemaname::text, relname::text, n_dead_tup FROM pg_stat_user_tables ORDER BY n_dead_tup DESC",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    let dead_rows: i64 = dead.iter().map(|(_, _, n)| n).sum();
    if !dry_run {
        let sql = if full {
            "VACUUM (FULL, ANALYZE)"
        } else {
            "VACUUM (ANALYZE)"
        };
        sqlx::raw_sql(sql).execute(db).await.map_err(db_err)?;
    }
    Ok(json!({"full": full, "dead_rows": dead_rows, "tables": dead.len()}))
}

/// Invalid indexes an interrupted `REINDEX … CONCURRENTLY` left behind
/// (`…_ccnew`, `…_ccold`, maybe with a digit), as (schema, index); not those
/// of a build still in progress.
async fn leftover_indexes(db: &PgPool) -> Result<Vec<(String, String)>, JobError> {
    sqlx::query_as(
        "SELECT s.schemaname::text, s.indexrelname::text FROM pg_stat_user_indexes s \
         JOIN pg_index i ON i.indexrelid = s.indexrelid \
         WHERE NOT i.indisvalid AND s.indexrelname ~ '_cc(new|old)[0-9]*$' \
           AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = i.indrelid) \
         ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)
}

async fn optimize(db: &PgPool, dry_run: bool) -> Result<Value, JobError> {
    // Leftovers of an interrupted REINDEX CONCURRENTLY: REINDEX skips invalid
    // indexes, so they would stay (and be maintained on every write) forever.
    let leftovers = leftover_indexes(db).await?;
    let dropped: Vec<String> = leftovers
        .iter()
        .map(|(schema, index)| format!("{schema}.{index}"))
        .collect();
    let mut indexes: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT schemaname::text, indexrelname::text, pg_relation_size(indexrelid) FROM pg_stat_user_indexes ORDER BY 1, 2",
    )
    .fetch_all(db)
    .await
    .map_err(db_err)?;
    indexes.retain(|(schema, index, _)| !leftovers.iter().any(|(s, i)| s == schema && i == index));
    let bytes: i64 = indexes.iter().map(|(_, _, b)| b).sum();
    if !dry_run {
        for (schema, index) in &leftovers {
            sqlx::raw_sql(&format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                qualified(schema, index)
            ))
            .execute(db)
            .await
            .map_err(db_err)?;
        }
        for (schema, table) in tables(db).await? {
            // CONCURRENTLY: the tenant keeps reading and writing meanwhile.
            sqlx::raw_sql(&format!(
                "REINDEX TABLE CONCURRENTLY {}",
                qualified(&schema, &table)
            ))
            .execute(db)
            .await
            .map_err(db_err)?;
        }
    }
    Ok(json!({
        "indexes": indexes.len(),
        "index_bytes": bytes,
        "concurrently": true,
        "invalid_dropped": dropped,
    }))
}

async fn analyze(db: &PgPool, dry_run: bool) -> Result<Value, JobError> {
    let stale: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(n_mod_since_analyze), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(db)
    .await
    .map_err(db_err)?;
    let list = tables(db).await?;
    if !dry_run {
        for (schema, table) in &list {
            sqlx::raw_sql(&format!("ANALYZE {}", qualified(schema, table)))
                .execute(db)
                .await
                .map_err(db_err)?;
        }
    }
    Ok(json!({"tables": list.len(), "rows_changed_since_analyze": stale}))
}

impl Job for Maintenance {
    const KIND: &'static str = "maintenance";
    const QUEUE: &'static str = "maintenance";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

    fn validate(&self) -> Result<(), String> {
        if !(self.analyze || self.vacuum || self.optimize || self.cleanup || self.backup) {
            return Err(
                "choose at least one step: --backup, --analyze, --vacuum, --optimize, --cleanup"
                    .into(),
            );
        }
        if self.full && !self.vacuum {
            return Err("--full applies to --vacuum".into());
        }
        if let Some(d) = self.days
            && !(1..=36_500).contains(&d)
        {
            return Err("--days must be between 1 and 36500".into());
        }
        Ok(())
    }

    fn timeout(&self, settings: &crate::config::Settings) -> Duration {
        settings
            .worker
            .job_timeout
            .max(Duration::from_secs(6 * 3600))
    }

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let tenant = ctx.tenant()?.clone();
        let heavy = !self.dry_run && (self.vacuum || self.optimize || self.backup);
        let _slot = if heavy {
            Some(heavy::slot_or_postpone(ctx, &tenant.db_server).await?)
        } else {
            None
        };
        let started_at = chrono::Utc::now();
        let mut steps = Map::new();
        if self.backup {
            let started = Instant::now();
            let mut out = if self.dry_run {
                json!({"would_back_up": tenant.db_name})
            } else {
                backup::create::backup(ctx, &tenant, &backup::create::Options::default())
                    .await
                    .map_err(|e| {
                        let msg = format!("backup failed, maintenance stopped: {e}");
                        match e {
                            JobError::Fatal(_) => JobError::fatal(msg),
                            _ => JobError::retryable(msg),
                        }
                    })?
            };
            if let Some(o) = out.as_object_mut() {
                o.insert(
                    "duration_ms".into(),
                    json!(started.elapsed().as_millis() as u64),
                );
            }
            steps.insert("backup".into(), out);
        }
        let db = ctx.tenant_db().await?;
        let size_before = size(&db).await?;
        let planned = [
            ("cleanup", self.cleanup),
            ("vacuum", self.vacuum),
            ("optimize", self.optimize),
            ("analyze", self.analyze),
        ];
        let total = planned.iter().filter(|(_, on)| *on).count() as u64;
        let mut done = 0;
        let shared = tenant.isolation == Isolation::Shared;
        let key = tenant.key();
        let only = shared.then(|| OnlyTenant {
            column: &ctx.settings.tenancy.tenant_column.value,
            key: &key,
        });
        for (name, on) in planned {
            if !on {
                continue;
            }
            let started = Instant::now();
            let mut out = match name {
                "cleanup" => {
                    cleanup(
                        &db,
                        &ctx.settings.maintenance.cleanup_rules,
                        self.days,
                        self.dry_run,
                        only.as_ref(),
                    )
                    .await?
                }
                // VACUUM, REINDEX and ANALYZE work on whole tables: a shared
                // database is maintained as a whole, not per tenant.
                _ if shared => {
                    json!({"skipped": "shared database: maintained as a whole, not per tenant"})
                }
                "vacuum" => vacuum(&db, self.full, self.dry_run).await?,
                "optimize" => optimize(&db, self.dry_run).await?,
                _ => analyze(&db, self.dry_run).await?,
            };
            if let Some(o) = out.as_object_mut() {
                o.insert(
                    "duration_ms".into(),
                    json!(started.elapsed().as_millis() as u64),
                );
            }
            steps.insert(name.into(), out);
            done += 1;
            ctx.progress(done, total, name).await;
        }
        let size_after = size(&db).await?;
        db.close().await;
        let result = json!({
            "database": tenant.db_name,
            "server": tenant.db_server,
            "dry_run": self.dry_run,
            "steps": steps,
            "size_before_bytes": size_before,
            "size_after_bytes": size_after,
            "started_at": started_at,
            "finished_at": chrono::Utc::now(),
        });
        ctx.emit("maintenance.completed", result.clone());
        Ok(result)
    }
}
