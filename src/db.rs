//! The catalog connection pool, its migrations (`migrations/catalog/`) and the
//! check that the catalog URL keeps a session on one server backend.
//!
//! Liveness of catalog connections: sqlx 0.8 sets only `TCP_NODELAY` on its
//! sockets; it offers no client-side TCP keepalive or `TCP_USER_TIMEOUT`
//! (sqlx issue #3540). So every new connection sets the *server's*
//! `tcp_keepalives_*` and `tcp_user_timeout` (`CatalogSettings::liveness`):
//! the server notices a vanished landlord process and drops its sessions,
//! locks and transactions. That does not cover the client side: a landlord
//! query on a socket whose server went away without a FIN/RST hangs until the
//! kernel gives up retransmitting (minutes). Hence every fencing query in the
//! runtime carries its own client-side deadline (`tokio::time::timeout`), and
//! the self-fencing deadline runs in its own branch, never behind a query.
//!
//! This module must never hand out a pool whose sessions may hop between
//! backends to code that takes session advisory locks (tenant locks, fan-out
//! locks, migrations): [`connect_session`] refuses such a URL.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::{Executor as _, PgPool, postgres::PgPoolOptions};

use crate::config::Settings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/catalog");

/// Connects to the catalog (the pool reconnects by itself afterwards). Every
/// connection gets the server-side liveness settings (and the statement
/// timeout, if configured) when it opens.
pub async fn connect(settings: &Settings) -> Result<PgPool> {
    let session_sql = settings.catalog.session_sql();
    PgPoolOptions::new()
        .max_connections(settings.catalog.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            let sql = session_sql.clone();
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(&sql)).await?;
                Ok(())
            })
        })
        .connect(settings.catalog.url.expose())
        .await
        .map_err(|e| crate::pg_tls::connect_error(e, "the catalog", &settings.catalog.url))
}

/// A read transaction whose statements are planned for their parameters
/// every time (`plan_cache_mode = force_custom_plan`, this transaction only).
///
/// For list queries whose optional filters are NULL-able parameters
/// (`$1 IS NULL OR col = $1`): after a few executions PostgreSQL may switch
/// a prepared statement to one generic plan, which cannot use an index for a
/// filter it does not know is set, and a page that took a millisecond scans
/// the table (ops/bench/console measured seconds for one tenant's jobs).
pub async fn custom_plans(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await.context("starting a read transaction")?;
    tx.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        .await
        .context("setting plan_cache_mode")?;
    Ok(tx)
}

/// [`connect`], then [`require_session_pooling`]: for roles that take
/// session advisory locks on the catalog (workers, schedulers).
pub async fn connect_session(settings: &Settings) -> Result<PgPool> {
    let pool = connect(settings).await?;
    require_session_pooling(&pool).await?;
    Ok(pool)
}

/// The error when the catalog URL goes through a transaction-mode pooler.
pub const TRANSACTION_POOLER: &str = "the catalog URL goes through a transaction-mode pooler; \
    tenant locks need a direct or session-pooled connection";

/// Refuses a catalog whose sessions do not stick to one server backend (a
/// transaction-mode pooler such as PgBouncer `pool_mode = transaction`):
/// session advisory locks would be taken on one backend and checked or
/// released on another. Connection A reads its backend pid, connection B
/// holds a transaction open (pinning whatever backend it got), then A reads
/// its pid again: it must be the same, and B's must differ.
pub async fn require_session_pooling(pool: &PgPool) -> Result<()> {
    // Simple-protocol queries: named prepared statements may not survive a
    // transaction-mode pooler, and the check must fail with its own message.
    async fn pid(conn: &mut sqlx::PgConnection) -> Result<i32> {
        use sqlx::Row;
        let row = sqlx::raw_sql("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await?;
        Ok(row.try_get(0)?)
    }
    let probe = async {
        let mut a = pool
            .acquire()
            .await
            .context("session check: connection A")?;
        let mut b = pool
            .acquire()
            .await
            .context("session check: connection B")?;
        let first = pid(&mut a).await?;
        let mut tx = sqlx::Connection::begin(&mut *b).await?;
        let pinned = pid(&mut tx).await?;
        let again = pid(&mut a).await?;
        tx.rollback().await?;
        anyhow::Ok(first == again && pinned != first)
    };
    // A pooler with a single server connection would make A wait for B forever.
    match tokio::time::timeout(Duration::from_secs(10), probe).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) | Err(_) => bail!(TRANSACTION_POOLER),
        Ok(Err(e)) => Err(e.context("checking that catalog sessions keep their backend")),
    }
}

/// Applies pending catalog migrations (without the pool's statement timeout:
/// a migration may rewrite a large table).
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool
        .acquire()
        .await
        .context("acquiring a migration connection")?;
    conn.execute("SET statement_timeout = 0")
        .await
        .context("lifting the statement timeout for migrations")?;
    let ran = MIGRATOR.run(&mut *conn).await;
    // The pooled session keeps the pool's statement timeout for its next user.
    conn.close_on_drop();
    ran.context("applying catalog migrations")
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
        .map_err(|e| {
            crate::pg_tls::connect_error(e, "the catalog's server", &settings.catalog.url)
        })?;
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
