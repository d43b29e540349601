//! The catalog connection pool and its migrations (`migrations/catalog/`).

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::config::Settings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/catalog");

/// Connects to the catalog (the pool reconnects by itself afterwards).
pub async fn connect(settings: &Settings) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(settings.catalog.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(settings.catalog.url.expose())
        .await
        .with_context(|| {
            format!(
                "connecting to the catalog at {}",
                settings.catalog.url.masked()
            )
        })
}

/// Applies pending catalog migrations.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying catalog migrations")
}

/// Creates the catalog database if it does not exist (for `landlord migrate`).
pub async fn ensure_database(settings: &Settings) -> Result<()> {
    use sqlx::{ConnectOptions, postgres::PgConnectOptions};
    use std::str::FromStr;
    let opts = PgConnectOptions::from_str(settings.catalog.url.expose())
        .context("parsing LANDLORD_DATABASE_URL")?;
    let Some(db) = opts.get_database().map(str::to_string) else {
        return Ok(());
    };
    crate::ident::validate_db_name(&db)
        .map_err(|e| anyhow::anyhow!("catalog database name {db:?}: {e}"))?;
    let mut conn = opts
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to the catalog server")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&db)
            .fetch_one(&mut conn)
            .await
            .context("looking for the catalog database")?;
    if !exists {
        let sql = format!("CREATE DATABASE {}", crate::ident::quote_ident(&db));
        sqlx::raw_sql(&sql)
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating catalog database {db}"))?;
    }
    Ok(())
}
