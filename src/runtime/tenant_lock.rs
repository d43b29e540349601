//! Per-tenant mutual exclusion: a session-level advisory lock in the catalog,
//! held on a dedicated connection for the whole attempt.
//!
//! If the connection dies the server drops the lock; that is why the result
//! of an attempt is recorded only after [`TenantLock::still_held`] confirms it
//! (the fencing check). The connection is closed, never returned to the pool,
//! so a lock can never outlive its attempt on a pooled connection.
//!
//! Every query here runs under a client-side deadline (the catalog's check
//! timeout): a check that does not answer in time is a lost lock, never a
//! wait. The lock connection gets short server-side keepalive and
//! `tcp_user_timeout` values, longer than that deadline, so the holder
//! always notices a hung connection before the server can give the lock to
//! another session. The backend pid is recorded at acquire and checked: a
//! session that hopped backends (a pooler) does not hold the lock.
//!
//! This module must never wait on the lock connection without a deadline,
//! and never report a lock as held that it could not confirm.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::{Executor as _, PgPool, Postgres, pool::PoolConnection};

use crate::config::TcpLiveness;

/// First key of every landlord tenant lock ("LL").
const LOCK_CLASS: i32 = 0x4c4c;

/// Client-side deadline of each fencing query (lock checks here, the lease
/// heartbeat in the executor). A check that does not answer in time failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Server-side liveness of a lock connection: the server drops a dead
/// holder's session (and lock) after about 10 s, but only after the holder's
/// own checks ([`CHECK_TIMEOUT`], every second) have failed.
pub const LOCK_LIVENESS: TcpLiveness = TcpLiveness {
    keepalive_idle: Duration::from_secs(5),
    keepalive_interval: Duration::from_secs(2),
    keepalive_count: 3,
    user_timeout: Duration::from_secs(10),
};

pub struct TenantLock {
    conn: PoolConnection<Postgres>,
    tenant_id: i64,
    /// The server backend that took the lock.
    backend_pid: i32,
    /// Deadline of each query on the lock connection.
    check_timeout: Duration,
}

fn key(tenant_id: i64) -> i32 {
    // Tenant ids are serials; the low 32 bits identify them uniquely below 2^31.
    (tenant_id & 0x7fff_ffff) as i32
}

impl TenantLock {
    /// Takes the tenant's lock if free. `None`: another job holds it.
    pub async fn try_acquire(pool: &PgPool, tenant_id: i64) -> Result<Option<Self>> {
        let check_timeout = CHECK_TIMEOUT;
        let mut conn = pool.acquire().await.context("acquiring lock connection")?;
        conn.close_on_drop();
        let take = async {
            // Shorter liveness than the pool's before the lock exists, so it
            // is in force for the lock's whole life.
            let session = format!(
                "{}; SET statement_timeout = {}",
                LOCK_LIVENESS.set_sql(),
                (CHECK_TIMEOUT * 2).as_millis()
            );
            conn.execute(sqlx::raw_sql(&session))
                .await
                .context("setting lock connection liveness")?;
            sqlx::query_as::<_, (bool, i32)>(
                "SELECT pg_try_advisory_lock($1, $2), pg_backend_pid()",
            )
            .bind(LOCK_CLASS)
            .bind(key(tenant_id))
            .fetch_one(&mut *conn)
            .await
            .context("taking tenant lock")
        };
        let (got, backend_pid) = tokio::time::timeout(check_timeout * 2, take)
            .await
            .context("taking tenant lock: the catalog did not answer in time")??;
        Ok(got.then_some(Self {
            conn,
            tenant_id,
            backend_pid,
            check_timeout,
        }))
    }

    /// Whether this session still holds the lock (fencing check): on the
    /// backend that took it, and confirmed within the check timeout.
    pub async fn still_held(&mut self) -> bool {
        let check = sqlx::query_scalar::<_, bool>(
            "SELECT pg_backend_pid() = $3 AND EXISTS (SELECT 1 FROM pg_locks \
             WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND classid = $1::int::oid \
             AND objid = $2::int::oid AND objsubid = 2 AND granted)",
        )
        .bind(LOCK_CLASS)
        .bind(key(self.tenant_id))
        .bind(self.backend_pid)
        .fetch_one(&mut *self.conn);
        match tokio::time::timeout(self.check_timeout, check).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!(tenant_id = self.tenant_id, error = %e, "tenant lock check failed");
                false
            }
            Err(_) => {
                tracing::warn!(
                    tenant_id = self.tenant_id,
                    timeout_ms = self.check_timeout.as_millis() as u64,
                    "tenant lock check did not answer in time"
                );
                false
            }
        }
    }

    /// Releases the lock and closes its connection. If the catalog does not
    /// answer, closing the connection (on drop) releases it on the server.
    pub async fn release(mut self) {
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(key(self.tenant_id))
            .execute(&mut *self.conn);
        let _ = tokio::time::timeout(self.check_timeout, unlock).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder checks every second with [`CHECK_TIMEOUT`]; the server must
    /// not drop a silent holder's lock before that check has failed.
    #[test]
    fn holder_notices_before_the_server_drops_the_lock() {
        let l = LOCK_LIVENESS;
        let by_keepalive = l.keepalive_idle + l.keepalive_interval * l.keepalive_count;
        let noticed = Duration::from_secs(1) + CHECK_TIMEOUT;
        assert!(l.user_timeout > noticed * 2);
        assert!(by_keepalive > noticed * 2);
    }
}
