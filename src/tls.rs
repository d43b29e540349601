//! What the TLS clients of RabbitMQ and SMTP share: reading the PEM files a
//! setting names (with errors naming the file and the setting) and turning a
//! failed handshake into a sentence that says what failed — an untrusted CA,
//! a certificate for another host name, a server that does not speak TLS on
//! that port, a client certificate the server refused.
//!
//! This module must never weaken verification: it reads trust material and
//! explains failures; it has no way to accept a certificate that failed.

use std::{error::Error as StdError, path::Path};

use anyhow::{Context, Result, bail};
use rustls::{
    AlertDescription, CertificateError, pki_types::CertificateDer, pki_types::pem::PemObject,
};

/// The contents of a PEM file of certificates (a CA bundle or a client
/// certificate chain); `what` names the setting, for the error.
pub fn read_certificates(path: &Path, what: &str) -> Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what}: {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{what}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(pem)
}

/// The contents of a PEM private key file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path, what: &str) -> Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{what}: cannot read {}", path.display()))?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{what}: {} holds no usable PEM private key: {e}",
            path.display()
        )
    })?;
    Ok(pem)
}

/// What went wrong in a TLS handshake, if `err` (or an error under it) is one.
pub fn explain(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(t));
        }
        // io::Error::source skips the error it wraps; look inside it first.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(describe(t));
            }
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a CA this client trusts \
             (give the CA that signed it) ({e})"
        ),
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate does not name the host connected to \
             (use a host name the certificate lists) ({e})"
        ),
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the server's certificate has expired ({e})"),
        E::InvalidCertificate(_) => format!("the server's certificate was refused ({e})"),
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied,
        ) => format!("the server refused the client certificate (or wants one) ({e})"),
        E::InvalidMessage(_)
        | E::InappropriateMessage { .. }
        | E::InappropriateHandshakeMessage { .. } => {
            format!("the server does not speak TLS on this port (a plain listener?) ({e})")
        }
        _ => format!("the TLS handshake failed ({e})"),
    }
}

/// Makes aws-lc-rs the process's default rustls provider, for clients that
/// take the default (reqwest, for notification webhooks). Idempotent; the
/// binary calls it at start, library code before building such a client.
pub fn install_default_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_rustls_error_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let any = anyhow::Error::new(io).context("connecting");
        let text = explain(any.as_ref()).unwrap();
        assert!(text.contains("not signed by a CA"), "{text}");
        assert!(explain(&std::io::Error::other("refused")).is_none());
    }
}
