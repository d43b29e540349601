//! The three tenancy secrets, read from the environment only:
//! `TENANCY_CONTEXT_SECRET` (32 bytes in hex, signs tenant contexts),
//! `TENANCY_JWT_SECRET` (the HS256 key) and `TENANCY_BYPASS_URL` (a
//! BYPASSRLS role's URL).
//!
//! This module must never quote a secret in an error message (only its
//! shape: its length, that it has non-hex characters, that it is not a
//! PostgreSQL URL) and never keep one outside a `secrecy` box.

use anyhow::{Result, bail};
use secrecy::{SecretSlice, SecretString};

use super::{ENV_BYPASS_URL, ENV_CONTEXT_SECRET, ENV_JWT_SECRET, values::Env};

/// Length of `TENANCY_CONTEXT_SECRET` in hexadecimal characters (32 bytes).
const CONTEXT_SECRET_HEX_LEN: usize = 64;
/// Shortest HS256 key allowed: the hash output size (RFC 7518 §3.2).
const JWT_SECRET_MIN_LEN: usize = 32;

/// The secrets that are set, each checked.
pub(super) struct Secrets {
    pub context_secret: Option<SecretSlice<u8>>,
    pub jwt_secret: Option<SecretString>,
    pub bypass_url: Option<SecretString>,
}

impl Secrets {
    pub fn read(env: &Env<'_>) -> Result<Self> {
        Ok(Self {
            context_secret: env
                .get(ENV_CONTEXT_SECRET)
                .map(|v| parse_context_secret(&v))
                .transpose()?,
            jwt_secret: env.get(ENV_JWT_SECRET).map(parse_jwt_secret).transpose()?,
            bypass_url: env.get(ENV_BYPASS_URL).map(parse_bypass_url).transpose()?,
        })
    }
}

fn parse_context_secret(raw: &str) -> Result<SecretSlice<u8>> {
    // The value itself is never quoted: only its shape.
    if raw.len() != CONTEXT_SECRET_HEX_LEN {
        bail!(
            "{ENV_CONTEXT_SECRET} must be exactly {CONTEXT_SECRET_HEX_LEN} hexadecimal \
             characters (32 bytes); the value given has {} characters.",
            raw.len()
        );
    }
    let mut bytes = Vec::with_capacity(CONTEXT_SECRET_HEX_LEN / 2);
    for pair in raw.as_bytes().chunks(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(hi), Some(lo)) => bytes.push(hi << 4 | lo),
            _ => {
                // Overwrite what was decoded so far before giving up.
                bytes.iter_mut().for_each(|b| *b = 0);
                bail!(
                    "{ENV_CONTEXT_SECRET} must be exactly {CONTEXT_SECRET_HEX_LEN} \
                     hexadecimal characters (32 bytes); the value given has characters \
                     other than 0-9 and a-f."
                );
            }
        }
    }
    Ok(SecretSlice::from(bytes))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn parse_jwt_secret(raw: String) -> Result<SecretString> {
    if raw.len() < JWT_SECRET_MIN_LEN {
        bail!(
            "{ENV_JWT_SECRET} must be at least {JWT_SECRET_MIN_LEN} bytes long for HS256 \
             (RFC 7518 section 3.2); the value given has {} bytes.",
            raw.len()
        );
    }
    Ok(SecretString::from(raw))
}

fn parse_bypass_url(raw: String) -> Result<SecretString> {
    let scheme = raw
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    if scheme != "postgres" && scheme != "postgresql" {
        bail!(
            "{ENV_BYPASS_URL} must be a PostgreSQL URL (postgres://... or \
             postgresql://...); the value given is not one (it is not shown because it \
             may hold a password)."
        );
    }
    Ok(SecretString::from(raw))
}
