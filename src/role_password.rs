//! Passwords of the PostgreSQL roles landlord creates (tenant roles, restore
//! loaders): generated here, and sent to the server only as SCRAM-SHA-256
//! verifiers (RFC 5802, RFC 7677, in `pg_authid.rolpassword`'s format).
//!
//! landlord sets a role's password by sending the verifier, never the clear
//! password: `CREATE/ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'` is stored as
//! given, and statement logs and `pg_stat_statements` see only the verifier.
//! This module must never log or return the password it is handed, and never
//! send anything to a server itself.

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore, distr::Alphanumeric};
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;

/// Length of a generated password (about 190 bits).
const PASSWORD_LEN: usize = 32;

/// A new random password of ASCII letters and digits.
pub fn generate() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// A verifier for `password` with a fresh random salt.
///
/// The password must need no SASLprep normalisation (ASCII letters and
/// digits do not; landlord generates only those).
pub fn verifier(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    verifier_with(password, &salt, ITERATIONS)
}

/// The verifier for `password` with a given salt and iteration count.
pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA-256 accepts keys of any length"),
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_implementation() {
        // Computed with Python's hashlib.pbkdf2_hmac and hmac for "pencil",
        // salt 00 01 … 0f, 4096 iterations.
        assert_eq!(
            verifier_with("pencil", &(0u8..16).collect::<Vec<_>>(), 4096),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$\
             zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:\
             dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
        );
    }

    #[test]
    fn generated_passwords_need_no_normalisation() {
        let p = generate();
        assert_eq!(p.len(), 32);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, generate());
    }

    #[test]
    fn fresh_verifiers_differ_and_never_contain_the_password() {
        let (a, b) = (verifier("hunter2hunter2"), verifier("hunter2hunter2"));
        assert_ne!(a, b, "each verifier has its own salt");
        assert!(a.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!a.contains("hunter2"));
    }
}
