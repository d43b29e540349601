//! The catalog's own key: where the age identity file that seals tenant
//! passwords at rest lives (`LANDLORD_SECRETS_KEY_FILE`, `secrets_key_file`).
//!
//! Part of the configuration layer: this module keeps only the *path*; it
//! must never open the file nor hold a private key (`lifecycle::sealing`
//! reads it when a password is sealed or opened).

use std::path::PathBuf;

use super::env::env;

/// The catalog key's file.
#[derive(Debug, Clone, Default)]
pub struct SecretsSettings {
    /// An age identity file (`age-keygen` output; several keys allowed, the
    /// first seals, all open). `None`: tenant passwords cannot be stored, and
    /// provisioning says so.
    pub key_file: Option<PathBuf>,
}

impl SecretsSettings {
    /// `LANDLORD_SECRETS_KEY_FILE` over the file's `secrets_key_file`.
    pub(super) fn load(file: Option<PathBuf>) -> Self {
        Self {
            key_file: env("LANDLORD_SECRETS_KEY_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or(file),
        }
    }
}
