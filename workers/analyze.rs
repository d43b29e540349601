//! `analyze`: refreshes planner statistics of every table in a tenant's
//! database (`ANALYZE`), table by table with progress. The seed's
//! `tenants:maintenance --analyze`.
//!
//! Only for a tenant with a database of its own: `ANALYZE` works on whole
//! tables, so on a shared tenant it would read every tenant's rows (and cost
//! them all); a shared tenant's `analyze` fails at once with a fatal error
//! saying so (the operator analyzes the shared database itself).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::{
    ident::quote_ident,
    runtime::{Job, JobContext, JobError},
    tenants::Isolation,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Analyze {}

impl Job for Analyze {
    const KIND: &'static str = "analyze";
    const QUEUE: &'static str = "maintenance";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 3;

    async fn run(&self, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let tenant = ctx.tenant()?.clone();
        if tenant.isolation != Isolation::Database {
            return Err(JobError::fatal(format!(
                "analyze refused for tenant {}: it shares database {} with other tenants, and \
                 ANALYZE reads whole tables, every tenant's rows; analyze the shared database \
                 as its operator instead",
                tenant.slug, tenant.db_name
            )));
        }
        let started = Instant::now();
        let db = ctx.tenant_db().await?;
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT schemaname::text, tablename::text FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             AND schemaname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
        )
        .fetch_all(&db)
        .await?;
        let total = tables.len() as u64;
        for (i, (schema, table)) in tables.iter().enumerate() {
            // Names come from the tenant's own catalog and are quoted.
            let sql = format!("ANALYZE {}.{}", quote_ident(schema), quote_ident(table));
            sqlx::raw_sql(&sql).execute(&db).await?;
            ctx.progress(i as u64 + 1, total, &format!("analyzed {schema}.{table}"))
                .await;
        }
        db.close().await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let result = serde_json::json!({
            "database": tenant.db_name,
            "server": tenant.db_server,
            "tables": total,
            "duration_ms": duration_ms,
        });
        ctx.emit(
            "maintenance.completed",
            serde_json::json!({"steps": {"analyze": result.clone()}}),
        );
        Ok(result)
    }
}
