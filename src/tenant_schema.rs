//! The tenant schema: its migrations (`migrations/tenant/`, built in, or a
//! directory named by `LANDLORD_TENANT_MIGRATIONS`), its version, and the
//! per-server template database new tenants are cloned from.
//!
//! A template is named after the schema version and a hash of every
//! migration's checksum, so editing a migration builds a new one. It is built
//! under a temporary name, then renamed and closed to connections
//! (`ALLOW_CONNECTIONS false`): nobody can be connected to it while
//! `CREATE DATABASE … TEMPLATE` clones it.

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
        .with_context(|| format!("connecting to {db} on server {server}"))
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
    let migrated = m.run(&pool).await;
    if migrated.is_ok() {
        sqlx::raw_sql("ANALYZE")
            .execute(&pool)
            .await
            .context("analyzing template")?;
    }
    pool.close().await;
    if let Err(e) = migrated {
        drop_database(&admin, &building).await?;
        return Err(anyhow::Error::new(e).context("applying tenant migrations to the template"));
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
