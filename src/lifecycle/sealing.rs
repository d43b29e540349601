//! Tenant passwords at rest: sealed with age (X25519) to the catalog key of
//! `LANDLORD_SECRETS_KEY_FILE` before they reach `tenant_credentials`, opened
//! when an application fetches them, re-sealed to a new key by
//! `landlord secrets rekey`.
//!
//! The key file may hold several identities: the first seals, every one
//! opens, so a key is rotated by putting a new one first, running `rekey`,
//! then deleting the old one. A sealed value names the recipient it was
//! sealed to (`sealed_to`, a public key), and carries its tenant's id inside,
//! so a value copied onto another tenant's row does not open.
//!
//! This module must never log a password or a key, and never store a
//! password unsealed.

use std::io::{Read, Write};

use anyhow::{Context, Result, anyhow, bail};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use sqlx::PgPool;

use crate::config::SecretsSettings;

/// A password sealed for the catalog: the ciphertext and the public key it
/// was sealed to.
pub struct Sealed {
    pub ciphertext: String,
    pub sealed_to: String,
}

/// The catalog key, read from its file.
pub struct Sealer {
    identities: Vec<age::x25519::Identity>,
    current: age::x25519::Recipient,
}

impl Sealer {
    /// Reads the key file; a clear error when none is configured.
    pub fn load(settings: &SecretsSettings) -> Result<Self> {
        let Some(path) = &settings.key_file else {
            bail!(
                "LANDLORD_SECRETS_KEY_FILE is not set: tenant passwords are stored sealed with \
                 the catalog key and never in clear; create one with `age-keygen -o FILE` and \
                 point LANDLORD_SECRETS_KEY_FILE (or secrets_key_file) at it"
            );
        };
        let identities = crate::keyfile::read_identities(path)
            .context("reading the catalog key (LANDLORD_SECRETS_KEY_FILE)")?;
        let current = identities[0].to_public();
        Ok(Self {
            identities,
            current,
        })
    }

    /// The public key new values are sealed to.
    pub fn current(&self) -> String {
        self.current.to_string()
    }

    /// Seals `password` of tenant `tenant_id` to the current key.
    pub fn seal(&self, tenant_id: i64, password: &str) -> Result<Sealed> {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&self.current as &dyn age::Recipient))
                .map_err(|e| anyhow!("setting up the catalog key: {e}"))?;
        let mut out = Vec::new();
        let mut w = encryptor.wrap_output(&mut out)?;
        w.write_all(format!("{tenant_id}\n{password}").as_bytes())?;
        w.finish()?;
        Ok(Sealed {
            ciphertext: B64.encode(out),
            sealed_to: self.current(),
        })
    }

    /// Opens a value sealed for tenant `tenant_id` with any key of the file.
    pub fn open(&self, tenant_id: i64, ciphertext: &str) -> Result<String> {
        let raw = B64
            .decode(ciphertext)
            .map_err(|_| anyhow!("the sealed password of tenant {tenant_id} is not base64"))?;
        let decryptor = age::Decryptor::new(&raw[..])
            .map_err(|e| anyhow!("the sealed password of tenant {tenant_id} is damaged: {e}"))?;
        let mut plain = String::new();
        decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|_| {
                anyhow!(
                    "the sealed password of tenant {tenant_id} does not open with any key of \
                     LANDLORD_SECRETS_KEY_FILE (was the key that sealed it removed?)"
                )
            })?
            .read_to_string(&mut plain)
            .map_err(|e| anyhow!("opening the sealed password of tenant {tenant_id}: {e}"))?;
        match plain.split_once('\n') {
            Some((id, password)) if id == tenant_id.to_string() => Ok(password.to_string()),
            _ => bail!(
                "the sealed password stored for tenant {tenant_id} was sealed for another tenant"
            ),
        }
    }
}

/// What [`rekey`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Rekeyed {
    /// Re-sealed from an older key to the current one.
    pub resealed: u64,
    /// Stored in clear by a landlord older than 0.9 and sealed now.
    pub sealed_from_clear: u64,
    /// Already sealed to the current key.
    pub current: u64,
}

/// Seals every stored password to the current key: values sealed to older
/// keys and clear values left by older versions. Each row in its own short
/// transaction, locked while it changes; safe to run again at any time.
pub async fn rekey(pool: &PgPool, sealer: &Sealer) -> Result<Rekeyed> {
    let current = sealer.current();
    let mut done = Rekeyed {
        current: sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM tenant_credentials WHERE sealed_to = $1",
        )
        .bind(&current)
        .fetch_one(pool)
        .await? as u64,
        ..Rekeyed::default()
    };
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT tenant_id FROM tenant_credentials WHERE sealed_to IS DISTINCT FROM $1 ORDER BY tenant_id",
    )
    .bind(&current)
    .fetch_all(pool)
    .await?;
    for id in ids {
        let mut tx = pool.begin().await?;
        let row: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT password, sealed, sealed_to FROM tenant_credentials WHERE tenant_id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let password = match row {
            None => continue,
            Some((_, Some(_), Some(to))) if to == current => continue,
            Some((_, Some(sealed), _)) => {
                done.resealed += 1;
                sealer.open(id, &sealed)?
            }
            Some((Some(clear), None, _)) => {
                done.sealed_from_clear += 1;
                clear
            }
            Some(_) => {
                bail!("tenant {id}'s credentials row holds neither a password nor a sealed one")
            }
        };
        let sealed = sealer.seal(id, &password)?;
        sqlx::query(
            "UPDATE tenant_credentials SET password = NULL, sealed = $2, sealed_to = $3 WHERE tenant_id = $1",
        )
        .bind(id)
        .bind(&sealed.ciphertext)
        .bind(&sealed.sealed_to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(done)
}

/// How many stored passwords are in clear, and how many sealed to a key
/// other than the current one (`None` when no key is configured).
pub async fn status(pool: &PgPool, current: Option<&str>) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE sealed IS NULL), \
                count(*) FILTER (WHERE sealed IS NOT NULL AND sealed_to IS DISTINCT FROM $1) \
         FROM tenant_credentials",
    )
    .bind(current)
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer_with(keys: &[&age::x25519::Identity]) -> Sealer {
        Sealer {
            identities: keys.iter().map(|k| (*k).clone()).collect(),
            current: keys[0].to_public(),
        }
    }

    #[test]
    fn a_sealed_password_opens_for_its_tenant_only() {
        let key = age::x25519::Identity::generate();
        let s = sealer_with(&[&key]);
        let sealed = s.seal(7, "Pa55word").unwrap();
        assert!(!sealed.ciphertext.contains("Pa55word"));
        assert_eq!(sealed.sealed_to, key.to_public().to_string());
        assert_eq!(s.open(7, &sealed.ciphertext).unwrap(), "Pa55word");
        let err = s.open(8, &sealed.ciphertext).unwrap_err().to_string();
        assert!(err.contains("another tenant"), "{err}");
    }

    #[test]
    fn an_old_key_still_opens_and_a_removed_one_does_not() {
        let (old, new) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let sealed = sealer_with(&[&old]).seal(1, "x").unwrap();
        assert_eq!(
            sealer_with(&[&new, &old])
                .open(1, &sealed.ciphertext)
                .unwrap(),
            "x"
        );
        let err = sealer_with(&[&new])
            .open(1, &sealed.ciphertext)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not open"), "{err}");
    }
}
