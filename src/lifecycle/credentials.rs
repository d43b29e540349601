//! Each provisioned tenant's own login role: created with a generated
//! password, limited to its database, stored for the application to fetch,
//! rotatable. Passwords never reach logs nor the server in clear: the server
//! gets a SCRAM-SHA-256 verifier (`crate::role_password`), the catalog a
//! sealed copy (`lifecycle::sealing`). Role and database names are validated
//! and quoted.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

pub use crate::lifecycle::sealing::Sealer;

use crate::{
    config::Settings, ident::quote_ident, lifecycle::LifecycleError, tenant_schema, tenants,
};

/// The role name of a tenant database.
pub fn role_name(db_name: &str) -> String {
    format!("{db_name}_app")
}

/// `PASSWORD '…'` of a role statement: the verifier, never the password.
fn password_clause(password: &str) -> String {
    format!("PASSWORD '{}'", crate::role_password::verifier(password))
}

/// Creates (or resets) the tenant's role, limits it to its database and
/// grants it the tables; returns (role, password). Idempotent.
pub async fn ensure_role(settings: &Settings, server: &str, db: &str) -> Result<(String, String)> {
    crate::ident::validate_db_name(db).map_err(|e| anyhow::anyhow!("database name {db:?}: {e}"))?;
    let role = role_name(db);
    let password = crate::role_password::generate();
    let admin = tenant_schema::admin(settings, server).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(&role)
            .fetch_one(&admin)
            .await
            .context("looking up role")?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    sqlx::raw_sql(&format!(
        "{verb} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {}",
        quote_ident(&role),
        password_clause(&password)
    ))
    .execute(&admin)
    .await
    .context("creating tenant role")?;
    sqlx::raw_sql(&format!(
        "REVOKE ALL ON DATABASE {db_q} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db_q} TO {role_q}",
        db_q = quote_ident(db),
        role_q = quote_ident(&role)
    ))
    .execute(&admin)
    .await
    .context("limiting the role to its database")?;
    let pool = tenant_schema::pool_on(settings, server, db).await?;
    let role_q = quote_ident(&role);
    sqlx::raw_sql(&format!(
        "GRANT USAGE ON SCHEMA public TO {role_q}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role_q}; \
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role_q}; \
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role_q}; \
         ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role_q}"
    ))
    .execute(&pool)
    .await
    .context("granting table privileges")?;
    pool.close().await;
    Ok((role, password))
}

/// Gives a role LOGIN back, or takes it away and ends the role's sessions.
pub async fn set_login(settings: &Settings, server: &str, role: &str, login: bool) -> Result<()> {
    let admin = tenant_schema::admin(settings, server).await?;
    let flag = if login { "LOGIN" } else { "NOLOGIN" };
    sqlx::raw_sql(&format!("ALTER ROLE {} {flag}", quote_ident(role)))
        .execute(&admin)
        .await
        .context("changing the tenant role's LOGIN")?;
    if !login {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(role)
            .execute(&admin)
            .await
            .context("ending the tenant role's sessions")?;
    }
    admin.close().await;
    Ok(())
}

/// Drops the tenant's role if it exists (after its database is gone).
pub async fn drop_role(settings: &Settings, server: &str, db: &str) -> Result<()> {
    let role = role_name(db);
    let admin = tenant_schema::admin(settings, server).await?;
    sqlx::raw_sql(&format!("DROP ROLE IF EXISTS {}", quote_ident(&role)))
        .execute(&admin)
        .await
        .context("dropping tenant role")?;
    Ok(())
}

/// Stores a role's credentials in the catalog, the password sealed to the
/// catalog key (never in clear).
pub async fn store(
    tx: &mut Transaction<'_, Postgres>,
    sealer: &Sealer,
    tenant_id: i64,
    role: &str,
    password: &str,
) -> Result<()> {
    let sealed = sealer.seal(tenant_id, password)?;
    sqlx::query(
        "INSERT INTO tenant_credentials (tenant_id, role_name, password, sealed, sealed_to) \
         VALUES ($1, $2, NULL, $3, $4) \
         ON CONFLICT (tenant_id) DO UPDATE SET role_name = excluded.role_name, password = NULL, \
             sealed = excluded.sealed, sealed_to = excluded.sealed_to, rotated_at = now()",
    )
    .bind(tenant_id)
    .bind(role)
    .bind(&sealed.ciphertext)
    .bind(&sealed.sealed_to)
    .execute(&mut **tx)
    .await
    .context("storing credentials")?;
    sqlx::query("UPDATE tenants SET db_role = $2, updated_at = now() WHERE id = $1")
        .bind(tenant_id)
        .bind(role)
        .execute(&mut **tx)
        .await
        .context("recording the role")?;
    Ok(())
}

/// What the application needs to connect as the tenant. `Debug` prints
/// `***` for the password.
#[derive(Clone, Serialize)]
pub struct Credentials {
    pub tenant: String,
    pub server: String,
    pub database: String,
    pub role: String,
    pub password: String,
    pub rotated_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .field("server", &self.server)
            .field("database", &self.database)
            .field("role", &self.role)
            .field("password", &"***")
            .field("rotated_at", &self.rotated_at)
            .finish()
    }
}

/// A tenant's stored credentials, the password opened with the catalog key.
pub async fn fetch(
    pool: &PgPool,
    settings: &Settings,
    slug: &str,
) -> Result<Credentials, LifecycleError> {
    let t = tenants::get(pool, slug).await?;
    type Row = (
        String,
        Option<String>,
        Option<String>,
        chrono::DateTime<chrono::Utc>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT role_name, password, sealed, rotated_at FROM tenant_credentials WHERE tenant_id = $1",
    )
    .bind(t.id)
    .fetch_optional(pool)
    .await?;
    let (role, clear, sealed, rotated_at) = row.ok_or_else(|| {
        LifecycleError::Conflict(format!(
            "tenant {slug} has no landlord-managed role (it is {} or was adopted with tenants register)",
            t.status
        ))
    })?;
    let password = match (sealed, clear) {
        (Some(sealed), _) => Sealer::load(&settings.secrets)?.open(t.id, &sealed)?,
        // Left in clear by a version before sealing; `secrets rekey` seals it.
        (None, Some(clear)) => clear,
        (None, None) => {
            return Err(
                anyhow::anyhow!("tenant {slug}'s credentials row holds no password").into(),
            );
        }
    };
    Ok(Credentials {
        tenant: t.slug,
        server: t.db_server,
        database: t.db_name,
        role,
        password,
        rotated_at,
    })
}

/// Gives the tenant's role a new password and stores it.
pub async fn rotate(
    pool: &PgPool,
    settings: &Settings,
    slug: &str,
    actor: &str,
) -> Result<Credentials, LifecycleError> {
    let sealer = Sealer::load(&settings.secrets)?;
    let current = fetch(pool, settings, slug).await?;
    let password = crate::role_password::generate();
    let mut tx = pool.begin().await?;
    let t = tenants::get_in(&mut tx, slug).await?;
    let admin = tenant_schema::admin(settings, &t.db_server).await?;
    sqlx::raw_sql(&format!(
        "ALTER ROLE {} {}",
        quote_ident(&current.role),
        password_clause(&password)
    ))
    .execute(&admin)
    .await
    .context("setting the new password")?;
    store(&mut tx, &sealer, t.id, &current.role, &password).await?;
    crate::runtime::store::record(
        &mut tx,
        actor,
        "tenant.credentials_rotated",
        (t.id, &t.slug),
        None,
        serde_json::json!({"role": current.role, "actor": actor}),
    )
    .await?;
    tx.commit().await.context("committing rotation")?;
    fetch(pool, settings, slug).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_password() {
        let c = Credentials {
            tenant: "acme".into(),
            server: "default".into(),
            database: "t_acme".into(),
            role: "t_acme_app".into(),
            password: "hunter2hunter2".into(),
            rotated_at: chrono::Utc::now(),
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("t_acme_app") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn role_statements_carry_a_verifier_not_the_password() {
        let clause = password_clause("hunter2hunter2");
        assert!(
            clause.starts_with("PASSWORD 'SCRAM-SHA-256$4096:"),
            "{clause}"
        );
        assert!(!clause.contains("hunter2"));
    }
}
