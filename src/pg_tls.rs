//! PostgreSQL over TLS, the same for landlord's own connections (sqlx with
//! rustls) and for the client programs it runs (pg_dump, pg_restore, psql:
//! libpq): which TLS parameters of a server URL are honoured and how they
//! reach the programs (`PG*` variables), and what a failed connection says
//! (which endpoint, masked, and what failed: untrusted CA, wrong host name,
//! no TLS on the server, plain connection refused, client certificate).
//!
//! Honoured, in the URL's query: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`), `sslrootcert`, `sslcert` with `sslkey` (and
//! sqlx's spellings `ssl-mode`, `ssl-root-cert`, `ssl-ca`, `ssl-cert`,
//! `ssl-key`); `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY` of
//! landlord's environment are their defaults for both clients.
//!
//! This module must never let a URL through whose TLS settings one of the
//! two clients would ignore or read differently (a silently weaker
//! connection for one of them): it refuses `sslmode=allow` (sqlx never tries
//! TLS under it), `verify-ca`/`verify-full` without `sslrootcert` (sqlx would
//! trust the Mozilla roots, libpq `~/.postgresql/root.crt`), `require` with
//! `sslrootcert` (libpq would verify the CA, sqlx not), a certificate without
//! its key, and every libpq TLS/GSS parameter sqlx does not implement
//! (`sslpassword`, `sslcrl`, …). Nor may it print a URL unmasked.
//!
//! Known difference left: under `verify-ca` landlord's own connections check
//! the host name as well (sqlx 0.8.6 misses rustls's newer name-mismatch
//! error, launchbadge/sqlx#3793), pg_dump/psql do not: stricter, never weaker.

use std::{fmt, process::Command};

use anyhow::{Result, bail};

use crate::config::SecretUrl;

/// `sslmode`, as both clients read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// Whether the server's certificate is checked against `sslrootcert`.
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        })
    }
}

/// The TLS settings of one server URL (defaults from the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: Mode,
    pub root_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

/// The parameters both clients honour: their spellings and libpq's variable.
const PASSED: &[(&[&str], &str)] = &[
    (&["sslmode", "ssl-mode"], "PGSSLMODE"),
    (&["sslrootcert", "ssl-root-cert", "ssl-ca"], "PGSSLROOTCERT"),
    (&["sslcert", "ssl-cert"], "PGSSLCERT"),
    (&["sslkey", "ssl-key"], "PGSSLKEY"),
];

/// libpq's security parameters that sqlx does not implement.
const UNSUPPORTED: &[&str] = &[
    "requiressl",
    "gssencmode",
    "channel_binding",
    "requirepeer",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
];

/// Environment variables of libpq's security settings sqlx does not read:
/// removed from the client programs' environment so they connect as
/// landlord's own connections do.
const CHILD_UNSET: &[&str] = &[
    "PGSSLPASSWORD",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLCOMPRESSION",
    "PGSSLNEGOTIATION",
    "PGSSLCERTMODE",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGREQUIRESSL",
    "PGGSSENCMODE",
    "PGCHANNELBINDING",
    "PGREQUIREPEER",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
];

fn env_default(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// The TLS settings of `url` (named `what` in messages), refused when
/// landlord's connections and its client programs could not both honour
/// them exactly.
pub fn check(what: &str, url: &SecretUrl) -> Result<Tls> {
    let parsed = url::Url::parse(url.expose())
        .map_err(|e| anyhow::anyhow!("{what} ({}) is not a URL: {e}", url.masked()))?;
    let mut given: [Option<String>; 4] = Default::default();
    for (k, v) in parsed.query_pairs() {
        if let Some(i) = PASSED
            .iter()
            .position(|(names, _)| names.contains(&k.as_ref()))
        {
            given[i] = Some(v.into_owned());
        } else if k.starts_with("ssl") || UNSUPPORTED.contains(&k.as_ref()) {
            bail!(
                "{what} ({}): URL parameter {k:?} is not supported: landlord's own \
                 connections cannot honour it (supported: sslmode, sslrootcert, sslcert, \
                 sslkey); remove it",
                url.masked()
            );
        }
    }
    let [mode, root_cert, client_cert, client_key] = given;
    let (mode_text, from) = match mode {
        Some(m) => (m, "the URL"),
        None => (
            env_default("PGSSLMODE").unwrap_or_else(|| "prefer".into()),
            "PGSSLMODE",
        ),
    };
    let at = url.masked();
    let mode = match Mode::parse(&mode_text) {
        Some(m) => m,
        None if mode_text.eq_ignore_ascii_case("allow") => bail!(
            "{what} ({at}): sslmode=allow (from {from}) is not supported: landlord's own \
             connections would never use TLS under it; use disable, prefer, require, \
             verify-ca or verify-full"
        ),
        None => bail!(
            "{what} ({at}): sslmode {mode_text:?} (from {from}) is not one of disable, \
             prefer, require, verify-ca, verify-full"
        ),
    };
    let root_cert = root_cert.or_else(|| env_default("PGSSLROOTCERT"));
    let client_cert = client_cert.or_else(|| env_default("PGSSLCERT"));
    let client_key = client_key.or_else(|| env_default("PGSSLKEY"));
    if mode.verifies() && root_cert.is_none() {
        bail!(
            "{what} ({at}): sslmode={mode} needs sslrootcert=<CA file> (in the URL or \
             PGSSLROOTCERT): without it landlord would trust the public web CAs and \
             pg_dump/psql ~/.postgresql/root.crt"
        );
    }
    if mode == Mode::Require && root_cert.is_some() {
        bail!(
            "{what} ({at}): sslmode=require with sslrootcert: pg_dump/psql would verify the \
             server's certificate but landlord's own connections would not; say \
             sslmode=verify-full (or verify-ca)"
        );
    }
    if client_cert.is_some() != client_key.is_some() {
        bail!("{what} ({at}): sslcert and sslkey must be given together (client certificate)");
    }
    Ok(Tls {
        mode,
        root_cert,
        client_cert,
        client_key,
    })
}

/// Sets the TLS parameters of `url` as libpq variables on a client program's
/// command, and removes inherited libpq security variables landlord's own
/// connections do not honour. Refuses what [`check`] refuses.
pub fn set_child_env(cmd: &mut Command, what: &str, url: &SecretUrl) -> Result<()> {
    check(what, url)?;
    for var in CHILD_UNSET {
        cmd.env_remove(var);
    }
    let parsed = url::Url::parse(url.expose())?;
    for (k, v) in parsed.query_pairs() {
        if let Some((_, var)) = PASSED.iter().find(|(names, _)| names.contains(&k.as_ref())) {
            cmd.env(var, v.as_ref());
        }
    }
    Ok(())
}

/// What went wrong, in words, when connecting to a PostgreSQL server failed
/// for a reason of TLS or of the server's rules on it; `None` otherwise.
pub fn diagnose(err: &anyhow::Error, url: &SecretUrl) -> Option<String> {
    let text = format!("{err:#}").to_ascii_lowercase();
    let tls = check("", url).ok();
    let mode = tls.as_ref().map_or(Mode::Prefer, |t| t.mode);
    let root = tls
        .as_ref()
        .and_then(|t| t.root_cert.clone())
        .unwrap_or_else(|| "(none)".into());
    let host = url::Url::parse(url.expose())
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let has = |s: &str| text.contains(s);
    Some(if has("server does not support tls") {
        format!("the server does not offer TLS, but sslmode={mode} requires it")
    } else if has("not valid for name") || has("notvalidforname") {
        let also = if mode == Mode::VerifyCa {
            ", as landlord's own connections do under verify-ca too (sqlx 0.8, \
             launchbadge/sqlx#3793)"
        } else {
            ""
        };
        format!(
            "TLS: the server's certificate is not valid for host name {host:?} \
             (sslmode={mode} checks the name{also}): connect by a name the certificate lists"
        )
    } else if has("unknownissuer") || has("unknown issuer") || has("certificate verify failed") {
        format!(
            "TLS: the server's certificate is not signed by a CA in sslrootcert={root} \
             (untrusted CA)"
        )
    } else if has("expired") && has("certificate") {
        "TLS: the server's certificate has expired".into()
    } else if has("no encryption") && (has("pg_hba.conf") || has("rejects connection")) {
        format!(
            "the server refuses unencrypted connections (sslmode={mode}): use \
             sslmode=verify-full with sslrootcert=<CA file>"
        )
    } else if has("requires a valid client certificate") {
        "the server requires a client certificate: add sslcert and sslkey to the URL".into()
    } else if has("certificate authentication failed") {
        "the server refused the client certificate for this user (its CN must be the user \
         name, or mapped in pg_ident.conf)"
            .into()
    } else if has("received fatal alert") {
        "TLS: the server ended the handshake (it refused the client certificate, or the TLS \
         version or ciphers)"
            .into()
    } else if has("invalid certificate") || has("no keys found") {
        "TLS: a certificate or key file named in the URL (sslrootcert, sslcert, sslkey) \
         holds no usable PEM"
            .into()
    } else {
        return None;
    })
}

/// The error of a failed connection to `endpoint` (e.g. `the catalog`,
/// `database server "default"`) at `url`: names the endpoint by its masked
/// URL and, for a TLS failure, what failed.
pub fn connect_error(
    err: impl Into<anyhow::Error>,
    endpoint: &str,
    url: &SecretUrl,
) -> anyhow::Error {
    let err = err.into();
    let why = diagnose(&err, url)
        .map(|w| format!(": {w}"))
        .unwrap_or_default();
    err.context(format!("connecting to {endpoint} at {}{why}", url.masked()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(url: &str) -> Result<Tls> {
        check("server x", &SecretUrl::new(url))
    }

    #[test]
    fn parameters() {
        let t = tls("postgres://h/db?sslmode=verify-full&sslrootcert=/ca.pem").unwrap();
        assert_eq!(t.mode, Mode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some("/ca.pem"));
        let t = tls("postgres://h/db?ssl-mode=verify-ca&ssl-ca=/ca.pem&sslcert=/c&sslkey=/k");
        assert_eq!(t.unwrap().client_key.as_deref(), Some("/k"));
        for (url, says) in [
            ("postgres://h/db?sslmode=allow", "sslmode=allow"),
            ("postgres://h/db?sslmode=bogus", "\"bogus\""),
            ("postgres://h/db?sslmode=verify-full", "needs sslrootcert"),
            (
                "postgres://h/db?sslmode=require&sslrootcert=/ca",
                "verify-full",
            ),
            ("postgres://h/db?sslcert=/c", "together"),
            ("postgres://u:hunter2@h/db?sslcrl=/crl", "\"sslcrl\""),
            ("postgres://h/db?sslpassword=x", "\"sslpassword\""),
            ("postgres://h/db?gssencmode=require", "\"gssencmode\""),
        ] {
            let e = tls(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }
}
