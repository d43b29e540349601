//! Validation of every name that may reach SQL or AMQP, and identifier quoting.
//!
//! Values from messages, requests or the command line are always bound as
//! parameters. The few names that must be spliced into SQL text (database
//! names in `CREATE DATABASE`, say) pass [`validate_db_name`] first and are
//! then quoted with [`quote_ident`]. Nothing else may be spliced.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("is empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("{0}")]
    Invalid(&'static str),
}

/// Longest tenant display name accepted.
pub const MAX_NAME_LEN: usize = 200;

/// A tenant slug: 3-40 characters, lowercase letters, digits and inner hyphens,
/// starting with a letter.
pub fn validate_slug(s: &str) -> Result<(), IdentError> {
    let len = s.chars().count();
    if len == 0 {
        return Err(IdentError::Empty);
    }
    if len > 40 {
        return Err(IdentError::TooLong { len, max: 40 });
    }
    if len < 3 {
        return Err(IdentError::Invalid("must be at least 3 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(IdentError::Invalid(
            "may contain only lowercase letters a-z, digits and hyphens",
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(IdentError::Invalid("must start with a letter"));
    }
    if s.ends_with('-') {
        return Err(IdentError::Invalid("must not end with a hyphen"));
    }
    if s.contains("--") {
        return Err(IdentError::Invalid("must not contain two hyphens in a row"));
    }
    Ok(())
}

/// A PostgreSQL database name landlord will manage: `[a-z_][a-z0-9_]{0,62}`.
pub fn validate_db_name(s: &str) -> Result<(), IdentError> {
    let len = s.chars().count();
    if len == 0 {
        return Err(IdentError::Empty);
    }
    if len > 63 {
        return Err(IdentError::TooLong { len, max: 63 });
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(IdentError::Invalid(
            "may contain only lowercase letters a-z, digits and underscores",
        ));
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(IdentError::Invalid("must not start with a digit"));
    }
    if matches!(s, "postgres" | "template0" | "template1") {
        return Err(IdentError::Invalid("is a system database"));
    }
    Ok(())
}

/// A configured database server name: `[a-z][a-z0-9_-]{0,62}`.
pub fn validate_server_name(s: &str) -> Result<(), IdentError> {
    let len = s.chars().count();
    if len == 0 {
        return Err(IdentError::Empty);
    }
    if len > 63 {
        return Err(IdentError::TooLong { len, max: 63 });
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase())
        || !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(IdentError::Invalid(
            "must start with a letter and contain only a-z, 0-9, '_' and '-'",
        ));
    }
    Ok(())
}

/// A display name: 1-200 characters, no control characters.
pub fn validate_display_name(s: &str) -> Result<(), IdentError> {
    let len = s.chars().count();
    if s.trim().is_empty() {
        return Err(IdentError::Empty);
    }
    if len > MAX_NAME_LEN {
        return Err(IdentError::TooLong {
            len,
            max: MAX_NAME_LEN,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(IdentError::Invalid("must not contain control characters"));
    }
    Ok(())
}

/// Quotes a SQL identifier (`"name"`, inner quotes doubled).
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(validate_slug("acme").is_ok());
        assert!(validate_slug("acme-corp-2").is_ok());
        for bad in [
            "",
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac--me",
            "a\"; DROP DATABASE x; --",
            "acme corp",
            "ácme",
        ] {
            assert!(validate_slug(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            validate_slug(&"a".repeat(1_000_000)),
            Err(IdentError::TooLong { .. })
        ));
    }

    #[test]
    fn db_names() {
        assert!(validate_db_name("tenant_acme").is_ok());
        for bad in ["", "Tenant", "1x", "a-b", "x\"y", "postgres", "template1"] {
            assert!(validate_db_name(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_db_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
