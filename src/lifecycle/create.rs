//! Creating a tenant: validate everything, check the plan limit under a lock
//! on the owner, write the tenant (`provisioning`) and its `provision` job in
//! one transaction. The database work is the job's (`workers/provision.rs`).

use anyhow::Context;
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Transaction};

use crate::{
    config::Settings,
    ident,
    lifecycle::{LifecycleError, jobs::Provision, plans, settings as tenant_settings},
    message::truncate,
    runtime::{
        Job,
        store::{self, DedupeKey, EnqueueError, Enqueued},
    },
    tenant_schema,
    tenants::{self, Isolation, Tenant, TenantStatus},
};

/// What `tenants create` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    pub slug: String,
    pub name: String,
    pub plan: String,
    pub owner_email: String,
    pub settings: Map<String, Value>,
    /// Database server; `None` lets placement choose.
    pub server: Option<String>,
    /// Share this existing database (row-level isolation) instead of getting one.
    pub shared: Option<SharedPlacement>,
}

/// Where a shared tenant's rows live.
#[derive(Debug, Clone, Default)]
pub struct SharedPlacement {
    pub database: String,
    /// Its value in the tenant column (default: the tenant's id).
    pub key: Option<String>,
}

/// The tenant row written and its provisioning job.
#[derive(Debug, Clone)]
pub struct Created {
    pub tenant: Tenant,
    pub job: Enqueued,
}

/// The database name a tenant slug gets.
pub fn database_name(slug: &str) -> String {
    format!("t_{}", slug.replace('-', "_"))
}

fn validate_email(email: &str) -> Result<(), LifecycleError> {
    let ok = email.len() <= 320
        && email.chars().all(|c| !c.is_whitespace() && !c.is_control())
        && matches!(email.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(LifecycleError::Invalid(format!(
            "owner {:?} is not an email address",
            truncate(email)
        )))
    }
}

/// Answers `can-provision OWNER PLAN` without changing anything.
pub async fn can_provision(
    pool: &PgPool,
    owner_email: &str,
    plan: &str,
) -> Result<plans::Allowance, LifecycleError> {
    validate_email(owner_email)?;
    let mut tx = pool.begin().await?;
    let allowance = plans::allowance(&mut tx, owner_email, plan).await?;
    match allowance {
        Some(a) => Ok(a),
        None => Err(LifecycleError::Invalid(format!(
            "unknown plan {:?}; plans: {}",
            truncate(plan),
            plans::names(&mut tx).await?.join(", ")
        ))),
    }
}

/// Picks the configured server with the fewest live tenants per unit of
/// weight (`LANDLORD_SERVER_WEIGHT__<NAME>`, default 1; weight 0 is skipped).
async fn place(pool: &PgPool, settings: &Settings) -> Result<String, LifecycleError> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT db_server, count(*) FROM tenants WHERE status NOT IN ('failed', 'deleted') GROUP BY db_server",
    )
    .fetch_all(pool)
    .await?;
    let servers: Vec<(String, u32, i64)> = settings
        .servers
        .keys()
        .map(|name| {
            let weight = settings.server_weights.get(name).copied().unwrap_or(1);
            let load = counts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| *c)
                .unwrap_or(0);
            (name.clone(), weight, load)
        })
        .collect();
    pick_server(&servers).ok_or_else(|| {
        LifecycleError::Invalid("no database server accepts new tenants (every weight is 0)".into())
    })
}

/// The least loaded server per unit of weight among `(name, weight, load)`;
/// ties go to the first name.
pub fn pick_server(servers: &[(String, u32, i64)]) -> Option<String> {
    servers
        .iter()
        .filter(|(_, w, _)| *w > 0)
        // load_a / w_a < load_b / w_b  <=>  load_a * w_b < load_b * w_a (no floats).
        .min_by(|(na, wa, la), (nb, wb, lb)| {
            (la * i64::from(*wb))
                .cmp(&(lb * i64::from(*wa)))
                .then_with(|| na.cmp(nb))
        })
        .map(|(n, _, _)| n.clone())
}

/// Where a new tenant's data goes, once validated.
struct Placement {
    server: String,
    db_name: String,
}

/// Validates a new tenant and writes it with its provisioning job.
pub async fn create(
    pool: &PgPool,
    settings: &Settings,
    new: &NewTenant,
    actor: &str,
) -> Result<Created, LifecycleError> {
    let placement = validate(pool, settings, new).await?;
    let mut tx = pool.begin().await?;
    let owner_id = check_plan_limit(&mut tx, new).await?;
    check_free(&mut tx, settings, new, &placement).await?;
    let (tenant_id, job) = write(&mut tx, new, &placement, owner_id, actor).await?;
    tx.commit().await.context("committing tenant")?;
    let tenant = tenants::by_id(pool, tenant_id)
        .await?
        .ok_or_else(|| LifecycleError::Other(anyhow::anyhow!("tenant vanished")))?;
    Ok(Created { tenant, job })
}

/// Checks everything that needs no lock (names, owner, settings, server,
/// shared key) and picks the server and database name.
async fn validate(
    pool: &PgPool,
    settings: &Settings,
    new: &NewTenant,
) -> Result<Placement, LifecycleError> {
    ident::validate_slug(&new.slug).map_err(|e| {
        LifecycleError::Invalid(format!("invalid slug {:?}: {e}", truncate(&new.slug)))
    })?;
    ident::validate_display_name(&new.name)
        .map_err(|e| LifecycleError::Invalid(format!("invalid tenant name: {e}")))?;
    validate_email(&new.owner_email)?;
    tenant_settings::validate(pool, &new.settings)
        .await
        .map_err(LifecycleError::Invalid)?;
    let server = match &new.server {
        Some(s) if settings.servers.contains_key(s) => s.clone(),
        Some(s) => {
            return Err(LifecycleError::Invalid(format!(
                "unknown database server {:?}; configured servers: {}",
                truncate(s),
                settings
                    .servers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        None if new.shared.is_some() => "default".to_string(),
        None => place(pool, settings).await?,
    };
    let db_name = match &new.shared {
        Some(s) => s.database.clone(),
        None => database_name(&new.slug),
    };
    if let Some(key) = new.shared.as_ref().and_then(|s| s.key.as_ref())
        && (key.is_empty()
            || key.len() > 64
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(LifecycleError::Invalid(format!(
            "tenant key {:?} must be 1-64 of A-Z, a-z, 0-9, - and _",
            truncate(key)
        )));
    }
    ident::validate_db_name(&db_name).map_err(|e| {
        LifecycleError::Invalid(format!("database name {:?}: {e}", truncate(&db_name)))
    })?;
    Ok(Placement { server, db_name })
}

/// Writes (or finds) the owner, locks it and checks the plan's limit; the
/// lock serializes creations per owner until `tx` ends. Returns the owner's id.
async fn check_plan_limit(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewTenant,
) -> Result<i64, LifecycleError> {
    let owner_id: i64 = sqlx::query_scalar(
        "INSERT INTO owners (email) VALUES ($1) ON CONFLICT (email) DO UPDATE SET email = excluded.email RETURNING id",
    )
    .bind(&new.owner_email)
    .fetch_one(&mut **tx)
    .await?;
    // Serializes creations per owner so two concurrent requests cannot both pass the limit.
    sqlx::query("SELECT id FROM owners WHERE id = $1 FOR UPDATE")
        .bind(owner_id)
        .execute(&mut **tx)
        .await?;
    let allowance = match plans::allowance(tx, &new.owner_email, &new.plan).await? {
        Some(a) => a,
        None => {
            return Err(LifecycleError::Invalid(format!(
                "unknown plan {:?}; plans: {}",
                truncate(&new.plan),
                plans::names(tx).await?.join(", ")
            )));
        }
    };
    if !allowance.allowed {
        return Err(LifecycleError::PlanLimit {
            owner: new.owner_email.clone(),
            plan: new.plan.clone(),
            used: allowance.used,
        });
    }
    Ok(owner_id)
}

/// Refuses a slug in use (a failed tenant's may be taken over; its row stays
/// locked) and a database landlord does not own; a shared tenant's database
/// must already exist.
async fn check_free(
    tx: &mut Transaction<'_, Postgres>,
    settings: &Settings,
    new: &NewTenant,
    placement: &Placement,
) -> Result<(), LifecycleError> {
    let Placement { server, db_name } = placement;
    let existing: Option<(i64, TenantStatus)> =
        sqlx::query_as("SELECT id, status FROM tenants WHERE slug = $1 FOR UPDATE")
            .bind(&new.slug)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((_, status)) = &existing
        && *status != TenantStatus::Failed
    {
        return Err(LifecycleError::Exists(format!(
            "tenant {:?} already exists ({status})",
            new.slug
        )));
    }
    // A database of that name that landlord does not know about is never
    // touched; a shared tenant's database must already exist.
    let admin = tenant_schema::admin(settings, server).await?;
    let taken = tenant_schema::database_exists(&admin, db_name).await?;
    drop(admin);
    if new.shared.is_some() && !taken {
        return Err(LifecycleError::Invalid(format!(
            "shared database {db_name} does not exist on server {server}"
        )));
    }
    if taken && new.shared.is_none() {
        return Err(LifecycleError::Exists(format!(
            "database {db_name} already exists on server {server}; landlord will not take it over (use tenants register to adopt it)"
        )));
    }
    Ok(())
}

/// Writes the tenant row (`provisioning`, step `pending`), its `provision`
/// job and the audit entry. Returns the tenant's id and the job.
async fn write(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewTenant,
    placement: &Placement,
    owner_id: i64,
    actor: &str,
) -> Result<(i64, Enqueued), LifecycleError> {
    let Placement { server, db_name } = placement;
    let settings_json = Value::Object(new.settings.clone());
    // A new row, or a failed tenant's row taken over (checked above, under lock).
    let tenant_id: i64 = sqlx::query_scalar(
        "INSERT INTO tenants (slug, name, owner_id, plan, status, isolation, db_server, db_name, settings, provision_step, tenant_key) \
         VALUES ($1, $2, $3, $4, 'provisioning', $8, $5, $6, $7, 'pending', $9) \
         ON CONFLICT (slug) DO UPDATE SET name = excluded.name, owner_id = excluded.owner_id, plan = excluded.plan, \
             status = 'provisioning', status_reason = NULL, db_server = excluded.db_server, db_name = excluded.db_name, \
             isolation = excluded.isolation, tenant_key = excluded.tenant_key, \
             settings = excluded.settings, provision_step = 'pending', db_role = NULL, provisioned_at = NULL, \
             schema_version = 0, delete_after = NULL, updated_at = now() \
         WHERE tenants.status = 'failed' \
         RETURNING id",
    )
    .bind(&new.slug)
    .bind(&new.name)
    .bind(owner_id)
    .bind(&new.plan)
    .bind(server)
    .bind(db_name)
    .bind(&settings_json)
    .bind(if new.shared.is_some() {
        Isolation::Shared
    } else {
        Isolation::Database
    })
    .bind(new.shared.as_ref().and_then(|s| s.key.clone()))
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            LifecycleError::Exists(format!("tenant {:?} or its database already exists", new.slug))
        }
        _ => LifecycleError::Other(anyhow::Error::new(e).context("inserting tenant")),
    })?
    .ok_or_else(|| LifecycleError::Exists(format!("tenant {:?} already exists", new.slug)))?;
    let job = Provision {}
        .enqueue_in(
            tx,
            Some(&new.slug),
            Some(DedupeKey::internal(format!("provision:{}", new.slug))),
            None,
        )
        .await
        .map_err(|e| match e {
            EnqueueError::Other(e) => LifecycleError::Other(e),
            other => LifecycleError::Other(anyhow::anyhow!("enqueueing provision job: {other}")),
        })?;
    store::audit(
        tx,
        actor,
        "tenant.created",
        Some(tenant_id),
        Some(job.id),
        serde_json::json!({"plan": new.plan, "owner": new.owner_email, "server": server}),
    )
    .await?;
    Ok((tenant_id, job))
}

#[cfg(test)]
mod tests {
    use super::pick_server;

    #[test]
    fn placement_follows_weights() {
        let s = |d: i64, e: i64| vec![("default".to_string(), 1, d), ("eu".to_string(), 2, e)];
        assert_eq!(pick_server(&s(0, 0)).as_deref(), Some("default"));
        assert_eq!(pick_server(&s(1, 0)).as_deref(), Some("eu"));
        assert_eq!(pick_server(&s(1, 1)).as_deref(), Some("eu"));
        assert_eq!(pick_server(&s(1, 2)).as_deref(), Some("default"));
        assert_eq!(pick_server(&[("x".to_string(), 0, 0)]), None);
    }
}
