//! Per-tenant mutual exclusion: a session-level advisory lock in the catalog,
//! held on a dedicated connection for the whole attempt.
//!
//! If the connection dies the server drops the lock; that is why the result
//! of an attempt is recorded only after [`TenantLock::still_held`] confirms it
//! (the fencing check). The connection is closed, never returned to the pool,
//! so a lock can never outlive its attempt on a pooled connection.

use anyhow::{Context, Result};
use sqlx::{PgPool, Postgres, pool::PoolConnection};

/// First key of every landlord tenant lock ("LL").
const LOCK_CLASS: i32 = 0x4c4c;

pub struct TenantLock {
    conn: PoolConnection<Postgres>,
    tenant_id: i64,
}

fn key(tenant_id: i64) -> i32 {
    // Tenant ids are serials; the low 32 bits identify them uniquely below 2^31.
    (tenant_id & 0x7fff_ffff) as i32
}

impl TenantLock {
    /// Takes the tenant's lock if free. `None`: another job holds it.
    pub async fn try_acquire(pool: &PgPool, tenant_id: i64) -> Result<Option<Self>> {
        let mut conn = pool.acquire().await.context("acquiring lock connection")?;
        conn.close_on_drop();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key(tenant_id))
            .fetch_one(&mut *conn)
            .await
            .context("taking tenant lock")?;
        Ok(got.then_some(Self { conn, tenant_id }))
    }

    /// Whether this session still holds the lock (fencing check).
    pub async fn still_held(&mut self) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND classid = $1::int::oid AND objid = $2::int::oid \
             AND objsubid = 2 AND granted)",
        )
        .bind(LOCK_CLASS)
        .bind(key(self.tenant_id))
        .fetch_one(&mut *self.conn)
        .await
        .unwrap_or(false)
    }

    /// Releases the lock and closes its connection.
    pub async fn release(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key(self.tenant_id))
            .execute(&mut *self.conn)
            .await;
    }
}
