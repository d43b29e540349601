//! `provision`: the provisioning saga of one tenant, a persisted state machine
//! (`tenants.provision_step`): pending → database → migrated → role → done.
//!
//! Every step is idempotent and records its completion before the next one
//! starts, so a retry after a crash resumes where the last attempt stopped.
//! When the job dies (a fatal error, or attempts spent), `on_dead` drops
//! what the saga created and marks the tenant `failed`.
//!
//! # Provisioning, step by step
//!
//! 1. **Create** (`lifecycle::create`, from `tenants create`, the API or the
//!    `Landlord` client): everything validated before any write; placement
//!    picks the server (`--server`, else fewest live tenants per unit of
//!    weight). One transaction locks the owner row, checks the plan limit,
//!    refuses a taken slug or a database of that name already on the server
//!    (landlord never takes over a database it did not create), writes the
//!    tenant (`provisioning`, step `pending`) and enqueues this job (dedupe
//!    `provision:{slug}`).
//! 2. **Claim**: under the tenant lock, `run` reloads the tenant: already
//!    done → success at once; not `provisioning` → fatal.
//! 3. **pending → database**: a database that exists was made by an earlier
//!    attempt; else clone the server's template (`tenant_schema::ensure_template`,
//!    unless the strategy is `none`), or create an empty database if there is
//!    no template. Failpoint `provision.after_database`.
//! 4. **database → migrated**: apply the migrations the database lacks (none
//!    after a clone of an up-to-date template), `ANALYZE`, record the schema
//!    version. A failing migration is fatal, a lost connection retryable.
//!    Failpoint `provision.after_migrate`.
//! 5. **migrated → role**: `credentials::ensure_role` creates (or alters) the
//!    tenant's login role with a new password, limited to its database; one
//!    catalog transaction stores the credentials and the step. Failpoint
//!    `provision.after_role`.
//! 6. **role → done** (`finalize`, only `WHERE status = 'provisioning'`):
//!    `active`, `tenant.provisioned` with per-step timings, the
//!    `welcome_mail` job, audit; the result names the template and
//!    `resumed_from`.
//! 7. **On death** (fatal error, last attempt failed or lost, any failure
//!    under `--sync`): `on_dead` → `lifecycle::teardown::retire` drops the
//!    database and role, forgets the credentials, marks the tenant `failed`
//!    and emits `tenant.provisioning_failed`. A worker killed mid-saga leaves
//!    the job `running` until the reaper re-drives it; the next attempt
//!    resumes at the recorded step.

use std::time::Instant;

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
        Job, JobContext, JobError, ResultExt,
        store::{self, DedupeKey},
    },
    tenant_schema,
    tenants::{self, Isolation, ProvisionStep, Tenant, TenantStatus},
    workers::welcome_mail::WelcomeMail,
};

pub use crate::lifecycle::jobs::Provision;

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
    step: ProvisionStep,
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
        .retryable()?;
    if tenant_schema::database_exists(&admin, &t.db_name)
        .await
        .retryable()?
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
        .retryable_ctx(format_args!("creating database {}", t.db_name))?;
    Ok(template)
}

/// Applies the migrations the database does not have yet, then ANALYZE.
async fn migrate(ctx: &JobContext, t: &Tenant, m: &Migrator) -> Result<i64, JobError> {
    let pool = tenant_schema::pool_on(&ctx.settings, &t.db_server, &t.db_name)
        .await
        .retryable()?;
    let res = m.run(&pool).await;
    if res.is_ok() {
        sqlx::raw_sql("ANALYZE").execute(&pool).await?;
    }
    pool.close().await;
    res.map_err(classify)?;
    Ok(tenant_schema::version(m))
}

/// Confines the tenant's role and database once the role has its grants: a
/// role of that name that existed before is stripped of SUPERUSER,
/// CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS and its memberships
/// (`tenant_schema::strip_role`, logged as a warning);
/// the role keeps only `SELECT` on `_sqlx_migrations`, and PUBLIC has no
/// `CREATE` on schema `public` (`tenant_schema::confine`).
async fn adopt_role(ctx: &JobContext, t: &Tenant, role: &str) -> Result<(), JobError> {
    let admin = tenant_schema::admin(&ctx.settings, &t.db_server)
        .await
        .retryable()?;
    let stripped = tenant_schema::strip_role(&admin, role).await;
    admin.close().await;
    let stripped = stripped.retryable_ctx("stripping the tenant role")?;
    if !stripped.is_empty() {
        tracing::warn!(
            role,
            attributes = ?stripped.attributes,
            memberships = ?stripped.memberships,
            "the tenant role already existed with more than a tenant may have; stripped"
        );
    }
    tenant_schema::confine_database(&ctx.settings, &t.db_server, &t.db_name)
        .await
        .retryable()
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
    WelcomeMail {}
        .enqueue_in(
            &mut tx,
            Some(&t.slug),
            Some(DedupeKey::internal(format!("welcome:{}", t.slug))),
            None,
        )
        .await
        .retryable_ctx("enqueueing the welcome mail")?;
    tx.commit().await?;
    Ok(())
}

impl Job for Provision {
    const KIND: &'static str = "provision";
    const QUEUE: &'static str = "provision";
    const NEEDS_TENANT: bool = true;
    const TENANT_EXCLUSIVE: bool = true;
    const MAX_ATTEMPTS: u32 = 5;
    const COMPENSATES: bool = true;

    async fn run(&self, ctx: &JobContext) -> Result<Value, JobError> {
        let slug = ctx.tenant()?.slug.clone();
        let t = tenants::get(&ctx.catalog, &slug).await.retryable()?;
        if t.status == TenantStatus::Active && t.is_provisioned() {
            return Ok(json!({"tenant": t.slug, "already_active": true}));
        }
        if t.status != TenantStatus::Provisioning {
            return Err(JobError::fatal(format!(
                "tenant {slug} is {}, not provisioning",
                t.status
            )));
        }
        let m = tenant_schema::migrator(&ctx.settings).await.fatal()?;
        let mut timings = Map::new();
        let mut template: Option<String> = None;
        let mut step = t.provision_step;
        let resumed_from = step;
        if t.isolation == Isolation::Shared {
            // No database, migrations or role of its own: its rows live in
            // the shared database, isolated by row-level security.
            step = ProvisionStep::Role;
        }
        loop {
            let started = Instant::now();
            let (next, label) = match step {
                ProvisionStep::Pending => {
                    template = create_database(ctx, &t, &m).await?;
                    set_step(ctx, t.id, ProvisionStep::Database, None).await?;
                    failpoint::hit("provision.after_database");
                    (ProvisionStep::Database, "create_database_ms")
                }
                ProvisionStep::Database => {
                    // A database cloned just now from the template of these very
                    // migrations is already migrated and analyzed.
                    let version = if template.is_some() {
                        tenant_schema::version(&m)
                    } else {
                        migrate(ctx, &t, &m).await?
                    };
                    set_step(ctx, t.id, ProvisionStep::Migrated, Some(version)).await?;
                    failpoint::hit("provision.after_migrate");
                    (ProvisionStep::Migrated, "migrate_ms")
                }
                ProvisionStep::Migrated => {
                    // Without the catalog key the password could not be kept:
                    // say so before a role exists.
                    let sealer = credentials::Sealer::load(&ctx.settings.secrets)
                        .fatal_ctx("provisioning needs the catalog key")?;
                    let (role, password) =
                        credentials::ensure_role(&ctx.settings, &t.db_server, &t.db_name)
                            .await
                            .retryable()?;
                    adopt_role(ctx, &t, &role).await?;
                    let mut tx = ctx.catalog.begin().await?;
                    credentials::store(&mut tx, &sealer, t.id, &role, &password)
                        .await
                        .retryable()?;
                    sqlx::query("UPDATE tenants SET provision_step = 'role' WHERE id = $1 AND status = 'provisioning'")
                        .bind(t.id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    failpoint::hit("provision.after_role");
                    (ProvisionStep::Role, "role_ms")
                }
                ProvisionStep::Role => {
                    finalize(ctx, &t, &timings, template.as_deref()).await?;
                    (ProvisionStep::Done, "finalize_ms")
                }
                ProvisionStep::Done => break,
            };
            timings.insert(label.into(), json!(started.elapsed().as_millis() as u64));
            ctx.progress(next.index(), 4, next.as_str()).await;
            step = next;
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
        let t = tenants::get(&ctx.catalog, &slug).await.retryable()?;
        if t.status != TenantStatus::Provisioning {
            return Ok(());
        }
        let reason = crate::message::limit(error);
        teardown::retire(
            &ctx.catalog,
            &ctx.settings,
            &t,
            Retirement {
                status: TenantStatus::Failed,
                reason: Some(&reason),
                drop_role: true,
                event: "tenant.provisioning_failed",
                data: json!({"reason": reason, "step": t.provision_step, "dropped": {"database": t.db_name}}),
                actor: "landlord:provision",
                job_id: Some(ctx.job_id),
            },
        )
        .await
        .retryable()
    }
}
