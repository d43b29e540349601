//! [`SecretUrl`]: a connection URL that may carry a password.
//!
//! It must never print the password: `Debug`, `Display` and [`SecretUrl::masked`]
//! replace it with `***`; only [`SecretUrl::expose`] hands out the real URL,
//! for a client library and never for a log line.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A connection URL that may carry a password. Printing it masks the password.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(SecretString::from(raw.into()))
    }

    /// The real URL, for handing to a client library. Never log this.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with any password replaced by `***`.
    pub fn masked(&self) -> String {
        match url::Url::parse(self.expose()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "<unparseable url>".to_string(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.masked())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let u = SecretUrl::new("postgres://app:hunter2@db:5432/landlord");
        assert_eq!(u.masked(), "postgres://app:***@db:5432/landlord");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert!(!format!("{u}").contains("hunter2"));
    }
}
