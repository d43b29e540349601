//! Fleet migration: bring every server's template up to the current tenant
//! schema, then enqueue one `migrate` job per tenant (`landlord tenants
//! migrate`, [`crate::Landlord::migrate_tenants`]).
//!
//! Templates first, so tenants created while the fleet migrates are cloned
//! from the new schema. Each job's dedupe key names the tenant and the schema
//! version (`migrate:SLUG:VERSION`): running this twice while the first run's
//! jobs are live enqueues nothing new.
//!
//! This module never migrates a tenant database itself (the `migrate` job does,
//! within its fleet-wide concurrency slots) and never prints.

use sqlx::PgPool;

use crate::{
    config::{Settings, TemplateStrategy},
    lifecycle::{LifecycleError, jobs::Migrate},
    runtime::{
        Job, Registry,
        store::{self, DedupeKey, EnqueueError, EnqueueRequest, Enqueued, Origin},
    },
    tenant_schema, tenants,
};

/// The fleet-wide concurrency a `migrate` job accepts.
pub const CONCURRENCY: std::ops::RangeInclusive<u32> = 1..=256;

/// Which tenants a fleet migration covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationTargets {
    /// Every provisioned tenant (active, inactive or suspended).
    All,
    /// These tenants, by slug; each must exist.
    Named(Vec<String>),
}

/// How a fleet migration goes.
#[derive(Debug, Clone)]
pub struct FleetMigration {
    pub targets: MigrationTargets,
    /// At most this many tenant migrations at once across the fleet (1-256).
    pub concurrency: u32,
}

/// A server's template, up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateReady {
    pub server: String,
    pub template: String,
}

/// The templates brought up to date and the jobs still to enqueue.
#[derive(Debug, Clone)]
pub struct MigrationPlan {
    /// The tenant schema version the jobs migrate to.
    pub version: i64,
    /// Empty when templates are off (`LANDLORD_TEMPLATE=none`).
    pub templates: Vec<TemplateReady>,
    /// One `migrate` request per tenant; empty when no tenant is provisioned.
    pub jobs: Vec<EnqueueRequest>,
}

/// What [`migrate_fleet`] did.
#[derive(Debug, Clone)]
pub struct FleetMigrated {
    pub version: i64,
    pub templates: Vec<TemplateReady>,
    /// Tenant slug and its job (`existing` when a live one had the same key).
    pub jobs: Vec<(String, Enqueued)>,
}

/// Updates every server's template, then returns one `migrate` request per
/// tenant without enqueuing them (the CLI's `--sync` runs them in-process).
/// `on_template` hears of each template as soon as it is ready.
pub async fn plan(
    pool: &PgPool,
    settings: &Settings,
    opts: &FleetMigration,
    mut on_template: impl FnMut(&TemplateReady),
) -> Result<MigrationPlan, LifecycleError> {
    if !CONCURRENCY.contains(&opts.concurrency) {
        return Err(LifecycleError::Invalid(
            "concurrency must be between 1 and 256".into(),
        ));
    }
    let m = tenant_schema::migrator(settings).await?;
    let version = tenant_schema::version(&m);
    let mut templates = Vec::new();
    if settings.provisioning.template != TemplateStrategy::None {
        for server in settings.servers.keys() {
            let template = tenant_schema::ensure_template(pool, settings, server, &m).await?;
            let ready = TemplateReady {
                server: server.clone(),
                template,
            };
            on_template(&ready);
            templates.push(ready);
        }
    }
    let jobs = target_slugs(pool, &opts.targets)
        .await?
        .into_iter()
        .map(|slug| request(&slug, version, opts.concurrency))
        .collect::<Result<_, _>>()
        .map_err(|e| LifecycleError::Invalid(e.to_string()))?;
    Ok(MigrationPlan {
        version,
        templates,
        jobs,
    })
}

/// [`plan`], then enqueues every job (published through the outbox).
pub async fn migrate_fleet(
    pool: &PgPool,
    settings: &Settings,
    registry: &Registry,
    opts: &FleetMigration,
) -> Result<FleetMigrated, LifecycleError> {
    let plan = plan(pool, settings, opts, |_| {}).await?;
    let mut jobs = Vec::with_capacity(plan.jobs.len());
    for req in &plan.jobs {
        let enq = store::enqueue(pool, registry, req, Origin::Catalog)
            .await
            .map_err(|e| match e {
                EnqueueError::Other(e) => LifecycleError::Other(e),
                EnqueueError::Tenant(e) => e.into(),
                other => LifecycleError::Invalid(other.to_string()),
            })?;
        jobs.push((req.tenant.clone().unwrap_or_default(), enq));
    }
    Ok(FleetMigrated {
        version: plan.version,
        templates: plan.templates,
        jobs,
    })
}

/// The slugs to migrate: every provisioned tenant, or the named ones (which must exist).
async fn target_slugs(
    pool: &PgPool,
    targets: &MigrationTargets,
) -> Result<Vec<String>, LifecycleError> {
    match targets {
        MigrationTargets::All => Ok(tenants::list(pool, None)
            .await?
            .into_iter()
            .filter(|t| t.is_migratable())
            .map(|t| t.slug)
            .collect()),
        MigrationTargets::Named(slugs) => {
            for s in slugs {
                tenants::get(pool, s).await?;
            }
            Ok(slugs.clone())
        }
    }
}

/// One tenant's `migrate` job, deduplicated per tenant and schema version.
fn request(slug: &str, version: i64, concurrency: u32) -> Result<EnqueueRequest, EnqueueError> {
    Migrate { concurrency }.request(
        Some(slug),
        Some(DedupeKey::internal(format!("migrate:{slug}:{version}"))),
        None,
    )
}
