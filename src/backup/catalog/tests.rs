//! In-process tests of the backup catalog's queries against a fresh, migrated
//! catalog per test (`#[sqlx::test]`; needs `DATABASE_URL`, see `ops/sqlx
//! test-url`).

use sqlx::PgPool;
use uuid::Uuid;

use super::*;

/// A provisioned tenant row (no database behind it) and its id.
async fn tenant(pool: &PgPool, slug: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO tenants (slug, name, plan, status, db_server, db_name) \
         VALUES ($1, $1, 'free', 'active', 'main', replace($1, '-', '_')) RETURNING id",
    )
    .bind(slug)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A `running` backup row of the tenant.
async fn running(pool: &PgPool, tenant_id: i64) -> Uuid {
    let id = Uuid::now_v7();
    let key = format!("t/{id}.dump.zst");
    let row = NewBackup {
        id,
        tenant_id,
        job_id: None,
        store: "local",
        object_key: &key,
        manifest_key: None,
        format: BackupFormat::Custom,
        codec: Codec::Zstd,
        level: None,
        encrypted: false,
    };
    insert(pool, &row).await.unwrap();
    id
}

const DONE: Completion<'static> = Completion {
    raw_bytes: 10,
    stored_bytes: 5,
    sha256: "00",
    schema_version: None,
    server_version: "17",
    pg_dump_version: "17",
    duration_ms: 1,
};

#[sqlx::test(migrations = "migrations/catalog")]
async fn tenants_with_backups_lists_those_with_a_complete_one(pool: PgPool) {
    let (beta, alpha, gamma) = (
        tenant(&pool, "beta-co").await,
        tenant(&pool, "alpha-co").await,
        tenant(&pool, "gamma-co").await,
    );
    for t in [beta, alpha, alpha] {
        let id = running(&pool, t).await;
        let mut tx = pool.begin().await.unwrap();
        complete(&mut tx, id, &DONE).await.unwrap();
        tx.commit().await.unwrap();
    }
    let failed = running(&pool, gamma).await;
    fail(&pool, failed, "boom").await.unwrap();
    assert_eq!(
        tenants_with_backups(&pool).await.unwrap(),
        ["alpha-co", "beta-co"]
    );
}

#[sqlx::test(migrations = "migrations/catalog")]
async fn hold_in_holds_the_backup_completed_in_the_same_transaction(pool: PgPool) {
    let t = tenant(&pool, "alpha-co").await;
    let id = running(&pool, t).await;
    let mut tx = pool.begin().await.unwrap();
    complete(&mut tx, id, &DONE).await.unwrap();
    hold_in(&mut tx, id, "audit 2024").await.unwrap();
    tx.commit().await.unwrap();
    let b = get(&pool, id).await.unwrap().unwrap();
    assert_eq!(b.status, BackupStatus::Complete);
    assert!(b.held);
    assert_eq!(b.held_reason.as_deref(), Some("audit 2024"));
}
