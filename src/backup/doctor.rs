//! `landlord doctor` and `landlord backup --check` (the seed's
//! checkRequirements): what backups and the fleet need, checked for real:
//! client tools present and not older than any server, catalog and broker
//! reachable, the store writable, disk space for a local store. Changes
//! nothing except a probe object it writes and deletes.

use std::{path::Path, time::Duration};

use bytes::Bytes;
use serde::Serialize;

use super::{pgtool, store::Store};
use crate::{
    broker::Broker,
    config::{SecretUrl, Settings, backup::Location},
};

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// For a connection that was made: what protects it on the wire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

/// Whether a connection doctor made is encrypted, and whether the peer's
/// certificate was verified (chain and host name) rather than merely accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transport {
    pub encrypted: bool,
    pub verified: bool,
    /// For people: protocol version, the CA trusted, or why it is plain.
    pub detail: String,
}

impl Transport {
    pub fn plain(why: impl Into<String>) -> Self {
        Self {
            encrypted: false,
            verified: false,
            detail: why.into(),
        }
    }

    /// One phrase for the text report: `TLS, verified (…)`.
    pub fn describe(&self) -> String {
        match (self.encrypted, self.verified) {
            (true, true) => format!("TLS, verified ({})", self.detail),
            (true, false) => format!("TLS, NOT verified ({})", self.detail),
            _ => format!("not encrypted ({})", self.detail),
        }
    }
}

fn check(name: impl Into<String>, res: Result<String, String>) -> Check {
    let (ok, detail) = match res {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Check {
        name: name.into(),
        ok,
        detail,
        transport: None,
    }
}

/// [`check`] of a connection, with what protected it when it was made.
fn connection_check(name: impl Into<String>, res: Result<(String, Transport), String>) -> Check {
    match res {
        Ok((detail, transport)) => Check {
            transport: Some(transport),
            ..check(name, Ok(detail))
        },
        Err(detail) => check(name, Err(detail)),
    }
}

/// Free space below which a local store is reported (bytes).
const MIN_FREE: u64 = 1 << 30;

pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut out = Vec::new();
    let mut tools = Vec::new();
    for tool in ["pg_dump", "pg_restore", "psql"] {
        let res = pgtool::major_version(settings, tool).map_err(|e| format!("{e:#}"));
        if let Ok(v) = &res {
            tools.push((tool, *v));
        }
        out.push(check(
            tool,
            res.map(|_| pgtool::version_line(settings, tool)),
        ));
    }
    for (name, url) in &settings.servers {
        out.push(connection_check(
            format!("server {name}"),
            server_version(name, url, &tools).await,
        ));
    }
    out.push(connection_check("catalog", catalog(settings).await));
    out.push(connection_check("broker", broker(settings).await));
    out.push(connection_check("mail", mail(settings).await));
    out.push(connection_check(
        "backup store",
        store_probe(settings).await,
    ));
    out.push(check("catalog key", catalog_key(settings).await));
    if let Location::Local { root, .. } = &settings.backup.location {
        out.push(check("disk space", disk_space(root)));
    }
    out
}

/// The server answers, and no client tool in `tools` is older than it; with
/// what protects the session.
async fn server_version(
    name: &str,
    url: &SecretUrl,
    tools: &[(&str, u32)],
) -> Result<(String, Transport), String> {
    let opts: sqlx::postgres::PgConnectOptions =
        url.expose().parse().map_err(|e| format!("bad URL: {e}"))?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(opts)
        .await
        .map_err(|e| {
            let e = crate::pg_tls::connect_error(e, &format!("database server {name:?}"), url);
            format!("cannot connect: {e:#}")
        })?;
    let transport = pg_transport(&pool, url).await;
    let num: String = sqlx::query_scalar("SHOW server_version_num")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    pool.close().await;
    let transport = transport?;
    let major = num.parse::<u32>().unwrap_or(0) / 10000;
    let old: Vec<String> = tools
        .iter()
        .filter(|(_, v)| *v < major)
        .map(|(t, v)| format!("{t} {v}"))
        .collect();
    if old.is_empty() {
        Ok((
            format!("PostgreSQL {major}; client tools are new enough"),
            transport,
        ))
    } else {
        Err(format!(
            "PostgreSQL {major} but {} is older: dumps would fail",
            old.join(", ")
        ))
    }
}

async fn catalog(settings: &Settings) -> Result<(String, Transport), String> {
    let pool = crate::db::connect(settings)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let transport = pg_transport(&pool, &settings.catalog.url).await;
    pool.close().await;
    Ok((settings.catalog.url.masked(), transport?))
}

/// What protects a session of `pool` (opened from `url`): the server's own
/// view (`pg_stat_ssl` of the backend) and whether `sslmode` verifies.
async fn pg_transport(pool: &sqlx::PgPool, url: &SecretUrl) -> Result<Transport, String> {
    let (ssl, version): (bool, Option<String>) =
        sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(pool)
            .await
            .map_err(|e| format!("reading pg_stat_ssl of the session: {e}"))?;
    let tls = crate::pg_tls::check("the URL", url).map_err(|e| format!("{e:#}"))?;
    let mode = tls.mode;
    if !ssl {
        return Ok(Transport::plain(format!(
            "sslmode={mode}; the server's pg_stat_ssl says the session is plain"
        )));
    }
    let version = version.unwrap_or_else(|| "TLS".into());
    let root = tls.root_cert.unwrap_or_default();
    let (verified, how) = match mode {
        crate::pg_tls::Mode::VerifyFull => (
            true,
            format!("sslmode=verify-full: certificate chain checked against {root} and host name"),
        ),
        crate::pg_tls::Mode::VerifyCa => (
            true,
            format!(
                "sslmode=verify-ca: certificate chain checked against {root}; host name checked \
                 by landlord's own connections (sqlx#3793), not by pg_dump/psql"
            ),
        ),
        _ => (
            false,
            format!("sslmode={mode}: server certificate not checked"),
        ),
    };
    let client = if tls.client_cert.is_some() {
        "; client certificate presented"
    } else {
        ""
    };
    Ok(Transport {
        encrypted: true,
        verified,
        detail: format!("{version}, {how}{client}"),
    })
}

/// The broker answers; over `amqps://` the handshake verified its certificate
/// (there is no way to turn that off), so TLS here is always verified.
async fn broker(settings: &Settings) -> Result<(String, Transport), String> {
    let tls = settings.broker.tls().map_err(|e| format!("{e:#}"))?;
    let broker = Broker::new(
        &settings.broker,
        &crate::runtime::worker::owner_id("doctor"),
    );
    let reached = tokio::time::timeout(Duration::from_secs(10), broker.connect()).await;
    broker.close().await;
    match reached {
        Ok(Ok(())) => Ok((broker.describe(), broker_transport(tls.as_ref()))),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

fn broker_transport(tls: Option<&crate::config::AmqpTls>) -> Transport {
    let Some(t) = tls else {
        return Transport::plain("amqp:// URL; use amqps:// for TLS");
    };
    let mut detail = match &t.ca_file {
        Some(ca) => format!(
            "certificate verified against {} and the system's CAs",
            ca.display()
        ),
        None => "certificate verified against the system's CAs".to_string(),
    };
    if let Some(cert) = &t.cert_file {
        detail.push_str(&format!(", client certificate {}", cert.display()));
    }
    Transport {
        encrypted: true,
        verified: true,
        detail,
    }
}

/// The SMTP server accepts a session as `LANDLORD_SMTP_URL` asks (TLS,
/// STARTTLS, AUTH), reporting what protected it; no URL is not a failure
/// (mail jobs then fail with their own clear error).
async fn mail(settings: &Settings) -> Result<(String, Transport), String> {
    if settings.mail.smtp_url.is_none() {
        return Ok((
            "LANDLORD_SMTP_URL is not set: welcome mails cannot be sent".into(),
            Transport::plain("no SMTP server configured"),
        ));
    }
    let endpoint = settings.mail.endpoint().map_err(|e| format!("{e:#}"))?;
    let session = tokio::time::timeout(
        Duration::from_secs(15),
        crate::mail::Session::open(&endpoint),
    )
    .await
    .map_err(|_| format!("SMTP server {} gave no answer within 15 s", endpoint.masked))?
    .map_err(|e| format!("{e:#}"))?;
    let p = session.protection.clone();
    session.quit().await;
    let transport = if p.encrypted {
        Transport {
            encrypted: true,
            verified: true,
            detail: p.detail,
        }
    } else {
        Transport::plain(p.detail)
    };
    Ok((endpoint.masked, transport))
}

/// Writes, reads back and deletes a probe object; reports what protected
/// the requests: HTTPS is always verified (chain and host name) against
/// `AWS_CA_BUNDLE` or the system's roots, plain for http:// and a directory.
async fn store_probe(settings: &Settings) -> Result<(String, Transport), String> {
    let store = Store::open(&settings.backup)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let key = store.key(&format!(
        ".landlord-doctor/{}",
        uuid::Uuid::new_v4().simple()
    ));
    store
        .put(&key, Bytes::from_static(b"landlord doctor probe"))
        .await
        .map_err(|e| format!("cannot write: {e:#}"))?;
    let size = store.head(&key).await.map_err(|e| format!("{e:#}"))?;
    store
        .delete(&key)
        .await
        .map_err(|e| format!("cannot delete: {e:#}"))?;
    if size != Some(21) {
        return Err(format!("wrote 21 bytes, read back {size:?}"));
    }
    let transport = match store.link() {
        Some(link) if link.https => Transport {
            encrypted: true,
            verified: true,
            detail: format!(
                "{}, certificate verified against {}",
                link.endpoint, link.trust
            ),
        },
        Some(link) => Transport::plain(format!("{} is plain http", link.endpoint)),
        None => Transport::plain("a local directory, no network"),
    };
    Ok((format!("{} is writable", store.describe()), transport))
}

/// The catalog key opens, and every stored tenant password is sealed to it.
async fn catalog_key(settings: &Settings) -> Result<String, String> {
    let sealer =
        crate::lifecycle::sealing::Sealer::load(&settings.secrets).map_err(|e| format!("{e:#}"))?;
    let pool = crate::db::connect(settings)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let counted = crate::lifecycle::sealing::status(&pool, Some(&sealer.current())).await;
    pool.close().await;
    match counted.map_err(|e| format!("{e:#}"))? {
        (0, 0) => Ok(format!("tenant passwords sealed to {}", sealer.current())),
        (clear, other) => Err(format!(
            "{clear} tenant password(s) stored in clear and {other} sealed to an older key: \
             run `landlord secrets rekey`"
        )),
    }
}

/// Free space of a local store's root, at least [`MIN_FREE`].
fn disk_space(root: &Path) -> Result<String, String> {
    let free = fs4::available_space(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let text = format!("{} MiB free in {}", free >> 20, root.display());
    if free < MIN_FREE {
        Err(format!("only {text}"))
    } else {
        Ok(text)
    }
}
