//! The tenant schema: its migrations (`migrations/tenant/`, built in, or a
//! directory named by `LANDLORD_TENANT_MIGRATIONS`), its version, and the
//! per-server template database new tenants are cloned from.
//!
//! A template is named after the schema version and a hash of every
//! migration's checksum, so editing a migration builds a new one. It is built
//! under a temporary name, then renamed and closed to connections
//! (`ALLOW_CONNECTIONS false`): nobody can be connected to it while
//! `CREATE DATABASE … TEMPLATE` clones it.
//!
//! Least privilege in every tenant database (`confine`): PUBLIC has no
//! `CREATE` on schema `public` (the default before PostgreSQL 15), so a
//! tenant role cannot plant functions, operators or tables that a restore
//! or a migration would run; only the owner (the server's admin) writes
//! `_sqlx_migrations`. The template is confined before it is closed, a
//! provisioned database again once its role has its grants, an adopted
//! one on `tenants register`, a restored one before the swap. A tenant role
//! that already existed is stripped of what no tenant role may have
//! (`strip_role`).

use std::{borrow::Cow, path::Path};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, migrate::Migrator};

use crate::{config::Settings, ident::quote_ident, tenants};

/// The built-in sample tenant schema.
static BUILT_IN: Migrator = sqlx::migrate!("./migrations/tenant");

/// The tenant migrations in force.
pub async fn migrator(settings: &Settings) -> Result<Migrator> {
    match &settings.provisioning.tenant_migrations {
        Some(dir) => Migrator::new(Path::new(dir))
            .await
            .with_context(|| format!("reading tenant migrations from {dir}")),
        None => Ok(Migrator {
            migrations: Cow::Borrowed(&BUILT_IN.migrations),
            ..Migrator::DEFAULT
        }),
    }
}

/// Latest migration version (0 for an empty schema).
pub fn version(m: &Migrator) -> i64 {
    m.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Template database name for this set of migrations.
pub fn template_name(m: &Migrator) -> String {
    let mut h = Sha256::new();
    for mig in m.iter() {
        h.update(mig.version.to_be_bytes());
        h.update(&mig.checksum);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("landlord_tpl_v{}_{hex}", version(m))
}

/// A one-connection pool on `db` on `server`.
pub async fn pool_on(settings: &Settings, server: &str, db: &str) -> Result<PgPool> {
    let opts = tenants::server_options(settings, server, db)?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(15))
        .connect_with(opts)
        .await
        .map_err(|e| tenants::server_connect_error(settings, e, server, db))
}

/// A one-connection pool on the server's maintenance database, for
/// CREATE/DROP DATABASE and roles. (A pool rather than a bare connection so
/// the futures using it stay `Send`.) Close it when done.
pub async fn admin(settings: &Settings, server: &str) -> Result<PgPool> {
    pool_on(settings, server, "postgres").await
}

/// Whether a database exists on a server.
pub async fn database_exists(conn: &PgPool, db: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(db)
        .fetch_one(conn)
        .await
        .context("looking up database")
}

/// Drops a database, ending its sessions first. `db` must be validated.
pub async fn drop_database(conn: &PgPool, db: &str) -> Result<()> {
    crate::ident::validate_db_name(db).map_err(|e| anyhow::anyhow!("database name {db:?}: {e}"))?;
    sqlx::raw_sql(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(db)
    ))
    .execute(conn)
    .await
    .with_context(|| format!("dropping database {db}"))?;
    Ok(())
}

/// Makes sure the server has an up-to-date template and returns its name.
/// Serialized by an advisory lock on the server's `postgres` database, which
/// every landlord installation using that server shares.
pub async fn ensure_template(
    catalog: &PgPool,
    settings: &Settings,
    server: &str,
    m: &Migrator,
) -> Result<String> {
    let name = template_name(m);
    let admin = admin(settings, server).await?;
    if database_exists(&admin, &name).await? {
        return Ok(name);
    }
    sqlx::query("SELECT pg_advisory_lock(19540, hashtext($1))")
        .bind(&name)
        .execute(&admin)
        .await
        .context("taking the template lock")?;
    if database_exists(&admin, &name).await? {
        admin.close().await;
        return Ok(name);
    }
    tracing::info!(%server, template = %name, "building tenant template");
    let building = format!("{name}_build");
    drop_database(&admin, &building).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {}", quote_ident(&building)))
        .execute(&admin)
        .await
        .context("creating template database")?;
    let pool = pool_on(settings, server, &building).await?;
    let mut migrated = m.run(&pool).await.map_err(anyhow::Error::new);
    if migrated.is_ok() {
        migrated = confine(&pool).await;
    }
    if migrated.is_ok() {
        sqlx::raw_sql("ANALYZE")
            .execute(&pool)
            .await
            .context("analyzing template")?;
    }
    pool.close().await;
    if let Err(e) = migrated {
        drop_database(&admin, &building).await?;
        return Err(e.context("applying tenant migrations to the template"));
    }
    // Sessions of the build (the migrator's) may linger a moment after close.
    let mut tries = 0;
    loop {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()")
            .bind(&building)
            .execute(&admin)
            .await
            .context("ending sessions on the template build")?;
        let renamed = sqlx::raw_sql(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&name)
        ))
        .execute(&admin)
        .await;
        match renamed {
            Ok(_) => break,
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "template rename refused; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("renaming template")),
        }
    }
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        quote_ident(&name)
    ))
    .execute(&admin)
    .await
    .context("closing template to connections")?;
    sqlx::query(
        "INSERT INTO tenant_templates (db_server, schema_version, db_name) VALUES ($1, $2, $3) \
         ON CONFLICT (db_server, schema_version) DO UPDATE SET db_name = excluded.db_name, built_at = now()",
    )
    .bind(server)
    .bind(version(m))
    .bind(&name)
    .execute(catalog)
    .await
    .context("recording template")?;
    admin.close().await;
    Ok(name)
}

/// Takes from the database `pool` is connected to (as its owner or a
/// superuser) what no tenant may have: `CREATE` on schema `public` for
/// PUBLIC, and every privilege but `SELECT` on `public._sqlx_migrations`
/// for anyone but its owner. Idempotent.
pub async fn confine(pool: &PgPool) -> Result<()> {
    sqlx::raw_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .execute(pool)
        .await
        .context("revoking CREATE on schema public from PUBLIC")?;
    // Every grantee of the migrations table but its owner, PUBLIC included.
    let grantees: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT DISTINCT r.rolname::text \
           FROM pg_catalog.pg_class c \
           CROSS JOIN LATERAL aclexplode(c.relacl) a \
           LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee \
          WHERE c.oid = to_regclass('public._sqlx_migrations') \
            AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'",
    )
    .fetch_all(pool)
    .await
    .context("reading the grants on _sqlx_migrations")?;
    for grantee in grantees {
        let who = match &grantee {
            Some(role) => quote_ident(role),
            None => "PUBLIC".to_string(),
        };
        sqlx::raw_sql(&format!(
            "REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER \
             ON public._sqlx_migrations FROM {who}"
        ))
        .execute(pool)
        .await
        .with_context(|| format!("revoking writes on _sqlx_migrations from {who}"))?;
    }
    Ok(())
}

/// [`confine`] on database `db` of `server`, as the server's admin.
pub async fn confine_database(settings: &Settings, server: &str, db: &str) -> Result<()> {
    let pool = pool_on(settings, server, db).await?;
    let res = confine(&pool).await;
    pool.close().await;
    res.with_context(|| format!("confining database {db}"))
}

/// What [`strip_role`] took from a role that already existed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stripped {
    /// Attributes taken (`SUPERUSER`, `BYPASSRLS`, …).
    pub attributes: Vec<String>,
    /// Roles it is no longer a member of.
    pub memberships: Vec<String>,
}

impl Stripped {
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.memberships.is_empty()
    }
}

/// Takes from tenant role `role` (on the server `admin` is connected to)
/// every attribute no tenant role may have (SUPERUSER, CREATEDB,
/// CREATEROLE, REPLICATION, BYPASSRLS) and every role membership, so a role
/// of that name that existed before landlord provisioned the tenant reaches
/// no further than one landlord created. Only the attributes it has are
/// altered (changing some needs a superuser even to clear them). Fails if a
/// membership cannot be revoked.
pub async fn strip_role(admin: &PgPool, role: &str) -> Result<Stripped> {
    let flags: Option<(bool, bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
           FROM pg_catalog.pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(admin)
    .await
    .context("reading the tenant role's attributes")?;
    let Some((sup, createdb, createrole, replication, bypassrls)) = flags else {
        anyhow::bail!("tenant role {role} does not exist");
    };
    let mut out = Stripped::default();
    for (has, name) in [
        (sup, "SUPERUSER"),
        (createdb, "CREATEDB"),
        (createrole, "CREATEROLE"),
        (replication, "REPLICATION"),
        (bypassrls, "BYPASSRLS"),
    ] {
        if has {
            out.attributes.push(name.to_string());
        }
    }
    if !out.attributes.is_empty() {
        let clauses: Vec<String> = out.attributes.iter().map(|a| format!("NO{a}")).collect();
        sqlx::raw_sql(&format!(
            "ALTER ROLE {} {}",
            quote_ident(role),
            clauses.join(" ")
        ))
        .execute(admin)
        .await
        .with_context(|| {
            format!(
                "taking {} from tenant role {role}",
                out.attributes.join(", ")
            )
        })?;
    }
    let member_of = "SELECT DISTINCT g.rolname::text FROM pg_catalog.pg_auth_members m \
           JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
           JOIN pg_catalog.pg_roles r ON r.oid = m.member \
          WHERE r.rolname = $1 ORDER BY 1";
    let groups: Vec<String> = sqlx::query_scalar(member_of)
        .bind(role)
        .fetch_all(admin)
        .await
        .context("reading the tenant role's memberships")?;
    for g in &groups {
        sqlx::raw_sql(&format!(
            "REVOKE {} FROM {}",
            quote_ident(g),
            quote_ident(role)
        ))
        .execute(admin)
        .await
        .with_context(|| format!("revoking membership in {g} from tenant role {role}"))?;
    }
    let left: Vec<String> = sqlx::query_scalar(member_of)
        .bind(role)
        .fetch_all(admin)
        .await
        .context("reading the tenant role's memberships")?;
    if !left.is_empty() {
        anyhow::bail!(
            "tenant role {role} is still a member of {} (granted by another role); revoke it by hand",
            left.join(", ")
        );
    }
    out.memberships = groups;
    Ok(out)
}
