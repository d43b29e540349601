//! The manifest: a small JSON object written next to each backup, after the
//! dump object is complete. A dump without its manifest is never a backup
//! (WAL-G's sentinel, pgBackRest's manifest). Also the object naming scheme.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::state::BackupFormat;
use crate::config::backup::Codec;

/// What a backup is, as written to the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub backup_id: Uuid,
    pub tenant: String,
    pub tenant_id: i64,
    pub database: String,
    pub server: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub schema_version: Option<i64>,
    /// `custom` (pg_dump -Fc -Z0), `plain` (SQL) or `shared` (one tenant's
    /// rows of a shared database).
    pub format: String,
    /// Shared tenants: rows per table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<std::collections::BTreeMap<String, u64>>,
    pub codec: String,
    pub level: i32,
    /// `age-x25519` or null.
    pub encryption: Option<String>,
    pub recipients: Vec<String>,
    pub object_key: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    pub parts: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub landlord_version: String,
}

/// `tenants/{slug}/{timestamp}_{id}.dump.{zst|gz}[.age]` (before the store prefix).
pub fn object_name(
    slug: &str,
    at: DateTime<Utc>,
    id: Uuid,
    codec: Codec,
    encrypted: bool,
) -> String {
    format!(
        "tenants/{slug}/{}_{}.dump.{}{}",
        at.format("%Y%m%dT%H%M%SZ"),
        id.simple(),
        codec.extension(),
        if encrypted { ".age" } else { "" }
    )
}

/// The manifest's key for an object key.
pub fn manifest_key(object_key: &str) -> String {
    format!("{object_key}.manifest.json")
}

/// What a file name says about a dump: (format, codec, encrypted), or `None`
/// if it is not a backup name landlord can restore. Knows landlord's names and
/// the seed's `tenant_{slug}_{YYYY-mm-dd_HH-MM-SS}.sql.gz`.
pub fn classify(name: &str) -> Option<(BackupFormat, Codec, bool)> {
    let (base, encrypted) = match name.strip_suffix(".age") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if let Some(b) = base.strip_suffix(".zst") {
        return b
            .ends_with(".dump")
            .then_some((BackupFormat::Custom, Codec::Zstd, encrypted));
    }
    if let Some(b) = base.strip_suffix(".gz") {
        if b.ends_with(".dump") {
            return Some((BackupFormat::Custom, Codec::Gzip, encrypted));
        }
        if b.ends_with(".sql") {
            return Some((BackupFormat::Plain, Codec::Gzip, encrypted));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let at = DateTime::parse_from_rfc3339("2026-01-15T02:00:00Z")
            .unwrap()
            .to_utc();
        let id = Uuid::nil();
        let n = object_name("acme", at, id, Codec::Zstd, true);
        assert_eq!(
            n,
            "tenants/acme/20260115T020000Z_00000000000000000000000000000000.dump.zst.age"
        );
        assert_eq!(
            classify(&n),
            Some((BackupFormat::Custom, Codec::Zstd, true))
        );
        assert_eq!(
            classify("tenant_acme_2024-01-15_02-00-00.sql.gz"),
            Some((BackupFormat::Plain, Codec::Gzip, false))
        );
        assert_eq!(
            classify("x.dump.gz"),
            Some((BackupFormat::Custom, Codec::Gzip, false))
        );
        assert_eq!(classify("notes.txt"), None);
        assert_eq!(classify("x.manifest.json"), None);
        assert_eq!(manifest_key("a/b.dump.zst"), "a/b.dump.zst.manifest.json");
    }
}
