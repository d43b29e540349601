//! Outgoing mail: the SMTP server (`LANDLORD_SMTP_URL`, a [`SecretUrl`]),
//! the CA to trust for it (`LANDLORD_SMTP_CA_FILE`) and the sender
//! (`LANDLORD_MAIL_FROM`). [`MailSettings::endpoint`] reads the URL:
//!
//! - `smtp://host:port` — plain SMTP (port 25 by default), as the local maildev speaks;
//! - `smtp://host:port?tls=required` — STARTTLS, and fail if the server does not offer it;
//! - `smtp://host:port?tls=opportunistic` — STARTTLS when offered, else plain;
//! - `smtps://host:port` — implicit TLS (port 465 by default).
//!
//! `user:password@` (percent-encoded) makes landlord authenticate (AUTH PLAIN or
//! LOGIN, as the server offers). Certificates are always verified, against the
//! CA file if one is set (and only it), else against the system's CAs.
//!
//! This module must never print the SMTP URL unmasked, nor accept credentials
//! on a URL that would always send them in clear (plain `smtp://`); without a
//! URL, mail jobs fail with a clear error rather than falling back to some server.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use secrecy::SecretString;

use super::{SecretUrl, env::env};

/// Outgoing mail.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp://host:port`; `None` means mail jobs fail with a clear error.
    pub smtp_url: Option<SecretUrl>,
    pub from: String,
    /// `LANDLORD_SMTP_CA_FILE`: the only CA trusted for the SMTP server's certificate.
    pub ca_file: Option<PathBuf>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: no TLS.
    Plain,
    /// `smtp://…?tls=required`: STARTTLS, or fail.
    StartTlsRequired,
    /// `smtp://…?tls=opportunistic`: STARTTLS if offered.
    StartTlsOpportunistic,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// The SMTP server of [`MailSettings`], parsed.
#[derive(Debug, Clone)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password (percent-decoded) for AUTH.
    pub credentials: Option<(String, SecretString)>,
    /// The name to send in EHLO (the URL's path), else this machine's name.
    pub hello_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// The URL with its password masked, for messages.
    pub masked: String,
}

impl MailSettings {
    /// The file's top-level `smtp_url` and `mail_from`, under the environment.
    pub(super) fn load(smtp_url: Option<String>, mail_from: Option<String>) -> Self {
        Self {
            smtp_url: env("LANDLORD_SMTP_URL").or(smtp_url).map(SecretUrl::new),
            from: env("LANDLORD_MAIL_FROM")
                .or(mail_from)
                .unwrap_or_else(|| "landlord <landlord@localhost>".to_string()),
            ca_file: env("LANDLORD_SMTP_CA_FILE").map(PathBuf::from),
        }
    }

    /// The SMTP server to send through, or why there is none usable.
    pub fn endpoint(&self) -> Result<SmtpEndpoint> {
        let url = self
            .smtp_url
            .as_ref()
            .ok_or_else(|| anyhow!("LANDLORD_SMTP_URL is not set; cannot send mail"))?;
        SmtpEndpoint::parse(url, self.ca_file.clone())
    }
}

impl SmtpEndpoint {
    pub fn parse(url: &SecretUrl, ca_file: Option<PathBuf>) -> Result<Self> {
        let masked = url.masked();
        let u = url::Url::parse(url.expose())
            .map_err(|e| anyhow!("LANDLORD_SMTP_URL {masked} is not a URL: {e}"))?;
        let tls = u
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (security, default_port) = match (u.scheme(), tls.as_deref()) {
            ("smtp", None) => (SmtpSecurity::Plain, 25),
            ("smtp", Some("required")) => (SmtpSecurity::StartTlsRequired, 587),
            ("smtp", Some("opportunistic")) => (SmtpSecurity::StartTlsOpportunistic, 587),
            ("smtp", Some(other)) => bail!(
                "LANDLORD_SMTP_URL {masked}: tls={other} is not one of tls=required, tls=opportunistic"
            ),
            ("smtps", None) => (SmtpSecurity::Implicit, 465),
            ("smtps", Some(_)) => bail!(
                "LANDLORD_SMTP_URL {masked}: smtps:// is TLS from the start; drop the tls= parameter"
            ),
            (other, _) => {
                bail!("LANDLORD_SMTP_URL {masked}: scheme {other}:// is not smtp:// or smtps://")
            }
        };
        let host = u
            .host_str()
            .ok_or_else(|| anyhow!("LANDLORD_SMTP_URL {masked} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str, what: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| {
                    anyhow!(
                        "LANDLORD_SMTP_URL {masked}: the {what} is not UTF-8 once percent-decoded"
                    )
                })
        };
        let credentials = match (u.username(), u.password()) {
            ("", None) => None,
            (user, Some(pass)) => Some((
                decode(user, "user name")?,
                SecretString::from(decode(pass, "password")?),
            )),
            (_, None) => {
                bail!("LANDLORD_SMTP_URL {masked}: a user name needs a password (user:password@)")
            }
        };
        if credentials.is_some() && security == SmtpSecurity::Plain {
            bail!(
                "LANDLORD_SMTP_URL {masked}: plain smtp:// would send the password unencrypted; \
                 use smtps://, ?tls=required, or ?tls=opportunistic to accept that risk when \
                 the server offers no STARTTLS"
            );
        }
        if ca_file.is_some() && security == SmtpSecurity::Plain {
            bail!(
                "LANDLORD_SMTP_CA_FILE is set but LANDLORD_SMTP_URL {masked} uses no TLS; \
                 use smtps:// or ?tls=required"
            );
        }
        let path = u.path().trim_matches('/');
        Ok(Self {
            host,
            port: u.port().unwrap_or(default_port),
            security,
            credentials,
            hello_name: (!path.is_empty()).then(|| path.to_string()),
            ca_file,
            masked,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn parse(url: &str) -> Result<SmtpEndpoint> {
        SmtpEndpoint::parse(&SecretUrl::new(url), None)
    }

    #[test]
    fn reads_each_kind_of_smtp_url() {
        let p = parse("smtp://127.0.0.1:1025").unwrap();
        assert_eq!(
            (p.security, p.port, p.credentials.is_none()),
            (SmtpSecurity::Plain, 1025, true)
        );
        let s = parse("smtps://landlord:dev%3Ap%40ss%25tls@localhost").unwrap();
        assert_eq!((s.security, s.port), (SmtpSecurity::Implicit, 465));
        let (user, pass) = s.credentials.unwrap();
        assert_eq!(
            (user.as_str(), pass.expose_secret()),
            ("landlord", "dev:p@ss%tls")
        );
        assert!(!s.masked.contains("p%40ss"), "{}", s.masked);
        assert_eq!(
            parse("smtp://h?tls=required").unwrap().security,
            SmtpSecurity::StartTlsRequired
        );
        let o = parse("smtp://u:p@h:2525/mx.example?tls=opportunistic").unwrap();
        assert_eq!(
            (o.security, o.port),
            (SmtpSecurity::StartTlsOpportunistic, 2525)
        );
        assert_eq!(o.hello_name.as_deref(), Some("mx.example"));
    }

    #[test]
    fn refuses_what_it_cannot_protect() {
        let e = parse("smtp://u:hunter2@h").unwrap_err().to_string();
        assert!(e.contains("unencrypted") && !e.contains("hunter2"), "{e}");
        assert!(
            parse("smtp://h?tls=always")
                .unwrap_err()
                .to_string()
                .contains("tls=always")
        );
        assert!(parse("smtps://h?tls=required").is_err());
        assert!(parse("http://h").is_err());
        let e = SmtpEndpoint::parse(&SecretUrl::new("smtp://h"), Some("/ca.pem".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("LANDLORD_SMTP_CA_FILE"), "{e}");
    }
}
