//! `provision`: the provisioning saga of one tenant, a persisted state machine
//! (`tenants.provision_step`): pending → database → migrated → role → done.
//!
//! Every step is idempotent and records its completion before the next one
//! starts, so a retry after a crash resumes where the last attempt stopped.
//! When the job dies (a fatal error, or attempts spent), `on_dead` drops
//! what the saga created and marks the tenant `failed`.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::migrate::{MigrateError, Migrator};

use crate::{
    config::TemplateStrategy,
    failpoint,
    ident::quote_ident,
    lifecycle::{
        credentials,
        teardown::{self, Retirement},
    },
    runtime::{
        Job, JobContext, JobError,
        store::{self, EnqueueRequest, Origin},
    },
    tenant_schema,
    tenants::{self, Tenant},
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provision {}

fn retry(e: anyhow::Error) -> JobError {
    JobError::retryable(format!("{e:#}"))
}

/// A broken migration fails the same way every time; a lost connection may not.
pub(crate) fn classify(e: MigrateError) -> JobError {
    match e {
        MigrateError::ExecuteMigration(sqlx::Error::Database(d), v) => {
            JobError::fatal(format!("tenant migration {v} failed: {d}"))
        }
        e @ (MigrateError::VersionMissing(_)
        | MigrateError::VersionMismatch(_)
        | MigrateError::Dirty(_)
        | MigrateError::Source(_)) => JobError::fatal(format!("tenant migrations: {e}")),
        e => JobError::retryable(format!("tenant migrations: {e}")),
    }
}

async fn set_step(
    ctx: &JobContext,
    tenant_id: i64,
    step: &str,
    schema_version: Option<i64>,
) -> Result<(), JobError> {
    sqlx::query(
        "UPDATE tenants SET provision_step = $2, schema_version = coalesce($3, schema_version), updated_at = now() \
         WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(tenant_id)
    .bind(step)
    .bind(schema_version)
    .execute(&ctx.catalog)
    .await?;
    Ok(())
}

/// Creates the tenant database (cloned from the server's template when the
/// strategy allows). Returns the template used, if any.
async fn create_database(
    ctx: &JobContext,
    t: &Tenant,
    m: &Migrator,
) -> Result<Option<String>, JobError> {
    let settings = &ctx.settings;
    let admin = tenant_schema::admin(settings, &t.db_server)
        .await
        .map_err(retry)?;
    if tenant_schema::database_exists(&admin, &t.db_name)
        .await
        .map_err(retry)?
    {
        // Created by an earlier attempt of this saga (create() refuses names it does not own).
        return Ok(None);
    }
    let strategy = settings.provisioning.template;
    let template = match strategy {
        TemplateStrategy::None => None,
        _ => match tenant_schema::ensure_template(&ctx.catalog, settings, &t.db_server, m).await {
            Ok(name) => Some(name),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "no template; creating an empty database and migrating it");
                None
            }
        },
    };
    let sql = match (&template, strategy) {
        (Some(tpl), TemplateStrategy::FileCopy) => format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY",
            quote_ident(&t.db_name),
            quote_ident(tpl)
        ),
        (Some(tpl), _) => format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY WAL_LOG",
            quote_ident(&t.db_name),
            quote_ident(tpl)
        ),
        (None, _) => format!("CREATE DATABASE {}", quote_ident(&t.db_name)),
    };
    sqlx::raw_sql(&sql)
        .execute(&admin)
        .await
        .map_err(|e| JobError::retryable(format!("creating database {}: {e}", t.db_name)))?;
    Ok(template)
}

/// Applies the migrations the database does not have yet, then ANALYZE.
async fn migrate(ctx: &JobContext, t: &Tenant, m: &Migrator) -> Result<i64, JobError> {
    let pool = tenant_schema::pool_on(&ctx.settings, &t.db_server, &t.db_name)
        .await
        .map_err(retry)?;
    let res = m.run(&pool).await;
    if res.is_ok() {
        sqlx::raw_sql("ANALYZE").execute(&pool).await?;
    }
    pool.close().await;
    res.map_err(classify)?;
    Ok(tenant_schema::version(m))
}

/// `active`, `tenant.provisioned`, and the welcome mail, in one transaction.
async fn finalize(
    ctx: &JobContext,
    t: &Tenant,
    timings: &Map<String, Value>,
    template: Option<&str>,
) -> Result<(), JobError> {
    let mut tx = ctx.catalog.begin().await?;
    let updated = sqlx::query(
        "UPDATE tenants SET status = 'active', provision_step = 'done', provisioned_at = now(), updated_at = now() \
         WHERE id = $1 AND status = 'provisioning'",
    )
    .bind(t.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(JobError::fatal("tenant is no longer provisioning"));
    }
    let total_ms = (chrono::Utc::now() - t.created_at).num_milliseconds();
    let data = json!({
        "plan": t.plan,
        "settings": t.settings,
        "server": t.db_server,
        "database": t.db_name,
        "role": credentials::role_name(&t.db_name),
        "template": template,
        "timings_ms": timings,
        "since_created_ms": total_ms,
    });
    store::record(
        &mut tx,
        "landlord:provision",
        "tenant.provisioned",
        (t.id, &t.slug),
        Some(ctx.job_id),
        data,
    )
    .await?;
    let registry = crate::workers::registry();
    store::enqueue_in(
        &mut tx,
        &registry,
        &EnqueueRequest {
            kind: "welcome_mail".into(),
            tenant: Some(t.slug.clone()),
            dedupe_key: Some(format!("welcome:{}", t.slug)),
            ..Default::default()
        },
        Origin::Catalog,
    )
    .await
    .map_err(|e| JobError::retryable(format!("enqueueing the welcome mail: {e}")))?;
    tx.commit().await?;
    Ok(())
}

impl Job for Provision {
    const KIND: &'static str = "provision";
    const QUEUE: &'static str = "provision";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 5;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let slug = ctx.tenant()?.slug.clone();
        let t = tenants::get(&ctx.catalog, &slug)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        if t.status == "active" && t.provision_step == "done" {
            return Ok(json!({"tenant": t.slug, "already_active": true}));
        }
        if t.status != "provisioning" {
            return Err(JobError::fatal(format!(
                "tenant {slug} is {}, not provisioning",
                t.status
            )));
        }
        let m = tenant_schema::migrator(&ctx.settings)
            .await
            .map_err(|e| JobError::fatal(format!("{e:#}")))?;
        let mut timings = Map::new();
        let mut template: Option<String> = None;
        let mut step = t.provision_step.clone();
        let resumed_from = step.clone();
        if t.isolation == "shared" {
            // No database, migrations or role of its own: its rows live in
            // the shared database, isolated by row-level security.
            step = "role".into();
        }
        loop {
            let started = Instant::now();
            let (next, label) = match step.as_str() {
                "pending" => {
                    template = create_database(ctx, &t, &m).await?;
                    set_step(ctx, t.id, "database", None).await?;
                    failpoint::hit("provision.after_database");
                    ("database", "create_database_ms")
                }
                "database" => {
                    // A database cloned just now from the template of these very
                    // migrations is already migrated and analyzed.
                    let version = if template.is_some() {
                        tenant_schema::version(&m)
                    } else {
                        migrate(ctx, &t, &m).await?
                    };
                    set_step(ctx, t.id, "migrated", Some(version)).await?;
                    failpoint::hit("provision.after_migrate");
                    ("migrated", "migrate_ms")
                }
                "migrated" => {
                    let (role, password) =
                        credentials::ensure_role(&ctx.settings, &t.db_server, &t.db_name)
                            .await
                            .map_err(retry)?;
                    let mut tx = ctx.catalog.begin().await?;
                    credentials::store(&mut tx, t.id, &role, &password)
                        .await
                        .map_err(retry)?;
                    sqlx::query("UPDATE tenants SET provision_step = 'role' WHERE id = $1 AND status = 'provisioning'")
                        .bind(t.id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    failpoint::hit("provision.after_role");
                    ("role", "role_ms")
                }
                "role" => {
                    finalize(ctx, &t, &timings, template.as_deref()).await?;
                    ("done", "finalize_ms")
                }
                "done" => break,
                other => {
                    return Err(JobError::fatal(format!(
                        "unknown provisioning step {other:?}"
                    )));
                }
            };
            timings.insert(label.into(), json!(started.elapsed().as_millis() as u64));
            ctx.progress(step_index(next), 4, next).await;
            step = next.to_string();
        }
        Ok(json!({
            "tenant": t.slug,
            "database": t.db_name,
            "server": t.db_server,
            "template": template,
            "resumed_from": resumed_from,
            "timings_ms": timings,
        }))
    }

    async fn on_dead(&self, ctx: &JobContext, error: &str) -> Result<(), JobError> {
        let slug = ctx.tenant()?.slug.clone();
        let t = tenants::get(&ctx.catalog, &slug)
            .await
            .map_err(|e| JobError::retryable(e.to_string()))?;
        if t.status != "provisioning" {
            return Ok(());
        }
        let reason = crate::message::limit(error);
        teardown::retire(
            &ctx.catalog,
            &ctx.settings,
            &t,
            Retirement {
                status: "failed",
                reason: Some(&reason),
                drop_role: true,
                event: "tenant.provisioning_failed",
                data: json!({"reason": reason, "step": t.provision_step, "dropped": {"database": t.db_name}}),
                actor: "landlord:provision",
                job_id: Some(ctx.job_id),
            },
        )
        .await
        .map_err(retry)
    }
}

fn step_index(step: &str) -> u64 {
    match step {
        "database" => 1,
        "migrated" => 2,
        "role" => 3,
        _ => 4,
    }
}
