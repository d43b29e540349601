//! Where backup objects live, behind one interface: an S3 bucket (any
//! S3-compatible server) or a local directory. Large objects go up in
//! bounded parts (multipart on S3, a `.partial` file locally) and only
//! become visible when completed; an aborted upload leaves nothing behind.
//!
//! An S3 client trusts `AWS_CA_BUNDLE` (checked at startup by the config)
//! instead of the system's roots when it is set, and always verifies the
//! store's certificate and host name: it must never accept an unverified
//! certificate. A failed TLS handshake is reported as what failed, naming
//! the endpoint (masked).
//!
//! This module moves bytes and never decides what to keep: naming,
//! retention and the catalog live in the other backup modules.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_s3::{
    Client,
    error::DisplayErrorContext,
    primitives::ByteStream,
    types::{CompletedMultipartUpload, CompletedPart},
};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::io::AsyncWriteExt;

use crate::config::{
    SecretUrl,
    backup::{BackupSettings, CaBundle, Location},
};

/// An object in the store.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// An upload that was started and neither completed nor aborted.
#[derive(Debug, Clone)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
    pub started: Option<DateTime<Utc>>,
}

/// A backup store.
#[derive(Clone)]
pub enum Store {
    S3 {
        client: Client,
        bucket: String,
        prefix: String,
        link: Arc<S3Link>,
    },
    Local {
        root: PathBuf,
    },
}

/// How an S3 client reaches its store, for messages and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Link {
    /// The endpoint as a masked URL, or AWS's own endpoint by region.
    pub endpoint: String,
    /// Whether requests go over HTTPS (certificate and host name verified).
    pub https: bool,
    /// What the client trusts for HTTPS: the bundle's origin and path, or
    /// the system's roots.
    pub trust: String,
}

impl S3Link {
    fn new(endpoint: Option<&str>, region: &str, bundle: Option<&CaBundle>) -> Self {
        let (endpoint, https) = match endpoint {
            Some(ep) => (
                SecretUrl::new(ep).masked(),
                ep.trim().to_ascii_lowercase().starts_with("https://"),
            ),
            None => (format!("AWS S3 ({region}, https)"), true),
        };
        let trust = match bundle {
            Some(b) => format!(
                "{} {} ({} CA certificate{})",
                b.origin,
                b.path.display(),
                b.certificates,
                if b.certificates == 1 { "" } else { "s" }
            ),
            None => "the system's root CAs".to_string(),
        };
        Self {
            endpoint,
            https,
            trust,
        }
    }

    /// An S3 request's error: a failed TLS handshake says what failed and
    /// where; anything else keeps the SDK's full context.
    fn err(&self, what: &str, e: impl std::error::Error + 'static) -> anyhow::Error {
        match rustls_cause(&e) {
            Some(tls) => anyhow!("{what}: {}", self.handshake(tls)),
            None => anyhow!("{what}: {}", DisplayErrorContext(e)),
        }
    }

    fn handshake(&self, e: &rustls::Error) -> String {
        use rustls::{CertificateError as C, Error as E};
        let why = match e {
            E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
                "its certificate is not signed by a CA trusted here (trusted: {}); \
                 set AWS_CA_BUNDLE to a PEM file with the CA that signed it",
                self.trust
            ),
            E::InvalidCertificate(C::NotValidForNameContext {
                expected,
                presented,
            }) => format!(
                "its certificate is not valid for the host name {:?} of the endpoint \
                 (it names {}); use one of those names in the endpoint URL",
                expected.to_str(),
                presented
                    .iter()
                    .map(|n| bare_name(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            E::InvalidCertificate(C::NotValidForName) => {
                "its certificate is not valid for the host name of the endpoint".to_string()
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                "its certificate has expired".to_string()
            }
            E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                "its certificate is not valid yet (check the clocks)".to_string()
            }
            E::InvalidMessage(_) | E::InappropriateMessage { .. } => {
                "the server did not answer with TLS (does it serve plain http://?)".to_string()
            }
            E::AlertReceived(alert) => format!("the server refused the handshake ({alert:?})"),
            other => other.to_string(),
        };
        format!("TLS handshake with {} failed: {why}", self.endpoint)
    }
}

/// `DnsName("localhost")` / `IpAddress(127.0.0.1)` (how rustls lists the
/// names a certificate presents) as `localhost` / `127.0.0.1`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(presented)
}

/// The rustls error somewhere in `e`'s chain. TLS errors travel inside
/// `io::Error`s, whose `source()` skips the error they wrap.
fn rustls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(tls) = rustls_cause(inner) {
                return Some(tls);
            }
        }
        next = e.source();
    }
    None
}

/// An HTTPS client trusting only `bundle` (its PEM was checked when the
/// settings were read, so the connector's own parsing cannot fail).
fn https_client(bundle: &CaBundle) -> Result<aws_sdk_s3::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(bundle.pem.clone());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| anyhow!("{} {}: {e}", bundle.origin, bundle.path.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

impl Store {
    /// Opens the configured store (an S3 client or the local directory).
    /// An S3 client is built once per process and configuration and then
    /// shared: building one (credentials chain, TLS roots, connection pool)
    /// costs more than backing up a small tenant.
    pub async fn open(settings: &BackupSettings) -> Result<Self> {
        static CLIENTS: OnceLock<Mutex<HashMap<String, Store>>> = OnceLock::new();
        let key = format!("{:?}|{:?}", settings.location, settings.s3);
        let cache = CLIENTS.get_or_init(|| Mutex::new(HashMap::new()));
        if matches!(settings.location, Location::S3 { .. })
            && let Ok(c) = cache.lock()
            && let Some(store) = c.get(&key)
        {
            return Ok(store.clone());
        }
        let store = Self::build(settings).await?;
        if matches!(store, Self::S3 { .. })
            && let Ok(mut c) = cache.lock()
        {
            c.insert(key, store.clone());
        }
        Ok(store)
    }

    async fn build(settings: &BackupSettings) -> Result<Self> {
        match &settings.location {
            Location::S3 { bucket, prefix } => {
                let bundle = settings.s3.ca_bundle.as_ref();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(bundle) = bundle {
                    // Also used by aws-config's own requests (STS, SSO, IMDS).
                    loader = loader.http_client(https_client(bundle)?);
                }
                let shared = loader.load().await;
                let mut b = aws_sdk_s3::config::Builder::from(&shared)
                    .force_path_style(settings.s3.path_style);
                if let Some(ep) = &settings.s3.endpoint {
                    b = b.endpoint_url(ep);
                }
                if settings.s3.checksum_when_required {
                    b = b
                        .request_checksum_calculation(
                            aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                        )
                        .response_checksum_validation(
                            aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                        );
                }
                if shared.region().is_none() {
                    b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
                }
                let conf = b.build();
                let link = S3Link::new(
                    settings.s3.endpoint.as_deref().or(shared.endpoint_url()),
                    conf.region().map(|r| r.as_ref()).unwrap_or("us-east-1"),
                    bundle,
                );
                Ok(Self::S3 {
                    client: Client::from_conf(conf),
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    link: Arc::new(link),
                })
            }
            Location::Local { root, .. } => {
                tokio::fs::create_dir_all(root)
                    .await
                    .with_context(|| format!("creating backup directory {}", root.display()))?;
                Ok(Self::Local { root: root.clone() })
            }
        }
    }

    /// How an S3 store is reached; `None` for a local directory.
    pub fn link(&self) -> Option<&S3Link> {
        match self {
            Self::S3 { link, .. } => Some(link),
            Self::Local { .. } => None,
        }
    }

    /// The store as a URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::S3 { bucket, prefix, .. } if prefix.is_empty() => format!("s3://{bucket}"),
            Self::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
            Self::Local { root } => format!("file://{}", root.display()),
        }
    }

    /// The full key of `rel` (the configured prefix joined in front).
    pub fn key(&self, rel: &str) -> String {
        match self {
            Self::S3 { prefix, .. } if !prefix.is_empty() => format!("{prefix}/{rel}"),
            _ => rel.to_string(),
        }
    }

    fn local_path(root: &Path, key: &str) -> Result<PathBuf> {
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            bail!("object key {key:?} is not a plain relative path");
        }
        Ok(root.join(key))
    }

    /// Starts an upload of `key`. Nothing is visible until [`Upload::complete`].
    pub fn start(&self, key: &str) -> Result<Upload> {
        let target = match self {
            Self::S3 { .. } => None,
            Self::Local { root } => Some(Self::local_path(root, key)?),
        };
        Ok(Upload {
            store: self.clone(),
            key: key.to_string(),
            upload_id: None,
            first: None,
            parts: Vec::new(),
            local: target.map(|t| LocalUpload {
                partial: partial_path(&t),
                target: t,
                file: None,
            }),
        })
    }

    /// Writes a small object in one request.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(data))
                    .send()
                    .await
                    .map_err(|e| link.err(&format!("writing {key}"), e))?;
            }
            Self::Local { root } => {
                let path = Self::local_path(root, key)?;
                let partial = partial_path(&path);
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                let mut f = tokio::fs::File::create(&partial)
                    .await
                    .with_context(|| format!("creating {}", partial.display()))?;
                f.write_all(&data).await?;
                f.sync_all().await?;
                tokio::fs::rename(&partial, &path).await?;
            }
        }
        Ok(())
    }

    /// Reads a whole small object (manifests).
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let mut r = self.get(key).await?;
        let mut out = Vec::new();
        while let Some(chunk) = r.next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// Streams an object.
    pub async fn get(&self, key: &str) -> Result<ObjectReader> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| link.err(&format!("reading {key}"), e))?;
                Ok(ObjectReader::S3(out.body))
            }
            Self::Local { root } => {
                let path = Self::local_path(root, key)?;
                let f = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?;
                Ok(ObjectReader::Local(f))
            }
        }
    }

    /// The size of an object, or `None` if it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<u64>> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => match client.head_object().bucket(bucket).key(key).send().await {
                Ok(o) => Ok(Some(o.content_length().unwrap_or(0).max(0) as u64)),
                Err(e) => {
                    if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                        Ok(None)
                    } else {
                        Err(link.err(&format!("looking up {key}"), e))
                    }
                }
            },
            Self::Local { root } => match tokio::fs::metadata(Self::local_path(root, key)?).await {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| link.err(&format!("deleting {key}"), e))?;
            }
            Self::Local { root } => {
                match tokio::fs::remove_file(Self::local_path(root, key)?).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Every complete object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                let mut out = Vec::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    let page = page.map_err(|e| link.err("listing objects", e))?;
                    for o in page.contents() {
                        out.push(ObjectInfo {
                            key: o.key().unwrap_or_default().to_string(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                            modified: o
                                .last_modified()
                                .and_then(|t| DateTime::from_timestamp(t.secs(), 0)),
                        });
                    }
                }
                Ok(out)
            }
            Self::Local { root } => {
                let mut out = Vec::new();
                walk(root, root, &mut |rel, meta| {
                    if rel.starts_with(prefix) && !is_partial(rel) {
                        out.push(ObjectInfo {
                            key: rel.to_string(),
                            size: meta.len(),
                            modified: meta.modified().ok().map(DateTime::<Utc>::from),
                        });
                    }
                })?;
                Ok(out)
            }
        }
    }

    /// Uploads under `prefix` that were started and never completed or aborted.
    pub async fn pending_uploads(&self, prefix: &str) -> Result<Vec<PendingUpload>> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                let mut out = Vec::new();
                let mut key_marker: Option<String> = None;
                let mut id_marker: Option<String> = None;
                loop {
                    let page = client
                        .list_multipart_uploads()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await
                        .map_err(|e| link.err("listing multipart uploads", e))?;
                    for u in page.uploads() {
                        out.push(PendingUpload {
                            key: u.key().unwrap_or_default().to_string(),
                            upload_id: u.upload_id().unwrap_or_default().to_string(),
                            started: u
                                .initiated()
                                .and_then(|t| DateTime::from_timestamp(t.secs(), 0)),
                        });
                    }
                    if page.is_truncated() != Some(true) {
                        break;
                    }
                    key_marker = page.next_key_marker().map(str::to_string);
                    id_marker = page.next_upload_id_marker().map(str::to_string);
                    if key_marker.is_none() {
                        break;
                    }
                }
                Ok(out)
            }
            Self::Local { root } => {
                let mut out = Vec::new();
                walk(root, root, &mut |rel, meta| {
                    if rel.starts_with(prefix) && is_partial(rel) {
                        let key = rel
                            .rsplit_once(".partial-")
                            .map(|(k, _)| k.to_string())
                            .unwrap_or_default();
                        out.push(PendingUpload {
                            key,
                            upload_id: rel.to_string(),
                            started: meta.modified().ok().map(DateTime::<Utc>::from),
                        });
                    }
                })?;
                Ok(out)
            }
        }
    }

    /// Aborts a pending upload (its parts are freed). Idempotent.
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<()> {
        match self {
            Self::S3 {
                client,
                bucket,
                link,
                ..
            } => {
                match client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.meta().code() == Some("NoSuchUpload")) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(link.err(&format!("aborting the upload of {key}"), e)),
                }
            }
            Self::Local { root } => {
                if !is_partial(upload_id) {
                    bail!("{upload_id:?} is not a partial upload");
                }
                match tokio::fs::remove_file(Self::local_path(root, upload_id)?).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(format!(".partial-{}", uuid::Uuid::new_v4().simple()));
    PathBuf::from(name)
}

fn is_partial(rel: &str) -> bool {
    rel.contains(".partial-")
}

fn walk(root: &Path, dir: &Path, f: &mut dyn FnMut(&str, &std::fs::Metadata)) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            walk(root, &path, f)?;
        } else if let Ok(rel) = path.strip_prefix(root)
            && let Some(rel) = rel.to_str()
        {
            f(rel, &meta);
        }
    }
    Ok(())
}

/// A streaming read of one object.
pub enum ObjectReader {
    S3(ByteStream),
    Local(tokio::fs::File),
}

impl ObjectReader {
    /// The next chunk, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        match self {
            Self::S3(body) => match body.next().await {
                None => Ok(None),
                Some(Ok(b)) => Ok(Some(b)),
                Some(Err(e)) => Err(anyhow!("reading object body: {}", DisplayErrorContext(e))),
            },
            Self::Local(f) => {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 1 << 20];
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(Bytes::from(buf)))
            }
        }
    }
}

struct LocalUpload {
    target: PathBuf,
    partial: PathBuf,
    file: Option<tokio::fs::File>,
}

/// An upload in progress. Small objects (one part) go up in a single PUT at
/// [`Upload::complete`]; larger ones as multipart parts.
pub struct Upload {
    store: Store,
    key: String,
    upload_id: Option<String>,
    first: Option<Bytes>,
    parts: Vec<CompletedPart>,
    local: Option<LocalUpload>,
}

impl Upload {
    /// The key being written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The store's id for this upload once one exists (for abort after a crash).
    pub fn id(&self) -> Option<&str> {
        self.upload_id.as_deref()
    }

    /// Adds the next part. Every part but the last must be at least 5 MiB on S3.
    pub async fn part(&mut self, data: Bytes) -> Result<()> {
        if let Some(local) = &mut self.local {
            if local.file.is_none() {
                if let Some(dir) = local.target.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                local.file = Some(
                    tokio::fs::File::create(&local.partial)
                        .await
                        .with_context(|| format!("creating {}", local.partial.display()))?,
                );
                if let Store::Local { root } = &self.store {
                    self.upload_id = local
                        .partial
                        .strip_prefix(root)
                        .ok()
                        .and_then(|p| p.to_str())
                        .map(str::to_string);
                }
            }
            if let Some(f) = &mut local.file {
                f.write_all(&data).await?;
            }
            return Ok(());
        }
        match self.first.take() {
            None if self.upload_id.is_none() => {
                // Held back: if it is the only part, complete() PUTs it whole.
                self.first = Some(data);
                Ok(())
            }
            held => {
                if self.upload_id.is_none() {
                    self.begin_multipart().await?;
                }
                if let Some(first) = held {
                    self.send_part(first).await?;
                }
                self.send_part(data).await
            }
        }
    }

    async fn begin_multipart(&mut self) -> Result<()> {
        let Store::S3 {
            client,
            bucket,
            link,
            ..
        } = &self.store
        else {
            return Ok(());
        };
        let out = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| link.err(&format!("starting the upload of {}", self.key), e))?;
        self.upload_id = Some(
            out.upload_id()
                .context("the store returned no upload id")?
                .to_string(),
        );
        Ok(())
    }

    async fn send_part(&mut self, data: Bytes) -> Result<()> {
        let (
            Store::S3 {
                client,
                bucket,
                link,
                ..
            },
            Some(id),
        ) = (&self.store, &self.upload_id)
        else {
            bail!("no multipart upload in progress");
        };
        let number = self.parts.len() as i32 + 1;
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| link.err(&format!("uploading part {number} of {}", self.key), e))?;
        // Only the ETag: per-part checksums in the completion are optional and
        // some stores (Garage) reject ones they did not record at upload time.
        // The whole object's SHA-256 is ours, checked on every read.
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Makes the object visible with everything written so far.
    pub async fn complete(mut self) -> Result<()> {
        if let Some(local) = &mut self.local {
            let file = match local.file.take() {
                Some(f) => f,
                None => {
                    if let Some(dir) = local.target.parent() {
                        tokio::fs::create_dir_all(dir).await?;
                    }
                    tokio::fs::File::create(&local.partial).await?
                }
            };
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&local.partial, &local.target)
                .await
                .with_context(|| format!("renaming into {}", local.target.display()))?;
            return Ok(());
        }
        let Store::S3 {
            client,
            bucket,
            link,
            ..
        } = &self.store
        else {
            bail!("store mismatch");
        };
        if self.upload_id.is_none() {
            let data = self.first.take().unwrap_or_default();
            return self.store.put(&self.key, data).await;
        }
        let id = self.upload_id.clone().unwrap_or_default();
        client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(&self.key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| link.err(&format!("completing the upload of {}", self.key), e))?;
        Ok(())
    }

    /// Abandons the upload: parts are freed, nothing becomes visible.
    pub async fn abort(mut self) -> Result<()> {
        if let Some(local) = &mut self.local {
            drop(local.file.take());
            match tokio::fs::remove_file(&local.partial).await {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        match self.upload_id.take() {
            Some(id) => self.store.abort(&self.key, &id).await,
            None => Ok(()),
        }
    }
}
