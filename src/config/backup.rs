//! Typed settings for backups and restores: where dumps go ([`Location`]),
//! how they are compressed ([`Codec`]) and encrypted, how many are kept
//! ([`Policy`]), which CAs the S3 client trusts ([`CaBundle`]). Read from
//! `LANDLORD_BACKUP_*` (and the standard `AWS_*` variables for S3) over the
//! `[backup]` table of `landlord.toml`.
//!
//! Part of the configuration layer, which `crate::backup` builds on: this
//! file must never import from `crate::backup`. It must never hold a private
//! key: it keeps age public keys (`age1…`) and only the *path* of the
//! identity file, which restores and verifies read when they need it; it
//! never opens that file, nor touches storage. The one file it reads is the
//! public CA bundle of `AWS_CA_BUNDLE`, so a bad one stops startup.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::{
    env::{env, env_parse},
    retention::{self, Policy},
};

crate::text_enum::text_enum! {
    /// Compression of the dump stream (also `backups.codec`).
    pub enum Codec("codec") {
        Zstd = "zstd",
        Gzip = "gzip",
    }
}

impl Codec {
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "zstd" | "zst" => Ok(Self::Zstd),
            "gzip" | "gz" => Ok(Self::Gzip),
            other => bail!("backup codec must be zstd or gzip, got {other:?}"),
        }
    }

    /// File extension of objects in this codec.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::Zstd => "zst",
            Self::Gzip => "gz",
        }
    }

    /// The level used when none is configured.
    pub fn default_level(&self) -> i32 {
        match self {
            Self::Zstd => 3,
            Self::Gzip => 6,
        }
    }

    /// Whether `level` is valid for this codec.
    pub fn check_level(&self, level: i32) -> Result<()> {
        let ok = match self {
            Self::Zstd => (1..=19).contains(&level),
            Self::Gzip => (1..=9).contains(&level),
        };
        if !ok {
            bail!(
                "compression level {level} is out of range for {} ({})",
                self.as_str(),
                match self {
                    Self::Zstd => "1-19",
                    Self::Gzip => "1-9",
                }
            );
        }
        Ok(())
    }
}

/// Where backups are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, prefix: String },
    Local { root: PathBuf, prefix: String },
}

impl Location {
    /// Parses `s3://bucket/prefix` or `file:///path`.
    pub fn parse(raw: &str) -> Result<Self> {
        let url = url::Url::parse(raw).with_context(|| {
            format!("LANDLORD_BACKUP_URL {raw:?} must be s3://bucket/prefix or file:///path")
        })?;
        let prefix = url.path().trim_matches('/').to_string();
        match url.scheme() {
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_string();
                if bucket.is_empty() {
                    bail!("LANDLORD_BACKUP_URL {raw:?} names no bucket");
                }
                Ok(Self::S3 { bucket, prefix })
            }
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    bail!("LANDLORD_BACKUP_URL {raw:?}: file URLs take no host (file:///path)");
                }
                Ok(Self::Local {
                    root: PathBuf::from(url.path()),
                    prefix: String::new(),
                })
            }
            other => bail!("LANDLORD_BACKUP_URL scheme must be s3 or file, got {other:?}"),
        }
    }

    /// The URL form, for logs and manifests (no secrets in it).
    pub fn describe(&self) -> String {
        match self {
            Self::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Self::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Self::Local { root, .. } => format!("file://{}", root.display()),
        }
    }
}

/// A PEM bundle of CA certificates the S3 client trusts *instead of* the
/// system's roots (as the AWS CLI does with `AWS_CA_BUNDLE`): a private CA
/// of a self-hosted store. To trust both, concatenate the system bundle and
/// the private CA into one file.
#[derive(Clone)]
pub struct CaBundle {
    /// Where the bundle was named, for messages (`AWS_CA_BUNDLE`).
    pub origin: String,
    pub path: PathBuf,
    /// The file's PEM text; every certificate in it was checked to be usable.
    pub pem: Vec<u8>,
    /// How many certificates it holds.
    pub certificates: usize,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CaBundle({} {}, {} certificates)",
            self.origin,
            self.path.display(),
            self.certificates
        )
    }
}

impl CaBundle {
    /// Reads and checks the bundle at `path`: it must be readable PEM with at
    /// least one certificate, every certificate usable as a trust anchor.
    /// Errors name `origin` and the path.
    pub fn read(origin: &str, path: impl Into<PathBuf>) -> Result<Self> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let path = path.into();
        let at = format!("{origin} {}", path.display());
        let pem =
            std::fs::read(&path).with_context(|| format!("{at}: cannot read the CA bundle"))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("{at}: not a valid PEM file: {e}"))?;
        if certs.is_empty() {
            bail!(
                "{at}: holds no certificate (expected PEM blocks \
                 \"-----BEGIN CERTIFICATE-----\")"
            );
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            roots.add(cert.clone()).map_err(|e| {
                anyhow::anyhow!(
                    "{at}: certificate {} of {} is not a usable CA certificate: {e}",
                    i + 1,
                    certs.len()
                )
            })?;
        }
        Ok(Self {
            origin: origin.to_string(),
            path,
            pem,
            certificates: certs.len(),
        })
    }
}

/// S3 client options beyond the standard `AWS_*` variables.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Overrides `AWS_ENDPOINT_URL` (any S3-compatible server).
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted stores.
    pub path_style: bool,
    /// Send request checksums only when an operation requires them, for stores
    /// that reject the SDK's default CRC checksums.
    pub checksum_when_required: bool,
    /// `AWS_CA_BUNDLE`, read and checked at startup when backups go to S3.
    /// Unset: the client trusts the system's roots. (A profile's `ca_bundle`
    /// is not read: aws-config only exposes profiles through internal APIs.)
    pub ca_bundle: Option<CaBundle>,
}

/// All backup settings.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub location: Location,
    pub s3: S3Options,
    pub codec: Codec,
    pub level: i32,
    /// age recipients (public keys, `age1…`); empty = not encrypted.
    pub age_recipients: Vec<String>,
    /// File with age identities (private keys), read by restores and verifies.
    pub age_identity_file: Option<PathBuf>,
    /// Bytes per multipart part (and the single-PUT threshold).
    pub part_size: usize,
    /// Retention applied after each successful backup.
    pub retention: Policy,
    /// How long a restore keeps the pre-restore database for rollback.
    pub keep_pre_restore: Duration,
    /// Timeout of one backup or restore attempt.
    pub timeout: Duration,
    /// Directory of pg_dump / pg_restore / psql (default: PATH).
    pub pg_bin_dir: Option<PathBuf>,
}

/// The `[backup]` table of `landlord.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBackup {
    url: Option<String>,
    codec: Option<String>,
    level: Option<i32>,
    age_recipients: Option<Vec<String>>,
    age_identity_file: Option<PathBuf>,
    part_size_mib: Option<usize>,
    retention: Option<String>,
    keep_pre_restore_hours: Option<u64>,
    timeout_seconds: Option<u64>,
    pg_bin_dir: Option<PathBuf>,
    s3_endpoint: Option<String>,
    s3_path_style: Option<bool>,
    s3_checksum: Option<String>,
}

/// The local directory used when no `LANDLORD_BACKUP_URL` is configured.
pub fn default_local_root() -> PathBuf {
    std::env::var_os("LANDLORD_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./landlord-data"))
        .join("backups")
}

impl BackupSettings {
    /// Environment over the file's `[backup]` table over defaults.
    pub fn load(file: FileBackup) -> Result<Self> {
        let location = match env("LANDLORD_BACKUP_URL").or(file.url) {
            Some(raw) => Location::parse(&raw)?,
            None => Location::Local {
                root: default_local_root(),
                prefix: String::new(),
            },
        };
        let codec = Codec::parse(
            &env("LANDLORD_BACKUP_CODEC")
                .or(file.codec)
                .unwrap_or_else(|| "zstd".into()),
        )?;
        let level = env_parse("LANDLORD_BACKUP_LEVEL")?
            .or(file.level)
            .unwrap_or(codec.default_level());
        codec.check_level(level).context("LANDLORD_BACKUP_LEVEL")?;
        let age_recipients: Vec<String> = match env("LANDLORD_BACKUP_AGE_RECIPIENTS") {
            Some(v) => v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => file.age_recipients.unwrap_or_default(),
        };
        for r in &age_recipients {
            r.parse::<age::x25519::Recipient>().map_err(|e| {
                anyhow::anyhow!(
                    "LANDLORD_BACKUP_AGE_RECIPIENTS: {r:?} is not an age public key: {e}"
                )
            })?;
        }
        let part_mib = env_parse("LANDLORD_BACKUP_PART_SIZE_MIB")?
            .or(file.part_size_mib)
            .unwrap_or(8);
        if !(5..=512).contains(&part_mib) {
            bail!(
                "LANDLORD_BACKUP_PART_SIZE_MIB must be between 5 and 512 (S3's minimum part is 5 MiB), got {part_mib}"
            );
        }
        let retention_raw = env("LANDLORD_BACKUP_RETENTION")
            .or(file.retention)
            .unwrap_or_else(|| "keep:5".into());
        let retention = retention::parse(&retention_raw)
            .map_err(|e| anyhow::anyhow!("LANDLORD_BACKUP_RETENTION {retention_raw:?}: {e}"))?;
        let checksum = env("LANDLORD_S3_CHECKSUM")
            .or(file.s3_checksum)
            .unwrap_or_else(|| "when_supported".into());
        let checksum_when_required = match checksum.as_str() {
            "when_supported" => false,
            "when_required" => true,
            other => {
                bail!("LANDLORD_S3_CHECKSUM must be when_supported or when_required, got {other:?}")
            }
        };
        let endpoint = env("LANDLORD_S3_ENDPOINT").or(file.s3_endpoint);
        let path_style = match env("LANDLORD_S3_PATH_STYLE").or(env("AWS_S3_FORCE_PATH_STYLE")) {
            Some(v) => matches!(v.trim(), "1" | "true" | "yes"),
            None => file
                .s3_path_style
                .unwrap_or(endpoint.is_some() || env("AWS_ENDPOINT_URL").is_some()),
        };
        let ca_bundle = match (&location, env("AWS_CA_BUNDLE")) {
            (Location::S3 { .. }, Some(path)) => Some(CaBundle::read("AWS_CA_BUNDLE", path)?),
            _ => None,
        };
        Ok(Self {
            location,
            s3: S3Options {
                endpoint,
                path_style,
                checksum_when_required,
                ca_bundle,
            },
            codec,
            level,
            age_recipients,
            age_identity_file: env("LANDLORD_BACKUP_AGE_IDENTITY_FILE")
                .map(PathBuf::from)
                .or(file.age_identity_file),
            part_size: part_mib * 1024 * 1024,
            retention,
            keep_pre_restore: Duration::from_secs(
                3600 * env_parse("LANDLORD_RESTORE_KEEP_PRE_HOURS")?
                    .or(file.keep_pre_restore_hours)
                    .unwrap_or(24),
            ),
            timeout: Duration::from_secs(
                env_parse("LANDLORD_BACKUP_TIMEOUT_SECONDS")?
                    .or(file.timeout_seconds)
                    .unwrap_or(6 * 3600),
            ),
            pg_bin_dir: env("LANDLORD_PG_BIN_DIR")
                .map(PathBuf::from)
                .or(file.pg_bin_dir),
        })
    }

    /// Path of a PostgreSQL client program.
    pub fn pg_tool(&self, name: &str) -> PathBuf {
        match &self.pg_bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            Location::parse("s3://bkt/a/b").unwrap(),
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("file:///var/backups").unwrap(),
            Location::Local {
                root: "/var/backups".into(),
                prefix: String::new()
            }
        );
        assert!(Location::parse("ftp://x/y").is_err());
        assert!(Location::parse("s3:///nobucket").is_err());
        assert!(Location::parse("not a url").is_err());
    }

    #[test]
    fn codec_levels() {
        assert!(Codec::Zstd.check_level(19).is_ok());
        assert!(Codec::Zstd.check_level(20).is_err());
        assert!(Codec::Gzip.check_level(9).is_ok());
        assert!(Codec::Gzip.check_level(0).is_err());
        assert!(Codec::parse("lz4").is_err());
    }
}
