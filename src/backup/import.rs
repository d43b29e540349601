//! Adopting dumps landlord did not write: files in the seed's naming
//! (`tenant_{slug}_{YYYY-mm-dd_HH-MM-SS}.sql.gz`, plain SQL, gzip) copied
//! into `tenants/{slug}/` of the store become complete, `imported` backups
//! that `restore --backup NAME` can restore. They carry no checksum (the
//! old system kept none), so only decompression and the load check them.

use anyhow::{Result, bail};
use chrono::{NaiveDateTime, Utc};
use uuid::Uuid;

use super::{catalog, manifest, store::Store};
use crate::tenants::Tenant;

/// Registers `name` from the tenant's folder in the store, if it is there.
pub async fn import_named(
    pool: &sqlx::PgPool,
    store: &Store,
    t: &Tenant,
    name: &str,
) -> Result<Option<catalog::Backup>> {
    if name.is_empty()
        || name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name.starts_with('.')
    {
        bail!("{name:?} is not a backup file name");
    }
    let Some((format, codec, encrypted)) = manifest::classify(name) else {
        return Ok(None);
    };
    let key = store.key(&format!("tenants/{}/{name}", t.slug));
    let Some(size) = store.head(&key).await? else {
        return Ok(None);
    };
    // The seed's names carry the time the dump was taken.
    let taken = name
        .strip_suffix(".sql.gz")
        .and_then(|b| b.get(b.len().saturating_sub(19)..))
        .and_then(|ts| NaiveDateTime::parse_from_str(ts, "%Y-%m-%d_%H-%M-%S").ok())
        .map(|n| n.and_utc())
        .unwrap_or_else(Utc::now);
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO backups (id, tenant_id, status, store, object_key, format, codec, encrypted, \
                              stored_bytes, imported, started_at, completed_at) \
         VALUES ($1, $2, 'complete', $3, $4, $5, $6, $7, $8, true, $9, $9)",
    )
    .bind(id)
    .bind(t.id)
    .bind(store.describe())
    .bind(&key)
    .bind(format)
    .bind(codec.as_str())
    .bind(encrypted)
    .bind(size as i64)
    .bind(taken)
    .execute(pool)
    .await?;
    catalog::get(pool, id).await
}
