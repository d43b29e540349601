//! Row-level tenancy (seed 004): tenants sharing one database, isolated by
//! PostgreSQL itself. Row-level security on every table with the tenant
//! column compares it to a transaction-local, landlord-signed tenant setting;
//! code that forgets the scope gets an error (strict), or is recorded (soft),
//! never another tenant's rows.
//!
//! Files: `config` (the seed's configuration model and where each value came
//! from), `install` (installing and removing the policies; its static DDL
//! and PL/pgSQL are the `.sql` files in `sql/`), `inspect` (what
//! a database has, for `tenancy status`), `context` (the tenant context, the
//! scoped executor and the superuser bypass), `jwt` (the axum layer that
//! resolves the context from a token). Shared tenants' backups and restores
//! live in `backup::shared`. This module never sets a session-level tenant: only
//! transaction-local settings, so it is safe behind a transaction pooler.

pub mod config;
pub mod context;
pub mod inspect;
pub mod install;
pub mod jwt;

use sha2::{Digest, Sha256};

/// What happens to a query without a tenant context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    /// The query fails.
    Strict,
    /// The query runs unfiltered and is recorded as a violation.
    Soft,
    /// Nothing is installed: no policies, zero overhead.
    Disabled,
}

impl EnforcementMode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "strict" => Ok(Self::Strict),
            "soft" => Ok(Self::Soft),
            "disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "enforcement mode must be strict, soft or disabled, got {other:?}"
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Strict => "strict",
            Self::Soft => "soft",
            Self::Disabled => "disabled",
        }
    }
}

impl std::fmt::Display for EnforcementMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transaction-local setting holding the tenant.
pub const TENANT_SETTING: &str = "landlord.tenant_id";
/// The transaction-local setting holding the tenant's signature.
pub const SIGNATURE_SETTING: &str = "landlord.tenant_sig";

/// The signature of a tenant value: hex(sha256(secret ‖ sha256(tenant))).
/// The database recomputes it with the secret only its definer functions
/// can read, so SQL on a tenant-scoped connection cannot forge another
/// tenant's context. Must match `landlord_tenancy.current_tenant()`.
pub fn sign(secret: &[u8], tenant: &str) -> String {
    let inner = Sha256::digest(tenant.as_bytes());
    let mut h = Sha256::new();
    h.update(secret);
    h.update(inner);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_depend_on_secret_and_tenant() {
        let a = super::sign(b"k1", "42");
        assert_eq!(a.len(), 64);
        assert_ne!(a, super::sign(b"k2", "42"));
        assert_ne!(a, super::sign(b"k1", "43"));
        assert_eq!(a, super::sign(b"k1", "42"));
    }
}
