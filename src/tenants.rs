//! Tenants in the catalog: adopting an existing database as a tenant, looking
//! tenants up, and connecting to a tenant's database on its server.
//!
//! Every value is bound as a parameter; database names reach SQL text only in
//! `connect_tenant_db`'s URL, after validation.

use std::str::FromStr;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{ConnectOptions, PgPool, postgres::PgConnectOptions};
use thiserror::Error;

use crate::{config::Settings, ident};

mod state;

pub use state::{Isolation, ProvisionStep, TenantStatus};

/// A tenant as recorded in the catalog.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub status: TenantStatus,
    pub status_reason: Option<String>,
    pub isolation: Isolation,
    pub db_server: String,
    pub db_name: String,
    pub settings: serde_json::Value,
    pub schema_version: i64,
    pub owner_id: Option<i64>,
    pub provision_step: ProvisionStep,
    pub db_role: Option<String>,
    /// Shared tenants: the value of the tenant column (default: the id).
    pub tenant_key: Option<String>,
    pub provisioned_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const TENANT_COLUMNS: &str = "id, slug, name, plan, status, status_reason, isolation, db_server, \
     db_name, settings, schema_version, owner_id, provision_step, db_role, tenant_key, provisioned_at, created_at, updated_at";

/// Why a tenant could not be registered or found. Shown to the operator as is.
#[derive(Debug, Error)]
pub enum TenantError {
    #[error("invalid slug {slug:?}: {reason}")]
    InvalidSlug {
        slug: String,
        reason: ident::IdentError,
    },
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabase {
        name: String,
        reason: ident::IdentError,
    },
    #[error("invalid tenant name: {0}")]
    InvalidName(ident::IdentError),
    #[error("unknown database server {0:?}; configured servers: {1}")]
    UnknownServer(String, String),
    #[error("unknown plan {0:?}; plans: {1}")]
    UnknownPlan(String, String),
    #[error("tenant {0:?} already exists")]
    Exists(String),
    #[error("database {db:?} on server {server:?} already belongs to tenant {owner:?}")]
    DatabaseTaken {
        db: String,
        server: String,
        owner: String,
    },
    #[error("database {db:?} does not exist on server {server:?}")]
    NoSuchDatabase { db: String, server: String },
    #[error("unknown tenant {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What `landlord tenants register` adopts.
#[derive(Debug, Clone)]
pub struct Registration {
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub server: String,
    pub database: String,
}

/// Shortens a hostile value before echoing it.
fn short(s: &str) -> String {
    crate::message::truncate(s)
}

/// Adopts an existing database as an active tenant.
pub async fn register(
    pool: &PgPool,
    settings: &Settings,
    r: &Registration,
    actor: &str,
) -> Result<Tenant, TenantError> {
    ident::validate_slug(&r.slug).map_err(|reason| TenantError::InvalidSlug {
        slug: short(&r.slug),
        reason,
    })?;
    ident::validate_display_name(&r.name).map_err(TenantError::InvalidName)?;
    ident::validate_db_name(&r.database).map_err(|reason| TenantError::InvalidDatabase {
        name: short(&r.database),
        reason,
    })?;
    if !settings.servers.contains_key(&r.server) {
        return Err(TenantError::UnknownServer(
            short(&r.server),
            settings
                .servers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let plans: Vec<String> = sqlx::query_scalar("SELECT name FROM plans ORDER BY name")
        .fetch_all(pool)
        .await
        .context("reading plans")?;
    if !plans.iter().any(|p| p == &r.plan) {
        return Err(TenantError::UnknownPlan(short(&r.plan), plans.join(", ")));
    }
    if find(pool, &r.slug).await?.is_some() {
        return Err(TenantError::Exists(r.slug.clone()));
    }
    if let Some(owner) = sqlx::query_scalar::<_, String>(
        "SELECT slug FROM tenants WHERE db_server = $1 AND db_name = $2",
    )
    .bind(&r.server)
    .bind(&r.database)
    .fetch_optional(pool)
    .await
    .context("checking database ownership")?
    {
        return Err(TenantError::DatabaseTaken {
            db: r.database.clone(),
            server: r.server.clone(),
            owner,
        });
    }
    // The database must exist on its server: connect to its maintenance DB and look.
    let exists = database_exists(settings, &r.server, &r.database).await?;
    if !exists {
        return Err(TenantError::NoSuchDatabase {
            db: r.database.clone(),
            server: r.server.clone(),
        });
    }
    // Adopted databases get the least privileges of provisioned ones: no
    // CREATE on schema public for PUBLIC, no writes on _sqlx_migrations.
    crate::tenant_schema::confine_database(settings, &r.server, &r.database).await?;

    let mut tx = pool.begin().await.context("starting transaction")?;
    let tenant: Tenant = sqlx::query_as(&format!(
        "INSERT INTO tenants (slug, name, plan, status, isolation, db_server, db_name) \
         VALUES ($1, $2, $3, 'active', 'database', $4, $5) RETURNING {TENANT_COLUMNS}"
    ))
    .bind(&r.slug)
    .bind(&r.name)
    .bind(&r.plan)
    .bind(&r.server)
    .bind(&r.database)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => TenantError::Exists(r.slug.clone()),
        _ => TenantError::Other(anyhow::Error::new(e).context("inserting tenant")),
    })?;
    sqlx::query(
        "INSERT INTO audit_log (actor, action, tenant_id, details) VALUES ($1, 'tenant.registered', $2, $3)",
    )
    .bind(actor)
    .bind(tenant.id)
    .bind(serde_json::json!({"server": r.server, "database": r.database, "plan": r.plan}))
    .execute(&mut *tx)
    .await
    .context("writing audit log")?;
    tx.commit().await.context("committing tenant")?;
    Ok(tenant)
}

/// Looks a tenant up by slug.
pub async fn find(pool: &PgPool, slug: &str) -> Result<Option<Tenant>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(pool)
    .await
    .context("looking up tenant")
}

/// Looks a tenant up by id.
pub async fn by_id(pool: &PgPool, id: i64) -> Result<Option<Tenant>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
    .context("looking up tenant")
}

/// Looks a tenant up by slug, or says clearly that there is none.
pub async fn get(pool: &PgPool, slug: &str) -> Result<Tenant, TenantError> {
    if ident::validate_slug(slug).is_err() {
        return Err(TenantError::NotFound(short(slug)));
    }
    find(pool, slug)
        .await?
        .ok_or_else(|| TenantError::NotFound(slug.to_string()))
}

/// [`get`] inside a transaction (sees tenants the transaction wrote).
pub async fn get_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    slug: &str,
) -> Result<Tenant, TenantError> {
    if ident::validate_slug(slug).is_err() {
        return Err(TenantError::NotFound(short(slug)));
    }
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(&mut **tx)
    .await
    .context("looking up tenant")?
    .ok_or_else(|| TenantError::NotFound(slug.to_string()))
}

/// [`get_in`] that also locks the row until the transaction ends, for
/// read-modify-write changes (status, settings, deletion).
pub async fn lock_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    slug: &str,
) -> Result<Tenant, TenantError> {
    if ident::validate_slug(slug).is_err() {
        return Err(TenantError::NotFound(short(slug)));
    }
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1 FOR UPDATE"
    ))
    .bind(slug)
    .fetch_optional(&mut **tx)
    .await
    .context("locking tenant")?
    .ok_or_else(|| TenantError::NotFound(slug.to_string()))
}

/// All tenants, optionally only those with one status.
pub async fn list(pool: &PgPool, status: Option<TenantStatus>) -> Result<Vec<Tenant>> {
    sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1::text IS NULL OR status = $1) ORDER BY slug"
    ))
    .bind(status)
    .fetch_all(pool)
    .await
    .context("listing tenants")
}

/// Filters of a page of tenants (`GET /v1/tenants`).
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub plan: Option<String>,
    pub server: Option<String>,
    /// Part of the slug or name, any case (a plain substring, no wildcards).
    pub search: Option<String>,
    /// Only slugs after this one (the cursor of the previous page).
    pub after: Option<String>,
    pub limit: i64,
}

/// One page of tenants by slug (keyset on the unique slug).
pub async fn page(pool: &PgPool, f: &TenantFilter) -> Result<Vec<Tenant>> {
    // Optional filters as NULL-able parameters: planned for them each time.
    let mut tx = crate::db::custom_plans(pool).await?;
    let rows = sqlx::query_as(&format!(
        "SELECT {TENANT_COLUMNS} FROM tenants \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR plan = $2) \
         AND ($3::text IS NULL OR db_server = $3) \
         AND ($4::text IS NULL OR strpos(lower(slug), lower($4)) > 0 OR strpos(lower(name), lower($4)) > 0) \
         AND ($5::text IS NULL OR slug > $5) ORDER BY slug LIMIT $6"
    ))
    .bind(f.status)
    .bind(&f.plan)
    .bind(&f.server)
    .bind(&f.search)
    .bind(&f.after)
    .bind(f.limit.clamp(1, 10_000))
    .fetch_all(&mut *tx)
    .await
    .context("listing tenants")?;
    tx.commit().await.context("ending the read transaction")?;
    Ok(rows)
}

impl Tenant {
    /// A shared tenant's value in the tenant column.
    pub fn key(&self) -> String {
        self.tenant_key
            .clone()
            .unwrap_or_else(|| self.id.to_string())
    }
}

/// Connection options for database `db` on configured server `server`.
/// Every tenant and server connection goes through here, so a session opened
/// by an attempt carries its name (`landlord/{kind}/{job}/{attempt}`, see
/// `runtime::sessions`) and can be ended when the attempt stops.
pub fn server_options(settings: &Settings, server: &str, db: &str) -> Result<PgConnectOptions> {
    let url = settings
        .servers
        .get(server)
        .with_context(|| format!("database server {server:?} is not configured"))?;
    let opts = PgConnectOptions::from_str(url.expose())
        .with_context(|| format!("parsing the URL of database server {server:?}"))?
        .database(db)
        .application_name(&crate::runtime::sessions::application_name());
    Ok(opts)
}

/// Opens a one-connection pool on a tenant's database. Close it when done.
pub async fn connect_tenant_db(settings: &Settings, t: &Tenant) -> Result<PgPool> {
    ident::validate_db_name(&t.db_name)
        .map_err(|e| anyhow::anyhow!("tenant database name {:?}: {e}", t.db_name))?;
    let opts = server_options(settings, &t.db_server, &t.db_name)?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(15))
        .connect_with(opts)
        .await
        .map_err(|e| server_connect_error(settings, e, &t.db_server, &t.db_name))
}

/// The error of a failed connection to database `db` on server `server`:
/// the server by name and masked URL, and what failed (`pg_tls`).
pub fn server_connect_error(
    settings: &Settings,
    err: sqlx::Error,
    server: &str,
    db: &str,
) -> anyhow::Error {
    let endpoint = format!("database {db:?} on server {server:?}");
    match settings.servers.get(server) {
        Some(url) => crate::pg_tls::connect_error(err, &endpoint, url),
        None => anyhow::Error::new(err).context(format!("connecting to {endpoint}")),
    }
}

async fn database_exists(settings: &Settings, server: &str, db: &str) -> Result<bool> {
    let mut conn = server_options(settings, server, "postgres")?
        .connect()
        .await
        .map_err(|e| server_connect_error(settings, e, server, "postgres"))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(db)
            .fetch_one(&mut conn)
            .await
            .context("looking for the database")?;
    Ok(exists)
}
