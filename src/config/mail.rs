//! Outgoing mail: the SMTP server (`LANDLORD_SMTP_URL`, a [`SecretUrl`]) and
//! the sender (`LANDLORD_MAIL_FROM`).
//!
//! This module must never print the SMTP URL unmasked; without one, mail jobs
//! fail with a clear error rather than falling back to some server.

use super::{SecretUrl, env::env};

/// Outgoing mail.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp://host:port`; `None` means mail jobs fail with a clear error.
    pub smtp_url: Option<SecretUrl>,
    pub from: String,
}

impl MailSettings {
    /// The file's top-level `smtp_url` and `mail_from`, under the environment.
    pub(super) fn load(smtp_url: Option<String>, mail_from: Option<String>) -> Self {
        Self {
            smtp_url: env("LANDLORD_SMTP_URL").or(smtp_url).map(SecretUrl::new),
            from: env("LANDLORD_MAIL_FROM")
                .or(mail_from)
                .unwrap_or_else(|| "landlord <landlord@localhost>".to_string()),
        }
    }
}
