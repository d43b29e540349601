//! One SMTP session per [`SmtpEndpoint`]: connect (TLS from the start for
//! `smtps://`), STARTTLS as the URL asks, AUTH with the URL's credentials,
//! then send and quit. The welcome mail job sends through it and `doctor`
//! probes with it, so both see the same protection and the same errors.
//!
//! Errors say what failed and where (the masked URL): the certificate not
//! trusted or not for that host, STARTTLS required but not offered, the
//! credentials refused, no AUTH offered. This module must never send a
//! password before the connection is as protected as the URL asks, nor skip
//! certificate verification.

use std::time::Duration;

use anyhow::{Result, anyhow};
use lettre::{
    Message,
    transport::smtp::{
        Error as SmtpError,
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters},
        extension::ClientId,
    },
};
use secrecy::ExposeSecret;

use crate::config::{SmtpEndpoint, SmtpSecurity};

const TIMEOUT: Duration = Duration::from_secs(30);

/// What protects an open session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protection {
    /// The session is TLS (implicit or after STARTTLS); its certificate was verified.
    pub encrypted: bool,
    /// For people: how (`STARTTLS`, `implicit TLS`), against which CA, AUTH or not.
    pub detail: String,
}

/// An open, authenticated SMTP session.
pub struct Session {
    conn: AsyncSmtpConnection,
    endpoint: SmtpEndpoint,
    pub protection: Protection,
}

impl Session {
    /// Connects, secures and authenticates as `endpoint` says.
    pub async fn open(endpoint: &SmtpEndpoint) -> Result<Self> {
        let ep = endpoint;
        let hello = match &ep.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let tls = match ep.security {
            SmtpSecurity::Plain => None,
            _ => Some(tls_parameters(ep)?),
        };
        let wrapper = match ep.security {
            SmtpSecurity::Implicit => tls.clone(),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (ep.host.as_str(), ep.port),
            Some(TIMEOUT),
            &hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| failure(ep, "connecting", &e))?;
        let mut how = match ep.security {
            SmtpSecurity::Implicit => "implicit TLS".to_string(),
            _ => "plain".to_string(),
        };
        match (ep.security, tls) {
            (SmtpSecurity::StartTlsRequired, Some(params)) => {
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(anyhow!(
                        "SMTP server {} does not offer STARTTLS, which tls=required asks for \
                         (use smtps:// if it speaks implicit TLS, or tls=opportunistic)",
                        ep.masked
                    ));
                }
                conn.starttls(params, &hello)
                    .await
                    .map_err(|e| failure(ep, "STARTTLS", &e))?;
                how = "STARTTLS".into();
            }
            (SmtpSecurity::StartTlsOpportunistic, Some(params)) => {
                if conn.can_starttls() {
                    conn.starttls(params, &hello)
                        .await
                        .map_err(|e| failure(ep, "STARTTLS", &e))?;
                    how = "STARTTLS".into();
                } else {
                    how = "plain: the server offers no STARTTLS (tls=opportunistic)".into();
                }
            }
            _ => {}
        }
        let encrypted = conn.is_encrypted();
        if encrypted {
            how.push_str(&match &ep.ca_file {
                Some(ca) => format!(", certificate verified against {}", ca.display()),
                None => ", certificate verified against the system's CAs".to_string(),
            });
        }
        if let Some((user, password)) = &ep.credentials {
            let creds = Credentials::new(user.clone(), password.expose_secret().to_string());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
                .map_err(|e| failure(ep, "authenticating", &e))?;
            how.push_str(&format!(", AUTH as {user}"));
        }
        Ok(Self {
            conn,
            endpoint: ep.clone(),
            protection: Protection {
                encrypted,
                detail: how,
            },
        })
    }

    /// Sends one message on the session.
    pub async fn send(&mut self, message: &Message) -> Result<()> {
        self.conn
            .send(message.envelope(), &message.formatted())
            .await
            .map_err(|e| failure(&self.endpoint, "sending", &e))?;
        Ok(())
    }

    /// Ends the session politely (a failure here loses nothing).
    pub async fn quit(mut self) {
        if self.conn.quit().await.is_err() {
            self.conn.abort().await;
        }
    }
}

/// Verification against the CA file alone if one is set, else the system's CAs.
fn tls_parameters(ep: &SmtpEndpoint) -> Result<TlsParameters> {
    let mut builder = TlsParameters::builder(ep.host.clone());
    if let Some(ca) = &ep.ca_file {
        let pem = crate::tls::read_certificates(ca, "LANDLORD_SMTP_CA_FILE")?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            anyhow!(
                "LANDLORD_SMTP_CA_FILE: {} is not a usable CA: {e}",
                ca.display()
            )
        })?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| anyhow!("TLS settings for SMTP server {}: {e}", ep.masked))
}

/// A sentence for a failed step: what the server or the handshake said.
fn failure(ep: &SmtpEndpoint, step: &str, e: &SmtpError) -> anyhow::Error {
    let at = &ep.masked;
    if let Some(tls) = crate::tls::explain(e) {
        let hint = match (&ep.ca_file, tls.contains("not signed by a CA")) {
            (Some(ca), true) => format!(" (LANDLORD_SMTP_CA_FILE is {})", ca.display()),
            (None, true) => " (set LANDLORD_SMTP_CA_FILE to the CA that signed it)".into(),
            _ => String::new(),
        };
        return anyhow!("TLS with SMTP server {at} failed while {step}: {tls}{hint}");
    }
    let code = e.status().map(|c| c.to_string());
    match (step, code.as_deref()) {
        ("authenticating", Some("535" | "534" | "530" | "454")) => anyhow!(
            "SMTP server {at} refused the user name or password (AUTH): {e}; check the \
             credentials in LANDLORD_SMTP_URL"
        ),
        ("authenticating", None) if e.is_client() => anyhow!(
            "SMTP server {at} offers no AUTH mechanism landlord can use (PLAIN, LOGIN): {e}"
        ),
        _ if e.is_timeout() => anyhow!("SMTP server {at} did not answer in time while {step}: {e}"),
        _ => anyhow!("SMTP server {at} failed while {step}: {e}"),
    }
}
